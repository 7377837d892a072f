/**
 * RedisLevel (the L2 cache level on a Store), the same cases on MemoryStore, a single Redis and a 3-node
 * Redis Cluster the file starts itself.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Cluster } from 'ioredis';
import { RedisLevel } from '../../src/cache/redis-level.js';
import { InvalidOptionError } from '../../src/errors.js';
import { MemoryStore } from '../../src/stores/memory-store.js';
import { RedisStore } from '../../src/stores/redis-store.js';
import type { Store } from '../../src/stores/store.js';
import { startRedisCluster, stopAllRedis } from '../../../../test/support/redis-servers.js';
import { seededRandom } from '../helpers.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const uniquePrefix = () => `test:l2:${randomBytes(4).toString('hex')}:`;

interface LevelFixture {
  store: Store;
  /** ms left on a store key (PTTL semantics: -2 missing, -1 no expiry). */
  ttl(key: string): Promise<number>;
  /** On a Cluster only: how many keys matching the glob `pattern` each master holds. */
  keysPerMaster?(pattern: string): Promise<number[]>;
  close(): Promise<void>;
}

const FIXTURES: Array<[string, () => Promise<LevelFixture>]> = [
  [
    'MemoryStore',
    async () => {
      const store = new MemoryStore({ prefix: uniquePrefix() });
      return { store, ttl: async (key) => store.space.ttl(key), close: () => store.close() };
    },
  ],
  [
    'RedisStore (single node)',
    async () => {
      const store = new RedisStore({ url: REDIS_URL, prefix: uniquePrefix() });
      await store.ready();
      return {
        store,
        ttl: (key) => store.connection.pttl(key),
        close: async () => {
          // The shared Redis keeps nothing of the run.
          await store.deleteByPrefix(store.prefix);
          expect(await store.deleteByPrefix(store.prefix)).toBe(0);
          await store.close();
        },
      };
    },
  ],
  [
    'RedisStore (3-node Cluster)',
    async () => {
      const cluster = await startRedisCluster();
      const store = new RedisStore({ cluster: { nodes: cluster.nodes }, prefix: uniquePrefix() });
      await store.ready(10_000);
      return {
        store,
        ttl: (key) => store.connection.pttl(key),
        keysPerMaster: (pattern) => Promise.all((store.connection as Cluster).nodes('master').map(async (node) => (await node.keys(pattern)).length)),
        close: async () => {
          await store.close();
          await cluster.stop();
        },
      };
    },
  ],
];

afterAll(async () => {
  await stopAllRedis();
});

/** Every byte value, then the same reversed: a value no text encoding survives unharmed. */
const ALL_BYTES = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), Buffer.from(Array.from({ length: 256 }, (_, i) => 255 - i))]);

describe.each(FIXTURES)('RedisLevel on %s', (_, make) => {
  let f: LevelFixture;
  let store: Store;
  let cacheCount = 0;
  /** A level under a cache name of its own, so tests never see each other's entries. */
  const level = (name = `c${++cacheCount}x`) => new RedisLevel({ store, name });
  const text = (values: Array<Buffer | undefined>) => values.map((v) => v?.toString());

  beforeAll(async () => {
    f = await make();
    store = f.store;
  });
  afterAll(async () => {
    await f?.close();
  });

  it('set / get round-trip under the store key cache:<name>:<key>; a missing key is undefined', async () => {
    const l2 = new RedisLevel({ store });
    expect(l2.name).toBe('redis');
    expect(l2.cacheName).toBe('amas');
    expect(await l2.get('ns:k1')).toBeUndefined();
    await l2.set('ns:k1', Buffer.from('v1'), 60_000);
    expect((await l2.get('ns:k1'))?.toString()).toBe('v1');
    expect((await store.getBuffer(store.key('cache:amas:ns:k1')))?.toString()).toBe('v1');
    await l2.set('ns:k1', Buffer.from('v2'), 60_000);
    expect((await l2.get('ns:k1'))?.toString()).toBe('v2');
    const named = level('other');
    expect(await named.get('ns:k1')).toBeUndefined();
    await named.set('ns:k1', Buffer.from('o'), 60_000);
    expect((await store.getBuffer(store.key('cache:other:ns:k1')))?.toString()).toBe('o');
    expect((await l2.get('ns:k1'))?.toString()).toBe('v2');
    await l2.clear();
    await named.clear();
  });

  it('an entry expires after its TTL (set and setMany); a longer-lived one stays', async () => {
    const l2 = level();
    await l2.set('ns:brief', Buffer.from('b'), 150);
    await l2.setMany([{ key: 'ns:brief-batch', value: Buffer.from('bb'), ttlMs: 150 }, { key: 'ns:lasting', value: Buffer.from('l'), ttlMs: 60_000 }]);
    const lasting = await f.ttl(store.key(`cache:${l2.cacheName}:ns:lasting`));
    expect(lasting).toBeGreaterThan(55_000);
    expect(lasting).toBeLessThanOrEqual(60_000);
    expect(text(await l2.getMany(['ns:brief', 'ns:brief-batch', 'ns:lasting']))).toEqual(['b', 'bb', 'l']);
    await expect.poll(async () => text(await l2.getMany(['ns:brief', 'ns:brief-batch', 'ns:lasting'])), { timeout: 3000, interval: 25 }).toEqual([undefined, undefined, 'l']);
    expect(await l2.get('ns:brief')).toBeUndefined();
  });

  it('stores binary values byte for byte (all 256 byte values), through set, setMany, get and getMany', async () => {
    const l2 = level();
    await l2.set('bin:one', ALL_BYTES, 60_000);
    await l2.setMany([
      { key: 'bin:two', value: ALL_BYTES.subarray(256), ttlMs: 60_000 },
      { key: 'bin:empty', value: Buffer.alloc(0), ttlMs: 60_000 },
    ]);
    const got = await l2.get('bin:one');
    expect(got?.equals(ALL_BYTES)).toBe(true);
    const [one, two, empty] = await l2.getMany(['bin:one', 'bin:two', 'bin:empty']);
    expect(one?.equals(ALL_BYTES)).toBe(true);
    expect(two?.equals(ALL_BYTES.subarray(256))).toBe(true);
    expect(empty).toEqual(Buffer.alloc(0));
    // What a caller does with a Buffer it passed in or got back changes nothing stored.
    got!.fill(0);
    expect((await l2.get('bin:one'))?.equals(ALL_BYTES)).toBe(true);
  });

  it('getMany / setMany: 200 keys in two namespaces, answered in the order asked, undefined where missing', async () => {
    const l2 = level();
    const keys = Array.from({ length: 200 }, (_, i) => `${i % 2 ? 'odd' : 'even'}:item-${i}`);
    const written = keys.filter((_, i) => i % 7 !== 3);
    await l2.setMany(written.map((key) => ({ key, value: Buffer.from(`value of ${key}`), ttlMs: 60_000 })));
    const random = seededRandom(42);
    const asked = [...keys, 'odd:never-written', 'even:never-written'].sort(() => random() - 0.5);
    const values = await l2.getMany(asked);
    expect(values).toHaveLength(asked.length);
    expect(text(values)).toEqual(asked.map((key) => (written.includes(key) ? `value of ${key}` : undefined)));
    expect(values.filter((v) => v === undefined)).toHaveLength(asked.length - written.length);
    expect(await l2.getMany([])).toEqual([]);
    await l2.setMany([]);
    if (f.keysPerMaster) {
      // One hash tag per entry: the batch really spread over the masters (and came back in order anyway).
      const perMaster = await f.keysPerMaster(`${store.prefix}{cache:${l2.cacheName}:*`);
      expect(perMaster.reduce((sum, n) => sum + n, 0)).toBe(written.length);
      expect(perMaster.every((n) => n > 0)).toBe(true);
    }
  });

  it('delete drops exactly the given keys (missing and repeated ones are fine)', async () => {
    const l2 = level();
    const keys = Array.from({ length: 20 }, (_, i) => `ns:d${i}`);
    await l2.setMany(keys.map((key) => ({ key, value: Buffer.from(key), ttlMs: 60_000 })));
    await l2.delete(['ns:d0', 'ns:d5', 'ns:d5', 'ns:missing', 'other:d1']);
    await l2.delete([]);
    expect(text(await l2.getMany(keys))).toEqual(keys.map((key) => (key === 'ns:d0' || key === 'ns:d5' ? undefined : key)));
  });

  /** Entries in namespaces a, ab, a-b and b of cache `name`, each one's value its own level key. */
  async function fill(l2: RedisLevel): Promise<string[]> {
    const keys = ['a:1', 'a:2', 'a:b:1', 'ab:1', 'ab:2', 'a-b:1', 'b:1', 'b:a:1'];
    await l2.setMany(keys.map((key) => ({ key, value: Buffer.from(`${l2.cacheName}/${key}`), ttlMs: 60_000 })));
    return keys;
  }
  const present = async (l2: RedisLevel, keys: string[]) => {
    const values = await l2.getMany(keys);
    return keys.filter((key, i) => values[i]?.toString() === `${l2.cacheName}/${key}`);
  };

  it('clear(namespace) drops exactly that namespace: not a namespace it prefixes, another cache, or other store keys', async () => {
    const mine = level('c7');
    // Cache names sharing a prefix, the same namespaces in each.
    const longer = level('c77');
    const keys = await fill(mine);
    await fill(longer);
    const unrelated = store.key('c7:a:1');
    await store.set(unrelated, 'not a cache entry');

    await mine.clear('a');
    expect(await present(mine, keys)).toEqual(['ab:1', 'ab:2', 'a-b:1', 'b:1', 'b:a:1']);
    await mine.clear('ab');
    expect(await present(mine, keys)).toEqual(['a-b:1', 'b:1', 'b:a:1']);
    await mine.clear('a-b');
    await mine.clear('never-used');
    expect(await present(mine, keys)).toEqual(['b:1', 'b:a:1']);
    expect(await present(longer, keys)).toEqual(keys);
    expect(await store.get(unrelated)).toBe('not a cache entry');
    await longer.clear();
    await store.delete(unrelated);
  });

  it('namespaces sharing a prefix (a, ab) are separate: same key, separate entries, cleared separately', async () => {
    const l2 = level();
    await l2.setMany([
      { key: 'a:x', value: Buffer.from('in a'), ttlMs: 60_000 },
      { key: 'ab:x', value: Buffer.from('in ab'), ttlMs: 60_000 },
    ]);
    expect(text(await l2.getMany(['a:x', 'ab:x']))).toEqual(['in a', 'in ab']);
    await l2.clear('ab');
    expect(text(await l2.getMany(['a:x', 'ab:x']))).toEqual(['in a', undefined]);
    await l2.set('ab:x', Buffer.from('in ab'), 60_000);
    await l2.clear('a');
    expect(text(await l2.getMany(['a:x', 'ab:x']))).toEqual([undefined, 'in ab']);
  });

  it('clear() drops every entry of this cache name only', async () => {
    const mine = level('d1');
    const longer = level('d10');
    const keys = await fill(mine);
    await fill(longer);
    const unrelated = store.key('cache:d1');
    await store.set(unrelated, 'not an entry');
    await mine.clear();
    expect(await present(mine, keys)).toEqual([]);
    expect(await present(longer, keys)).toEqual(keys);
    expect(await store.get(unrelated)).toBe('not an entry');
    await longer.clear();
    expect(await present(longer, keys)).toEqual([]);
    await store.delete(unrelated);
  });

  it('rejects a TTL that is not a positive finite number, writing nothing (a batch with one bad entry writes none)', async () => {
    const l2 = level();
    for (const ttl of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, '100' as unknown as number]) {
      await expect(l2.set('ns:k', Buffer.from('v'), ttl), String(ttl)).rejects.toThrow(TypeError);
      await expect(l2.setMany([{ key: 'ns:ok', value: Buffer.from('v'), ttlMs: 1000 }, { key: 'ns:k', value: Buffer.from('v'), ttlMs: ttl }])).rejects.toThrow(/ttlMs/);
    }
    expect(await l2.getMany(['ns:k', 'ns:ok'])).toEqual([undefined, undefined]);
  });

  it('refuses a cache name or a clear() namespace that could reach other keys', async () => {
    for (const name of ['', 'a:b', 'a*', 'x'.repeat(101), 7 as unknown as string]) {
      expect(() => new RedisLevel({ store, name }), String(name)).toThrow(InvalidOptionError);
    }
    const l2 = level();
    await l2.set('a:1', Buffer.from('kept'), 60_000);
    for (const namespace of ['', '*', 'a:', 'a*', '[a]']) await expect(l2.clear(namespace), namespace).rejects.toThrow(TypeError);
    expect((await l2.get('a:1'))?.toString()).toBe('kept');
  });

  it('close() leaves the store open: it belongs to whoever created it', async () => {
    const l2 = level();
    await l2.set('ns:k', Buffer.from('v'), 60_000);
    await l2.close();
    expect(store.available).toBe(true);
    expect((await level(l2.cacheName).get('ns:k'))?.toString()).toBe('v');
  });
});
