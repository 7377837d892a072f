/**
 * Budgets: reserve / settle / release against day and month budgets on MemoryStore and on a real Redis,
 * under concurrency (100 reservations against a budget that affords 10), period rollover on a ManualClock,
 * expiry of reservations never settled, alerts once per share per period (across replicas), the error a
 * refused call gets, and what happens while the store is unreachable.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { BudgetExceededError, InvalidOptionError, StoreUnavailableError } from '../../src/errors.js';
import { Budgets, periodOf, usd, type BudgetAlert, type BudgetsOptions } from '../../src/ai/budgets.js';
import { BUDGET_RESERVE, BUDGET_SETTLE, BUDGET_STATUS } from '../../src/ai/budget-scripts.js';
import { invalidOption, settle } from '../helpers.js';
import { clusterFixture, stopTestCluster, wrapStore } from '../stores/limiter-fixtures.js';
import { DAY, recordingLogger, redisReplica, STORES, T0, type StoreFixture } from './cost-fixtures.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(() => stopTestCluster());

function budgets(options: BudgetsOptions): Budgets {
  const b = new Budgets({ logger: recordingLogger(), ...options });
  cleanups.push(() => b.close());
  return b;
}

async function fixture(make: (start?: number) => Promise<StoreFixture>, start = T0): Promise<StoreFixture> {
  const f = await make(start);
  cleanups.push(() => f.close());
  return f;
}

describe('Budgets options', () => {
  const cases: Array<[string, unknown, string]> = [
    ['negative budget', { user: { day: -1 } }, 'user.day'],
    ['budget not a number', { users: { alice: { month: '5' } } }, 'users.alice.month'],
    ['unknown period', { team: { week: 1 } }, 'team'],
    ['status', { status: 500 }, 'status'],
    ['reservation ttl', { reservationTtlMs: 0 }, 'reservationTtlMs'],
    ['reservation ttl above a day', { reservationTtlMs: 2 * DAY }, 'reservationTtlMs'],
    ['alert share', { alerts: { at: [0.5, -1] } }, 'alerts.at.1'],
    ['store', { store: {} }, 'store'],
    ['failure mode', { onStoreFailure: 'local' }, 'onStoreFailure'],
    ['name', { name: 'a b' }, 'name'],
    ['unknown option', { budget: 1 }, ''],
  ];
  for (const [label, options, path] of cases) {
    it(`rejects ${label}, naming ${path || 'the unknown key'}`, () => {
      const error = invalidOption(() => new Budgets(options as BudgetsOptions), label);
      expect(error.issues[0]!.path).toBe(path);
      expect(error.message).toContain('Budgets options');
    });
  }

  it('rejects bad scopes and amounts at the call', async () => {
    const b = budgets({ user: { day: 1 } });
    await expect(b.reserve({}, 0.1)).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(b.reserve('', 0.1)).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(b.reserve('alice', -1)).rejects.toThrow(/estimatedCost must be a number of dollars from 0/);
    await expect(b.reserve('alice', Number.NaN)).rejects.toThrow(RangeError);
    const r = await b.reserve('alice', 0.1);
    await expect(b.settle(r, -0.5)).rejects.toThrow(/actualCost/);
    await expect(b.settle({} as never, 0)).rejects.toThrow(/expected a reservation/);
    await expect(b.check({ user: 'a', team: 't' }, 'day')).rejects.toThrow(/not both/);
    await expect(b.check('alice', 'week' as never)).rejects.toBeInstanceOf(InvalidOptionError);
  });
});

describe('periodOf', () => {
  it('gives UTC calendar days and months', () => {
    expect(periodOf('day', T0)).toEqual({ period: 'day', id: '2024-05-10', start: Date.UTC(2024, 4, 10), end: Date.UTC(2024, 4, 11) });
    expect(periodOf('month', T0)).toEqual({ period: 'month', id: '2024-05', start: Date.UTC(2024, 4, 1), end: Date.UTC(2024, 5, 1) });
    expect(periodOf('month', Date.UTC(2024, 11, 31, 23, 59)).end).toBe(Date.UTC(2025, 0, 1));
    expect(periodOf('day', Date.UTC(2024, 1, 29, 23, 59, 59, 999)).id).toBe('2024-02-29');
    expect(usd(1)).toBe('$1.00');
    expect(usd(0.0042)).toBe('$0.0042');
    expect(usd(0.015)).toBe('$0.015');
    expect(usd(1e-9)).toBe('$0.000000001');
    expect(usd(1234.5)).toBe('$1234.50');
  });
});

for (const [name, make] of STORES) {
  describe(`Budgets on ${name}`, () => {
    it('lets exactly 10 of 100 concurrent reservations through a budget that affords 10', async () => {
      const { store, clock } = await fixture(make);
      const b = budgets({ store, clock, user: { day: 1 } });
      const results = await Promise.all(Array.from({ length: 100 }, () => settle(b.reserve('alice', 0.1))));
      const admitted = results.filter((r) => r.value !== undefined);
      expect(admitted).toHaveLength(10);
      for (const r of results.filter((r) => r.error !== undefined)) {
        expect(r.error).toBeInstanceOf(BudgetExceededError);
        expect((r.error as BudgetExceededError).status).toBe(429);
      }
      expect(await b.check('alice', 'day')).toMatchObject({ limit: 1, spent: 0, reserved: 1, remaining: 0 });
      // Settled at exactly the estimate: the budget is spent, nothing more fits.
      await Promise.all(admitted.map((r) => b.settle(r.value!, 0.1)));
      expect(await b.check('alice', 'day')).toMatchObject({ spent: 1, reserved: 0, remaining: 0 });
      await expect(b.reserve('alice', 0)).rejects.toBeInstanceOf(BudgetExceededError);
      expect(b.stats()).toMatchObject({ reserved: 10, denied: 91, settled: 10 });
    });

    it('never lets more through than the budget affords when estimates differ', async () => {
      const { store, clock } = await fixture(make);
      const b = budgets({ store, clock, user: { day: 1 } });
      // 0.10 to 0.199: at most 10 fit, and what is held never exceeds the budget.
      const estimates = Array.from({ length: 100 }, (_, i) => 0.1 + ((i * 37) % 100) / 1000);
      const results = await Promise.all(estimates.map((e) => settle(b.reserve('bob', e))));
      const held = results.flatMap((r) => (r.value ? [r.value.estimatedCost] : []));
      expect(held.length).toBeGreaterThan(0);
      expect(held.length).toBeLessThanOrEqual(10);
      const sum = held.reduce((a, c) => a + c, 0);
      expect(sum).toBeLessThanOrEqual(1 + 1e-9);
      const status = await b.check('bob', 'day');
      expect(status!.reserved).toBeCloseTo(sum, 9);
    });

    it('settle replaces the estimate with the real cost; release gives the hold back', async () => {
      const { store, clock } = await fixture(make);
      const b = budgets({ store, clock, user: { day: 1, month: 10 } });
      const a = await b.reserve('alice', 0.3);
      expect(a.budgets).toEqual([{ kind: 'user', id: 'alice', day: '2024-05-10', month: '2024-05', dayEnd: Date.UTC(2024, 4, 11), monthEnd: Date.UTC(2024, 5, 1) }]);
      expect(await b.check('alice', 'day')).toMatchObject({ spent: 0, reserved: 0.3, remaining: 0.7 });
      expect(await b.settle(a, 0.2)).toEqual({ alerts: [], held: true });
      expect(await b.check('alice', 'day')).toMatchObject({ spent: 0.2, reserved: 0, remaining: 0.8 });

      const c = await b.reserve('alice', 0.5);
      await b.release(c);
      expect(await b.check('alice', 'day')).toMatchObject({ spent: 0.2, reserved: 0, remaining: 0.8 });

      // The real cost may exceed the estimate.
      const d = await b.reserve('alice', 0.1);
      await b.settle(d, 0.45);
      expect(await b.check('alice', 'day')).toMatchObject({ spent: 0.65, reserved: 0 });
      expect(await b.check('alice', 'month')).toMatchObject({ limit: 10, spent: 0.65, reserved: 0, remaining: 9.35 });

      // A second settle or release of the same reservation changes nothing.
      await b.settle(d, 0.45);
      await b.release(d);
      await b.release(c);
      expect(await b.check('alice', 'day')).toMatchObject({ spent: 0.65, reserved: 0 });

      // Sums stay exact (integer nano-dollars): ten settles of 0.1 are 1, not 0.9999999999999999.
      const e = budgets({ store, clock, name: 'exact', user: { day: 2 } });
      for (let i = 0; i < 10; i++) await e.settle(await e.reserve('x', 0.1), 0.1);
      expect((await e.check('x', 'day'))!.spent).toBe(1);
    });

    it('a scope without budget holds nothing and checks nothing', async () => {
      const { store, clock } = await fixture(make);
      const b = budgets({ store, clock, users: { vip: {} }, user: { day: 1 } });
      const r = await b.reserve('vip', 100);
      expect(r.budgets).toEqual([]);
      expect(await b.settle(r, 100)).toEqual({ alerts: [], held: false });
      expect(await b.check('vip', 'day')).toBeUndefined();
      expect(b.applies('vip')).toBe(false);
      expect(b.applies('someone')).toBe(true);
      expect(b.limitsOf('user', 'vip')).toBeUndefined();
    });

    it('per-user entries replace the default budget', async () => {
      const { store, clock } = await fixture(make);
      const b = budgets({ store, clock, user: { day: 1 }, users: { big: { day: 5 } } });
      await b.reserve('big', 4);
      await expect(b.reserve('small', 4)).rejects.toBeInstanceOf(BudgetExceededError);
      expect((await b.check('big', 'day'))!.limit).toBe(5);
    });

    it('starts over with each UTC day and month', async () => {
      const start = Date.UTC(2024, 4, 31, 23, 0); // an hour before June
      const { store, clock } = await fixture(make, start);
      const b = budgets({ store, clock, user: { day: 1, month: 1.5 } });
      await b.settle(await b.reserve('alice', 1), 1);
      await expect(b.reserve('alice', 0.01)).rejects.toThrow(/daily budget of \$1\.00 \(2024-05-31\)/);
      const status = await b.check('alice', 'day');
      expect(status).toMatchObject({ periodId: '2024-05-31', spent: 1, remaining: 0, resetsAt: new Date(Date.UTC(2024, 5, 1)) });

      await clock.advance(3_600_000); // 2024-06-01T00:00Z: a new day and a new month
      expect(await b.check('alice', 'day')).toMatchObject({ periodId: '2024-06-01', spent: 0, remaining: 1 });
      expect(await b.check('alice', 'month')).toMatchObject({ periodId: '2024-06', spent: 0, remaining: 1.5 });
      await b.settle(await b.reserve('alice', 1), 1);

      await clock.advance(DAY); // 2024-06-02: the day resets, the month does not
      await expect(b.reserve('alice', 0.6)).rejects.toThrow(/monthly budget of \$1\.50 \(2024-06\)/);
      const ok = await b.reserve('alice', 0.5);
      expect(await b.check('alice', 'month')).toMatchObject({ spent: 1, reserved: 0.5, remaining: 0 });
      await b.release(ok);
    });

    it('settles a reservation in the period it was made in', async () => {
      const { store, clock } = await fixture(make, Date.UTC(2024, 4, 10, 23, 59, 59));
      const b = budgets({ store, clock, user: { day: 1 } });
      const r = await b.reserve('alice', 0.4);
      await clock.advance(2000); // past midnight
      await b.settle(r, 0.3);
      expect(await b.check('alice', 'day')).toMatchObject({ periodId: '2024-05-11', spent: 0, reserved: 0 });
      // Read as of the day before: the cost landed there.
      const yesterday = budgets({ store, clock: new ManualClock(Date.UTC(2024, 4, 10, 23)), user: { day: 1 } });
      expect(await yesterday.check('alice', 'day')).toMatchObject({ periodId: '2024-05-10', spent: 0.3, reserved: 0 });
    });

    it('frees reservations never settled after reservationTtlMs', async () => {
      const { store, clock } = await fixture(make);
      const b = budgets({ store, clock, user: { day: 1 }, reservationTtlMs: 60_000 });
      const lost = await b.reserve('alice', 1); // e.g. a replica crashed holding it
      await expect(b.reserve('alice', 0.1)).rejects.toThrow(/Retry when calls in flight finish/);
      await clock.advance(59_999);
      await expect(b.reserve('alice', 0.1)).rejects.toBeInstanceOf(BudgetExceededError);
      await clock.advance(1);
      expect(await b.check('alice', 'day')).toMatchObject({ reserved: 0, remaining: 1 });
      const next = await b.reserve('alice', 0.6);
      // The late settle still charges what the call cost; its hold was gone already.
      expect(await b.settle(lost, 0.2)).toEqual({ alerts: [], held: false });
      expect(await b.check('alice', 'day')).toMatchObject({ spent: 0.2, reserved: 0.6, remaining: 0.2 });
      await b.release(next);
    });

    it('checks a user and their team together and releases the user hold when the team refuses', async () => {
      const { store, clock } = await fixture(make);
      const b = budgets({ store, clock, user: { day: 10 }, team: { day: 1 } });
      const r = await b.reserve({ user: 'alice', team: 'red' }, 0.8);
      expect(r.budgets.map((x) => `${x.kind}:${x.id}`)).toEqual(['user:alice', 'team:red']);
      const error = (await settle(b.reserve({ user: 'bob', team: 'red' }, 0.3))).error as BudgetExceededError;
      expect(error).toBeInstanceOf(BudgetExceededError);
      expect(error.message).toMatch(/^Budget exceeded: team "red" has a daily budget of \$1\.00/);
      expect(error.details).toMatchObject({ scope: 'team', id: 'red', period: 'day', limit: 1, spent: 0, reserved: 0.8, requested: 0.3 });
      expect(await b.check('bob', 'day')).toMatchObject({ reserved: 0 });
      await b.settle(r, 0.5);
      expect(await b.check({ team: 'red' }, 'day')).toMatchObject({ spent: 0.5, reserved: 0 });
      expect(await b.check({ user: 'alice' }, 'day')).toMatchObject({ spent: 0.5, reserved: 0 });
      await b.reserve({ user: 'bob', team: 'red' }, 0.3);
    });

    it('explains a refusal: numbers, reset time, Retry-After, and 402 when configured', async () => {
      const { store, clock } = await fixture(make);
      const b = budgets({ store, clock, users: { alice: { month: 2 } }, status: 402 });
      const exceeded: unknown[] = [];
      b.on('exceeded', (e) => exceeded.push(e));
      await b.charge('alice', 1.75);
      const error = (await settle(b.reserve('alice', 0.5))).error as BudgetExceededError;
      expect(error).toBeInstanceOf(BudgetExceededError);
      expect(error.code).toBe('AMAS_BUDGET_EXCEEDED');
      expect(error.status).toBe(402);
      expect(error.message).toBe(
        'Budget exceeded: user "alice" has a monthly budget of $2.00 (2024-05); $1.75 spent and $0.00 held by calls in flight leave $0.25, ' +
          'and this call needs an estimated $0.50. The budget resets at 2024-06-01T00:00:00.000Z.',
      );
      expect(error.retryAfterMs).toBe(Date.UTC(2024, 5, 1) - T0);
      expect(error.headers['retry-after']).toBe(String(Math.ceil((Date.UTC(2024, 5, 1) - T0) / 1000)));
      expect(error.details).toMatchObject({ remaining: 0.25, resetsAt: '2024-06-01T00:00:00.000Z', periodId: '2024-05' });
      expect(exceeded).toEqual([{ scope: 'user', id: 'alice', period: 'month', limit: 2, spent: 1.75, reserved: 0, requested: 0.5 }]);
    });

    it('alerts once per share per period, whichever replica crosses it', async () => {
      const f = await fixture(make);
      // Two replicas: on Redis two connections to the same keys, on memory the same store.
      const other = f.kind === 'redis' ? await redisReplica(f.store, f.clock) : f.store;
      if (other !== f.store) cleanups.push(() => other.close());
      const a = budgets({ store: f.store, clock: f.clock, user: { day: 10 }, alerts: { at: [0.5, 0.8, 1] } });
      const b = budgets({ store: other, clock: f.clock, user: { day: 10 }, alerts: { at: [0.5, 0.8, 1] } });
      const alerts: BudgetAlert[] = [];
      a.on('alert', (x) => alerts.push(x));
      b.on('alert', (x) => alerts.push(x));
      const shares = () => alerts.map((x) => `${x.period}:${x.share}`);

      expect(await a.charge('alice', 4)).toEqual([]);
      const crossed = await b.charge('alice', 1.5); // 5.5: crosses 50%
      expect(crossed).toEqual([{ scope: 'user', id: 'alice', period: 'day', periodId: '2024-05-10', share: 0.5, limit: 10, spent: 5.5, at: T0 }]);
      // Both replicas cross 80% at once: one of them reports it.
      await Promise.all([a.charge('alice', 1.5), b.charge('alice', 1.5)]); // 8.5
      expect(shares()).toEqual(['day:0.5', 'day:0.8']);
      await a.settle(await a.reserve('alice', 1), 1); // 9.5
      await b.charge('alice', 0.4); // 9.9
      expect(shares()).toEqual(['day:0.5', 'day:0.8']);
      await b.charge('alice', 5); // 14.9: past 100% (a charge after the fact is not refused)
      expect(shares()).toEqual(['day:0.5', 'day:0.8', 'day:1']);
      await a.charge('alice', 1);
      expect(alerts).toHaveLength(3);

      // The next day counts from zero and alerts again.
      await f.clock.advance(DAY);
      await a.charge('alice', 9);
      expect(shares()).toEqual(['day:0.5', 'day:0.8', 'day:1', 'day:0.5', 'day:0.8']);
      expect(alerts[3]!.periodId).toBe('2024-05-11');
    });

    it('alerts on monthly budgets too, and several shares crossed at once fire together', async () => {
      const { store, clock } = await fixture(make);
      const b = budgets({ store, clock, team: { month: 100 } });
      const fired = await b.charge({ team: 'red' }, 85);
      expect(fired.map((x) => [x.scope, x.period, x.share, x.spent])).toEqual([
        ['team', 'month', 0.5, 85],
        ['team', 'month', 0.8, 85],
      ]);
      const none = budgets({ store, clock, name: 'quiet', team: { month: 100 }, alerts: false });
      expect(await none.charge({ team: 'red' }, 100)).toEqual([]);
    });

    it('keeps period keys for the rest of the period plus a grace, then lets them expire', async () => {
      const f = await fixture(make);
      const b = budgets({ store: f.store, clock: f.clock, user: { day: 1, month: 5 } });
      await b.settle(await b.reserve('alice', 0.5), 0.5);
      const tag = 'budget:amas:u:alice';
      const dayTtl = await f.ttl(f.store.key(tag, 'd', '2024-05-10'));
      const monthTtl = await f.ttl(f.store.key(tag, 'm', '2024-05'));
      const toMidnight = Date.UTC(2024, 4, 11) - T0;
      expect(dayTtl).toBeGreaterThan(toMidnight + DAY - 5000);
      expect(dayTtl).toBeLessThanOrEqual(toMidnight + DAY);
      expect(monthTtl).toBeGreaterThan(Date.UTC(2024, 5, 1) - T0 + DAY - 5000);
    });

    it('encodes ids, so any user name is one scope of its own', async () => {
      const { store, clock } = await fixture(make);
      const b = budgets({ store, clock, user: { day: 1 } });
      const names = ['a}b', 'a', '{a}', 'a:d:2024', 'ü ñ', '__proto__'];
      for (const n of names) await b.charge(n, 0.25);
      for (const n of names) expect((await b.check(n, 'day'))!.spent).toBe(0.25);
    });
  });
}

describe('Budgets on a 3-node Redis Cluster', () => {
  it('keeps every decision in one slot per scope: user and team budgets, race, settle, alerts', async () => {
    const f = await clusterFixture(T0);
    cleanups.push(() => f.close());
    const b = budgets({ store: f.store, clock: f.clock, user: { day: 10 }, team: { day: 1 } });
    const alerts: BudgetAlert[] = [];
    b.on('alert', (a) => alerts.push(a));
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => settle(b.reserve({ user: `u${i % 7}`, team: 'red' }, 0.1))));
    const admitted = results.flatMap((r) => (r.value ? [r.value] : []));
    expect(admitted).toHaveLength(10);
    await Promise.all(admitted.map((r) => b.settle(r, 0.1)));
    expect(await b.check({ team: 'red' }, 'day')).toMatchObject({ spent: 1, reserved: 0, remaining: 0 });
    const users = await Promise.all(Array.from({ length: 7 }, (_, i) => b.check(`u${i}`, 'day')));
    expect(users.reduce((sum, s) => sum + s!.spent + s!.reserved, 0)).toBeCloseTo(1, 9);
    // Concurrent settles: each share fires exactly once (in whichever order their replies complete).
    expect(alerts.map((a) => `${a.scope}:${a.share}`).sort()).toEqual(['team:0.5', 'team:0.8', 'team:1']);
  });
});

describe('Budgets when the store is unreachable', () => {
  it("admits unchecked calls by default ('open'), counts them and logs once", async () => {
    const f = await fixture(STORES[0]![1]);
    let down = true;
    const store = wrapStore(f.store, { failRun: () => (down ? new StoreUnavailableError('redis down') : undefined) });
    const logger = recordingLogger();
    const b = budgets({ store, clock: f.clock, logger, user: { day: 1 } });
    const r1 = await b.reserve('alice', 5);
    const r2 = await b.reserve('alice', 5);
    expect(r1).toMatchObject({ unchecked: true, budgets: [] });
    await b.settle(r1, 5); // the charge cannot reach the store either
    expect(b.stats()).toMatchObject({ unchecked: 2, storeFailures: 3, lostCharges: 1 });
    expect(logger.warnings).toHaveLength(1);
    expect(logger.warnings[0]).toMatch(/unreachable \(redis down\); calls are admitted unchecked/);
    down = false;
    const r3 = await b.reserve('alice', 0.5);
    expect(r3.unchecked).toBe(false);
    expect(logger.warnings[1]).toMatch(/answers again/);
    // Settled once the store is back: its cost is charged then, and counted against the budget.
    await b.settle(r2, 0.25);
    expect(await b.check('alice', 'day')).toMatchObject({ spent: 0.25, reserved: 0.5 });
    await b.release(r3);
  });

  it("refuses with StoreUnavailableError (503) when onStoreFailure is 'closed'", async () => {
    const f = await fixture(STORES[0]![1]);
    const store = wrapStore(f.store, { failRun: () => new StoreUnavailableError('redis down') });
    const b = budgets({ store, clock: f.clock, user: { day: 1 }, onStoreFailure: 'closed' });
    const error = (await settle(b.reserve('alice', 0.1))).error as StoreUnavailableError;
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect(error.status).toBe(503);
    expect(error.message).toMatch(/budget of user "alice" cannot be checked/);
  });

  it('lets a script error through (a bug is not an outage)', async () => {
    const f = await fixture(STORES[0]![1]);
    const replyError = Object.assign(new Error('ERR wrong'), { name: 'ReplyError' });
    const store = wrapStore(f.store, { failRun: () => replyError });
    const b = budgets({ store, clock: f.clock, user: { day: 1 } });
    await expect(b.reserve('alice', 0.1)).rejects.toBe(replyError);
  });
});

describe('budget scripts', () => {
  it('give the same replies on MemoryStore and Redis for the same sequence', async () => {
    const replies: unknown[][] = [];
    for (const [, make] of STORES) {
      const { store } = await fixture(make);
      const keys = ['h', 'z', 'mh', 'mz'].map((k) => store.key('budget:test:u:x', k));
      const out: unknown[] = [];
      out.push(await store.run(BUDGET_RESERVE, keys, ['r1', 300, 1000, -1, 1000, 60_000, 60_000]));
      out.push(await store.run(BUDGET_RESERVE, keys, ['r2', 800, 1000, -1, 1000, 60_000, 60_000]));
      out.push(await store.run(BUDGET_SETTLE, keys, ['r1', 250, 1000, -1, 60_000, 60_000, '0.2,0.5']));
      out.push(await store.run(BUDGET_SETTLE, keys, ['', 300, 1000, -1, 60_000, 60_000, '0.2,0.5']));
      out.push(await store.run(BUDGET_STATUS, keys, []));
      out.push(await store.run(BUDGET_RESERVE, keys, ['r3', 0, 1000, 2000, 1000, 60_000, 60_000]));
      out.push(await store.run(BUDGET_SETTLE, keys, ['r3', '0', 1000, 2000, 60_000, 60_000, '']));
      replies.push(out);
    }
    expect(replies[0]).toEqual(replies[1]);
    expect(replies[0]).toEqual([
      { allowed: true, deniedBy: undefined, daySpent: 0, dayReserved: 300, monthSpent: 0, monthReserved: 300 },
      { allowed: false, deniedBy: 'day', daySpent: 0, dayReserved: 300, monthSpent: 0, monthReserved: 300 },
      { found: true, daySpent: 250, dayReserved: 0, monthSpent: 250, monthReserved: 0, alerts: ['d:0.2'] },
      { found: false, daySpent: 550, dayReserved: 0, monthSpent: 550, monthReserved: 0, alerts: ['d:0.5'] },
      { daySpent: 550, dayReserved: 0, monthSpent: 550, monthReserved: 0 },
      { allowed: true, deniedBy: undefined, daySpent: 550, dayReserved: 0, monthSpent: 550, monthReserved: 0 },
      { found: true, daySpent: 550, dayReserved: 0, monthSpent: 550, monthReserved: 0, alerts: [] },
    ]);
  });
});
