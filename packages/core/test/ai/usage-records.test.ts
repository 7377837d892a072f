/**
 * Usage record stores: the same records give the same aggregates, prompt counts and record lists in memory,
 * on a Store (MemoryStore and a real Redis) and in PostgreSQL; writes are batched (one pipeline / one INSERT
 * for many records), failed writes are kept and retried (applied once even after a timeout), nothing is lost
 * silently, and records survive a restart on Redis and on PostgreSQL.
 */
import { createServer } from 'node:net';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { InvalidOptionError, StoreUnavailableError } from '../../src/errors.js';
import {
  dayIndex,
  MemoryUsageRecords,
  RecordBuffer,
  summarize,
  type RecordBatch,
  type UsageRecord,
  type UsageRecordStore,
  type UsageScope,
} from '../../src/ai/usage-records.js';
import { RedisUsageRecords, USAGE_WRITE } from '../../src/ai/usage-records-redis.js';
import { PostgresUsageRecords } from '../../src/ai/usage-records-postgres.js';
import { MemoryStore } from '../../src/stores/memory-store.js';
import type { Store } from '../../src/stores/store.js';
import { invalidOption, settle } from '../helpers.js';
import { clusterFixture, stopTestCluster, uniquePrefix, wrapStore } from '../stores/limiter-fixtures.js';
import { costOf, DAY, memoryFixture, PG_URL, pgTables, recordingLogger, redisFixture, redisReplica, T0 } from './cost-fixtures.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
const tables = pgTables();
afterAll(async () => {
  await tables.dropTables();
  await stopTestCluster();
});

let seq = 0;
function rec(over: Partial<UsageRecord> = {}): UsageRecord {
  seq++;
  return {
    id: `rec-${seq}-${Math.random().toString(36).slice(2, 8)}`,
    at: T0,
    user: 'alice',
    provider: 'openai',
    model: 'gpt-4o',
    inputTokens: 1000,
    outputTokens: 500,
    cachedInputTokens: 0,
    cost: costOf('gpt-4o', 1000, 500),
    costKnown: true,
    status: 'ok',
    cached: false,
    ...over,
  };
}

/** Five calls over three days, two users, one team, every kind of counter. */
function dataset(): UsageRecord[] {
  return [
    rec({ team: 'red', promptHash: 'p1', metadata: { route: '/chat', n: 1 } }),
    rec({ team: 'red', at: T0 + 1000, inputTokens: 2000, outputTokens: 100, cachedInputTokens: 1000, cost: costOf('gpt-4o', 2000, 100, 1000), promptHash: 'p1', finishReason: 'length' }),
    rec({ at: T0 + DAY, provider: 'anthropic', model: 'claude-sonnet', inputTokens: 100, outputTokens: 100, cost: costOf('claude-sonnet', 100, 100), status: 'error', error: 'Error: boom' }),
    rec({ user: 'bob', team: 'red', at: T0 + DAY + 5, model: 'gpt-4o-mini', cached: true, cost: 0, savedCost: costOf('gpt-4o-mini', 1000, 500), promptHash: 'p1' }),
    rec({ user: 'bob', at: T0 - DAY, model: 'mystery', cost: 0, costKnown: false, promptHash: 'p2' }),
  ];
}

function memoryRecords(clock = new ManualClock(T0 + DAY)): MemoryUsageRecords {
  return new MemoryUsageRecords({ clock });
}

describe('usage aggregates and summaries', () => {
  it('sums what each call billed, by provider, model and day', async () => {
    const records = memoryRecords();
    for (const r of dataset()) records.add(r);
    const alice = summarize(await records.daily({ kind: 'user', id: 'alice' }, {}));
    const c1 = costOf('gpt-4o', 1000, 500);
    const c2 = costOf('gpt-4o', 2000, 100, 1000);
    const c3 = costOf('claude-sonnet', 100, 100);
    expect(alice).toMatchObject({
      from: '2024-05-10',
      to: '2024-05-11',
      requests: 3,
      inputTokens: 3100,
      outputTokens: 700,
      cachedInputTokens: 1000,
      errors: 1,
      cacheHits: 0,
      truncated: 1,
      unpriced: 0,
    });
    expect(alice.cost).toBeCloseTo(c1 + c2 + c3, 12);
    expect(alice.errorCost).toBeCloseTo(c3, 12);
    expect({ ...alice.byProvider }).toEqual({
      openai: { cost: expect.closeTo(c1 + c2, 12), inputTokens: 3000, outputTokens: 600, cachedInputTokens: 0, requests: 2 },
      anthropic: { cost: expect.closeTo(c3, 12), inputTokens: 100, outputTokens: 100, cachedInputTokens: 0, requests: 1 },
    });
    expect({ ...alice.byModel }).toEqual({
      'gpt-4o': { cost: expect.closeTo(c1 + c2, 12), inputTokens: 3000, outputTokens: 600, cachedInputTokens: 1000, requests: 2 },
      'claude-sonnet': { cost: expect.closeTo(c3, 12), inputTokens: 100, outputTokens: 100, cachedInputTokens: 0, requests: 1 },
    });
    expect(Object.keys(alice.byDay)).toEqual(['2024-05-10', '2024-05-11']);
    expect(alice.byDay['2024-05-10']).toMatchObject({ requests: 2, inputTokens: 3000 });

    const red = summarize(await records.daily({ kind: 'team', id: 'red' }, {}));
    expect(red).toMatchObject({ requests: 3, cacheHits: 1, inputTokens: 3000 });
    expect(red.cacheSavings).toBeCloseTo(costOf('gpt-4o-mini', 1000, 500), 12);
    // A cached answer adds a request, no tokens and no cost.
    expect(red.byModel['gpt-4o-mini']).toEqual({ cost: 0, inputTokens: 0, outputTokens: 0, cachedInputTokens: 0, requests: 1 });

    const all = summarize(await records.daily({ kind: 'all' }, {}));
    expect(all).toMatchObject({ requests: 5, unpriced: 1, from: '2024-05-09', to: '2024-05-11' });
    const one = summarize(await records.daily({ kind: 'all' }, { from: dayIndex(T0), to: dayIndex(T0) }));
    expect(one).toMatchObject({ requests: 2, from: '2024-05-10', to: '2024-05-10' });
    expect(summarize(new Map())).toMatchObject({ requests: 0, cost: 0, from: undefined, byDay: {} });
  });

  it('keeps names that look like object keys apart', async () => {
    const records = memoryRecords();
    records.add(rec({ model: '__proto__', provider: 'constructor' }));
    records.add(rec({ model: 'a|b', provider: 'x|y' }));
    const s = summarize(await records.daily({ kind: 'all' }, {}));
    expect(Object.keys(s.byModel).sort()).toEqual(['__proto__', 'a|b']);
    expect(s.byModel['__proto__']!.requests).toBe(1);
    expect(Object.keys(s.byProvider).sort()).toEqual(['constructor', 'x|y']);
  });
});

describe('MemoryUsageRecords', () => {
  it('keeps a capped ring of recent records, aggregates for everything', async () => {
    const records = new MemoryUsageRecords({ maxRecords: 3, clock: new ManualClock(T0) });
    const added = Array.from({ length: 5 }, (_, i) => rec({ at: T0 + i }));
    for (const r of added) records.add(r);
    expect((await records.list({ user: 'alice', range: {}, limit: 10 })).map((r) => r.id)).toEqual([added[4]!.id, added[3]!.id, added[2]!.id]);
    expect(summarize(await records.daily({ kind: 'user', id: 'alice' }, {})).requests).toBe(5);
    expect(records.stats().written).toBe(5);
  });

  it('forgets days older than retentionDays', async () => {
    const clock = new ManualClock(T0);
    const records = new MemoryUsageRecords({ retentionDays: 2, clock });
    records.add(rec());
    await clock.advance(DAY);
    records.add(rec({ at: T0 + DAY }));
    expect(summarize(await records.daily({ kind: 'all' }, {})).requests).toBe(2);
    await clock.advance(DAY);
    records.add(rec({ at: T0 + 2 * DAY }));
    expect(summarize(await records.daily({ kind: 'all' }, {}))).toMatchObject({ requests: 2, from: '2024-05-11' });
  });

  it('counts at most maxPromptHashes distinct prompts a user and day', async () => {
    const records = new MemoryUsageRecords({ maxPromptHashes: 2, clock: new ManualClock(T0) });
    for (const h of ['a', 'b', 'c', 'a']) records.add(rec({ promptHash: h }));
    const prompts = await records.prompts('alice', {});
    expect([...prompts.keys()]).toEqual(['a', 'b']);
    expect(prompts.get('a')!.count).toBe(2);
    expect(records.stats().promptHashesDropped).toBe(1);
  });

  it('validates its options', () => {
    expect(invalidOption(() => new MemoryUsageRecords({ maxRecords: -1 })).issues[0]!.path).toBe('maxRecords');
    expect(invalidOption(() => new MemoryUsageRecords({ retentionDays: 0 })).issues[0]!.path).toBe('retentionDays');
  });
});

// -----------------------------------------------------------------------------------------------------------
// The same behaviour on every store

interface Backend {
  records: UsageRecordStore;
  /** A new record store on the same data, as after a restart (undefined for memory). */
  reopen?: () => Promise<UsageRecordStore>;
}

async function redisBackend(clock = new ManualClock(T0 + DAY)): Promise<Backend & { store: Store }> {
  const f = await redisFixture(T0 + DAY);
  cleanups.push(() => f.close());
  const records = new RedisUsageRecords({ store: f.store, name: 'conf', clock, logger: recordingLogger() });
  cleanups.push(() => records.close());
  return {
    store: f.store,
    records,
    reopen: async () => {
      await records.close();
      const again = await redisReplica(f.store, f.clock);
      cleanups.push(() => again.close());
      const next = new RedisUsageRecords({ store: again, name: 'conf', clock, logger: recordingLogger() });
      cleanups.push(() => next.close());
      return next;
    },
  };
}

async function postgresBackend(): Promise<Backend & { table: string }> {
  const table = tables.fresh('conf');
  const records = new PostgresUsageRecords({ connectionString: PG_URL, table, clock: new ManualClock(T0), logger: recordingLogger() });
  cleanups.push(() => records.close());
  return {
    table,
    records,
    reopen: async () => {
      await records.close();
      const next = new PostgresUsageRecords({ connectionString: PG_URL, table, clock: new ManualClock(T0), logger: recordingLogger() });
      cleanups.push(() => next.close());
      return next;
    },
  };
}

const BACKENDS: Array<[string, () => Promise<Backend>]> = [
  ['MemoryUsageRecords', async () => ({ records: memoryRecords() })],
  [
    'RedisUsageRecords on a MemoryStore',
    async () => {
      const f = await memoryFixture(T0 + DAY);
      cleanups.push(() => f.close());
      return { records: new RedisUsageRecords({ store: f.store, clock: f.clock }) };
    },
  ],
  ['RedisUsageRecords on Redis', () => redisBackend()],
  [
    'RedisUsageRecords on a 3-node Redis Cluster',
    async () => {
      const f = await clusterFixture(T0 + DAY);
      cleanups.push(() => f.close());
      const records = new RedisUsageRecords({ store: f.store, clock: f.clock });
      cleanups.push(() => records.close());
      return { records };
    },
  ],
  ['PostgresUsageRecords', () => postgresBackend()],
];

const SCOPES: UsageScope[] = [{ kind: 'user', id: 'alice' }, { kind: 'user', id: 'bob' }, { kind: 'team', id: 'red' }, { kind: 'all' }, { kind: 'user', id: 'nobody' }];

/** What every store must answer for `dataset()` (computed on MemoryUsageRecords). */
async function answers(records: UsageRecordStore): Promise<unknown> {
  const out: Record<string, unknown> = {};
  for (const scope of SCOPES) {
    const key = scope.kind === 'all' ? 'all' : `${scope.kind}:${scope.id}`;
    out[key] = { ...summarize(await records.daily(scope, {})) };
    out[`${key}@day`] = { ...summarize(await records.daily(scope, { from: dayIndex(T0 + DAY), to: dayIndex(T0 + DAY) })) };
  }
  // Stores may leave out prompts seen once (they cannot show a repeat).
  const repeated = async (user: string) => [...(await records.prompts(user, {}))].filter(([, s]) => s.count > 1).sort();
  out.prompts = { alice: await repeated('alice'), bob: await repeated('bob') };
  out.list = (await records.list({ user: 'alice', range: {}, limit: 10 })).map((r) => r.id);
  out.listFirstDay = (await records.list({ user: 'alice', range: { to: dayIndex(T0) }, limit: 1 })).map((r) => r.id);
  return JSON.parse(JSON.stringify(out));
}

describe('every record store', () => {
  const data = dataset();
  let expected: unknown;

  for (const [name, make] of BACKENDS) {
    it(`${name}: same aggregates, prompts and lists as memory`, async () => {
      const reference = memoryRecords();
      for (const r of data) reference.add(r);
      expected ??= await answers(reference);
      const { records } = await make();
      for (const r of data) records.add(r);
      expect(await answers(records)).toEqual(expected);
      const listed = await records.list({ user: 'alice', range: {}, limit: 10 });
      expect(listed[2]).toEqual(data[0]); // every field round-trips, metadata included
      expect(listed[0]).toEqual(data[2]);
      expect((await records.list({ user: 'bob', range: {}, limit: 10 })).find((r) => r.cached)).toEqual(data[3]);
    });
  }

  for (const [name, make] of BACKENDS.filter(([n]) => n.endsWith('on Redis') || n.startsWith('Postgres'))) {
    it(`${name}: nothing is lost across a restart`, async () => {
      const reference = memoryRecords();
      for (const r of data) reference.add(r);
      const backend = await make();
      for (const r of data) backend.records.add(r);
      // Still batched when the process stops: close() writes them.
      expect(backend.records.stats()).toMatchObject({ pending: 5, written: 0 });
      const next = await backend.reopen!();
      expect(await answers(next)).toEqual(await answers(reference));
      expect(next.stats()).toMatchObject({ pending: 0, written: 0 });
    });
  }
});

// -----------------------------------------------------------------------------------------------------------
// Redis: batching, idempotent retries, failures

describe('RedisUsageRecords batching', () => {
  it('writes many records in one pipeline: one script per scope, after flushIntervalMs', async () => {
    const f = await redisFixture(T0);
    cleanups.push(() => f.close());
    const store = wrapStore(f.store);
    const records = new RedisUsageRecords({ store, clock: f.clock, batchSize: 500, flushIntervalMs: 1000 });
    cleanups.push(() => records.close());
    for (let i = 0; i < 200; i++) records.add(rec({ team: 'red', at: T0 + i }));
    expect(store.runs).toBe(0);
    expect(records.stats()).toMatchObject({ pending: 200, written: 0 });
    const commands = f.store.health().commands;
    await f.clock.advance(1000);
    await records.flush(); // waits for the write the timer started
    // user alice, team red, everyone: three scripts sent together for 200 records.
    expect(store.runs).toBe(3);
    expect(f.store.health().commands - commands).toBe(3);
    expect(records.stats()).toMatchObject({ pending: 0, written: 200, flushes: 1 });
    expect(summarize(await records.daily({ kind: 'team', id: 'red' }, {})).requests).toBe(200);
  });

  it('flushes as soon as batchSize records wait, one write at a time', async () => {
    const f = await memoryFixture(T0);
    cleanups.push(() => f.close());
    const store = wrapStore(f.store);
    const records = new RedisUsageRecords({ store, clock: f.clock, batchSize: 50, flushIntervalMs: 60_000 });
    cleanups.push(() => records.close());
    for (let i = 0; i < 120; i++) records.add(rec({ at: T0 + i }));
    await records.flush();
    expect(records.stats()).toMatchObject({ written: 120, flushes: 3 });
    expect(store.runs).toBe(6); // 3 batches x (alice, everyone)
    expect(f.clock.pendingTimers).toBe(1); // the store's sweep only: no flush timer left
  });

  it('applies a batch once when a retry follows a write that did land (a timeout)', async () => {
    const f = await redisFixture(T0);
    cleanups.push(() => f.close());
    let timeouts = 1;
    const inner = f.store;
    const store: Store = {
      ...wrapStore(inner),
      run: (async (script, keys, args, options) => {
        const result = await inner.run(script, keys, args, options);
        if (script === USAGE_WRITE && timeouts > 0) {
          timeouts--;
          throw new StoreUnavailableError('command timed out');
        }
        return result;
      }) as Store['run'],
    };
    const logger = recordingLogger();
    const records = new RedisUsageRecords({ store, clock: f.clock, logger, flushIntervalMs: 100 });
    cleanups.push(() => records.close());
    for (let i = 0; i < 10; i++) records.add(rec({ at: T0 + i }));
    await expect(records.flush()).rejects.toThrow(/timed out/);
    expect(records.stats()).toMatchObject({ pending: 10, failedFlushes: 1 });
    await records.flush(); // the same batch, same id
    expect(summarize(await records.daily({ kind: 'all' }, {})).requests).toBe(10);
    expect(summarize(await records.daily({ kind: 'user', id: 'alice' }, {})).requests).toBe(10);
    expect((await records.list({ user: 'alice', range: {}, limit: 100 })).length).toBe(10);
    expect(logger.warnings[0]).toMatch(/writing 10 usage record\(s\) failed \(command timed out\); they are kept and retried/);
  });

  it('keeps records while the store is down, retries with a growing delay, and loses none', async () => {
    const f = await memoryFixture(T0);
    cleanups.push(() => f.close());
    let down = true;
    const store = wrapStore(f.store, { failRun: () => (down ? new StoreUnavailableError('redis down') : undefined) });
    const logger = recordingLogger();
    const records = new RedisUsageRecords({ store, clock: f.clock, logger, flushIntervalMs: 1000, maxRetryDelayMs: 4000 });
    cleanups.push(() => records.close());
    for (let i = 0; i < 5; i++) records.add(rec());
    await f.clock.advance(1000); // first attempt fails
    expect(records.stats()).toMatchObject({ pending: 5, failedFlushes: 1 });
    await f.clock.advance(1000); // retry after 1s
    expect(records.stats().failedFlushes).toBe(2);
    await f.clock.advance(1999); // the next waits 2s
    expect(records.stats().failedFlushes).toBe(2);
    await f.clock.advance(1);
    expect(records.stats().failedFlushes).toBe(3);
    records.add(rec());
    down = false;
    await f.clock.advance(4000);
    expect(records.stats()).toMatchObject({ pending: 0, written: 6, failedFlushes: 3, dropped: 0, lost: 0 });
    expect(logger.warnings).toHaveLength(2); // the outage once, the recovery once
    expect(logger.warnings[1]).toMatch(/written again/);
    expect(summarize(await records.daily({ kind: 'all' }, {})).requests).toBe(6);
  });

  it('drops the oldest beyond maxPending, and counts and logs what close() cannot write', async () => {
    const f = await memoryFixture(T0);
    cleanups.push(() => f.close());
    const store = wrapStore(f.store, { failRun: () => new StoreUnavailableError('redis down') });
    const logger = recordingLogger();
    const records = new RedisUsageRecords({ store, clock: f.clock, logger, maxPending: 5, batchSize: 100 });
    for (let i = 0; i < 8; i++) records.add(rec());
    expect(records.stats()).toMatchObject({ pending: 5, dropped: 3 });
    expect(logger.warnings[0]).toMatch(/more than 5 usage records wait to be written; the oldest are dropped/);
    await records.close();
    expect(records.stats()).toMatchObject({ pending: 0, dropped: 3, lost: 5 });
    expect(logger.warnings.at(-1)).toMatch(/5 usage record\(s\) could not be written before close and are lost/);
    records.add(rec());
    expect(records.stats().lost).toBe(6);
  });

  it('validates its options', () => {
    const store = new MemoryStore({ prefix: uniquePrefix() });
    cleanups.push(() => store.close());
    expect(invalidOption(() => new RedisUsageRecords({} as never)).issues[0]!.path).toBe('store');
    expect(invalidOption(() => new RedisUsageRecords({ store, batchSize: 0 })).issues[0]!.path).toBe('batchSize');
    expect(invalidOption(() => new RedisUsageRecords({ store, name: 'a:b' })).issues[0]!.path).toBe('name');
    expect(invalidOption(() => new RedisUsageRecords({ store, flushIntervalMs: 1e12 })).issues[0]!.path).toBe('flushIntervalMs');
  });
});

describe('RecordBuffer', () => {
  it('retries a failed batch as it was (same id), before newer records', async () => {
    const clock = new ManualClock(T0);
    const writes: RecordBatch[] = [];
    let fail = true;
    const buffer = new RecordBuffer({
      label: 'test',
      clock,
      logger: recordingLogger(),
      batchSize: 2,
      flushIntervalMs: 10,
      write: async (batch) => {
        writes.push({ id: batch.id, records: [...batch.records] });
        if (fail) throw new Error('nope');
      },
    });
    buffer.add(rec({ id: 'a' }));
    buffer.add(rec({ id: 'b' })); // batchSize: a write starts
    await settle(buffer.flush());
    buffer.add(rec({ id: 'c' }));
    fail = false;
    await buffer.flush();
    expect(writes.map((w) => w.records.map((r) => r.id).join(''))).toEqual(['ab', 'ab', 'c']);
    expect(writes[0]!.id).toBe(writes[1]!.id);
    expect(writes[2]!.id).not.toBe(writes[0]!.id);
    await buffer.close();
  });
});

// -----------------------------------------------------------------------------------------------------------
// PostgreSQL

function countingPool(pool: pg.Pool): { pool: { query: pg.Pool['query'] }; statements: string[] } {
  const statements: string[] = [];
  return {
    statements,
    pool: {
      query: ((text: string, values?: unknown[]) => {
        statements.push(text);
        return pool.query(text, values);
      }) as pg.Pool['query'],
    },
  };
}

describe('PostgresUsageRecords', () => {
  it('creates its table on first use and writes many records with one INSERT', async () => {
    const table = tables.fresh('batch');
    const { pool, statements } = countingPool(tables.admin());
    const clock = new ManualClock(T0);
    const records = new PostgresUsageRecords({ pool, table, clock, batchSize: 1000, flushIntervalMs: 500 });
    cleanups.push(() => records.close());
    for (let i = 0; i < 300; i++) records.add(rec({ at: T0 + i, team: i % 2 ? 'red' : undefined }));
    expect(statements).toEqual([]);
    await clock.advance(500);
    await records.flush();
    const inserts = statements.filter((s) => s.startsWith('INSERT'));
    expect(inserts).toHaveLength(1);
    expect(records.inserts).toBe(1);
    expect(statements.some((s) => s.startsWith('CREATE TABLE'))).toBe(true);
    const { rows } = await tables.admin().query(`SELECT count(*)::int AS n FROM "${table}"`);
    expect(rows[0].n).toBe(300);
    const indexes = await tables.admin().query('SELECT indexname FROM pg_indexes WHERE tablename = $1 ORDER BY indexname', [table]);
    expect(indexes.rows.map((r: { indexname: string }) => r.indexname)).toEqual([`${table}_at_idx`, `${table}_pkey`, `${table}_team_at_idx`, `${table}_user_at_idx`]);
    expect(summarize(await records.daily({ kind: 'team', id: 'red' }, {})).requests).toBe(150);
  });

  it('handles two processes creating the table at once', async () => {
    const table = tables.fresh('race');
    const stores = Array.from({ length: 4 }, () => new PostgresUsageRecords({ connectionString: PG_URL, table }));
    for (const s of stores) cleanups.push(() => s.close());
    await Promise.all(stores.map((s) => s.ready()));
    stores[0]!.add(rec());
    await stores[0]!.flush();
    expect(summarize(await stores[3]!.daily({ kind: 'all' }, {})).requests).toBe(1);
  });

  it('inserts a retried batch once (ON CONFLICT on the record id)', async () => {
    const table = tables.fresh('retry');
    let failAfter = 1;
    const admin = tables.admin();
    const pool = {
      query: async (text: string, values?: unknown[]) => {
        const result = await admin.query(text, values);
        if (text.startsWith('INSERT') && failAfter-- > 0) throw new Error('connection reset after the write');
        return result;
      },
    };
    const records = new PostgresUsageRecords({ pool, table, logger: recordingLogger() });
    cleanups.push(() => records.close());
    for (let i = 0; i < 20; i++) records.add(rec());
    await expect(records.flush()).rejects.toThrow(/connection reset/);
    await records.flush();
    expect(summarize(await records.daily({ kind: 'all' }, {})).requests).toBe(20);
  });

  it('keeps records while PostgreSQL is unreachable and says so', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    await new Promise((resolve) => server.close(resolve));
    const logger = recordingLogger();
    const records = new PostgresUsageRecords({ connectionString: `postgres://postgres@127.0.0.1:${port}/postgres`, logger, connectionTimeoutMs: 500 });
    records.add(rec());
    await expect(records.flush()).rejects.toThrow();
    expect(records.stats()).toMatchObject({ pending: 1, failedFlushes: 1 });
    await records.close();
    expect(records.stats()).toMatchObject({ lost: 1 });
    expect(logger.warnings.at(-1)).toMatch(/1 usage record\(s\) could not be written before close and are lost/);
  });

  it('validates its options and never prints a connection string', () => {
    const pool = tables.admin();
    expect(invalidOption(() => new PostgresUsageRecords({})).issues[0]).toMatchObject({ path: 'pool', received: 'neither' });
    expect(invalidOption(() => new PostgresUsageRecords({ pool, connectionString: PG_URL })).issues[0]).toMatchObject({ path: 'pool', received: 'both' });
    expect(invalidOption(() => new PostgresUsageRecords({ pool, table: 'drop table x;' })).issues[0]!.path).toBe('table');
    expect(invalidOption(() => new PostgresUsageRecords({ pool, connectionTimeoutMs: 10 })).issues[0]!.path).toBe('connectionTimeoutMs');
    const secret = invalidOption(() => new PostgresUsageRecords({ connectionString: 'mysql://root:hunter2@db/x' }));
    expect(secret.message).not.toContain('hunter2');
    expect(secret.issues[0]).toMatchObject({ path: 'connectionString', received: 'a mysql:// URL' });
    expect(new PostgresUsageRecords({ pool, table: 'public.usage_x' }).table).toBe('public.usage_x');
    expect(() => new PostgresUsageRecords({ pool, batchSize: -1 })).toThrow(InvalidOptionError);
  });
});
