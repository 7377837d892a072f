/**
 * Stores the store-backed limiter suites run against: MemoryStore and RedisStore (127.0.0.1:6379 or
 * REDIS_URL), both reading time from a ManualClock so decisions can be compared exactly with the in-memory
 * limiters. Each fixture uses its own key prefix and deletes its keys on close.
 */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { ManualClock } from '../../src/clock.js';
import type { Logger } from '../../src/logger.js';
import { MemoryStore } from '../../src/stores/memory-store.js';
import { RedisStore } from '../../src/stores/redis-store.js';
import type { Store } from '../../src/stores/store.js';
import { startRedisCluster, type RedisClusterHandle } from '../../../../test/support/redis-servers.js';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

export const uniquePrefix = (): string => `test:rl:${randomBytes(4).toString('hex')}:`;

export interface LimiterStoreFixture {
  store: Store;
  clock: ManualClock;
  /** ms the store will keep `key` (PTTL semantics: -2 missing, -1 no expiry). */
  ttl(key: string): Promise<number>;
  close(): Promise<void>;
}

export type FixtureFactory = (start?: number) => Promise<LimiterStoreFixture>;

export const memoryFixture: FixtureFactory = async (start) => {
  const clock = new ManualClock(start);
  const store = new MemoryStore({ clock, prefix: uniquePrefix() });
  return { store, clock, ttl: async (key) => store.space.ttl(key), close: () => store.close() };
};

export const redisFixture: FixtureFactory = async (start) => {
  const clock = new ManualClock(start);
  const store = await redisStore({ clock });
  return { store, clock, ttl: (key) => store.connection.pttl(key), close: () => closeRedisStore(store) };
};

/**
 * RedisStore on a 3-node Redis Cluster the suite starts itself (once per test file, on first use); call
 * `stopTestCluster` in the file's afterAll. Keys vanish with the cluster.
 */
let cluster: Promise<RedisClusterHandle> | undefined;
export const clusterFixture: FixtureFactory = async (start) => {
  cluster ??= startRedisCluster();
  const { nodes } = await cluster;
  const clock = new ManualClock(start);
  const store = new RedisStore({ cluster: { nodes }, clock, prefix: uniquePrefix(), logger: recordingLogger() });
  await store.ready(10_000);
  return { store, clock, ttl: (key) => store.connection.pttl(key), close: () => store.close() };
};

export async function stopTestCluster(): Promise<void> {
  const started = cluster;
  cluster = undefined;
  if (started) await (await started).stop();
}

/** The stores every conformance suite runs on. */
export const STORE_FIXTURES: Array<[string, FixtureFactory]> = [
  ['MemoryStore', memoryFixture],
  ['RedisStore', redisFixture],
  ['RedisStore on a 3-node Cluster', clusterFixture],
];

/** A connected RedisStore on a fresh prefix (fails loudly when no Redis answers). */
export async function redisStore(options: { clock?: ManualClock; logger?: Logger } = {}): Promise<RedisStore> {
  const store = new RedisStore({ url: REDIS_URL, prefix: uniquePrefix(), logger: options.logger ?? recordingLogger(), ...(options.clock ? { clock: options.clock } : {}) });
  await store.ready(5000);
  return store;
}

/** Deletes the store's keys (they expire anyway; the shared Redis stays tidy) and closes it. */
export async function closeRedisStore(store: RedisStore): Promise<void> {
  if (store.available) {
    const keys = await store.connection.keys(`${store.prefix}*`);
    if (keys.length > 0) await store.connection.del(...keys);
  }
  await store.close();
}

export function recordingLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return { warnings, warn: (m: string) => warnings.push(m), error: (m: string) => warnings.push(m) };
}

/** A loopback port nothing listens on (bound, then released). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface StoreHooks {
  /** What `available` reports (default: the inner store's). */
  available?: () => boolean;
  /** When it returns an error, `run` rejects with it instead of running. */
  failRun?: () => Error | undefined;
}

/** A store that forwards to `inner` and counts runs, with hooks to report it down or make runs fail. */
export function wrapStore(inner: Store, hooks: StoreHooks = {}): Store & { runs: number } {
  const wrapper = {
    runs: 0,
    kind: inner.kind,
    prefix: inner.prefix,
    key: (tag: string, ...rest: string[]) => inner.key(tag, ...rest),
    run: ((script, keys, args, options) => {
      wrapper.runs++;
      const error = hooks.failRun?.();
      return error ? Promise.reject(error) : inner.run(script, keys, args, options);
    }) as Store['run'],
    get: (key: string) => inner.get(key),
    getBuffer: (key: string) => inner.getBuffer(key),
    getMany: (keys: readonly string[]) => inner.getMany(keys),
    set: ((key, value, options) => inner.set(key, value, options)) as Store['set'],
    setMany: ((entries) => inner.setMany(entries)) as Store['setMany'],
    delete: (key: string) => inner.delete(key),
    deleteMany: (keys: readonly string[]) => inner.deleteMany(keys),
    deleteByPrefix: (prefix: string) => inner.deleteByPrefix(prefix),
    increment: ((key, by, ttl) => inner.increment(key, by, ttl)) as Store['increment'],
    publish: (channel: string, message: string) => inner.publish(channel, message),
    subscribe: ((channel, listener) => inner.subscribe(channel, listener)) as Store['subscribe'],
    get available() {
      return hooks.available ? hooks.available() : inner.available;
    },
    health: () => inner.health(),
    on: ((event, listener) => inner.on(event, listener)) as Store['on'],
    close: () => inner.close(),
  };
  return wrapper;
}
