/**
 * Shared bits of the Redis benches. Redis is shared with other people's tests: every bench process uses a
 * key prefix of its own (`amas-bench:<pid>-<random>:`), deletes only the keys under it when it is done, and
 * never sends FLUSH* or anything else that touches keys outside its prefix. Loopback only.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';

export const REDIS_URL = 'redis://127.0.0.1:6379';
if (!REDIS_URL.startsWith('redis://127.0.0.1:')) throw new Error('the benches only talk to 127.0.0.1');

/** A prefix no other process uses. */
export function uniquePrefix(tag) {
  return `amas-bench:${tag}:${process.pid}-${randomBytes(4).toString('hex')}:`;
}

/**
 * The ioredis options RedisStore uses for its command connection (packages/core/src/stores/redis-store.ts,
 * createClient), so the raw-ioredis baseline and the peers talk to Redis the way AMAS does.
 */
export function storeLikeOptions(autoPipelining) {
  return {
    enableOfflineQueue: false,
    enableAutoPipelining: autoPipelining,
    connectTimeout: 2000,
    maxRetriesPerRequest: 0,
    lazyConnect: false,
  };
}

export async function connect(options) {
  const client = new Redis(REDIS_URL, options);
  if (client.status !== 'ready') {
    await new Promise((resolve, reject) => {
      client.once('ready', resolve);
      client.once('error', reject);
    });
  }
  return client;
}

/**
 * Writes the way RedisStore does (its corkForThisIteration): the socket is corked for one event-loop
 * iteration and flushed every `every` commands. For the diagnostic baselines (redis-limiter, cache-l2) that
 * gives raw ioredis the same batching, so the ratio of AMAS to it shows what AMAS's own work costs.
 */
export function corker(client, every = 16) {
  let corked;
  let count = 0;
  const uncork = () => {
    const s = corked;
    corked = undefined;
    s?.uncork();
  };
  return () => {
    if (corked) {
      if (++count >= every) {
        corked.uncork();
        corked.cork();
        count = 0;
      }
      return;
    }
    count = 0;
    corked = client.stream;
    corked.cork();
    setImmediate(uncork);
  };
}

/** Deletes every key under `prefix` (SCAN + UNLINK; never outside the prefix). Returns how many. */
export async function deletePrefix(client, prefix) {
  if (!prefix.startsWith('amas-bench:')) throw new Error(`refusing to delete outside amas-bench: (${prefix})`);
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length) deleted += await client.unlink(...keys);
  } while (cursor !== '0');
  return deleted;
}

/** Redis server CPU seconds (user+system, whole process) from INFO cpu: Redis is shared, see README. */
export async function redisCpuSeconds(client) {
  const text = await client.info('cpu');
  const num = (name) => Number(new RegExp(`^${name}:([0-9.]+)`, 'm').exec(text)?.[1] ?? NaN);
  return num('used_cpu_sys') + num('used_cpu_user');
}
