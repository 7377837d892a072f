/**
 * StoreLimiter: options, shared decisions on Redis under concurrency, the fallbacks when the store fails
 * (local share of the limit, fail-open, fail-closed) and coming back, and `take`.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { AbortedError, RateLimitedError, StoreUnavailableError } from '../src/errors.js';
import type { AsyncLimiter } from '../src/policies/limit-decision.js';
import type { LimiterSpec } from '../src/policies/limiters.js';
import { createStoreLimiter, StoreLimiter, type StoreLimiterOptions } from '../src/policies/store-limiter.js';
import { MemoryStore } from '../src/stores/memory-store.js';
import { RedisStore } from '../src/stores/redis-store.js';
import type { Store } from '../src/stores/store.js';
import { invalidOption } from './helpers.js';
import { closeRedisStore, freePort, recordingLogger, redisStore, uniquePrefix, wrapStore } from './stores/limiter-fixtures.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function memory(clock = new ManualClock()): { store: MemoryStore; clock: ManualClock } {
  const store = new MemoryStore({ clock, prefix: uniquePrefix() });
  cleanups.push(() => store.close());
  return { store, clock };
}

function limiter(spec: LimiterSpec, options: StoreLimiterOptions): StoreLimiter {
  const l = createStoreLimiter(spec, options);
  cleanups.push(() => l.close());
  return l;
}

/** Resolves once `condition` holds (checked between real I/O turns); for waits on a real Redis. */
async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** A RedisStore on a loopback port nothing listens on: it never connects. */
async function deadRedis(): Promise<RedisStore> {
  const store = new RedisStore({ url: `redis://127.0.0.1:${await freePort()}`, logger: recordingLogger(), connectTimeoutMs: 200 });
  cleanups.push(() => store.close());
  return store;
}

describe('createStoreLimiter options', () => {
  const { store } = memory();
  const make = (options: unknown, spec: unknown = { limit: 1, window: '1s' }) => () =>
    createStoreLimiter(spec as LimiterSpec, options as StoreLimiterOptions);

  it('is an AsyncLimiter named after the spec, the option or the algorithm', () => {
    const named: AsyncLimiter = limiter({ name: 'from-spec', limit: 1, window: '1s' }, { store, name: 'ignored' });
    expect(named.name).toBe('from-spec');
    expect(limiter({ limit: 1, window: '1s' }, { store, name: 'api' }).name).toBe('api');
    expect(limiter({ limit: 1, window: '1s' }, { store }).name).toBe('sliding-window');
    expect(limiter({ algorithm: 'token-bucket', capacity: 1, refillPerSecond: 1 }, { store }).name).toBe('token-bucket');
  });

  it.each([
    ['onStoreFailure', 'fallback', '"fallback"', /one of "local", "open", "closed"/],
    ['replicas', 0, '0', />= 1|> 0/],
    ['replicas', -1, '-1', />= 1|> 0/],
    ['replicas', 1.5, '1.5', /int/],
    ['replicas', '2', '"2"', /number/],
    ['name', '', '""', /length/],
    ['logger', { info() {} }, '{}', /logger with warn/],
    ['clock', Date, 'a function', /Clock/],
  ])('rejects %s = %j, naming the option, the value and what was expected', (path, value, received, expected) => {
    const error = invalidOption(make({ store, [path]: value }));
    expect(error.message).toMatch(/store limiter/);
    expect(error.issues).toHaveLength(1);
    expect(error.issues[0]).toMatchObject({ path, received });
    expect(error.issues[0]!.expected).toMatch(expected);
  });

  it('rejects a missing or foreign store, unknown options and a bad spec', () => {
    expect(invalidOption(make({})).issues[0]).toMatchObject({ path: 'store', received: 'undefined', expected: 'a Store (MemoryStore or RedisStore)' });
    expect(invalidOption(make({ store: { get() {} } })).issues[0]).toMatchObject({ path: 'store' });
    expect(invalidOption(make({ store, replica: 2 })).issues[0]!.expected).toMatch(/unknown: replica/);
    expect(invalidOption(make(undefined)).issues[0]).toMatchObject({ path: '', received: 'undefined' });
    const spec = invalidOption(make({ store, name: 'chat' }, { windows: [{ limit: 0, window: '1m' }] }));
    expect(spec.message).toMatch(/store limiter "chat"/);
    expect(spec.issues[0]).toMatchObject({ path: 'windows.0.limit', received: '0' });
    expect(invalidOption(make({ store }, { algorithm: 'token-bucket', capacity: 5, refillPerSecond: -1 })).issues[0]).toMatchObject({
      path: 'refillPerSecond',
      received: '-1',
    });
  });

  it('rejects bad costs, refunds and timeouts at call time with a RangeError', async () => {
    const l = limiter({ limit: 5, window: '1s' }, { store });
    for (const cost of [-1, 6, Number.NaN, Infinity, '1']) await expect(l.check('k', cost as number)).rejects.toThrow(RangeError);
    await expect(l.refund('k', -1)).rejects.toThrow(/refund must be a finite number >= 0, received -1/);
    await expect(l.take('k', 1, { timeoutMs: -5 })).rejects.toThrow(/timeoutMs must be a number >= 0, received -5/);
    await expect(l.take('k', 9)).rejects.toThrow(/cost must be a finite number from 0 to 5, received 9/);
  });
});

describe('StoreLimiter on Redis', () => {
  it('admits exactly the limit out of 300 concurrent checks from two limiters sharing the store', async () => {
    const store = await redisStore();
    cleanups.push(() => closeRedisStore(store));
    const spec: LimiterSpec = { windows: [{ limit: 100, window: '1h' }, { limit: 1000, window: '1d' }] };
    // Two instances of the same limiter: as two replicas would be.
    const a = limiter(spec, { store, name: 'race' });
    const b = limiter(spec, { store, name: 'race' });
    const decisions = await Promise.all(Array.from({ length: 300 }, (_, i) => (i % 2 ? a : b).check('user')));
    expect(decisions.filter((d) => d.allowed)).toHaveLength(100);
    expect(decisions.every((d) => d.source === 'store')).toBe(true);
    expect((await a.getUsage('user')).map((u) => u.used)).toEqual([100, 100]);
    expect(a.stats()).toMatchObject({ storeDecisions: 150, localDecisions: 0, onStore: true });

    const bucket = limiter({ algorithm: 'token-bucket', capacity: 100, refillPerSecond: 0.001 }, { store, name: 'race-tb' });
    const tokens = await Promise.all(Array.from({ length: 300 }, () => bucket.check('user')));
    expect(tokens.filter((d) => d.allowed)).toHaveLength(100);

    // tryAcquire: the same decisions, as booleans.
    const plain = limiter({ limit: 50, window: '1h' }, { store, name: 'race-bool' });
    const answers = await Promise.all(Array.from({ length: 120 }, () => plain.tryAcquire('user')));
    expect(answers.filter(Boolean)).toHaveLength(50);
    expect((await plain.getUsage('user'))[0]!.used).toBe(50);
    await expect(plain.tryAcquire('user', 51)).rejects.toBeInstanceOf(RangeError);
  });

  it('waits in take() on the injected clock and times out, against Redis too', async () => {
    const clock = new ManualClock();
    const store = await redisStore({ clock });
    cleanups.push(() => closeRedisStore(store));
    const l = limiter({ limit: 1, window: 1000, buckets: 10 }, { store, clock, name: 'take' });
    expect(await l.take('u')).toMatchObject({ allowed: true });
    let done = false;
    const waiting = l.take('u', 1, { timeoutMs: 5000 }).then((d) => ((done = true), d));
    // The denied check travels to Redis in real time; advance once take() sleeps on the clock.
    await until(() => clock.pendingTimers > 0);
    await clock.advance(999);
    expect(done).toBe(false);
    await clock.advance(1);
    await until(() => done);
    await expect(waiting).resolves.toMatchObject({ allowed: true, source: 'store' });
    await expect(l.take('u', 1, { timeoutMs: 500 })).rejects.toMatchObject({ code: 'AMAS_RATE_LIMITED', retryAfterMs: 1000 });
  });
});

describe('StoreLimiter when the store fails', () => {
  it('decides locally on limit / replicas while Redis cannot be reached, and logs it once', async () => {
    const store = await deadRedis();
    const logger = recordingLogger();
    const clock = new ManualClock();
    const l = limiter({ windows: [{ name: 'minute', limit: 10, window: '1m' }, { name: 'hour', limit: 100, window: '1h' }] }, { store, clock, logger, replicas: 4, name: 'api' });
    expect(store.available).toBe(false);
    const first = await l.check('u');
    // This replica's share: 10/4 -> 2 and 100/4 -> 25, under the same window names.
    expect(first).toEqual({
      allowed: true,
      cost: 1,
      retryAfterMs: 0,
      source: 'local',
      windows: [
        { name: 'minute', limit: 2, windowMs: 60_000, remaining: 1, resetMs: 60_000 },
        { name: 'hour', limit: 25, windowMs: 3_600_000, remaining: 24, resetMs: 3_600_000 },
      ],
    });
    expect((await l.check('u')).allowed).toBe(true);
    expect(await l.check('u')).toMatchObject({ allowed: false, retryAfterMs: 60_000, source: 'local' });
    expect((await l.check('other')).allowed).toBe(true);
    expect((await l.getUsage('u')).map((u) => [u.name, u.used])).toEqual([['minute', 2], ['hour', 2]]);
    await l.refund('u', 1);
    expect((await l.check('u')).allowed).toBe(true);
    await expect(l.reset('u')).rejects.toBeInstanceOf(StoreUnavailableError);
    expect((await l.check('u')).windows[0]!.remaining).toBe(1); // reset locally all the same
    expect(logger.warnings).toHaveLength(1);
    expect(logger.warnings[0]).toMatch(/StoreLimiter "api": the store is unavailable .* locally with each limit divided by 4 replicas/);
    expect(l.stats()).toEqual({ storeDecisions: 0, localDecisions: 6, failOpen: 0, failClosed: 0, fallbacks: 1, onStore: false });
  });

  it('gives a token bucket its share of capacity and refill, and never less than 1', async () => {
    const clock = new ManualClock();
    const store = await deadRedis();
    const l = limiter({ algorithm: 'token-bucket', capacity: 10, refillPerSecond: 4 }, { store, clock, replicas: 2, logger: recordingLogger() });
    expect((await l.check('u', 5)).windows[0]).toEqual({ name: 'bucket', limit: 5, windowMs: 2500, remaining: 0, resetMs: 2500 });
    expect(await l.check('u')).toMatchObject({ allowed: false, retryAfterMs: 500 });
    const tiny = limiter({ limit: 3, window: '1s' }, { store, clock, replicas: 10, logger: recordingLogger() });
    // A share below 1 is 1; a cost above the share takes the whole share (it could never pass otherwise).
    expect(await tiny.check('u', 3)).toMatchObject({ allowed: true, cost: 3, windows: [{ limit: 1, remaining: 0 }] });
    expect((await tiny.check('u')).allowed).toBe(false);
  });

  it("fails open or closed instead when asked, and counts it", async () => {
    const store = await deadRedis();
    const open = limiter({ limit: 5, window: '1m' }, { store, onStoreFailure: 'open', logger: recordingLogger() });
    for (let i = 0; i < 10; i++) expect(await open.check('u')).toMatchObject({ allowed: true, retryAfterMs: 0, source: 'fail-open', windows: [{ limit: 5, remaining: 5 }] });
    expect((await open.getUsage('u'))[0]).toMatchObject({ used: 0, remaining: 5 });
    expect(open.stats()).toMatchObject({ failOpen: 10, localDecisions: 0, fallbacks: 1, onStore: false });

    const logger = recordingLogger();
    const clock = new ManualClock();
    const closed = limiter({ limit: 5, window: '1m' }, { store, clock, onStoreFailure: 'closed', logger });
    expect(await closed.check('u')).toMatchObject({ allowed: false, retryAfterMs: 1000, source: 'fail-closed', windows: [{ remaining: 0 }] });
    expect((await closed.getUsage('u'))[0]).toMatchObject({ used: 5, remaining: 0 });
    await expect(closed.take('u', 1, { timeoutMs: 500 })).rejects.toBeInstanceOf(RateLimitedError);
    expect(closed.stats()).toMatchObject({ failClosed: 2 });
    expect(logger.warnings).toEqual([expect.stringMatching(/fail-closed \(denying every call\)/)]);
  });

  it('falls back on a failed run, skips the store while it reports itself down, and comes back by itself', async () => {
    const { store: inner, clock } = memory();
    let down = false;
    let failing: Error | undefined;
    const store = wrapStore(inner, { available: () => !down, failRun: () => failing });
    const logger = recordingLogger();
    const l = limiter({ limit: 4, window: '1m' }, { store, clock, logger, replicas: 2, name: 'flaky' });
    expect(await l.check('u')).toMatchObject({ allowed: true, source: 'store', windows: [{ remaining: 3 }] });

    failing = new StoreUnavailableError('Redis store: check timed out after 500ms');
    expect(await l.check('u')).toMatchObject({ allowed: true, source: 'local', windows: [{ limit: 2, remaining: 1 }] });
    down = true; // the store now knows: no more round trips
    const runs = store.runs;
    expect((await l.check('u')).source).toBe('local');
    expect((await l.check('u')).allowed).toBe(false);
    expect(store.runs).toBe(runs);
    expect(logger.warnings).toEqual([expect.stringMatching(/"flaky": the store is unavailable \(Redis store: check timed out after 500ms\); deciding locally with each limit divided by 2 replicas/)]);

    down = false;
    failing = undefined;
    // Back on the shared window, which still holds the one call the store admitted.
    expect(await l.check('u')).toMatchObject({ allowed: true, source: 'store', windows: [{ remaining: 2 }] });
    expect(logger.warnings).toHaveLength(2);
    expect(logger.warnings[1]).toMatch(/"flaky": the store answers again/);
    expect(l.stats()).toEqual({ storeDecisions: 2, localDecisions: 3, failOpen: 0, failClosed: 0, fallbacks: 1, onStore: true });

    // A second outage is a second fallback, logged again.
    failing = new Error('connect ECONNREFUSED 127.0.0.1:6379');
    expect((await l.check('u')).source).toBe('local');
    expect(l.stats()).toMatchObject({ fallbacks: 2, onStore: false });
    expect(logger.warnings).toHaveLength(3);
  });

  it('lets an error Redis answered with through: that is a bug to see, not an outage to hide', async () => {
    const { store: inner, clock } = memory();
    const reply = Object.assign(new Error('WRONGTYPE Operation against a key holding the wrong kind of value'), { name: 'ReplyError' });
    const store = wrapStore(inner, { failRun: () => reply });
    const logger = recordingLogger();
    const l = limiter({ limit: 4, window: '1m' }, { store, clock, logger });
    await expect(l.check('u')).rejects.toBe(reply);
    await expect(l.getUsage('u')).rejects.toBe(reply);
    await expect(l.refund('u')).rejects.toBe(reply);
    expect(l.stats()).toMatchObject({ storeDecisions: 0, localDecisions: 0, fallbacks: 0, onStore: true });
    expect(logger.warnings).toEqual([]);
  });

  it('refunds to where the charge went: the store while it answers, else the local share', async () => {
    const { store: inner, clock } = memory();
    let down = false;
    const store: Store = wrapStore(inner, { available: () => !down });
    const l = limiter({ limit: 2, window: '1m' }, { store, clock, logger: recordingLogger() });
    await l.check('u', 2);
    await l.refund('u', 1);
    expect((await l.getUsage('u'))[0]).toMatchObject({ used: 1 });
    down = true;
    await l.check('u', 2);
    expect((await l.check('u')).allowed).toBe(false);
    await l.refund('u', 2);
    expect((await l.check('u', 2)).allowed).toBe(true);
  });
});

describe('StoreLimiter.take', () => {
  it('waits for retryAfterMs on the clock, then retries', async () => {
    const { store, clock } = memory();
    const storeTimers = clock.pendingTimers; // MemoryStore's sweep
    const l = limiter({ limit: 2, window: 1000, buckets: 10 }, { store, clock });
    await l.check('u', 2);
    let decided: unknown;
    const waiting = l.take('u', 1, { timeoutMs: 1000 }).then((d) => (decided = d));
    await clock.advance(999);
    expect(decided).toBeUndefined();
    await clock.advance(1);
    await waiting;
    expect(decided).toMatchObject({ allowed: true, windows: [{ remaining: 1 }] });
    expect(clock.pendingTimers).toBe(storeTimers);
  });

  it('rejects at once when the wait would pass timeoutMs', async () => {
    const { store, clock } = memory();
    const l = limiter({ limit: 1, window: '1m' }, { store, clock, name: 'slow' });
    await l.check('u');
    const error = await l.take('u', 1, { timeoutMs: 59_999 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RateLimitedError);
    expect(error).toMatchObject({ retryAfterMs: 60_000, details: { limiter: 'slow', reason: 'timeout', cost: 1 } });
    expect((error as Error).message).toMatch(/waiting 60000ms would exceed timeoutMs 59999/);
    await expect(l.take('u', 1, { timeoutMs: 0 })).rejects.toBeInstanceOf(RateLimitedError);
  });

  it('counts the time already waited against timeoutMs when a retry is denied again', async () => {
    const { store, clock } = memory();
    const l = limiter({ limit: 1, window: 1000, buckets: 10 }, { store, clock });
    await l.check('u');
    const waiting = l.take('u', 1, { timeoutMs: 1500 });
    const outcome = waiting.then(
      () => 'admitted',
      (e: unknown) => e,
    );
    // Someone else takes the freed unit just before the waiter retries.
    await clock.advance(999);
    clock.set(clock.now() + 1);
    expect((await l.check('u')).allowed).toBe(true);
    await clock.advance(0);
    // Waited 1000ms; another 1000ms would pass the 1500ms budget.
    expect(await outcome).toBeInstanceOf(RateLimitedError);
  });

  it('rejects AbortedError when aborted (before or while waiting) or when the limiter closes', async () => {
    const { store, clock } = memory();
    const storeTimers = clock.pendingTimers; // MemoryStore's sweep
    const l = limiter({ limit: 1, window: '1m', maxQueue: 2 }, { store, clock });
    await l.check('u');
    const aborted = new AbortController();
    aborted.abort(new Error('client went away'));
    await expect(l.take('u', 1, { signal: aborted.signal })).rejects.toBeInstanceOf(AbortedError);

    const controller = new AbortController();
    const first = l.take('u', 1, { signal: controller.signal });
    const second = l.take('u');
    await clock.advance(0);
    // The queue holds two waiters (maxQueue 2): a third is refused.
    await expect(l.take('u')).rejects.toMatchObject({ code: 'AMAS_RATE_LIMITED', details: { reason: 'queue_full' } });
    controller.abort();
    await expect(first).rejects.toBeInstanceOf(AbortedError);
    l.close();
    await expect(second).rejects.toThrow(/was closed while waiting/);
    await expect(l.take('u')).rejects.toBeInstanceOf(AbortedError);
    expect(clock.pendingTimers).toBe(storeTimers);
  });
});
