import { afterAll, describe, expect, it } from 'vitest';
import { Cluster, Redis } from 'ioredis';
import calculateSlot from 'cluster-key-slot';
import { ManualClock } from '../../src/clock.js';
import { MemoryStore } from '../../src/stores/memory-store.js';
import { RedisStore } from '../../src/stores/redis-store.js';
import { startRedisCluster, stopAllRedis, type RedisClusterHandle } from '../../../../test/support/redis-servers.js';
import { storeConformance } from './store-conformance.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = () => `test:${Math.random().toString(36).slice(2, 8)}:`;

/** One 3-node Cluster for the file, started on first use. */
let cluster: Promise<RedisClusterHandle> | undefined;
const testCluster = () => (cluster ??= startRedisCluster());

afterAll(async () => {
  await (await cluster)?.stop();
  await stopAllRedis();
});

storeConformance('MemoryStore', async () => {
  const clock = new ManualClock();
  const store = new MemoryStore({ clock, prefix: prefix() });
  return { store, clock, close: () => store.close() };
});

storeConformance('RedisStore (single node, test clock)', async () => {
  const clock = new ManualClock();
  const store = new RedisStore({ url: REDIS_URL, clock, prefix: prefix() });
  await store.ready();
  return { store, scriptClock: clock, close: () => closeAndClean(store) };
});

storeConformance('RedisStore (single node, server time)', async () => {
  const store = new RedisStore({ url: REDIS_URL, prefix: prefix() });
  await store.ready();
  return { store, close: () => closeAndClean(store) };
});

// Batched commands group keys by slot and deleteByPrefix scans every master: both only show on a Cluster.
storeConformance('RedisStore (3-node Cluster)', async () => {
  const { nodes } = await testCluster();
  const store = new RedisStore({ cluster: { nodes }, prefix: prefix() });
  await store.ready(10_000);
  return { store, close: () => store.close() };
});

/** A store whose connections carry an ioredis keyPrefix, and a client without one to see what Redis holds. */
type KeyPrefixed = (keyPrefix: string) => Promise<{ store: RedisStore; raw: Redis | Cluster }>;
describe.each<[string, KeyPrefixed]>([
  ['single node', async (keyPrefix) => ({ store: new RedisStore({ url: REDIS_URL, prefix: prefix(), redisOptions: { keyPrefix } }), raw: new Redis(REDIS_URL) })],
  [
    '3-node Cluster',
    async (keyPrefix) => {
      const { nodes } = await testCluster();
      return { store: new RedisStore({ cluster: { nodes, options: { keyPrefix } }, prefix: prefix() }), raw: new Cluster(nodes) };
    },
  ],
])('RedisStore with an ioredis keyPrefix (%s)', (_, make) => {
  it('batches and deleteByPrefix see the keys as the store names them, while Redis holds them under the keyPrefix', async () => {
    const keyPrefix = `kp${Math.random().toString(36).slice(2, 6)}:`;
    const { store, raw } = await make(keyPrefix);
    try {
      await store.ready(10_000);
      // Keys without a hash tag: on a Cluster their slot is that of keyPrefix + key, which the grouping must use.
      const keys = Array.from({ length: 40 }, (_, i) => `${store.prefix}plain:${i}`);
      keys.push(...slotTwins(`${store.prefix}plain:twin-`, keyPrefix));
      await store.setMany(keys.map((key, i) => ({ key, value: Buffer.from([i]) })));
      expect(await store.getMany(keys)).toEqual(keys.map((_, i) => Buffer.from([i])));
      expect(await raw.exists(`${keyPrefix}${store.prefix}plain:0`)).toBe(1);
      expect(await raw.exists(`${store.prefix}plain:0`)).toBe(0);
      expect(await store.deleteMany(keys.slice(0, 10))).toBe(10);
      expect(await store.deleteByPrefix(`${store.prefix}plain:`)).toBe(keys.length - 10);
      expect((await store.getMany(keys)).every((v) => v === undefined)).toBe(true);
      expect(await raw.exists(`${keyPrefix}${store.prefix}plain:39`)).toBe(0);
    } finally {
      await store.close();
      raw.disconnect();
    }
  });
});

/**
 * Two keys in one slot by their own names but in different slots under `keyPrefix`: grouping them by their
 * own names would send a CROSSSLOT MGET.
 */
function slotTwins(base: string, keyPrefix: string): [string, string] {
  const seen = new Map<number, string>();
  for (let i = 0; ; i++) {
    const key = `${base}${i}`;
    const twin = seen.get(calculateSlot(key));
    if (twin !== undefined && calculateSlot(keyPrefix + twin) !== calculateSlot(keyPrefix + key)) return [twin, key];
    seen.set(calculateSlot(key), key);
  }
}

/** The shared Redis keeps nothing of a run: every key under the run's prefix goes. */
async function closeAndClean(store: RedisStore): Promise<void> {
  try {
    await store.deleteByPrefix(store.prefix);
  } finally {
    await store.close();
  }
}

describe('RedisStore on a client the application made', () => {
  it('connects a lazyConnect client itself (it would otherwise wait for a command the store holds back)', async () => {
    const client = new Redis(REDIS_URL, { lazyConnect: true });
    const store = new RedisStore({ client, prefix: prefix() });
    try {
      expect(client.status).not.toBe('wait');
      await store.ready(3000);
      const key = store.key('lazy', 'k');
      await store.set(key, 'v');
      expect(await store.get(key)).toBe('v');
      // Dedicated connections (Pub/Sub here) are duplicates of the lazy client: they connect too.
      const got: string[] = [];
      const sub = await store.subscribe('lazy-channel', (m) => got.push(m));
      await store.publish('lazy-channel', 'hello');
      await expect.poll(() => got, { timeout: 3000 }).toEqual(['hello']);
      await sub.unsubscribe();
      await store.delete(key);
    } finally {
      await store.close();
      client.disconnect();
    }
  });
});
