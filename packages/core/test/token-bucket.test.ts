import { describe, it, expect } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { AbortedError, InvalidOptionError, RateLimitedError } from '../src/errors.js';
import {
  TokenBucketLimiter,
  tokenBucketConsume,
  tokenBucketInitial,
  type TokenBucketOptions,
} from '../src/policies/token-bucket.js';
import { errorOf } from './helpers.js';

function make(options: Partial<TokenBucketOptions> = {}) {
  const clock = new ManualClock();
  const limiter = new TokenBucketLimiter({ capacity: 5, refillPerSecond: 1, clock, ...options });
  return { clock, limiter };
}

describe('TokenBucketLimiter: decisions', () => {
  it('admits a full burst, then denies with the exact wait', () => {
    const { limiter } = make({ capacity: 5, refillPerSecond: 2 });
    const remaining: number[] = [];
    for (let i = 0; i < 5; i++) {
      const d = limiter.check('k');
      expect(d.allowed).toBe(true);
      expect(d.retryAfterMs).toBe(0);
      remaining.push(d.windows[0]!.remaining);
    }
    expect(remaining).toEqual([4, 3, 2, 1, 0]);
    const denied = limiter.check('k');
    expect(denied).toEqual({
      allowed: false,
      cost: 1,
      retryAfterMs: 500,
      windows: [{ name: 'bucket', limit: 5, windowMs: 2500, remaining: 0, resetMs: 2500 }],
    });
  });

  it('refills continuously and never beyond capacity', async () => {
    const { clock, limiter } = make({ capacity: 4, refillPerSecond: 2 });
    for (let i = 0; i < 4; i++) limiter.check('k');
    await clock.advance(250); // half a token
    expect(limiter.check('k')).toMatchObject({ allowed: false, retryAfterMs: 250 });
    await clock.advance(250);
    expect(limiter.check('k')).toMatchObject({ allowed: true, windows: [{ remaining: 0 }] });
    await clock.advance(60_000);
    expect(limiter.check('k').windows[0]!.remaining).toBe(3); // capped at 4, minus this call
  });

  it('handles refill rates that do not divide a second evenly', async () => {
    const { clock, limiter } = make({ capacity: 1, refillPerSecond: 3 });
    expect(limiter.check('k').allowed).toBe(true);
    const denied = limiter.check('k');
    expect(denied.retryAfterMs).toBe(334); // 333.33.. rounded up
    await clock.advance(333);
    expect(limiter.check('k').allowed).toBe(false);
    await clock.advance(1);
    expect(limiter.check('k').allowed).toBe(true);
  });

  it('accumulates fractional refill across calls', async () => {
    const { clock, limiter } = make({ capacity: 2, refillPerSecond: 0.5 });
    limiter.check('k', 2);
    for (let i = 0; i < 3; i++) {
      await clock.advance(500);
      expect(limiter.check('k').allowed).toBe(false); // each denial keeps the partial refill
    }
    await clock.advance(500);
    expect(limiter.check('k').allowed).toBe(true); // 4 x 500ms at 0.5/s = 1 token
  });

  it('charges the cost of each call and takes nothing on denial', () => {
    const { limiter } = make({ capacity: 10, refillPerSecond: 1 });
    expect(limiter.check('k', 7)).toMatchObject({ allowed: true, cost: 7, windows: [{ remaining: 3, resetMs: 7000 }] });
    expect(limiter.check('k', 4)).toMatchObject({ allowed: false, cost: 4, retryAfterMs: 1000 });
    expect(limiter.check('k', 3)).toMatchObject({ allowed: true, windows: [{ remaining: 0 }] });
    expect(limiter.check('k', 0)).toMatchObject({ allowed: true, cost: 0, retryAfterMs: 0 });
  });

  it('tryTake is the non-blocking check', () => {
    const { limiter } = make({ capacity: 1 });
    expect(limiter.tryTake('k').allowed).toBe(true);
    expect(limiter.tryTake('k').allowed).toBe(false);
    expect(limiter.getUsage('k')[0]!.used).toBe(1);
  });

  it('tryAcquire gives the decision check gives, as a boolean, and charges the same', async () => {
    const { clock, limiter } = make({ capacity: 3, refillPerSecond: 1 });
    expect(limiter.tryAcquire('k', 2)).toBe(true);
    expect(limiter.tryAcquire('k', 2)).toBe(false); // denied: takes nothing
    expect(limiter.getUsage('k')[0]!.used).toBe(2);
    expect(limiter.tryAcquire('k')).toBe(true);
    expect(limiter.tryAcquire('k')).toBe(false);
    expect(() => limiter.tryAcquire('k', 4)).toThrow(RangeError);
    await clock.advance(1000);
    expect(limiter.tryAcquire('k')).toBe(true);
    const waiter = limiter.take('k', 2);
    await clock.advance(1000); // one token back, promised to the waiter
    expect(limiter.tryAcquire('k')).toBe(false);
    await clock.advance(1000);
    await expect(waiter).resolves.toMatchObject({ allowed: true });
  });

  it('keeps keys independent', () => {
    const { limiter } = make({ capacity: 1 });
    expect(limiter.check('a').allowed).toBe(true);
    expect(limiter.check('a').allowed).toBe(false);
    expect(limiter.check('b').allowed).toBe(true);
    expect(limiter.size).toBe(2);
  });

  it('throws a RangeError for costs that could never be admitted or are not numbers', async () => {
    const { limiter } = make({ capacity: 5 });
    for (const bad of [6, -1, NaN, Infinity, '1']) {
      expect(() => limiter.check('k', bad as number)).toThrow(RangeError);
    }
    expect(() => limiter.check('k', 6)).toThrow(/TokenBucketLimiter "token-bucket": cost must be .* 0 to 5, received 6/);
    await expect(limiter.take('k', 9)).rejects.toThrow(RangeError);
    await expect(limiter.take('k', 1, { timeoutMs: -1 })).rejects.toThrow(/timeoutMs/);
  });

  it('reports usage without creating keys, and reset restores a full bucket', async () => {
    const { clock, limiter } = make({ capacity: 4, refillPerSecond: 1 });
    expect(limiter.getUsage('k')).toEqual([
      { name: 'bucket', limit: 4, windowMs: 4000, used: 0, remaining: 4, resetMs: 0 },
    ]);
    expect(limiter.size).toBe(0);
    limiter.check('k', 3);
    await clock.advance(1500);
    expect(limiter.getUsage('k')).toEqual([
      { name: 'bucket', limit: 4, windowMs: 4000, used: 2, remaining: 2, resetMs: 1500 },
    ]);
    limiter.reset('k');
    expect(limiter.size).toBe(0);
    expect(limiter.check('k', 4).allowed).toBe(true);
  });

  it('exposes the pure transition for other stores', () => {
    const config = { capacity: 2, refillPerMs: 0.001 };
    const state = tokenBucketInitial(config, 0);
    expect(tokenBucketConsume(state, config, 0, 2)).toBe(0);
    expect(state).toEqual({ tokens: 0, updatedAt: 0 });
    expect(tokenBucketConsume(state, config, 400, 1)).toBe(600);
    expect(state).toEqual({ tokens: 0.4, updatedAt: 400 });
    expect(tokenBucketConsume(state, config, 1000, 1)).toBe(0);
  });
});

describe('TokenBucketLimiter: take', () => {
  it('resolves at once when tokens are there', async () => {
    const { limiter } = make();
    await expect(limiter.take('k', 2)).resolves.toMatchObject({ allowed: true, cost: 2, windows: [{ remaining: 3 }] });
  });

  it('waits until tokens suffice and serves waiters in FIFO order', async () => {
    const { clock, limiter } = make({ capacity: 3, refillPerSecond: 1 });
    limiter.check('k', 3);
    const order: string[] = [];
    const big = limiter.take('k', 3).then((d) => order.push(`big@${clock.now() - start}:${d.windows[0]!.remaining}`));
    const small = limiter.take('k', 1).then(() => order.push(`small@${clock.now() - start}`));
    const start = clock.now();
    await clock.advance(1000);
    expect(order).toEqual([]); // one token is there, but the small request must not jump the big one
    await clock.advance(2000);
    expect(order).toEqual(['big@3000:0']);
    await clock.advance(1000);
    expect(order).toEqual(['big@3000:0', 'small@4000']);
    await Promise.all([big, small]);
    expect(clock.pendingTimers).toBe(1); // only the expiry sweep
    limiter.close();
    expect(clock.pendingTimers).toBe(0);
  });

  it('rejects at once when the projected wait, including the queue ahead, exceeds timeoutMs', async () => {
    const { clock, limiter } = make({ capacity: 2, refillPerSecond: 1 });
    limiter.check('k', 2);
    const first = limiter.take('k', 2, { timeoutMs: 2000 }); // admitted at +2s
    const error = await limiter.take('k', 1, { timeoutMs: 2500 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RateLimitedError);
    expect(error).toMatchObject({ retryAfterMs: 3000, status: 429, details: { reason: 'timeout', limiter: 'token-bucket' } });
    const second = limiter.take('k', 1, { timeoutMs: 3000 });
    await clock.advance(3000);
    await expect(first).resolves.toMatchObject({ allowed: true });
    await expect(second).resolves.toMatchObject({ allowed: true });
    limiter.close();
  });

  it('rejects when the wait queue is full', async () => {
    const { clock, limiter } = make({ capacity: 1, maxQueue: 1 });
    limiter.check('k');
    const waiting = limiter.take('k');
    await expect(limiter.take('other-key-shares-the-queue-bound')).resolves.toMatchObject({ allowed: true });
    const error = await limiter.take('k').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RateLimitedError);
    expect(error).toMatchObject({ details: { reason: 'queue_full' }, retryAfterMs: 2000 });
    await clock.advance(1000);
    await expect(waiting).resolves.toMatchObject({ allowed: true });
    limiter.close();
  });

  it('never waits with maxQueue 0', async () => {
    const { limiter } = make({ capacity: 1, maxQueue: 0 });
    limiter.check('k');
    await expect(limiter.take('k')).rejects.toBeInstanceOf(RateLimitedError);
  });

  it('rejects with AbortedError on abort and lets the next waiter move up', async () => {
    const { clock, limiter } = make({ capacity: 4, refillPerSecond: 1 });
    limiter.check('k', 4);
    const controller = new AbortController();
    const big = limiter.take('k', 4, { signal: controller.signal });
    const small = limiter.take('k', 1);
    let smallAt = -1;
    void small.then(() => (smallAt = clock.now() - start));
    const start = clock.now();
    await clock.advance(500);
    controller.abort(new Error('caller gave up'));
    const error = await big.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AbortedError);
    expect((error as Error).cause).toEqual(new Error('caller gave up'));
    await clock.advance(499);
    expect(smallAt).toBe(-1);
    await clock.advance(1);
    expect(smallAt).toBe(1000); // served as soon as one token exists, not after the aborted 4
    expect(clock.pendingTimers).toBe(1); // sweep only
    limiter.close();
  });

  it('rejects a take whose signal is already aborted without queueing', async () => {
    const { limiter } = make({ capacity: 1 });
    await expect(limiter.take('k', 1, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortedError);
    expect(limiter.size).toBe(0);
  });

  it('denies check while waiters are queued, projecting the wait behind them', async () => {
    const { clock, limiter } = make({ capacity: 2, refillPerSecond: 1 });
    limiter.check('k', 2);
    const waiter = limiter.take('k', 2);
    await clock.advance(1000); // one token back, but it is promised to the waiter
    const d = limiter.check('k', 1);
    expect(d).toMatchObject({ allowed: false, retryAfterMs: 2000, windows: [{ remaining: 0 }] }); // promised away
    await clock.advance(1000);
    await expect(waiter).resolves.toMatchObject({ allowed: true });
    expect(limiter.check('k', 1).allowed).toBe(false);
    await clock.advance(1000);
    expect(limiter.check('k', 1).allowed).toBe(true);
    limiter.close();
  });

  it('reset while waiters are queued serves them at once', async () => {
    const { clock, limiter } = make({ capacity: 2, refillPerSecond: 1 });
    limiter.check('k', 2);
    const waiter = limiter.take('k', 2);
    limiter.reset('k');
    await clock.advance(0);
    await expect(waiter).resolves.toMatchObject({ allowed: true, windows: [{ remaining: 0 }] });
    limiter.close();
  });

  it('close rejects waiters, stops every timer and drops the keys', async () => {
    const { clock, limiter } = make({ capacity: 1 });
    limiter.check('a');
    const waiter = limiter.take('a');
    limiter.check('b');
    expect(clock.pendingTimers).toBe(2); // waiter + sweep
    limiter.close();
    await expect(waiter).rejects.toBeInstanceOf(AbortedError);
    expect(clock.pendingTimers).toBe(0);
    expect(limiter.size).toBe(0);
    await expect(limiter.take('a')).rejects.toBeInstanceOf(AbortedError);
    expect(limiter.check('c').allowed).toBe(true); // still answers, but schedules nothing
    expect(clock.pendingTimers).toBe(0);
  });
});

describe('TokenBucketLimiter: memory', () => {
  it('sweeps keys whose bucket has refilled, through the injected clock', async () => {
    const { clock, limiter } = make({ capacity: 4, refillPerSecond: 1 }); // sweeps every 4s (time to fill)
    limiter.check('a', 1);
    expect(clock.pendingTimers).toBe(1);
    await clock.advance(3000);
    limiter.check('b', 4);
    await clock.advance(1000); // sweep at 4s: a is full again, b is not
    expect(limiter.size).toBe(1);
    expect(limiter.getUsage('b')[0]!.used).toBe(3);
    await clock.advance(4000); // sweep at 8s: b is full
    expect(limiter.size).toBe(0);
    expect(clock.pendingTimers).toBe(0); // no keys, no sweep timer
    limiter.check('c');
    expect(clock.pendingTimers).toBe(1);
    limiter.close();
    expect(clock.pendingTimers).toBe(0);
  });

  it('drops a fully refilled key lazily when its usage is read', async () => {
    const { clock, limiter } = make({ capacity: 2, refillPerSecond: 1 });
    limiter.check('a');
    clock.set(clock.now() + 5000); // no timers fire
    expect(limiter.size).toBe(1);
    expect(limiter.getUsage('a')[0]!.remaining).toBe(2);
    expect(limiter.size).toBe(0);
    limiter.close();
  });

  it('evicts the least recently used key beyond maxKeys, never one with waiters', async () => {
    const { clock, limiter } = make({ capacity: 1, maxKeys: 3 });
    limiter.check('a');
    limiter.check('b');
    limiter.check('c');
    limiter.check('a'); // a is now the most recent
    limiter.check('d'); // evicts b
    expect(limiter.size).toBe(3);
    expect(limiter.getUsage('b')[0]!.used).toBe(0);
    expect(limiter.getUsage('a')[0]!.used).toBe(1);
    expect(limiter.getUsage('c')[0]!.used).toBe(1);

    const waiter = limiter.take('c'); // c now has a waiter: LRU order is a, d, c
    limiter.check('a'); // order d, c, a
    limiter.check('e'); // evicts d
    limiter.check('f'); // c is the oldest but has a waiter: evicts a
    expect(limiter.getUsage('c')[0]!.used).toBe(1);
    expect(limiter.getUsage('d')[0]!.used).toBe(0);
    expect(limiter.getUsage('a')[0]!.used).toBe(0);
    await clock.advance(1000);
    await expect(waiter).resolves.toMatchObject({ allowed: true });
    limiter.close();
  });
});

describe('TokenBucketLimiter: options', () => {
  it.each([
    [{ capacity: 0, refillPerSecond: 1 }, 'capacity', '0'],
    [{ capacity: 5, refillPerSecond: -1 }, 'refillPerSecond', '-1'],
    [{ capacity: 5 }, 'refillPerSecond', 'undefined'],
    [{ capacity: 5, refillPerSecond: 1, maxQueue: -1 }, 'maxQueue', '-1'],
    [{ capacity: 5, refillPerSecond: 1, maxKeys: 1.5 }, 'maxKeys', '1.5'],
    [{ capacity: 5, refillPerSecond: 1, clock: {} }, 'clock', '{}'],
    [{ capacity: Infinity, refillPerSecond: 1 }, 'capacity', 'Infinity'],
  ])('rejects %j naming the option and value', (options, path, received) => {
    const error = errorOf(() => new TokenBucketLimiter(options as TokenBucketOptions));
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect(error.issues[0]).toMatchObject({ path, received });
    expect(error.message).toContain('TokenBucketLimiter options');
  });

  it('rejects unknown options (typos)', () => {
    const error = errorOf(() => new TokenBucketLimiter({ capacity: 5, refillRate: 1 } as never));
    expect(error.issues.map((i) => i.expected).join()).toContain('unknown: refillRate');
  });

  it('uses the given name', () => {
    expect(new TokenBucketLimiter({ name: 'openai', capacity: 1, refillPerSecond: 1 }).name).toBe('openai');
  });
});
