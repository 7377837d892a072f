/**
 * CostTracker: pricing each call through the PriceLookup, summaries by provider, model and day, budgets
 * enforced before the call (reserve -> trackRequest settles), alerts once per share (across replicas on
 * Redis), budget status with and without a budget, persistence across a restart on Redis and PostgreSQL, and
 * options / inputs rejected with the path named.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { BudgetExceededError, InvalidOptionError, StoreUnavailableError } from '../../src/errors.js';
import { CostTracker, type CostTrackerOptions, type TrackRequestInput } from '../../src/ai/cost-tracker.js';
import { Budgets, type BudgetAlert } from '../../src/ai/budgets.js';
import { MemoryUsageRecords } from '../../src/ai/usage-records.js';
import { RedisUsageRecords } from '../../src/ai/usage-records-redis.js';
import { PostgresUsageRecords } from '../../src/ai/usage-records-postgres.js';
import { MemoryStore } from '../../src/stores/memory-store.js';
import { invalidOption, settle } from '../helpers.js';
import { uniquePrefix, wrapStore } from '../stores/limiter-fixtures.js';
import { costOf, DAY, fakePrices, PG_URL, pgTables, recordingLogger, redisReplica, STORES, T0, type StoreFixture } from './cost-fixtures.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
const tables = pgTables();
afterAll(() => tables.dropTables());

function tracker(options: Partial<CostTrackerOptions> = {}): CostTracker {
  const t = new CostTracker({ prices: fakePrices(), clock: new ManualClock(T0), logger: recordingLogger(), ...options });
  cleanups.push(() => t.close());
  return t;
}

async function fixture(make: (start?: number) => Promise<StoreFixture>, start = T0): Promise<StoreFixture> {
  const f = await make(start);
  cleanups.push(() => f.close());
  return f;
}

const call = (over: Partial<TrackRequestInput> = {}): TrackRequestInput => ({ user: 'alice', provider: 'openai', model: 'gpt-4o', inputTokens: 1000, outputTokens: 500, ...over });

describe('CostTracker options', () => {
  const prices = fakePrices();
  const cases: Array<[string, unknown, string]> = [
    ['missing prices', {}, 'prices'],
    ['prices without cost()', { prices: { priceOf() {} } }, 'prices'],
    ['negative budget', { prices, budgets: { user: { day: -1 } } }, 'budgets.user.day'],
    ['budget status', { prices, budgets: { status: 403 } }, 'budgets.status'],
    ['alert share', { prices, budgets: { user: { day: 1 } }, alerts: { at: [0] } }, 'alerts.at.0'],
    ['alerts without budgets', { prices, alerts: { at: [0.5] } }, 'alerts'],
    ['alerts beside a Budgets instance', { prices, budgets: new Budgets(), alerts: false }, 'alerts'],
    ['records', { prices, records: {} }, 'records'],
    ['store', { prices, store: 'redis://x' }, 'store'],
    ['onAlert', { prices, onAlert: 'log' }, 'onAlert'],
    ['recommendation threshold', { prices, recommendations: { minErrorRate: 5 } }, 'recommendations.minErrorRate'],
    ['unknown option', { prices, budget: {} }, ''],
  ];
  for (const [label, options, path] of cases) {
    it(`rejects ${label}, naming ${path || 'the unknown key'}`, () => {
      const error = invalidOption(() => new CostTracker(options as CostTrackerOptions), label);
      expect(error.issues[0]!.path).toBe(path);
      expect(error.message).toMatch(/^Invalid CostTracker options:/);
    });
  }
});

describe('trackRequest', () => {
  it('prices the call and returns the record', async () => {
    const t = tracker({ clock: new ManualClock(T0) });
    const record = await t.trackRequest(call({ team: 'red', cachedInputTokens: 400, finishReason: 'stop', promptHash: 'h1', metadata: { route: '/v1/chat' } }));
    expect(record).toEqual({
      id: expect.any(String),
      at: T0,
      user: 'alice',
      team: 'red',
      provider: 'openai',
      model: 'gpt-4o',
      inputTokens: 1000,
      outputTokens: 500,
      cachedInputTokens: 400,
      cost: costOf('gpt-4o', 1000, 500, 400), // 600 x 2.5 + 400 x 1.25 + 500 x 10 per million = $0.007
      costKnown: true,
      status: 'ok',
      cached: false,
      finishReason: 'stop',
      promptHash: 'h1',
      metadata: { route: '/v1/chat' },
    });
    expect(record.cost).toBe(0.007);
    expect(t.stats()).toMatchObject({ tracked: 1, cost: 0.007, unpriced: 0 });
  });

  it('records cached answers at $0 with what they saved, failures with their error', async () => {
    const t = tracker();
    const cached = await t.trackRequest(call({ cached: true }));
    expect(cached).toMatchObject({ cost: 0, savedCost: 0.0075, cached: true, status: 'ok' });
    const failed = await t.trackRequest(call({ outputTokens: 0, error: new Error('upstream 502') }));
    expect(failed).toMatchObject({ status: 'error', error: 'Error: upstream 502', cost: 0.0025 });
    const explicit = await t.trackRequest(call({ status: 'error', error: 'x'.repeat(5000) }));
    expect(explicit.error).toHaveLength(1000);
    expect((await t.getSummary()).cacheSavings).toBe(0.0075);
  });

  it('counts a model without a price at $0, and warns once per model', async () => {
    const logger = recordingLogger();
    const t = tracker({ logger });
    const r = await t.trackRequest(call({ model: 'mystery-1' }));
    await t.trackRequest(call({ model: 'mystery-1' }));
    expect(r).toMatchObject({ cost: 0, costKnown: false });
    expect(logger.warnings).toEqual(['CostTracker: model "mystery-1" (openai) is counted at $0: no price is known for it']);
    expect((await t.getSummary()).unpriced).toBe(2);
    const throwing = tracker({ prices: { ...fakePrices(), cost: () => { throw new Error('table broken'); } }, logger });
    expect(await throwing.trackRequest(call())).toMatchObject({ cost: 0, costKnown: false });
    expect(logger.warnings.at(-1)).toMatch(/the price lookup threw \(table broken\)/);
  });

  it('rejects bad input naming the field, and keeps nothing of it', async () => {
    const t = tracker();
    const bad: Array<[unknown, string]> = [
      [{ ...call(), inputTokens: -1 }, 'inputTokens'],
      [{ ...call(), outputTokens: 1.5 }, 'outputTokens'],
      [{ ...call(), cachedInputTokens: 2000 }, 'cachedInputTokens'],
      [{ ...call(), user: '' }, 'user'],
      [{ ...call(), model: undefined }, 'model'],
      [{ ...call(), status: 'failed' }, 'status'],
      [{ ...call(), metadata: { big: 'x'.repeat(9000) } }, 'metadata'],
      [{ ...call(), latencyMs: 12 }, ''],
    ];
    for (const [input, path] of bad) {
      const { error } = await settle(t.trackRequest(input as TrackRequestInput));
      expect(error, path).toBeInstanceOf(InvalidOptionError);
      expect((error as InvalidOptionError).issues[0]!.path, JSON.stringify(input).slice(0, 80)).toBe(path);
    }
    expect(t.stats().tracked).toBe(0);
    expect((await t.getSummary()).requests).toBe(0);
  });
});

describe('getSummary', () => {
  it('sums by provider, model and day, for a user, a team or everyone', async () => {
    const clock = new ManualClock(T0);
    const t = tracker({ clock });
    await t.trackRequest(call({ team: 'red' }));
    await t.trackRequest(call({ team: 'red', provider: 'anthropic', model: 'claude-sonnet', inputTokens: 2000, outputTokens: 1000 }));
    await clock.advance(DAY);
    await t.trackRequest(call({ model: 'gpt-4o-mini' }));
    await t.trackRequest(call({ user: 'bob', team: 'red' }));

    const alice = await t.getSummary({ user: 'alice' });
    expect(alice).toMatchObject({ requests: 3, inputTokens: 4000, outputTokens: 2000, from: '2024-05-10', to: '2024-05-11' });
    expect(alice.cost).toBeCloseTo(0.0075 + 0.021 + 0.00045, 12);
    expect({ ...alice.byProvider }).toEqual({
      openai: { cost: 0.00795, inputTokens: 2000, outputTokens: 1000, cachedInputTokens: 0, requests: 2 },
      anthropic: { cost: 0.021, inputTokens: 2000, outputTokens: 1000, cachedInputTokens: 0, requests: 1 },
    });
    expect(Object.keys(alice.byModel).sort()).toEqual(['claude-sonnet', 'gpt-4o', 'gpt-4o-mini']);
    expect(alice.byModel['gpt-4o-mini']!.cost).toBe(0.00045);
    expect({ ...alice.byDay }).toEqual({
      '2024-05-10': { cost: 0.0285, inputTokens: 3000, outputTokens: 1500, cachedInputTokens: 0, requests: 2 },
      '2024-05-11': { cost: 0.00045, inputTokens: 1000, outputTokens: 500, cachedInputTokens: 0, requests: 1 },
    });

    expect((await t.getSummary({ team: 'red' })).requests).toBe(3);
    expect((await t.getSummary()).requests).toBe(4);
    // One day, given three ways.
    for (const day of ['2024-05-11', T0 + DAY, new Date(T0 + DAY)]) {
      const s = await t.getSummary({ user: 'alice', from: day, to: day });
      expect(s).toMatchObject({ requests: 1, cost: 0.00045, from: '2024-05-11', to: '2024-05-11' });
    }
    expect((await t.getSummary({ from: '2024-05-12' })).requests).toBe(0);
    await expect(t.getSummary({ user: 'alice', team: 'red' })).rejects.toMatchObject({ issues: [{ path: 'team' }] });
    await expect(t.getSummary({ from: 'yesterday' })).rejects.toMatchObject({ issues: [{ path: 'from' }] });
  });

  it('lists a user’s records, newest first', async () => {
    const clock = new ManualClock(T0);
    const t = tracker({ clock });
    const first = await t.trackRequest(call());
    await clock.advance(1000);
    const second = await t.trackRequest(call());
    expect((await t.listRecords({ user: 'alice' })).map((r) => r.id)).toEqual([second.id, first.id]);
    expect(await t.listRecords({ user: 'alice', limit: 1 })).toEqual([second]);
    await expect(t.listRecords({ user: 'alice', limit: -1 })).rejects.toMatchObject({ issues: [{ path: 'limit' }] });
  });
});

for (const [name, make] of STORES) {
  describe(`budgets through the tracker on ${name}`, () => {
    it('reserves before the call, settles with the real cost after it', async () => {
      const { store, clock } = await fixture(make);
      const t = tracker({ store, clock, budgets: { user: { day: 0.05 }, team: { month: 1 } } });
      // 1000 tokens in, at most 2000 out on gpt-4o: 0.0025 + 0.02.
      expect(t.estimateCost({ model: 'gpt-4o', inputTokens: 1000, maxOutputTokens: 2000 })).toBeCloseTo(0.0225, 12);
      const r = await t.reserve({ user: 'alice', team: 'red', model: 'gpt-4o', inputTokens: 1000, maxOutputTokens: 2000 });
      expect(r.estimatedCost).toBe(0.0225);
      expect(await t.checkBudget('alice', 'day')).toMatchObject({ limit: 0.05, spent: 0, reserved: 0.0225, remaining: 0.0275 });
      await t.trackRequest(call({ team: 'red', reservation: r })); // cost 0.0075
      expect(await t.checkBudget('alice', 'day')).toMatchObject({ spent: 0.0075, reserved: 0, remaining: 0.0425, resetsAt: new Date(Date.UTC(2024, 4, 11)) });
      expect(await t.checkBudget({ team: 'red' }, 'month')).toMatchObject({ limit: 1, spent: 0.0075, reserved: 0 });

      // A call tracked without a reservation is charged too.
      await t.trackRequest(call());
      expect((await t.checkBudget('alice', 'day'))!.spent).toBe(0.015);

      // The next reservation that does not fit is refused before the call.
      const refused = (await settle(t.reserve({ user: 'alice', estimatedCost: 0.04 }))).error as BudgetExceededError;
      expect(refused).toBeInstanceOf(BudgetExceededError);
      expect(refused.message).toMatch(/user "alice" has a daily budget of \$0\.05 \(2024-05-10\); \$0\.015 spent and \$0\.00 held by calls in flight leave \$0\.035, and this call needs an estimated \$0\.04\./);

      // A failed call gives its hold back.
      const failing = await t.reserve({ user: 'alice', estimatedCost: 0.03 });
      await t.release(failing);
      expect((await t.checkBudget('alice', 'day'))!.reserved).toBe(0);
    });

    it('lets exactly 10 of 100 concurrent calls reserve a budget that affords 10', async () => {
      const { store, clock } = await fixture(make);
      const t = tracker({ store, clock, budgets: { user: { day: 1 } } });
      const results = await Promise.all(Array.from({ length: 100 }, () => settle(t.reserve({ user: 'alice', estimatedCost: 0.1 }))));
      expect(results.filter((r) => r.value).length).toBe(10);
      expect(results.filter((r) => r.error instanceof BudgetExceededError).length).toBe(90);
      const exceeded: unknown[] = [];
      t.on('budgetExceeded', (e) => exceeded.push(e));
      await settle(t.reserve({ user: 'alice', estimatedCost: 0.1 }));
      expect(exceeded).toHaveLength(1);
    });

    it('alerts once per share per period', async () => {
      const { store, clock } = await fixture(make);
      const seen: BudgetAlert[] = [];
      const viaOption: BudgetAlert[] = [];
      const t = tracker({ store, clock, budgets: { user: { day: 0.03 } }, alerts: { at: [0.5, 1] }, onAlert: (a) => viaOption.push(a) });
      t.on('budgetAlert', (a) => seen.push(a));
      for (let i = 0; i < 6; i++) await t.trackRequest(call()); // 0.0075 each: 50% at the 2nd, 100% at the 4th
      expect(seen.map((a) => [a.share, a.spent])).toEqual([
        [0.5, 0.015],
        [1, 0.03],
      ]);
      expect(viaOption).toEqual(seen);
      await clock.advance(DAY);
      await t.trackRequest(call({ inputTokens: 2000, outputTokens: 1000 })); // 0.015: 50% of the new day
      expect(seen.map((a) => a.periodId)).toEqual(['2024-05-10', '2024-05-10', '2024-05-11']);
    });

    it('reports spend without a budget from the records', async () => {
      const { store, clock } = await fixture(make);
      const t = tracker({ store, clock, budgets: { users: { capped: { day: 1 } } } });
      await t.trackRequest(call({ user: 'free' }));
      await t.trackRequest(call({ user: 'free', team: 'blue' }));
      expect(await t.checkBudget('free', 'month')).toEqual({
        scope: 'user',
        id: 'free',
        period: 'month',
        periodId: '2024-05',
        limit: undefined,
        spent: 0.015,
        reserved: 0,
        remaining: Infinity,
        resetsAt: new Date(Date.UTC(2024, 5, 1)),
      });
      expect(await t.checkBudget({ team: 'blue' }, 'day')).toMatchObject({ limit: undefined, spent: 0.0075 });
      const unbudgeted = tracker({ store, clock });
      expect(unbudgeted.budgets).toBeUndefined();
      const r = await unbudgeted.reserve({ user: 'x', estimatedCost: 1e6 });
      expect(r.budgets).toEqual([]);
      await unbudgeted.trackRequest(call({ user: 'x', reservation: r }));
      await expect(unbudgeted.checkBudget({ user: 'a', team: 'b' }, 'day')).rejects.toThrow(/not both/);
      await expect(unbudgeted.checkBudget('x', 'year' as never)).rejects.toMatchObject({ issues: [{ path: '' }] });
    });
  });
}

describe('CostTracker across replicas and restarts', () => {
  it('shares budgets and alerts between two trackers on one Redis', async () => {
    const f = await fixture(STORES[1]![1]);
    const other = await redisReplica(f.store, f.clock);
    cleanups.push(() => other.close());
    const alerts: BudgetAlert[] = [];
    const a = tracker({ store: f.store, clock: f.clock, budgets: { user: { day: 0.03 } } });
    const b = tracker({ store: other, clock: f.clock, budgets: { user: { day: 0.03 } } });
    a.on('budgetAlert', (x) => alerts.push(x));
    b.on('budgetAlert', (x) => alerts.push(x));
    await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? a : b).trackRequest(call())));
    expect(alerts.map((x) => x.share).sort()).toEqual([0.5, 0.8, 1]);
    // Both write records to the same Redis: one summary (once b has written what it batched).
    await b.flush();
    expect((await a.getSummary({ user: 'alice' })).requests).toBe(8);
    expect(await b.checkBudget('alice', 'day')).toMatchObject({ spent: 0.06, remaining: 0 });
    await expect(a.reserve({ user: 'alice', estimatedCost: 0.001 })).rejects.toBeInstanceOf(BudgetExceededError);
  });

  it('keeps summaries and budgets across a restart on Redis', async () => {
    const f = await fixture(STORES[1]![1]);
    const first = new CostTracker({ prices: fakePrices(), store: f.store, clock: f.clock, budgets: { user: { day: 1 } } });
    expect(first.records).toBeInstanceOf(RedisUsageRecords);
    for (let i = 0; i < 20; i++) await first.trackRequest(call({ team: 'red', promptHash: `p${i % 3}` }));
    const before = await first.getSummary({ user: 'alice' });
    expect(before.requests).toBe(20);
    await first.close();

    const restarted = await redisReplica(f.store, f.clock);
    cleanups.push(() => restarted.close());
    const second = tracker({ store: restarted, clock: f.clock, budgets: { user: { day: 1 } } });
    expect(await second.getSummary({ user: 'alice' })).toEqual(before);
    expect((await second.getSummary({ team: 'red' })).cost).toBe(before.cost);
    expect(await second.checkBudget('alice', 'day')).toMatchObject({ spent: 0.15 });
    expect(await second.listRecords({ user: 'alice', limit: 100 })).toHaveLength(20);
    expect((await second.getRecommendations('alice')).map((r) => r.kind)).toEqual(['cheaper-model', 'repeated-prompts']);
  });

  it('keeps summaries across a restart on PostgreSQL', async () => {
    const table = tables.fresh('tracker');
    const clock = new ManualClock(T0);
    const first = new CostTracker({ prices: fakePrices(), clock, records: new PostgresUsageRecords({ connectionString: PG_URL, table, clock }) });
    for (let i = 0; i < 30; i++) await first.trackRequest(call({ user: i % 2 ? 'alice' : 'bob', team: 'red', model: i % 3 ? 'gpt-4o' : 'gpt-4o-mini' }));
    await first.close(); // the records were still batched: close writes them
    const { rows } = await tables.admin().query(`SELECT count(*)::int AS n FROM "${table}"`);
    expect(rows[0].n).toBe(30);

    const second = tracker({ clock, records: new PostgresUsageRecords({ connectionString: PG_URL, table, clock }) });
    const summary = await second.getSummary({ team: 'red' });
    expect(summary).toMatchObject({ requests: 30, inputTokens: 30_000 });
    expect(summary.cost).toBeCloseTo(20 * 0.0075 + 10 * 0.00045, 12);
    expect(summary.byModel['gpt-4o-mini']!.requests).toBe(10);
    expect((await second.getSummary({ user: 'alice' })).requests).toBe(15);
  });
});

describe('CostTracker resilience and lifecycle', () => {
  it('tracks the call even when the budget store is unreachable, and says so once', async () => {
    const inner = new MemoryStore({ prefix: uniquePrefix() });
    cleanups.push(() => inner.close());
    let down = true;
    const store = wrapStore(inner, { failRun: () => (down ? new StoreUnavailableError('redis down') : undefined) });
    const logger = recordingLogger();
    const t = tracker({ store, logger, budgets: { user: { day: 1 } } });
    const r = await t.reserve({ user: 'alice', estimatedCost: 0.1 });
    expect(r.unchecked).toBe(true);
    const late = await t.reserve({ user: 'alice', estimatedCost: 0.1 });
    await t.trackRequest(call({ reservation: r }));
    await t.trackRequest(call());
    expect(t.stats()).toMatchObject({ tracked: 2, budgetFailures: 0 });
    expect(t.stats().budgets).toMatchObject({ unchecked: 2, lostCharges: 2 });
    expect((await t.getSummary()).requests).toBe(2);
    expect(logger.warnings.filter((w) => /unreachable/.test(w))).toHaveLength(1);
    down = false;
    await t.trackRequest(call());
    expect(await t.checkBudget('alice', 'day')).toMatchObject({ spent: 0.0075 });
    // A call admitted unchecked and settled once the store is back is charged then.
    await t.trackRequest(call({ reservation: late }));
    expect(await t.checkBudget('alice', 'day')).toMatchObject({ spent: 0.015, reserved: 0 });
  });

  it('uses a Budgets and records you built, and closes only the records', async () => {
    const clock = new ManualClock(T0);
    const budgets = new Budgets({ clock, user: { day: 1 } });
    cleanups.push(() => budgets.close());
    const records = new MemoryUsageRecords({ clock });
    const t = new CostTracker({ prices: fakePrices(), clock, budgets, records });
    expect(t.budgets).toBe(budgets);
    await t.trackRequest(call());
    await t.close();
    await t.close();
    expect((await budgets.check('alice', 'day'))!.spent).toBe(0.0075);
    await expect(t.trackRequest(call())).rejects.toThrow(/closed/);
  });

  it('releases every timer it created on close', async () => {
    const clock = new ManualClock(T0);
    const t = new CostTracker({ prices: fakePrices(), clock, budgets: { user: { day: 1 } } });
    await t.trackRequest(call());
    expect(clock.pendingTimers).toBeGreaterThan(0); // the budgets' own MemoryStore sweep
    await t.close();
    expect(clock.pendingTimers).toBe(0);
  });
});
