import { describe, it, expect } from 'vitest';
import { z } from 'zod';
import { ManualClock } from '../src/clock.js';
import { InvalidOptionError } from '../src/errors.js';
import { parseOptions } from '../src/options/validate.js';
import { createLimiter, limiterSpecSchema, type LimiterSpec } from '../src/policies/limiters.js';
import { SlidingWindowLimiter } from '../src/policies/sliding-window.js';
import { TokenBucketLimiter } from '../src/policies/token-bucket.js';
import { errorOf } from './helpers.js';

describe('createLimiter', () => {
  it('builds a one-window sliding limiter from the shorthand', () => {
    const clock = new ManualClock();
    const limiter = createLimiter({ limit: 2, window: '1s' }, { clock, name: 'api' });
    expect(limiter).toBeInstanceOf(SlidingWindowLimiter);
    expect(limiter.name).toBe('api');
    // A lone unnamed window takes the limiter's name (it shows up in RateLimit-Policy headers).
    expect(limiter.check('k').windows).toEqual([{ name: 'api', limit: 2, windowMs: 1000, remaining: 1, resetMs: 1000 }]);
    expect(limiter.check('k').allowed).toBe(true);
    expect(limiter.check('k').allowed).toBe(false);
    limiter.close();
    expect(clock.pendingTimers).toBe(0);
  });

  it('builds a multi-window sliding limiter with custom buckets', () => {
    const clock = new ManualClock(0);
    const limiter = createLimiter(
      {
        algorithm: 'sliding-window',
        name: 'chat',
        buckets: 10,
        windows: [
          { name: 'per-second', limit: 2, window: 1000 },
          { limit: 3, window: '1 minute' },
        ],
      },
      { clock, name: 'ignored-when-the-spec-has-one' },
    );
    expect(limiter.name).toBe('chat');
    limiter.check('k', 2);
    expect(limiter.check('k')).toMatchObject({ allowed: false, retryAfterMs: 1000 });
    expect(limiter.getUsage('k').map((u) => [u.name, u.used, u.windowMs])).toEqual([
      ['per-second', 2, 1000],
      ['3-per-1m', 2, 60_000],
    ]);
    limiter.close();
  });

  it('builds a token bucket', () => {
    const clock = new ManualClock();
    const limiter = createLimiter({ algorithm: 'token-bucket', capacity: 2, refillPerSecond: 4, maxQueue: 0 }, { clock });
    expect(limiter).toBeInstanceOf(TokenBucketLimiter);
    expect(limiter.name).toBe('token-bucket');
    expect(limiter.check('k', 2).windows[0]).toEqual({ name: 'bucket', limit: 2, windowMs: 500, remaining: 0, resetMs: 500 });
    expect(limiter.check('k')).toMatchObject({ allowed: false, retryAfterMs: 250 });
    return expect(limiter.take('k')).rejects.toMatchObject({ details: { reason: 'queue_full' } });
  });

  it('accepts an already parsed spec (durations in ms)', () => {
    const parsed = limiterSpecSchema.parse({ limit: 5, window: '2s', maxKeys: 10 });
    expect(parsed).toEqual({ algorithm: 'sliding-window', windows: [{ limit: 5, window: 2000 }], maxKeys: 10 });
    const limiter = createLimiter(parsed as LimiterSpec, { clock: new ManualClock() });
    expect(limiter.getUsage('k')[0]).toMatchObject({ name: '5-per-2s', windowMs: 2000 });
  });
});

describe('limiterSpecSchema errors point at the branch the user meant', () => {
  const cases: Array<[string, unknown, string, string, RegExp]> = [
    ['token bucket with a bad rate', { algorithm: 'token-bucket', capacity: 10, refillPerSecond: 0 }, 'refillPerSecond', '0', /> 0/],
    ['token bucket without algorithm', { capacity: 10, refillPerSecond: 1 }, 'algorithm', 'undefined', /token-bucket/],
    ['unknown algorithm', { algorithm: 'leaky-bucket', limit: 1, window: 1 }, 'algorithm', '"leaky-bucket"', /sliding-window.*token-bucket/],
    ['shorthand without window', { limit: 10 }, 'window', 'undefined', /duration/],
    ['shorthand with a bad limit', { limit: -3, window: '1m' }, 'limit', '-3', />/],
    ['windows with a bad duration', { windows: [{ limit: 1, window: 'fortnight' }] }, 'windows.0.window', '"fortnight"', /'30s'/],
    ['typo in a key', { limit: 1, window: '1s', bucket: 5 }, '', '{"limit":1,"window":"1s","bucket":5}', /unknown: bucket/],
    ['token bucket with a sliding-window key', { algorithm: 'token-bucket', capacity: 1, refillPerSecond: 1, window: '1s' }, '', '{"algorithm":"token-bucket","capacity":1,"refillPerSecond":1,"window":"1s"}', /unknown: window/],
    ['not an object', 'fast', '', '"fast"', /limiter spec object/],
  ];

  it.each(cases)('%s', (_label, spec, path, received, expected) => {
    const error = errorOf(() => createLimiter(spec as LimiterSpec, { name: 'openai' }));
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect(error.issues).toHaveLength(1);
    expect(error.issues[0]).toMatchObject({ path, received });
    expect(error.issues[0]!.expected).toMatch(expected);
    expect(error.message).toContain('Invalid limiter "openai"');
  });

  it('prefixes paths when embedded in a larger schema', () => {
    const engine = z.object({ limits: z.record(z.string(), limiterSpecSchema) });
    const error = errorOf(() =>
      parseOptions(engine, { limits: { openai: { algorithm: 'token-bucket', capacity: -1, refillPerSecond: 1 } } }),
    );
    expect(error.issues).toEqual([{ path: 'limits.openai.capacity', received: '-1', expected: 'a number > 0' }]);
  });
});
