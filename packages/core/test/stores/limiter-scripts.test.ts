/**
 * The limiter scripts on each store give the in-memory limiters' decisions: random (time, cost) sequences
 * are replayed on SlidingWindowLimiter / TokenBucketLimiter and on a StoreLimiter at the same ManualClock
 * times, and every decision, usage report, refund and reset must match exactly.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { LimitDecision, Limiter } from '../../src/policies/limit-decision.js';
import { createLimiter, type LimiterSpec } from '../../src/policies/limiters.js';
import { createStoreLimiter } from '../../src/policies/store-limiter.js';
import { slidingWindowPackBase, slidingWindowScriptArgs, slidingWindowScripts } from '../../src/stores/limiter-scripts.js';
import type { RedisStore } from '../../src/stores/redis-store.js';
import { seededRandom } from '../helpers.js';
import { closeRedisStore, redisStore, stopTestCluster, STORE_FIXTURES, type LimiterStoreFixture } from './limiter-fixtures.js';

const T0 = 1_700_000_000_000;

/** Strips who decided, so a store decision compares with an in-memory one. */
function plain(decision: LimitDecision): LimitDecision {
  const { source: _source, ...rest } = decision;
  return rest;
}

interface ReplayOptions {
  steps: number;
  seed: number;
  /** Costs drawn from this list (fractions included where the spec allows them). */
  costs: number[];
  /** Largest ordinary time step; one step in 30 jumps up to `jumpMs`. */
  stepMs: number;
  jumpMs: number;
}

/** Replays one random sequence on both limiters and asserts every answer is the same. */
async function replay(f: LimiterStoreFixture, spec: LimiterSpec, o: ReplayOptions): Promise<{ allowed: number; denied: number }> {
  // A limiter name per seed: the seeds share one store, and each replay starts from empty keys.
  const name = `conf-${o.seed}`;
  const reference: Limiter = createLimiter(spec, { clock: f.clock, name });
  const limiter = createStoreLimiter(spec, { store: f.store, clock: f.clock, name });
  const random = seededRandom(o.seed);
  const pick = <T>(list: T[]): T => list[Math.floor(random() * list.length)]!;
  let allowed = 0;
  let denied = 0;
  try {
    for (let step = 0; step < o.steps; step++) {
      const r = random();
      const dt = r < 0.15 ? 0 : r < 0.97 ? Math.floor(random() * o.stepMs) : Math.floor(random() * o.jumpMs);
      f.clock.set(f.clock.now() + dt);
      const key = random() < 0.8 ? 'alice' : 'bob';
      const op = random();
      const where = `step ${step} (t=+${f.clock.now() - T0}ms, ${key})`;
      if (op < 0.8) {
        const cost = pick(o.costs);
        const expected = reference.check(key, cost);
        const actual = await limiter.check(key, cost);
        expect(actual.source, where).toBe('store');
        expect(plain(actual), where).toEqual(expected);
        if (expected.allowed) allowed++;
        else denied++;
      } else if (op < 0.9) {
        const cost = pick(o.costs);
        reference.refund(key, cost);
        await limiter.refund(key, cost);
      } else if (op < 0.99) {
        expect(await limiter.getUsage(key), where).toEqual(reference.getUsage(key));
      } else {
        reference.reset(key);
        await limiter.reset(key);
      }
    }
    for (const key of ['alice', 'bob']) expect(await limiter.getUsage(key)).toEqual(reference.getUsage(key));
  } finally {
    reference.close();
    limiter.close();
  }
  return { allowed, denied };
}

afterAll(async () => {
  await stopTestCluster();
});

describe.each(STORE_FIXTURES)('limiter scripts on %s', (_label, make) => {
  let f: LimiterStoreFixture;
  afterEach(async () => {
    await f?.close();
  });

  describe('sliding window: random sequences decide exactly as SlidingWindowLimiter', () => {
    const cases: Array<[string, LimiterSpec, Partial<ReplayOptions>, number?]> = [
      ['one window, 10 buckets', { limit: 5, window: 1000, buckets: 10 }, { costs: [1, 1, 1, 2, 0], stepMs: 150, jumpMs: 3000 }],
      [
        'two windows, buckets not dividing the window',
        { windows: [{ limit: 3, window: 100 }, { limit: 10, window: 1000 }], buckets: 7 },
        { costs: [1, 1, 2, 3], stepMs: 40, jumpMs: 2500 },
        T0 + 123,
      ],
      [
        'three windows, default buckets (capped at 50 for a 50ms window)',
        { windows: [{ limit: 4, window: 50 }, { limit: 12, window: 700 }, { limit: 30, window: 5000 }] },
        { costs: [1, 1, 1, 2, 4], stepMs: 30, jumpMs: 12_000 },
        T0 + 7,
      ],
      [
        // Fractions binary floats hold exactly; others (0.1) leave float dust whose rounding depends on
        // history, so they are checked by the window guarantee below instead.
        'fractional costs',
        { windows: [{ name: 'second', limit: 3, window: 1000 }, { name: 'minute', limit: 6, window: 60_000 }], buckets: 5 },
        { costs: [0.25, 0.5, 1.5, 0, 2, 0.125], stepMs: 400, jumpMs: 90_000 },
      ],
      ['one bucket per window', { limit: 2, window: 10, buckets: 1 }, { costs: [1, 2, 0], stepMs: 8, jumpMs: 40 }, T0 + 3],
      [
        'large limits, tokens as cost',
        { windows: [{ limit: 1000, window: 1000 }, { limit: 5000, window: 10_000 }], buckets: 20 },
        { costs: [1, 37, 250, 512, 1000], stepMs: 120, jumpMs: 20_000 },
      ],
    ];

    it.each(cases)('%s', async (_name, spec, options, start = T0) => {
      f = await make(start);
      for (const seed of [1, 2, 3]) {
        const { allowed, denied } = await replay(f, spec, { steps: 300, seed, costs: [1], stepMs: 100, jumpMs: 1000, ...options });
        // The sequence exercises both outcomes, or it proves little.
        expect(allowed).toBeGreaterThan(20);
        expect(denied).toBeGreaterThan(20);
      }
    });
  });

  describe('token bucket: random sequences decide exactly as TokenBucketLimiter', () => {
    const cases: Array<[string, LimiterSpec, Partial<ReplayOptions>]> = [
      ['small bucket', { algorithm: 'token-bucket', capacity: 5, refillPerSecond: 2 }, { costs: [1, 1, 2, 0], stepMs: 500, jumpMs: 5000 }],
      ['fractional capacity and rate', { algorithm: 'token-bucket', capacity: 2.5, refillPerSecond: 0.7 }, { costs: [0.5, 1, 2.5, 0.3], stepMs: 900, jumpMs: 8000 }],
      ['fast refill, token costs', { algorithm: 'token-bucket', capacity: 1000, refillPerSecond: 3000 }, { costs: [1, 100, 333, 1000], stepMs: 120, jumpMs: 2000 }],
      // Refill times past TOKEN_BUCKET_PACK_BASE ms: allowed calls reply in full, not packed.
      ['slow refill', { algorithm: 'token-bucket', capacity: 100, refillPerSecond: 0.001 }, { costs: [1, 5, 10, 0.5], stepMs: 600_000, jumpMs: 30_000_000 }],
    ];

    it.each(cases)('%s', async (_name, spec, options) => {
      f = await make();
      for (const seed of [11, 12, 13]) {
        const { allowed, denied } = await replay(f, spec, { steps: 300, seed, costs: [1], stepMs: 100, jumpMs: 1000, ...options });
        expect(allowed).toBeGreaterThan(20);
        expect(denied).toBeGreaterThan(20);
      }
    });
  });

  it('with fractions binary floats cannot hold (0.1), no span of any window ever admits more than its limit', async () => {
    f = await make(T0 + 11);
    const windows = [
      { limit: 2, window: 300 },
      { limit: 5, window: 2000 },
    ];
    const limiter = createStoreLimiter({ windows, buckets: 6 }, { store: f.store, clock: f.clock, name: 'dust' });
    const random = seededRandom(7);
    const costs = [0.1, 0.2, 0.3, 0.7, 1.1];
    const admitted: Array<[number, number]> = [];
    for (let step = 0; step < 1500; step++) {
      f.clock.set(f.clock.now() + Math.floor(random() * (random() < 0.97 ? 60 : 3000)));
      const cost = costs[Math.floor(random() * costs.length)]!;
      if ((await limiter.check('u', cost)).allowed) admitted.push([f.clock.now(), cost]);
    }
    expect(admitted.length).toBeGreaterThan(300);
    for (const { limit, window } of windows) {
      let worst = 0;
      for (const [t] of admitted) {
        let sum = 0;
        for (const [at, cost] of admitted) if (at > t - window && at <= t) sum += cost;
        worst = Math.max(worst, sum);
      }
      expect(worst).toBeLessThanOrEqual(limit + 1e-9);
      expect(worst).toBeGreaterThan(limit - 0.5); // and the window is really used up to its limit
    }
    limiter.close();
  });

  it('a clock stepping back moves no window back', async () => {
    f = await make();
    const windowed = createStoreLimiter({ limit: 3, window: 1000, buckets: 10 }, { store: f.store, clock: f.clock, name: 'back' });
    const bucket = createStoreLimiter({ algorithm: 'token-bucket', capacity: 2, refillPerSecond: 1 }, { store: f.store, clock: f.clock, name: 'back-tb' });
    const t = f.clock.now();
    await windowed.check('u', 3);
    await bucket.check('u', 2);
    f.clock.set(t - 500);
    // Earlier than the charges: nothing has left, and nothing is earned back (the bucket, like
    // TokenBucketLimiter, quotes its refill time from now).
    expect(await windowed.check('u')).toMatchObject({ allowed: false, retryAfterMs: 1500 });
    expect(await bucket.check('u')).toMatchObject({ allowed: false, retryAfterMs: 1000 });
    f.clock.set(t + 999);
    expect((await windowed.check('u')).allowed).toBe(false);
    expect((await bucket.check('u')).allowed).toBe(false);
    f.clock.set(t + 1000);
    expect((await windowed.check('u')).allowed).toBe(true);
    expect((await bucket.check('u')).allowed).toBe(true);
    windowed.close();
    bucket.close();
  });

  it('a window that denies charges nothing in any window', async () => {
    f = await make();
    const limiter = createStoreLimiter({ windows: [{ name: 'burst', limit: 2, window: 1000 }, { name: 'hour', limit: 100, window: '1h' }] }, { store: f.store, clock: f.clock });
    expect((await limiter.check('u', 2)).allowed).toBe(true);
    for (let i = 0; i < 5; i++) {
      const denied = await limiter.check('u');
      expect(denied).toMatchObject({ allowed: false, retryAfterMs: 1000, source: 'store' });
      expect(denied.windows.map((w) => [w.name, w.remaining])).toEqual([['burst', 0], ['hour', 98]]);
    }
    expect((await limiter.getUsage('u')).map((w) => w.used)).toEqual([2, 2]);
    f.clock.set(f.clock.now() + 1000);
    expect(await limiter.check('u')).toMatchObject({ allowed: true, windows: [{ remaining: 1 }, { remaining: 97 }] });
    limiter.close();
  });

  it('refund gives units back in every window, never more than held, and only for keys with state', async () => {
    f = await make();
    const limiter = createStoreLimiter({ windows: [{ name: 'min', limit: 3, window: '1m' }, { name: 'hour', limit: 5, window: '1h' }] }, { store: f.store, clock: f.clock });
    await limiter.check('u', 2);
    await limiter.refund('u', 1);
    expect((await limiter.getUsage('u')).map((w) => w.used)).toEqual([1, 1]);
    await limiter.refund('u', 5);
    expect((await limiter.getUsage('u')).map((w) => w.used)).toEqual([0, 0]);
    await limiter.refund('nobody', 1);
    expect(await f.ttl(f.store.key('rl:sliding-window:nobody'))).toBe(-2);
    await expect(limiter.refund('u', -1)).rejects.toThrow(RangeError);
    for (let i = 0; i < 3; i++) expect((await limiter.check('u')).allowed).toBe(true);
    expect((await limiter.check('u')).allowed).toBe(false);
    limiter.close();
  });

  it('usage reports used, remaining and reset per window; reset forgets the key', async () => {
    f = await make();
    const limiter = createStoreLimiter({ limit: 10, window: '10s', buckets: 10 }, { store: f.store, clock: f.clock, name: 'api' });
    expect(await limiter.getUsage('u')).toEqual([{ name: 'api', limit: 10, windowMs: 10_000, used: 0, remaining: 10, resetMs: 0 }]);
    await limiter.check('u', 4);
    f.clock.set(f.clock.now() + 2500);
    expect(await limiter.getUsage('u')).toEqual([{ name: 'api', limit: 10, windowMs: 10_000, used: 4, remaining: 6, resetMs: 7500 }]);
    await limiter.reset('u');
    expect(await f.ttl(f.store.key('rl:api:u'))).toBe(-2);
    expect((await limiter.getUsage('u'))[0]).toMatchObject({ used: 0, remaining: 10 });
    expect(await limiter.check('u', 10)).toMatchObject({ allowed: true });
    limiter.close();
  });

  it('keeps the keys of different users and of different limiters apart', async () => {
    f = await make();
    const a = createStoreLimiter({ limit: 2, window: '1m' }, { store: f.store, clock: f.clock, name: 'a' });
    const b = createStoreLimiter({ limit: 2, window: '1m' }, { store: f.store, clock: f.clock, name: 'b' });
    expect((await a.check('alice', 2)).allowed).toBe(true);
    expect((await a.check('alice')).allowed).toBe(false);
    expect((await a.check('bob')).windows[0]!.remaining).toBe(1);
    expect((await b.check('alice', 2)).allowed).toBe(true);
    expect(await f.ttl(f.store.key('rl:a:alice'))).toBeGreaterThan(0);
    expect(await f.ttl(f.store.key('rl:b:alice'))).toBeGreaterThan(0);
    a.close();
    b.close();
  });

  it('counts tokens as well as requests: a cost per call', async () => {
    f = await make();
    const tokens = createStoreLimiter({ windows: [{ name: 'tpm', limit: 10_000, window: '1m' }] }, { store: f.store, clock: f.clock });
    expect(await tokens.check('u', 6000)).toMatchObject({ allowed: true, cost: 6000, windows: [{ remaining: 4000 }] });
    expect(await tokens.check('u', 4001)).toMatchObject({ allowed: false, retryAfterMs: 60_000, windows: [{ remaining: 4000 }] });
    expect(await tokens.check('u', 4000)).toMatchObject({ allowed: true, windows: [{ remaining: 0 }] });
    const bucket = createStoreLimiter({ algorithm: 'token-bucket', capacity: 1000, refillPerSecond: 100 }, { store: f.store, clock: f.clock });
    expect(await bucket.check('u', 900)).toMatchObject({ allowed: true, windows: [{ name: 'bucket', limit: 1000, remaining: 100, resetMs: 9000 }] });
    expect(await bucket.check('u', 300)).toMatchObject({ allowed: false, retryAfterMs: 2000 });
    f.clock.set(f.clock.now() + 2000);
    expect(await bucket.check('u', 300)).toMatchObject({ allowed: true, windows: [{ remaining: 0 }] });
    await expect(tokens.check('u', 10_001)).rejects.toThrow(/cost must be a finite number from 0 to 10000, received 10001/);
    await expect(bucket.check('u', Number.NaN)).rejects.toThrow(RangeError);
    tokens.close();
    bucket.close();
  });

  it('state written under other windows is dropped, not misread', async () => {
    f = await make();
    const before = createStoreLimiter({ limit: 2, window: '1m' }, { store: f.store, clock: f.clock, name: 'same' });
    await before.check('u', 2);
    const sameWindowsNewLimit = createStoreLimiter({ limit: 5, window: '1m' }, { store: f.store, clock: f.clock, name: 'same' });
    // A new limit keeps what was counted (a deploy raising a limit must not hand out a fresh window)...
    expect(await sameWindowsNewLimit.check('u')).toMatchObject({ allowed: true, windows: [{ remaining: 2 }] });
    const otherWindows = createStoreLimiter({ windows: [{ limit: 2, window: '1m' }, { limit: 9, window: '1h' }] }, { store: f.store, clock: f.clock, name: 'same' });
    // ...other windows cannot reuse the state, so they start over.
    expect(await otherWindows.check('u')).toMatchObject({ allowed: true, windows: [{ remaining: 1 }, { remaining: 8 }] });
    before.close();
    sameWindowsNewLimit.close();
    otherWindows.close();
  });

  it('keys expire once idle: the longest window plus one bucket after the last charge', async () => {
    f = await make();
    const limiter = createStoreLimiter({ windows: [{ limit: 5, window: 1000 }, { limit: 50, window: 60_000 }], buckets: 60 }, { store: f.store, clock: f.clock, name: 'ttl' });
    await limiter.check('u');
    const ttl = await f.ttl(f.store.key('rl:ttl:u'));
    // 61s (1m + one 1s bucket) plus 1/8 of it as slack: Redis refreshes the expiry once per slack, not per call.
    // MemoryStore expires on the same clock: exact. Redis with a test clock keeps keys at least 60s of real time.
    if (f.store.kind === 'memory') expect(ttl).toBe(61_000 + 7625);
    else expect(ttl).toBeGreaterThan(59_000);
    const bucket = createStoreLimiter({ algorithm: 'token-bucket', capacity: 10, refillPerSecond: 2 }, { store: f.store, clock: f.clock, name: 'tb' });
    await bucket.check('u', 4);
    // Full again at most 5s after a charge (capacity / refill), plus 1ms and slack.
    if (f.store.kind === 'memory') expect(await f.ttl(f.store.key('rl:tb:u'))).toBe(5001 + 626);
    // A call that charges nothing on a key without state writes nothing.
    expect(await bucket.check('v', 0)).toMatchObject({ allowed: true, windows: [{ remaining: 10 }] });
    expect(await limiter.check('v', 0)).toMatchObject({ allowed: true, windows: [{ remaining: 5 }, { remaining: 50 }] });
    expect(await f.ttl(f.store.key('rl:tb:v'))).toBe(-2);
    expect(await f.ttl(f.store.key('rl:ttl:v'))).toBe(-2);
    limiter.close();
    bucket.close();
  });
});

describe('limiter scripts on RedisStore with server time (no test clock)', () => {
  let store: RedisStore | undefined;
  afterEach(async () => {
    if (store) await closeRedisStore(store);
    store = undefined;
  });

  it('reads Redis TIME: windows, waits and TTLs follow the server clock', async () => {
    store = await redisStore();
    const limiter = createStoreLimiter({ windows: [{ limit: 3, window: '10s' }, { limit: 5, window: '1m' }] }, { store, name: 'server-time' });
    for (let i = 0; i < 3; i++) expect(await limiter.check('u')).toMatchObject({ allowed: true, source: 'store' });
    const denied = await limiter.check('u');
    expect(denied.allowed).toBe(false);
    expect(denied.retryAfterMs).toBeGreaterThan(0);
    expect(denied.retryAfterMs).toBeLessThanOrEqual(10_000);
    expect(denied.windows[0]!.resetMs).toBeGreaterThan(0);
    expect(denied.windows[0]!.resetMs).toBeLessThanOrEqual(10_000);
    expect(denied.windows[1]).toMatchObject({ remaining: 2 });
    expect((await limiter.getUsage('u')).map((w) => w.used)).toEqual([3, 3]);
    const ttl = await store.connection.pttl(store.key('rl:server-time:u'));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(61_000 + 7625);

    const bucket = createStoreLimiter({ algorithm: 'token-bucket', capacity: 2, refillPerSecond: 0.1 }, { store, name: 'server-time-tb' });
    expect((await bucket.check('u', 2)).allowed).toBe(true);
    const wait = await bucket.check('u');
    expect(wait.allowed).toBe(false);
    expect(wait.retryAfterMs).toBeGreaterThan(9_000);
    expect(wait.retryAfterMs).toBeLessThanOrEqual(10_000);
    const bucketTtl = await store.connection.pttl(store.key('rl:server-time-tb:u'));
    expect(bucketTtl).toBeGreaterThan(15_000);
    expect(bucketTtl).toBeLessThanOrEqual(20_001 + 2501);
    limiter.close();
    bucket.close();
  });

  it('keeps an allowed call inside the current buckets on the hot state: one small field, no bucket lists', async () => {
    store = await redisStore();
    const key = store.key('rl:lean:u');
    const tail = slidingWindowScriptArgs({ limits: [100, 1000, 10_000], windowMs: [3_600_000, 7_200_000, 86_400_000], buckets: [60, 60, 60] });
    const check = slidingWindowScripts(3).check;
    const base = slidingWindowPackBase(3);
    for (let used = 1; used <= 5; used++) {
      // Allowed, newest charge now in every window: one integer, the used counts packed (window 1 lowest).
      expect(await store.run(check, [key], [1, ...tail])).toBe(used + base * (used + base * used));
    }
    // Buckets of a minute and more: the five calls stay in the head buckets, so no q<w> field was written.
    expect((await store.connection.hkeys(key)).sort()).toEqual([tail[0], 'c'].sort());
    expect(await store.connection.hstrlen(key, tail[0] as string)).toBe(8 * (2 + 3 * 3));
  });
});
