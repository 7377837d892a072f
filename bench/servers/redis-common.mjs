/**
 * Shared bits of the HTTP bench servers whose limit lives in Redis (127.0.0.1:6379, shared with others):
 * each server process gets a key prefix of its own and deletes the keys under it when it exits.
 *
 * The window is one hour (limit 1e9, never reached): a run is a few minutes, so no window resets or slides
 * during it, and the runner can check after every sample that each request was counted once in Redis (see
 * `cpu`/`probe` in bench/run.mjs). The window's length does not change the cost of a decision.
 */
import { connect, deletePrefix, REDIS_URL, storeLikeOptions, uniquePrefix } from '../lib/redis.mjs';
import { LIMIT } from './common.mjs';

export const REDIS_WINDOW_MS = 3_600_000;

/**
 * Diagnostics only (not used by run.mjs): AMAS_BENCH_REDIS_AUTOPIPELINING=0 starts the amas-redis variants
 * with `redis.autoPipelining: false` (RedisStore's default is false), and =1 sets it to true explicitly.
 */
const autoPipelining =
  process.env.AMAS_BENCH_REDIS_AUTOPIPELINING === undefined ? {} : { autoPipelining: process.env.AMAS_BENCH_REDIS_AUTOPIPELINING !== '0' };

/** AMAS with a per-IP limit kept in Redis; metrics stay on (the default). No breaker, no dedup. */
export function amasRedisOptions(prefix) {
  return {
    redis: { url: REDIS_URL, prefix, ...autoPipelining },
    limits: { perIp: { limit: LIMIT, window: '1h' } },
    http: { limit: 'perIp' },
  };
}

/**
 * `{ prefix, windowMs, client?, cleanup() }`. `client: true` also opens an ioredis client for a peer library,
 * with RedisStore's options (auto-pipelining on, as RedisStore's default; see bench/README.md).
 */
export async function redisServerState(tag, { client: wantClient = false } = {}) {
  const prefix = uniquePrefix(tag);
  const client = wantClient ? await connect(storeLikeOptions(true)) : undefined;
  return {
    prefix,
    windowMs: REDIS_WINDOW_MS,
    client,
    async cleanup() {
      client?.disconnect();
      const side = await connect(storeLikeOptions(false));
      try {
        await deletePrefix(side, prefix);
      } finally {
        side.disconnect();
      }
    },
  };
}
