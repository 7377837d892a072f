/**
 * Fastify 5 bench server. Variants: bare | bare-headers (bare plus AMAS's four response headers as constants) |
 * amas | fastify-rate-limit, and with a limit kept in Redis
 * (127.0.0.1:6379, a key prefix of this process's own, deleted on exit): amas-redis | fastify-rate-limit-redis.
 */
import Fastify from 'fastify';
import { AMAS_RESPONSE_HEADERS, amasOptions, BODY, dedup, exitOnSignal, LIMIT, parseArgs, ready } from './common.mjs';
import { amasRedisOptions, redisServerState } from './redis-common.mjs';

const { variant, port } = parseArgs(['bare', 'bare-headers', 'amas', 'fastify-rate-limit', 'amas-redis', 'fastify-rate-limit-redis']);
const app = Fastify({ logger: false });
let routeConfig = {};
let redis; // Redis variants: { prefix, client, cleanup() }

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
} else if (variant === 'amas-redis') {
  // A per-IP limit kept in Redis (one EVALSHA per request), metrics on by default; no breaker, no dedup.
  const mod = await import('@amas/fastify');
  const plugin = mod.default ?? mod.amas ?? mod.amasPlugin;
  redis = await redisServerState('fastify-amas');
  await app.register(plugin, amasRedisOptions(redis.prefix));
  await app.amas.ready();
} else if (variant === 'fastify-rate-limit-redis') {
  const { default: rateLimit } = await import('@fastify/rate-limit');
  redis = await redisServerState('fastify-frl', { client: true });
  await app.register(rateLimit, { max: LIMIT, timeWindow: redis.windowMs, redis: redis.client, nameSpace: `${redis.prefix}frl-` });
}

if (variant === 'bare-headers') {
  // What any plugin that sends these headers does at least (an onRequest hook), minus every decision.
  routeConfig = {
    onRequest: (_req, reply, done) => {
      reply.headers(AMAS_RESPONSE_HEADERS);
      done();
    },
  };
}

app.get('/hello', routeConfig, (_req, reply) => {
  reply.send(BODY);
});

await app.listen({ port, host: '127.0.0.1' });
ready(app.server.address().port);
exitOnSignal(async () => {
  await app.close();
  if (redis) await redis.cleanup();
});
