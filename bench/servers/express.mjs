/**
 * Express 5 bench server. Variants: bare | bare-headers (bare plus AMAS's four response headers as constants) |
 * amas | express-rate-limit, and with a limit kept in Redis
 * (127.0.0.1:6379, a key prefix of this process's own, deleted on exit): amas-redis | express-rate-limit-redis.
 */
import express from 'express';
import { amasMiddleware } from '@amas/express';
import { rateLimit } from 'express-rate-limit';
import { AMAS_RESPONSE_HEADERS, amasOptions, BODY, dedup, exitOnSignal, LIMIT, parseArgs, ready } from './common.mjs';
import { amasRedisOptions, redisServerState } from './redis-common.mjs';

const { variant, port } = parseArgs(['bare', 'bare-headers', 'amas', 'express-rate-limit', 'amas-redis', 'express-rate-limit-redis']);
const app = express();
app.disable('x-powered-by');
let amas;
let redis; // Redis variants: { prefix, client, cleanup() }

if (variant === 'bare-headers') {
  // What amasMiddleware does with its headers (setHeader before the handler), minus every decision.
  app.use((_req, res, next) => {
    for (const name in AMAS_RESPONSE_HEADERS) res.setHeader(name, AMAS_RESPONSE_HEADERS[name]);
    next();
  });
} else if (variant === 'amas') {
  // limit + breaker + dedup + metrics, all through the middleware options.
  amas = amasMiddleware({ ...amasOptions, http: { ...amasOptions.http, dedup } });
  app.use(amas);
} else if (variant === 'express-rate-limit') {
  app.use(rateLimit({ windowMs: 60_000, limit: LIMIT, standardHeaders: 'draft-8', legacyHeaders: false }));
} else if (variant === 'amas-redis') {
  // A per-IP limit kept in Redis (one EVALSHA per request), metrics on by default; no breaker, no dedup.
  redis = await redisServerState('express-amas');
  amas = amasMiddleware(amasRedisOptions(redis.prefix));
  await amas.amas.ready();
  app.use(amas);
} else if (variant === 'express-rate-limit-redis') {
  const { RedisStore } = await import('rate-limit-redis');
  redis = await redisServerState('express-erl', { client: true });
  const client = redis.client;
  app.use(
    rateLimit({
      windowMs: redis.windowMs,
      limit: LIMIT,
      standardHeaders: 'draft-8',
      legacyHeaders: false,
      store: new RedisStore({ prefix: `${redis.prefix}rl:`, sendCommand: (command, ...args) => client.call(command, ...args) }),
    }),
  );
}

app.get('/hello', (_req, res) => {
  res.json(BODY);
});
// After the measured route: Express tries routes in order, and the scrape endpoint is not what is measured.
if (amas) app.get('/metrics', amas.metricsHandler());

const server = app.listen(port, '127.0.0.1', () => ready(server.address().port));
exitOnSignal(async () => {
  server.close();
  if (amas) await amas.close();
  if (redis) await redis.cleanup();
});
