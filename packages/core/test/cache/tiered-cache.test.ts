import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { ManualClock } from '../../src/clock.js';
import { InvalidOptionError, TimeoutError } from '../../src/errors.js';
import { silentLogger, type Logger } from '../../src/logger.js';
import { decodeRecord } from '../../src/cache/cache-record.js';
import { FileLevel } from '../../src/cache/file-level.js';
import { TieredCache } from '../../src/cache/tiered-cache.js';
import type { TieredCacheOptions } from '../../src/cache/tiered-cache-options.js';
import { MemoryStore } from '../../src/stores/memory-store.js';
import { RedisStore } from '../../src/stores/redis-store.js';
import { deferred, invalidOption } from '../helpers.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = () => `amas-test-tc-${process.pid}-${Math.random().toString(36).slice(2, 8)}:`;

const open: Array<{ close(): Promise<void> }> = [];
function track<T extends { close(): Promise<void> }>(thing: T): T {
  open.push(thing);
  return thing;
}
afterEach(async () => {
  while (open.length) await open.pop()!.close().catch(() => undefined);
});

function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, warn: (m: string) => void lines.push(m), error: (m: string) => void lines.push(m) };
}

function memoryCache(options: TieredCacheOptions = {}) {
  return track(new TieredCache({ logger: silentLogger, ...options }));
}

describe('TieredCache: L1 only', () => {
  it('set/get within TTL, gone after it; undefined for a miss', async () => {
    const clock = new ManualClock();
    const cache = memoryCache({ clock, ttl: '10s' });
    await cache.set('a', { n: 1 });
    expect(await cache.get('a')).toEqual({ n: 1 });
    expect(await cache.get('missing')).toBeUndefined();
  });

  it('expires exactly at the TTL (ManualClock)', async () => {
    const clock = new ManualClock();
    const cache = memoryCache({ clock, ttl: 10_000 });
    await cache.set('a', 1);
    await clock.advance(9_999);
    expect(await cache.get('a')).toBe(1);
    await clock.advance(1);
    expect(await cache.get('a')).toBeUndefined();
  });

  it('per-call ttl, namespaces, delete, clear(namespace) and clear()', async () => {
    const clock = new ManualClock();
    const cache = memoryCache({ clock });
    await cache.set('k', 'short', { ttl: '1s' });
    await cache.set('k', 'users', { namespace: 'users' });
    await cache.set('k2', 'users2', { namespace: 'users' });
    await cache.set('k', 'orders', { namespace: 'orders' });
    await clock.advance(1000);
    expect(await cache.get('k')).toBeUndefined();
    expect(await cache.get('k', { namespace: 'users' })).toBe('users');
    await cache.delete('k2', { namespace: 'users' });
    expect(await cache.get('k2', { namespace: 'users' })).toBeUndefined();
    await cache.clear({ namespace: 'users' });
    expect(await cache.get('k', { namespace: 'users' })).toBeUndefined();
    expect(await cache.get('k', { namespace: 'orders' })).toBe('orders');
    await cache.clear();
    expect(await cache.get('k', { namespace: 'orders' })).toBeUndefined();
  });

  it('mget/mset keep order; null is a value, undefined deletes', async () => {
    const cache = memoryCache();
    await cache.mset([
      { key: 'a', value: 1 },
      { key: 'b', value: null },
      { key: 'c', value: 'x', ttl: '1m' },
    ]);
    expect(await cache.mget(['c', 'nope', 'a', 'b'])).toEqual(['x', undefined, 1, null]);
    await cache.set('a', undefined);
    expect(await cache.get('a')).toBeUndefined();
    await expect(cache.mset([{ key: 'z', value: undefined }])).rejects.toThrow(/value of "z" is undefined/);
  });

  it('rejects bad keys and bad per-call options clearly, and loses nothing', async () => {
    const cache = memoryCache();
    await cache.set('keep', 1);
    expect(() => cache.get('')).toThrow(/non-empty string/);
    expect(() => cache.get(42 as unknown as string)).toThrow(/received number/);
    await expect(cache.set('k', 1, { ttl: 'soon' as never })).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(cache.set('k', 1, { namespace: 'a:b' })).rejects.toThrow(/namespace/);
    await expect(cache.set('k', 1, { ttl: 0 })).rejects.toThrow(/ttl/);
    await expect(cache.getOrSet('k', 'nope' as never)).rejects.toThrow(/factory must be a function/);
    expect(await cache.get('keep')).toBe(1);
    // Long keys (up to 4096 characters) work; beyond, a clear error.
    const long = 'k'.repeat(4096);
    await cache.set(long, 'long');
    expect(await cache.get(long)).toBe('long');
    expect(await cache.get('k'.repeat(4095))).toBeUndefined();
    expect(() => cache.get('k'.repeat(4097))).toThrow(/at most 4096/);
  });

  it('rejects bad construction options with the option path', () => {
    const cases: Array<[string, unknown, RegExp]> = [
      ['ttl', { ttl: -1 }, /ttl/],
      ['grace', { grace: 'later' }, /grace/],
      ['l1.maxEntries', { l1: { maxEntries: 0 } }, /l1\.maxEntries/],
      ['l2 without store', { l2: { ttl: '1m' } }, /l2/],
      ['compression.algorithm', { compression: { algorithm: 'zstd' } }, /compression\.algorithm/],
      ['compression.minSavings', { compression: { minSavings: 2 } }, /compression\.minSavings/],
      ['store', { store: {} }, /store/],
      ['namespace', { namespace: 'has space' }, /namespace/],
      ['unknown key', { ttll: '1m' }, /ttll/],
      ['soft >= hard', { timeouts: { soft: 100, hard: 50 } }, /timeouts\.soft/],
      ['l3 file without directory', { l3: { file: {} } }, /l3/],
    ];
    for (const [label, options, message] of cases) {
      const error = invalidOption(() => new TieredCache(options as TieredCacheOptions), label);
      expect(error.message, label).toMatch(message);
    }
  });

  it('L1 is bounded by entries and by bytes (LRU)', async () => {
    const cache = memoryCache({ l1: { maxEntries: 3, maxBytes: 1_000_000 } });
    for (const k of ['a', 'b', 'c']) await cache.set(k, k);
    await cache.get('a'); // a is now the most recent
    await cache.set('d', 'd');
    expect(await cache.mget(['a', 'b', 'c', 'd'])).toEqual(['a', undefined, 'c', 'd']);
    const small = memoryCache({ l1: { maxEntries: 100, maxBytes: 100 } });
    await small.set('x', 'x'.repeat(40));
    await small.set('y', 'y'.repeat(40));
    await small.set('z', 'z'.repeat(40)); // 3 x 42 bytes > 100: x goes
    expect(await small.mget(['x', 'y', 'z'])).toEqual([undefined, 'y'.repeat(40), 'z'.repeat(40)]);
    expect(small.stats().l1!.bytes).toBeLessThanOrEqual(100);
  });
});

describe('TieredCache: getOrSet', () => {
  it('runs the factory once for 100 concurrent misses and caches its value', async () => {
    const cache = memoryCache();
    let runs = 0;
    const gate = deferred<void>();
    const calls = Array.from({ length: 100 }, () =>
      cache.getOrSet('hot', async () => {
        runs++;
        await gate.promise;
        return { answer: 42 };
      }),
    );
    gate.resolve();
    const values = await Promise.all(calls);
    expect(runs).toBe(1);
    expect(values.every((v) => v.answer === 42)).toBe(true);
    expect(await cache.getOrSet('hot', () => ({ answer: 0 }))).toEqual({ answer: 42 });
    expect(runs).toBe(1);
    expect(cache.stats().coalesced).toBe(99);
  });

  it('a factory error reaches every waiting caller and caches nothing', async () => {
    const cache = memoryCache();
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => cache.getOrSet('k', async () => Promise.reject(new Error('upstream down')))));
    expect(results.every((r) => r.status === 'rejected' && (r.reason as Error).message === 'upstream down')).toBe(true);
    expect(await cache.get('k')).toBeUndefined();
    expect(cache.stats().factoryErrors).toBe(1);
  });

  it('a factory returning undefined caches nothing', async () => {
    const cache = memoryCache();
    let runs = 0;
    expect(await cache.getOrSet('k', () => (runs++, undefined))).toBeUndefined();
    expect(await cache.getOrSet('k', () => (runs++, undefined))).toBeUndefined();
    expect(runs).toBe(2);
  });

  it('forceRefresh runs the factory over a fresh value and stores the new one', async () => {
    const cache = memoryCache();
    await cache.set('k', 'old');
    expect(await cache.getOrSet('k', () => 'new', { forceRefresh: true })).toBe('new');
    expect(await cache.get('k')).toBe('new');
  });

  it('stale-while-revalidate: answers the stale value at once and refreshes once in the background', async () => {
    const clock = new ManualClock();
    const cache = memoryCache({ clock, ttl: '10s', grace: '1m' });
    await cache.set('k', 'v1');
    await clock.advance(10_000); // stale now
    expect(await cache.get('k')).toBeUndefined(); // get never answers stale
    const refresh = deferred<string>();
    let runs = 0;
    const factory = () => {
      runs++;
      return refresh.promise;
    };
    expect(await Promise.all([cache.getOrSet('k', factory), cache.getOrSet('k', factory), cache.getOrSet('k', factory)])).toEqual(['v1', 'v1', 'v1']);
    expect(runs).toBe(1);
    refresh.resolve('v2');
    await vi.waitFor(async () => expect(await cache.get('k')).toBe('v2'));
    expect(cache.stats().staleServed.revalidating).toBe(3);
  });

  it('past its grace a value is gone', async () => {
    const clock = new ManualClock();
    const cache = memoryCache({ clock, ttl: '10s', grace: '5s' });
    await cache.set('k', 'v1');
    await clock.advance(15_000);
    expect(await cache.getOrSet('k', () => 'v2')).toBe('v2');
  });

  it('stale-if-error: with staleWhileRevalidate off, a failing factory answers the stale value', async () => {
    const clock = new ManualClock();
    const cache = memoryCache({ clock, ttl: '10s', grace: '1m', staleWhileRevalidate: false });
    await cache.set('k', 'v1');
    await clock.advance(11_000);
    expect(await cache.getOrSet('k', () => Promise.reject(new Error('down')))).toBe('v1');
    expect(cache.stats().staleServed.error).toBe(1);
    // Without a stale value the error surfaces.
    await expect(cache.getOrSet('other', () => Promise.reject(new Error('down')))).rejects.toThrow('down');
    // A refresh that succeeds replaces it.
    expect(await cache.getOrSet('k', () => 'v2')).toBe('v2');
  });

  it('soft timeout answers the stale value; the factory finishes and stores in the background', async () => {
    const clock = new ManualClock();
    const cache = memoryCache({ clock, ttl: '10s', grace: '1m', staleWhileRevalidate: false, timeouts: { soft: 100 } });
    await cache.set('k', 'v1');
    await clock.advance(11_000);
    const slow = deferred<string>();
    const answer = cache.getOrSet('k', () => slow.promise);
    await clock.advance(100);
    expect(await answer).toBe('v1');
    expect(cache.stats().staleServed.softTimeout).toBe(1);
    slow.resolve('v2');
    await vi.waitFor(async () => expect(await cache.get('k')).toBe('v2'));
  });

  it('hard timeout aborts the factory and rejects with TimeoutError when nothing stale exists', async () => {
    const clock = new ManualClock();
    const cache = memoryCache({ clock, timeouts: { hard: 200 } });
    let signal: AbortSignal | undefined;
    const answer = cache.getOrSet('k', (ctx) => {
      signal = ctx.signal;
      return new Promise<string>(() => undefined);
    });
    const settled = answer.catch((e: unknown) => e);
    await clock.advance(200);
    expect(await settled).toBeInstanceOf(TimeoutError);
    expect(signal?.aborted).toBe(true);
    expect(cache.stats().hardTimeouts).toBe(1);
  });

  it('the factory sees the stale value it refreshes', async () => {
    const clock = new ManualClock();
    const cache = memoryCache({ clock, ttl: '1s', grace: '1m', staleWhileRevalidate: false });
    await cache.set('count', 1);
    await clock.advance(1000);
    expect(await cache.getOrSet<number>('count', ({ stale }) => (stale ?? 0) + 1)).toBe(2);
  });
});

describe('TieredCache: typed values', () => {
  const User = z.object({ id: z.number(), name: z.string() });

  it('a value that no longer fits the schema is a miss, never a crash; getOrSet replaces it', async () => {
    const cache = memoryCache();
    await cache.set('u1', { id: 1, fullName: 'old shape' }, { namespace: 'users' });
    const users = cache.namespace('users', { schema: User });
    expect(await users.get('u1')).toBeUndefined();
    expect(cache.stats().schemaMisses).toBe(1);
    expect(await users.getOrSet('u1', () => ({ id: 1, name: 'Ada' }))).toEqual({ id: 1, name: 'Ada' });
    expect(await users.get('u1')).toEqual({ id: 1, name: 'Ada' });
  });

  it('accepts Standard Schema, safeParse objects and type guards', async () => {
    const cache = memoryCache();
    await cache.set('n', 5);
    const guard = (v: unknown): v is number => typeof v === 'number';
    expect(await cache.typed(guard).get('n')).toBe(5);
    expect(await cache.typed(z.string()).get('n')).toBeUndefined();
    expect(await cache.typed({ safeParse: (v: unknown) => (v === 5 ? { success: true as const, data: 'five' } : { success: false as const }) }).get('n')).toBe('five');
    const throwing = () => {
      throw new Error('schema bug');
    };
    expect(await cache.typed(throwing as never).get('n')).toBeUndefined();
  });
});

describe('TieredCache: warm-up', () => {
  it('warm stores values; warmUp loads with bounded concurrency and reports failures', async () => {
    const cache = memoryCache();
    await cache.warm([{ key: 'a', value: 1 }]);
    expect(await cache.get('a')).toBe(1);
    let running = 0;
    let peak = 0;
    const items = Array.from({ length: 12 }, (_, i) => ({
      key: i === 0 ? 'a' : `k${i}`,
      load: async () => {
        running++;
        peak = Math.max(peak, running);
        await new Promise((r) => setTimeout(r, 5));
        running--;
        if (i === 5) throw new Error('loader failed');
        return i;
      },
    }));
    const report = await cache.warmUp(items, { concurrency: 3 });
    expect(peak).toBeLessThanOrEqual(3);
    expect(peak).toBeGreaterThan(1);
    expect(report.skipped).toBe(1); // 'a' was cached already
    expect(report.loaded).toBe(10);
    expect(report.failed.map((f) => f.key)).toEqual(['k5']);
    expect(await cache.get('k7')).toBe(7);
    await expect(cache.warmUp(items, { concurrency: 0 })).rejects.toThrow(/concurrency/);
  });
});

describe('TieredCache on Redis (L2) and files (L3)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'amas-tc-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function redisStore(p = prefix()) {
    const store = track(new RedisStore({ url: REDIS_URL, prefix: p }));
    await store.ready();
    return store;
  }

  it('walks L1 -> L2 -> L3 and promotes a hit to the levels above', async () => {
    const p = prefix();
    const name = `t${Math.random().toString(36).slice(2, 8)}`;
    const writer = memoryCache({ name, store: await redisStore(p), l3: { file: { directory: dir } } });
    await writer.set('k', { deep: [1, 2, 3] });
    // A second replica: empty L1, same Redis and files.
    const reader = memoryCache({ name, store: await redisStore(p), l3: { file: { directory: dir } } });
    expect(await reader.get('k')).toEqual({ deep: [1, 2, 3] });
    expect(reader.stats().levels.l2!.hits).toBe(1);
    expect(await reader.get('k')).toEqual({ deep: [1, 2, 3] });
    expect(reader.stats().levels.l1!.hits).toBe(1);
    // Gone from Redis: L3 answers and the value goes back to L2.
    const raw = await redisStore(p);
    await raw.deleteByPrefix(p);
    const third = memoryCache({ name, store: raw, l3: { file: { directory: dir } } });
    expect(await third.get('k')).toEqual({ deep: [1, 2, 3] });
    expect(third.stats().levels.l3!.hits).toBe(1);
    await vi.waitFor(async () => expect((await raw.getMany([raw.key(`cache:${name}:default:k`)]))[0]).toBeDefined());
  });

  it('L3 on PostgreSQL (table created on first use): answers after L1 and L2 lost the value, and promotes it', async () => {
    const { default: pg } = await import('pg');
    const PG_URL = process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
    const table = `amas_tc_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
    const admin = new pg.Pool({ connectionString: PG_URL, max: 1 });
    try {
      const p = prefix();
      const writer = memoryCache({ name: 'pg', store: await redisStore(p), l3: { postgres: { connectionString: PG_URL, table } } });
      await writer.set('report', { rows: [1, 2, 3] }, { ttl: '1h' });
      const rows = await admin.query(`SELECT key, expires_at FROM ${table}`);
      expect(rows.rows.map((r: { key: string }) => r.key)).toEqual(['pg:default:report']);
      const raw = await redisStore(p);
      await raw.deleteByPrefix(p); // L2 loses it
      const reader = memoryCache({ name: 'pg', store: raw, l3: { postgres: { connectionString: PG_URL, table } } });
      expect(await reader.get('report')).toEqual({ rows: [1, 2, 3] });
      expect(reader.stats().levels.l3!.hits).toBe(1);
      await vi.waitFor(async () => expect(await raw.getBuffer(raw.key('cache:pg:default:report'))).toBeDefined());
      // An unreachable PostgreSQL is skipped, never failing the call.
      const logger = recordingLogger();
      const down = memoryCache({ name: 'pg', l3: { postgres: { connectionString: 'postgres://postgres@127.0.0.1:1/postgres', table } }, logger });
      await down.set('x', 1);
      expect(await down.get('x')).toBe(1); // from L1
      expect(await down.getOrSet('y', () => 2)).toBe(2);
      expect(down.stats().levels.l3!.errors).toBeGreaterThan(0);
      expect(logger.lines.filter((l) => l.includes('level l3'))).toHaveLength(1);
    } finally {
      await admin.query(`DROP TABLE IF EXISTS ${table}`);
      await admin.end();
    }
  });

  it('per-level TTL caps: L1 keeps an entry shorter than L2', async () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ clock });
    track(store);
    const cache = memoryCache({ store, clock, ttl: '1h', l1: { ttl: '1s' }, invalidation: false });
    await cache.set('k', 'v');
    await clock.advance(1500);
    expect(await cache.get('k')).toBe('v');
    expect(cache.stats().levels.l2!.hits).toBe(1);
  });

  it('compresses big compressible values in L2 (encoding recorded), never small or incompressible ones', async () => {
    const store = new MemoryStore();
    track(store);
    const name = 'comp';
    const gz = memoryCache({ name, store, compression: { algorithm: 'gzip', thresholdBytes: 1024 } });
    const big = { text: 'hello world '.repeat(500) };
    await gz.set('big', big);
    await gz.set('small', { text: 'hi' });
    // Random bytes stored as they are (a serializer that writes bytes): gzip cannot save 10% on them.
    const bytes = memoryCache({ name, store, serializer: { serialize: (v) => Buffer.from(v as string, 'base64'), deserialize: (b) => b.toString('base64') } });
    const noise = randomBytes(4096).toString('base64');
    await bytes.set('noise', noise);
    const raw = async (k: string) => decodeRecord((await store.getBuffer(store.key(`cache:${name}:default:${k}`)))!)!;
    expect((await raw('big')).encoding).toBe('gzip');
    expect((await raw('big')).payload.length).toBeLessThan(JSON.stringify(big).length / 5);
    expect((await raw('small')).encoding).toBe('none');
    expect((await raw('noise')).encoding).toBe('none');
    expect(await memoryCache({ name, store, l1: false, serializer: { serialize: (v) => Buffer.from(v as string, 'base64'), deserialize: (b) => b.toString('base64') } }).get('noise')).toBe(noise);
    const reader = memoryCache({ name, store, l1: false });
    expect(await reader.get('big')).toEqual(big);
    const br = memoryCache({ name: 'comp-br', store, compression: { algorithm: 'br' } });
    await br.set('big', big);
    expect(decodeRecord((await store.getBuffer(store.key('cache:comp-br:default:big')))!)!.encoding).toBe('br');
    expect(await memoryCache({ name: 'comp-br', store, l1: false }).get('big')).toEqual(big);
  });

  it('bytes in L2 that are not a cache record are a miss', async () => {
    const store = await redisStore();
    const cache = memoryCache({ name: 'junk', store, l1: false });
    await store.set(store.key('cache:junk:default:k'), 'not a record');
    expect(await cache.get('k')).toBeUndefined();
    expect(await cache.getOrSet('k', () => 'fresh')).toBe('fresh');
  });

  it('set and delete on one replica drop the key from the other replica L1 (Pub/Sub); namespace clears stay in their namespace', async () => {
    const p = prefix();
    const a = memoryCache({ store: await redisStore(p) });
    const b = memoryCache({ store: await redisStore(p) });
    await Promise.all([a.ready(), b.ready()]);
    await a.set('k', 'v1');
    await a.set('other', 'o', { namespace: 'keep' });
    expect(await b.get('k')).toBe('v1'); // now in b's L1
    expect(await b.get('other', { namespace: 'keep' })).toBe('o');
    await a.set('k', 'v2');
    await vi.waitFor(async () => expect(await b.get('k')).toBe('v2'));
    await a.delete('k');
    await vi.waitFor(async () => expect(await b.get('k')).toBeUndefined());
    await b.set('x', 1, { namespace: 'gone' });
    await a.clear({ namespace: 'gone' });
    await vi.waitFor(async () => expect(await b.get('x', { namespace: 'gone' })).toBeUndefined());
    expect(await b.get('other', { namespace: 'keep' })).toBe('o');
    expect(b.stats().invalidations.received).toBeGreaterThanOrEqual(3);
  });

  it('getOrSet across two engines on one Redis: 100 concurrent misses, one factory run', async () => {
    const p = prefix();
    const a = memoryCache({ store: await redisStore(p) });
    const b = memoryCache({ store: await redisStore(p) });
    let runs = 0;
    const factory = async () => {
      runs++;
      await new Promise((r) => setTimeout(r, 50));
      return { v: 'once' };
    };
    const all = await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 ? a : b).getOrSet('hot', factory)));
    expect(runs).toBe(1);
    expect(all.every((v) => v.v === 'once')).toBe(true);
  });

  it('forceRefresh right after another replica ran the factory still runs it; a plain miss there reads the value instead', async () => {
    const p = prefix();
    const a = memoryCache({ store: await redisStore(p) });
    const b = memoryCache({ store: await redisStore(p) });
    let runs = 0;
    expect(await a.getOrSet('k', () => `v${++runs}`)).toBe('v1');
    // B's L1 is empty: its miss finds A's value in L2 (no second run).
    expect(await b.getOrSet('k', () => `v${++runs}`)).toBe('v1');
    // A's callers were answered before its run released the lease; a forced call while that run is still
    // finishing would join it (by design), so let it finish.
    await new Promise((r) => setTimeout(r, 100));
    expect(await b.getOrSet('k', () => `v${++runs}`, { forceRefresh: true })).toBe('v2');
    await new Promise((r) => setTimeout(r, 100));
    expect(await a.getOrSet('k', () => `v${++runs}`, { forceRefresh: true })).toBe('v3');
    expect(runs).toBe(3);
  });

  it('a level that goes down mid-test is skipped, counted and logged once; calls keep working; it comes back', async () => {
    const { startRedisServer } = await import('../../../../test/support/redis-servers.js');
    const server = await startRedisServer();
    try {
      const store = track(new RedisStore({ url: server.url, commandTimeoutMs: 300, prefix: prefix() }));
      await store.ready();
      const logger = recordingLogger();
      const files = track(new FileLevel({ directory: dir, name: 'down-test' }));
      const cache = memoryCache({ name: 'down-test', store, l1: false, l3: files, logger, levelRetryMs: 200 });
      await cache.set('k', 'v');
      await server.kill();
      // L2 fails: the value still comes from L3; sets still land in L3.
      for (let i = 0; i < 5; i++) expect(await cache.get('k')).toBe('v');
      await cache.set('k2', 'v2');
      expect(await cache.get('k2')).toBe('v2');
      expect(await cache.getOrSet('k3', () => 'v3')).toBe('v3');
      const stats = cache.stats();
      expect(stats.levels.l2!.errors).toBeGreaterThan(0);
      expect(logger.lines.filter((l) => l.includes('level l2') && l.includes('failed'))).toHaveLength(1);
      await server.restart();
      await vi.waitFor(
        async () => {
          await cache.set('k4', 'back');
          expect(cache.stats().levels.l2!.down).toBe(false);
        },
        { timeout: 10_000, interval: 250 },
      );
      expect(logger.lines.some((l) => l.includes('level l2') && l.includes('answers again'))).toBe(true);
      expect(await store.getBuffer(store.key('cache:down-test:default:k4'))).toBeDefined();
    } finally {
      await server.stop();
    }
  });
});
