/** Fastify 5 bench server. Variants: bare | amas | fastify-rate-limit. */
import Fastify from 'fastify';
import { amasOptions, BODY, dedup, exitOnSignal, LIMIT, parseArgs, ready } from './common.mjs';

const { variant, port } = parseArgs(['bare', 'amas', 'fastify-rate-limit']);
const app = Fastify({ logger: false });
let routeConfig = {};

if (variant === 'amas') {
  const mod = await import('@amas/fastify');
  const plugin = mod.default ?? mod.amas ?? mod.amasPlugin;
  // limit + breaker (+ metrics, always on) through the plugin options; dedup through the route's config.amas.
  await app.register(plugin, amasOptions);
  routeConfig = { config: { amas: { dedup } } };
  if (mod.metricsHandler) app.get('/metrics', mod.metricsHandler());
} else if (variant === 'fastify-rate-limit') {
  const { default: rateLimit } = await import('@fastify/rate-limit');
  await app.register(rateLimit, { max: LIMIT, timeWindow: 60_000 });
}

app.get('/hello', routeConfig, (_req, reply) => {
  reply.send(BODY);
});

await app.listen({ port, host: '127.0.0.1' });
ready(app.server.address().port);
exitOnSignal(() => app.close());
