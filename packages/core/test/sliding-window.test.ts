import { describe, it, expect } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { AbortedError, InvalidOptionError, RateLimitedError } from '../src/errors.js';
import {
  SlidingWindowLimiter,
  slidingWindowConsume,
  slidingWindowInitial,
  slidingWindowTotal,
  type SlidingWindowConfig,
  type SlidingWindowOptions,
} from '../src/policies/sliding-window.js';
import { errorOf, seededRandom as mulberry32 } from './helpers.js';

const T0 = 1_700_000_000_000; // ManualClock's start: a multiple of every bucket size used below

function make(options: Partial<SlidingWindowOptions> = {}) {
  const clock = new ManualClock(T0);
  const limiter = new SlidingWindowLimiter({
    windows: [{ limit: 3, window: 1000 }],
    buckets: 10,
    clock,
    ...options,
  });
  return { clock, limiter };
}

describe('SlidingWindowLimiter: one window', () => {
  it('admits up to the limit, then denies with exact retryAfterMs, remaining and resetMs', () => {
    const { clock, limiter } = make();
    expect(limiter.check('k')).toEqual({
      allowed: true,
      cost: 1,
      retryAfterMs: 0,
      windows: [{ name: '3-per-1s', limit: 3, windowMs: 1000, remaining: 2, resetMs: 1000 }],
    });
    clock.set(T0 + 250);
    expect(limiter.check('k').windows[0]).toMatchObject({ remaining: 1, resetMs: 1000 });
    clock.set(T0 + 500);
    expect(limiter.check('k').windows[0]).toMatchObject({ remaining: 0, resetMs: 1000 });
    clock.set(T0 + 600);
    // The unit from T0 stops counting at T0+1000; everything is gone at T0+1500.
    expect(limiter.check('k')).toEqual({
      allowed: false,
      cost: 1,
      retryAfterMs: 400,
      windows: [{ name: '3-per-1s', limit: 3, windowMs: 1000, remaining: 0, resetMs: 900 }],
    });
    clock.set(T0 + 999);
    expect(limiter.check('k')).toMatchObject({ allowed: false, retryAfterMs: 1 });
    clock.set(T0 + 1000);
    expect(limiter.check('k')).toMatchObject({ allowed: true, windows: [{ remaining: 0 }] });
  });

  it('names a lone unnamed window after the limiter when the limiter is named', () => {
    expect(make({ name: 'perUser' }).limiter.check('k').windows[0]!.name).toBe('perUser');
    expect(make({ name: 'perUser', windows: [{ name: 'burst', limit: 1, window: 1 }] }).limiter.getUsage('k')[0]!.name).toBe('burst');
    const two = make({ name: 'perUser', windows: [{ limit: 1, window: '1s' }, { limit: 5, window: '1m' }] }).limiter;
    expect(two.getUsage('k').map((u) => u.name)).toEqual(['1-per-1s', '5-per-1m']);
  });

  it('charges the cost of each call', () => {
    const { limiter } = make({ windows: [{ limit: 10, window: '1s' }] });
    expect(limiter.check('k', 6).windows[0]!.remaining).toBe(4);
    expect(limiter.check('k', 5)).toMatchObject({ allowed: false, cost: 5 });
    expect(limiter.check('k', 4).windows[0]!.remaining).toBe(0);
    expect(limiter.check('k', 0).allowed).toBe(true);
  });

  it('tryAcquire gives the decision check gives, as a boolean, and charges the same', async () => {
    const { clock, limiter } = make({ windows: [{ limit: 10, window: '1s' }] });
    expect(limiter.tryAcquire('k', 6)).toBe(true);
    expect(limiter.tryAcquire('k', 5)).toBe(false); // denied: charges nothing
    expect(limiter.getUsage('k')[0]!.used).toBe(6);
    expect(limiter.tryAcquire('k', 4)).toBe(true);
    expect(limiter.check('k').allowed).toBe(false);
    expect(() => limiter.tryAcquire('k', 11)).toThrow(RangeError);
    expect(() => limiter.tryAcquire('k', Number.NaN)).toThrow(RangeError);
    await clock.advance(1000);
    expect(limiter.tryAcquire('k', 10)).toBe(true);
    // While a waiter is queued what frees up is the waiter's: tryAcquire denies, as check does.
    const waiter = limiter.take('k', 3);
    await clock.advance(1000);
    await expect(waiter).resolves.toMatchObject({ allowed: true });
    const queued = limiter.take('k', 8);
    await clock.advance(500);
    expect(limiter.tryAcquire('k', 1)).toBe(false);
    await clock.advance(1000);
    await expect(queued).resolves.toMatchObject({ allowed: true });
  });

  it('frees units sharing a sub-bucket together, W after the latest of them', () => {
    const { clock, limiter } = make({ windows: [{ limit: 2, window: 1000 }], buckets: 4 }); // 250ms buckets
    limiter.check('k');
    clock.set(T0 + 200); // same bucket [T0, T0+250)
    limiter.check('k');
    clock.set(T0 + 1000);
    expect(limiter.check('k')).toMatchObject({ allowed: false, retryAfterMs: 200 });
    expect(limiter.getUsage('k')[0]).toMatchObject({ used: 2, remaining: 0, resetMs: 200 });
    clock.set(T0 + 1200);
    expect(limiter.getUsage('k')[0]).toMatchObject({ used: 0, remaining: 2, resetMs: 0 });
  });

  it('frees units in different sub-buckets one by one', () => {
    const { clock, limiter } = make({ windows: [{ limit: 2, window: 1000 }], buckets: 4 });
    limiter.check('k');
    clock.set(T0 + 600);
    limiter.check('k');
    clock.set(T0 + 999);
    expect(limiter.check('k')).toMatchObject({ allowed: false, retryAfterMs: 1 });
    clock.set(T0 + 1000);
    expect(limiter.getUsage('k')[0]).toMatchObject({ used: 1, remaining: 1, resetMs: 600 });
    clock.set(T0 + 1600);
    expect(limiter.getUsage('k')[0]).toMatchObject({ used: 0, remaining: 2, resetMs: 0 });
  });

  it('throws a RangeError for a cost above the smallest limit', async () => {
    const { limiter } = make({ windows: [{ limit: 5, window: 1000 }, { limit: 3, window: 10_000 }] });
    expect(() => limiter.check('k', 4)).toThrow(/SlidingWindowLimiter "sliding-window": cost must be .* 0 to 3, received 4/);
    expect(() => limiter.check('k', -1)).toThrow(RangeError);
    await expect(limiter.take('k', NaN)).rejects.toThrow(RangeError);
    expect(limiter.check('k', 3).allowed).toBe(true);
  });

  it('caps sub-buckets at one per ms for tiny windows', async () => {
    const { clock, limiter } = make({ windows: [{ limit: 1, window: 3 }], buckets: 60 });
    expect(limiter.check('k').allowed).toBe(true);
    expect(limiter.check('k')).toMatchObject({ allowed: false, retryAfterMs: 3 });
    clock.set(T0 + 3);
    expect(limiter.check('k').allowed).toBe(true);
  });
});

describe('SlidingWindowLimiter: several windows', () => {
  const windows = [
    { limit: 2, window: '1s' },
    { limit: 3, window: '10s' },
  ];

  it('admits only when every window has room and reports each window', () => {
    const { clock, limiter } = make({ windows });
    expect(limiter.check('k').windows.map((w) => [w.name, w.remaining])).toEqual([
      ['2-per-1s', 1],
      ['3-per-10s', 2],
    ]);
    limiter.check('k');
    // Denied by the 1s window only.
    expect(limiter.check('k')).toMatchObject({ allowed: false, retryAfterMs: 1000 });
    expect(limiter.getUsage('k').map((u) => u.used)).toEqual([2, 2]);

    clock.set(T0 + 1000);
    expect(limiter.check('k').windows.map((w) => w.remaining)).toEqual([1, 0]);
    // Now the 10s window denies; nothing may be charged to the 1s window either.
    const denied = limiter.check('k');
    expect(denied).toEqual({
      allowed: false,
      cost: 1,
      retryAfterMs: 9000,
      windows: [
        { name: '2-per-1s', limit: 2, windowMs: 1000, remaining: 1, resetMs: 1000 },
        { name: '3-per-10s', limit: 3, windowMs: 10_000, remaining: 0, resetMs: 10_000 },
      ],
    });
    expect(limiter.getUsage('k')).toEqual([
      { name: '2-per-1s', limit: 2, windowMs: 1000, used: 1, remaining: 1, resetMs: 1000 },
      { name: '3-per-10s', limit: 3, windowMs: 10_000, used: 3, remaining: 0, resetMs: 10_000 },
    ]);
    // Both deny: the wait is the longest.
    expect(limiter.check('k', 2).retryAfterMs).toBe(9000);
    clock.set(T0 + 9999);
    expect(limiter.check('k')).toMatchObject({ allowed: false, retryAfterMs: 1 });
    clock.set(T0 + 10_000); // the two units from T0 leave the 10s window
    expect(limiter.check('k').windows.map((w) => w.remaining)).toEqual([1, 1]);
  });

  it('supports minute/hour/day style stacks with custom names', () => {
    const clock = new ManualClock(0); // aligned to the day, so bucket edges fall on round times
    const { limiter } = make({
      clock,
      buckets: 60,
      windows: [
        { name: 'minute', limit: 2, window: '1m' },
        { name: 'hour', limit: 3, window: '1h' },
        { name: 'day', limit: 4, window: '1d' },
      ],
    });
    const admitted: number[] = [];
    for (let minute = 0; minute < 60 * 24 * 2; minute += 5) {
      clock.set(minute * 60_000);
      if (limiter.check('k').allowed) admitted.push(minute);
    }
    // One call per 5 minutes: the hour caps at 3 (the 0:00 call frees at 1:00) and the day at 4; the
    // 0:00-0:10 calls share a 24-minute day bucket, so they free together at 24:10.
    expect(admitted.slice(0, 5)).toEqual([0, 5, 10, 60, 1450]);
    expect(limiter.getUsage('k').map((u) => u.name)).toEqual(['minute', 'hour', 'day']);
  });

  it('exposes the pure transition over one flat array of numbers', () => {
    const config: SlidingWindowConfig = { limits: [1, 5], windowMs: [100, 1000], buckets: [2, 4], offsets: [0, 3] };
    const state = slidingWindowInitial(config, 1000);
    // 2 header numbers, 3 per window, a count and a time per ring slot (3 + 5 slots).
    expect(state).toHaveLength(2 + 3 * 2 + 2 * (3 + 5));
    expect(slidingWindowConsume(state, config, 1000, 1)).toBe(0);
    expect(slidingWindowConsume(state, config, 1040, 1)).toBe(60); // the unit from 1000 leaves at 1100
    expect([slidingWindowTotal(state, 0), slidingWindowTotal(state, 1)]).toEqual([1, 1]);
    expect(JSON.parse(JSON.stringify(state))).toEqual(state); // plain numbers: serializable as they are
    expect(slidingWindowConsume(state, config, 1100, 1)).toBe(0);
    expect([slidingWindowTotal(state, 0), slidingWindowTotal(state, 1)]).toEqual([1, 2]);
  });
});

describe('SlidingWindowLimiter: strictness property', () => {
  it('never admits more than limit inside any span of window length (randomized, exact log)', async () => {
    for (let seed = 1; seed <= 25; seed++) {
      const random = mulberry32(seed);
      const int = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
      const windowCount = int(1, 3);
      const windows = Array.from({ length: windowCount }, (_, i) => ({
        name: `w${i}`,
        limit: int(1, 8),
        window: int(5, 400),
      }));
      const buckets = int(1, 12);
      const clock = new ManualClock(int(0, 1_000_000));
      const limiter = new SlidingWindowLimiter({ windows, buckets, clock });
      const maxCost = Math.min(3, ...windows.map((w) => w.limit));
      const maxWindow = Math.max(...windows.map((w) => w.window));
      const log: Array<{ at: number; cost: number }> = [];
      const sumAfter = (from: number) => log.reduce((s, e) => (e.at > from ? s + e.cost : s), 0);

      for (let step = 0; step < 1500; step++) {
        const gap = random() < 0.3 ? 0 : int(0, Math.ceil(maxWindow / 4));
        if (random() < 0.03) await clock.advance(gap);
        else clock.set(clock.now() + gap);
        const cost = int(0, maxCost);
        const now = clock.now();
        const d = limiter.check('k', cost);
        if (d.allowed) {
          log.push({ at: now, cost });
          // Strict: the span (now - W, now] holds at most `limit`.
          for (const w of windows) expect(sumAfter(now - w.window)).toBeLessThanOrEqual(w.limit);
        } else {
          // Not needlessly strict: some window is over its limit counting at most one extra bucket.
          const justified = windows.some(
            (w) => sumAfter(now - w.window - Math.ceil(w.window / Math.min(buckets, w.window))) + cost > w.limit,
          );
          expect(justified).toBe(true);
          expect(d.retryAfterMs).toBeGreaterThan(0);
          if (random() < 0.5) {
            // retryAfterMs is exact: one ms earlier is still denied, at the time it is admitted.
            if (d.retryAfterMs > 1) {
              clock.set(now + d.retryAfterMs - 1);
              expect(limiter.check('k', cost).allowed).toBe(false);
            }
            clock.set(now + d.retryAfterMs);
            const retry = limiter.check('k', cost);
            expect(retry.allowed).toBe(true);
            log.push({ at: clock.now(), cost });
            for (const w of windows) expect(sumAfter(clock.now() - w.window)).toBeLessThanOrEqual(w.limit);
          }
        }
        for (const w of d.windows) expect(w.remaining).toBeGreaterThanOrEqual(0);
      }
      expect(log.length).toBeGreaterThan(50);
      limiter.close();
      expect(clock.pendingTimers).toBe(0);
    }
  });
});

describe('SlidingWindowLimiter: take', () => {
  it('waits FIFO until every window allows, and rejects waits beyond timeoutMs', async () => {
    const { clock, limiter } = make({ windows: [{ limit: 2, window: 1000 }] });
    limiter.check('k', 2);
    const events: string[] = [];
    const first = limiter.take('k', 1).then((d) => events.push(`1@${clock.now() - T0}:${d.windows[0]!.remaining}`));
    const second = limiter.take('k', 2).then(() => events.push(`2@${clock.now() - T0}`));
    const late = await limiter.take('k', 1, { timeoutMs: 2000 }).catch((e: unknown) => e);
    expect(late).toBeInstanceOf(RateLimitedError);
    expect(late).toMatchObject({ retryAfterMs: 3000, details: { reason: 'timeout' } });
    expect(limiter.check('k')).toMatchObject({ allowed: false, retryAfterMs: 3000 });
    await clock.advance(1000);
    expect(events).toEqual(['1@1000:1']); // one unit would fit, but the next waiter needs 2: it waits
    await clock.advance(1000);
    expect(events).toEqual(['1@1000:1', '2@2000']);
    await Promise.all([first, second]);
    limiter.close();
    expect(clock.pendingTimers).toBe(0);
  });

  it('waits longer than a Node timer can (monthly quotas) by re-arming', async () => {
    const clock = new ManualClock(0);
    const limiter = new SlidingWindowLimiter({ windows: [{ limit: 1, window: '30d' }], buckets: 30, clock });
    limiter.check('k');
    let done = false;
    const waiter = limiter.take('k').then(() => (done = true));
    await clock.advance(2_147_483_647); // the longest timer fires, finds no room, re-arms
    expect(done).toBe(false);
    expect(clock.pendingTimers).toBe(2); // waiter + sweep
    await clock.advance(30 * 86_400_000 - 2_147_483_647);
    await waiter;
    expect(done).toBe(true);
    limiter.close();
    expect(clock.pendingTimers).toBe(0);
  });

  it('rejects on abort and when the queue is full', async () => {
    const { clock, limiter } = make({ windows: [{ limit: 1, window: 1000 }], maxQueue: 1 });
    limiter.check('k');
    const controller = new AbortController();
    const waiting = limiter.take('k', 1, { signal: controller.signal });
    await expect(limiter.take('k')).rejects.toMatchObject({ details: { reason: 'queue_full' } });
    controller.abort();
    await expect(waiting).rejects.toBeInstanceOf(AbortedError);
    expect(clock.pendingTimers).toBe(1); // sweep only
    const next = limiter.take('k');
    await clock.advance(1100);
    await expect(next).resolves.toMatchObject({ allowed: true });
    limiter.close();
  });
});

describe('SlidingWindowLimiter: keys and memory', () => {
  it('reset forgets a key; getUsage of an unknown key is empty and does not store it', () => {
    const { limiter } = make();
    expect(limiter.getUsage('k')).toEqual([{ name: '3-per-1s', limit: 3, windowMs: 1000, used: 0, remaining: 3, resetMs: 0 }]);
    expect(limiter.size).toBe(0);
    limiter.check('k', 3);
    expect(limiter.check('k').allowed).toBe(false);
    limiter.reset('k');
    expect(limiter.size).toBe(0);
    expect(limiter.check('k', 3).allowed).toBe(true);
  });

  it('sweeps expired keys periodically and on access', async () => {
    const { clock, limiter } = make({ windows: [{ limit: 2, window: 1000 }] }); // sweep every 1000ms
    limiter.check('a');
    await clock.advance(500);
    limiter.check('b');
    await clock.advance(500); // sweep at 1000: a has aged out, b has not
    expect(limiter.size).toBe(1);
    expect(limiter.getUsage('b')[0]!.used).toBe(1);
    await clock.advance(1000);
    expect(limiter.size).toBe(0);
    expect(clock.pendingTimers).toBe(0);

    limiter.check('c');
    clock.set(clock.now() + 5000); // no timer runs
    expect(limiter.getUsage('c')[0]!.used).toBe(0);
    expect(limiter.size).toBe(0);
    limiter.close();
    expect(clock.pendingTimers).toBe(0);
  });

  it('evicts the least recently used key beyond maxKeys', () => {
    const { limiter } = make({ maxKeys: 2 });
    limiter.check('a');
    limiter.check('b');
    limiter.check('a');
    limiter.check('c'); // evicts b
    expect(limiter.size).toBe(2);
    expect(limiter.getUsage('a')[0]!.used).toBe(2);
    expect(limiter.getUsage('b')[0]!.used).toBe(0);
    expect(limiter.getUsage('c')[0]!.used).toBe(1);
    limiter.close();
  });
});

describe('SlidingWindowLimiter: options', () => {
  it.each([
    [{ windows: [] }, 'windows', 'an array of 0'],
    [{ windows: [{ limit: 0, window: '1s' }] }, 'windows.0.limit', '0'],
    [{ windows: [{ limit: 1.5, window: '1s' }] }, 'windows.0.limit', '1.5'],
    [{ windows: [{ limit: 1, window: 'soon' }] }, 'windows.0.window', '"soon"'],
    [{ windows: [{ limit: 1, window: '0ms' }] }, 'windows.0.window', '"0ms"'],
    [{ windows: [{ limit: 1 }] }, 'windows.0.window', 'undefined'],
    [{ windows: Array.from({ length: 11 }, () => ({ limit: 1, window: 1000 })) }, 'windows', 'an array of 11'],
    [{ windows: [{ limit: 1, window: 1000 }], buckets: 0 }, 'buckets', '0'],
    [{ windows: [{ limit: 1, window: 1000 }], maxKeys: 0 }, 'maxKeys', '0'],
    [{ windows: [{ limit: 1, window: 1000, span: 3 }] }, 'windows.0', '{"limit":1,"window":1000,"span":3}'],
    [
      { windows: [{ limit: 1, window: '1m' }, { limit: 1, window: 60_000 }] },
      'windows.1.name',
      'undefined',
    ],
  ])('rejects %j naming the option and value', (options, path, received) => {
    const error = errorOf(() => new SlidingWindowLimiter(options as SlidingWindowOptions));
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect(error.issues[0]).toMatchObject({ path, received });
    expect(error.message).toContain(`${path}: expected`);
  });

  it('explains bad windows in words', () => {
    const error = errorOf(() => new SlidingWindowLimiter({ windows: [{ limit: 1, window: 'soon' }] }));
    expect(error.message).toMatch(/windows\.0\.window: expected a duration: milliseconds .*'30s'.*received "soon"/);
    const dup = errorOf(
      () => new SlidingWindowLimiter({ windows: [{ name: 'x', limit: 1, window: 1 }, { name: 'x', limit: 2, window: 2 }] }),
    );
    expect(dup.message).toContain('windows.1.name: expected a window name not already used by windows.0 ("x")');
  });
});
