import { describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import {
  AbortedError,
  BreakerOpenError,
  BudgetExceededError,
  BulkheadFullError,
  InvalidOptionError,
  RateLimitedError,
  TimeoutError,
} from '../src/errors.js';
import { isRetryableError, RetryPolicy, type RetryOptions } from '../src/policies/retry.js';
import { seededRandom as seeded, invalidOption } from './helpers.js';

function httpError(status: number, headers?: unknown): Error & { status: number; headers?: unknown } {
  return Object.assign(new Error(`HTTP ${status}`), { status, headers });
}

function settle<T>(promise: Promise<T>): Promise<{ value?: T; error?: unknown }> {
  return promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
}

function setup(options: RetryOptions = {}) {
  const clock = new ManualClock();
  const policy = new RetryPolicy({ clock, random: seeded(42), ...options });
  const delays: number[] = [];
  policy.on('retry', (e) => delays.push(e.delayMs));
  return { clock, policy, delays };
}

describe('RetryPolicy', () => {
  it('returns the first success without waiting', async () => {
    const { policy, clock } = setup();
    const attempts: number[] = [];
    await expect(policy.execute(({ attempt }) => (attempts.push(attempt), 'ok'))).resolves.toBe('ok');
    expect(attempts).toEqual([1]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('retries retryable failures, passing 1-based attempts, and waits between them', async () => {
    const { policy, clock, delays } = setup({ jitter: 'none', baseDelayMs: 100 });
    const attempts: number[] = [];
    const result = settle(
      policy.execute(async ({ attempt }) => {
        attempts.push(attempt);
        if (attempt < 3) throw httpError(503);
        return 'done';
      }),
    );
    await clock.advance(99);
    expect(attempts).toEqual([1]);
    await clock.advance(1);
    expect(attempts).toEqual([1, 2]);
    await clock.advance(200);
    expect(await result).toEqual({ value: 'done' });
    expect(attempts).toEqual([1, 2, 3]);
    expect(delays).toEqual([100, 200]);
  });

  it('rethrows the last error after maxAttempts and emits giveUp', async () => {
    const { policy, clock } = setup({ maxAttempts: 4, jitter: 'none', baseDelayMs: 10 });
    const giveUps: Array<{ attempts: number; error: unknown }> = [];
    const retries: number[] = [];
    policy.on('giveUp', (e) => giveUps.push(e));
    policy.on('retry', (e) => retries.push(e.attempt));
    let calls = 0;
    const statuses = [500, 502, 503, 504];
    const result = settle(policy.execute(() => Promise.reject(httpError(statuses[calls++]))));
    await clock.advance(10_000);
    const { error } = await result;
    expect(calls).toBe(4);
    expect((error as { status: number }).status).toBe(504);
    expect(retries).toEqual([1, 2, 3]);
    expect(giveUps).toEqual([{ attempts: 4, error }]);
  });

  it('maxAttempts 1 never retries', async () => {
    const { policy } = setup({ maxAttempts: 1 });
    let calls = 0;
    await expect(policy.execute(() => (calls++, Promise.reject(httpError(503))))).rejects.toMatchObject({ status: 503 });
    expect(calls).toBe(1);
  });

  it('treats a synchronous throw as a failed attempt', async () => {
    const { policy, clock } = setup({ jitter: 'none', baseDelayMs: 5 });
    let calls = 0;
    const result = settle(
      policy.execute(() => {
        if (calls++ === 0) throw Object.assign(new Error('reset'), { code: 'ECONNRESET' });
        return 7;
      }),
    );
    await clock.advance(5);
    expect(await result).toEqual({ value: 7 });
  });

  it('stops at once on a non-retryable error and still emits giveUp', async () => {
    const { policy } = setup();
    const giveUps: number[] = [];
    policy.on('giveUp', (e) => giveUps.push(e.attempts));
    for (const error of [httpError(400), new BreakerOpenError('open', { retryAfterMs: 1000 }), new Error('bug')]) {
      let calls = 0;
      await expect(policy.execute(() => (calls++, Promise.reject(error)))).rejects.toBe(error);
      expect(calls).toBe(1);
    }
    expect(giveUps).toEqual([1, 1, 1]);
  });

  it('uses a custom retryOn with the error and attempt', async () => {
    const seen: Array<[unknown, number]> = [];
    const { policy, clock } = setup({
      jitter: 'none',
      baseDelayMs: 1,
      retryOn: (error, attempt) => (seen.push([error, attempt]), attempt < 2),
    });
    const boom = new Error('custom');
    const result = settle(policy.execute(() => Promise.reject(boom)));
    await clock.advance(10);
    expect((await result).error).toBe(boom);
    expect(seen).toEqual([
      [boom, 1],
      [boom, 2],
    ]);
  });

  describe('backoff bounds (seeded random)', () => {
    const base = 100;
    const max = 1_000;
    const ceiling = (attempt: number) => Math.min(max, base * 2 ** (attempt - 1));

    it("'none' is exactly exponential, capped at maxDelayMs", () => {
      const { policy } = setup({ jitter: 'none', baseDelayMs: base, maxDelayMs: max });
      expect([1, 2, 3, 4, 5, 6, 50, 5000].map((a) => policy.delayFor(a))).toEqual([
        100, 200, 400, 800, 1000, 1000, 1000, 1000,
      ]);
    });

    it("'full' stays in [0, ceiling] and spreads over the range", () => {
      const { policy } = setup({ jitter: 'full', baseDelayMs: base, maxDelayMs: max });
      for (let attempt = 1; attempt <= 8; attempt++) {
        const samples = Array.from({ length: 200 }, () => policy.delayFor(attempt));
        for (const d of samples) {
          expect(d).toBeGreaterThanOrEqual(0);
          expect(d).toBeLessThanOrEqual(ceiling(attempt));
        }
        expect(samples.some((d) => d < ceiling(attempt) / 4)).toBe(true);
        expect(samples.some((d) => d > (ceiling(attempt) * 3) / 4)).toBe(true);
      }
    });

    it("'equal' stays in [ceiling/2, ceiling]", () => {
      const { policy } = setup({ jitter: 'equal', baseDelayMs: base, maxDelayMs: max });
      for (let attempt = 1; attempt <= 8; attempt++) {
        const samples = Array.from({ length: 200 }, () => policy.delayFor(attempt));
        for (const d of samples) {
          expect(d).toBeGreaterThanOrEqual(ceiling(attempt) / 2);
          expect(d).toBeLessThanOrEqual(ceiling(attempt));
        }
        expect(new Set(samples).size).toBeGreaterThan(100);
      }
    });

    it('is deterministic for the same seed and honours multiplier', () => {
      const a = new RetryPolicy({ random: seeded(7), multiplier: 3, baseDelayMs: 10, jitter: 'none' });
      expect([1, 2, 3].map((n) => a.delayFor(n))).toEqual([10, 30, 90]);
      const b = new RetryPolicy({ random: seeded(7) });
      const c = new RetryPolicy({ random: seeded(7) });
      expect([1, 2, 3].map((n) => b.delayFor(n))).toEqual([1, 2, 3].map((n) => c.delayFor(n)));
    });

    it('a zero base delay never waits (and never computes NaN)', () => {
      const { policy } = setup({ baseDelayMs: 0, multiplier: 10, jitter: 'none' });
      expect(policy.delayFor(10_000)).toBe(0);
    });
  });

  describe('server Retry-After', () => {
    it('waits the Retry-After seconds from a Headers instance instead of the backoff', async () => {
      const { policy, clock, delays } = setup({ jitter: 'none', baseDelayMs: 100 });
      let calls = 0;
      const result = settle(
        policy.execute(async () => {
          if (calls++ === 0) throw httpError(429, new Headers({ 'Retry-After': '2' }));
          return 'ok';
        }),
      );
      await clock.advance(1_999);
      expect(calls).toBe(1);
      await clock.advance(1);
      expect(await result).toEqual({ value: 'ok' });
      expect(delays).toEqual([2_000]);
    });

    it('reads HTTP-date, retry-after-ms, Map headers, response.headers and error.retryAfterMs', () => {
      const { policy, clock } = setup();
      const date = new Date(clock.now() + 5_000).toUTCString();
      expect(policy.delayFor(1, httpError(503, { 'retry-after': date }))).toBe(5_000);
      expect(policy.delayFor(1, httpError(429, { 'Retry-After-Ms': '1500' }))).toBe(1_500);
      expect(policy.delayFor(1, httpError(429, new Map([['retry-after', '3']])))).toBe(3_000);
      expect(policy.delayFor(1, { status: 429, response: { headers: new Headers({ 'retry-after': '4' }) } })).toBe(4_000);
      expect(policy.delayFor(1, Object.assign(httpError(503), { retryAfterMs: 250 }))).toBe(250);
    });

    it('caps a server delay at maxRetryAfterMs', () => {
      const { policy } = setup({ maxRetryAfterMs: 5_000 });
      expect(policy.delayFor(1, httpError(429, { 'retry-after': '3600' }))).toBe(5_000);
      expect(new RetryPolicy().delayFor(1, httpError(429, { 'retry-after': '3600' }))).toBe(30_000);
    });

    it('ignores the hint when respectRetryAfter is false', () => {
      const { policy } = setup({ respectRetryAfter: false, jitter: 'none', baseDelayMs: 100 });
      expect(policy.delayFor(1, httpError(429, { 'retry-after': '9' }))).toBe(100);
    });

    it('falls back to backoff when the hint is garbage', () => {
      const { policy } = setup({ jitter: 'none', baseDelayMs: 100 });
      expect(policy.delayFor(2, httpError(429, { 'retry-after': 'whenever' }))).toBe(200);
    });
  });

  describe('abort', () => {
    it('rejects with AbortedError during the wait, clears the timer and makes no more attempts', async () => {
      const { policy, clock } = setup({ jitter: 'none', baseDelayMs: 1_000 });
      const controller = new AbortController();
      let calls = 0;
      const result = settle(policy.execute(() => (calls++, Promise.reject(httpError(503))), controller.signal));
      await clock.advance(10);
      expect(clock.pendingTimers).toBe(1);
      const reason = new Error('client left');
      controller.abort(reason);
      const { error } = await result;
      expect(error).toBeInstanceOf(AbortedError);
      expect((error as Error).cause).toBe(reason);
      expect(clock.pendingTimers).toBe(0);
      await clock.advance(5_000);
      expect(calls).toBe(1);
    });

    it('rejects at once when aborted during the work, without waiting for it', async () => {
      const { policy } = setup();
      const controller = new AbortController();
      let workSignal: AbortSignal | undefined;
      const result = settle(
        policy.execute(({ signal }) => {
          workSignal = signal;
          return new Promise<never>(() => {});
        }, controller.signal),
      );
      controller.abort('stop');
      const { error } = await result;
      expect(error).toBeInstanceOf(AbortedError);
      expect((error as Error).cause).toBe('stop');
      expect(workSignal?.aborted).toBe(true);
    });

    it('does not retry when the work fails because of the abort', async () => {
      const { policy, clock } = setup();
      const controller = new AbortController();
      let calls = 0;
      const result = settle(
        policy.execute(({ signal }) => {
          calls++;
          controller.abort();
          throw Object.assign(new Error('reset'), { code: 'ECONNRESET', signalAborted: signal.aborted });
        }, controller.signal),
      );
      await clock.advance(60_000);
      expect((await result).error).toBeInstanceOf(AbortedError);
      expect(calls).toBe(1);
    });

    it('never calls the work when the signal is already aborted', async () => {
      const { policy } = setup();
      let calls = 0;
      await expect(policy.execute(() => ++calls, AbortSignal.abort())).rejects.toBeInstanceOf(AbortedError);
      expect(calls).toBe(0);
    });
  });

  it('rejects bad options naming the option', () => {
    const bad: Array<[unknown, string]> = [
      [{ maxAttempts: 0 }, 'maxAttempts'],
      [{ maxAttempts: 1.5 }, 'maxAttempts'],
      [{ baseDelayMs: -1 }, 'baseDelayMs'],
      [{ maxDelayMs: Infinity }, 'maxDelayMs'],
      [{ maxDelayMs: 1e12 }, 'maxDelayMs'],
      [{ multiplier: 0.5 }, 'multiplier'],
      [{ jitter: 'random' }, 'jitter'],
      [{ retryOn: true }, 'retryOn'],
      [{ respectRetryAfter: 'yes' }, 'respectRetryAfter'],
      [{ maxRetryAfterMs: -5 }, 'maxRetryAfterMs'],
      [{ clock: {} }, 'clock'],
      [{ random: 0.5 }, 'random'],
      [{ maxAttempt: 3 }, ''],
    ];
    for (const [options, path] of bad) {
      const error = invalidOption(() => new RetryPolicy(options as RetryOptions), JSON.stringify(options));
      expect(error.issues[0]!.path, JSON.stringify(options)).toBe(path);
    }
    expect(() => new RetryPolicy(5 as unknown as RetryOptions)).toThrow(InvalidOptionError);
  });
});

describe('isRetryableError', () => {
  it('retries transient network failures, timeouts and retryable statuses', () => {
    const network = ['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN'];
    network.push('UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT');
    for (const code of network) expect(isRetryableError(Object.assign(new Error(code), { code })), code).toBe(true);
    // undici's fetch wraps the socket error in `cause`
    expect(isRetryableError(new TypeError('fetch failed', { cause: { code: 'UND_ERR_SOCKET' } }))).toBe(true);
    expect(isRetryableError(new TimeoutError('late'))).toBe(true);
    expect(isRetryableError(new DOMException('late', 'TimeoutError'))).toBe(true);
    for (const status of [408, 425, 429, 500, 502, 503, 504]) {
      expect(isRetryableError({ status }), String(status)).toBe(true);
      expect(isRetryableError({ statusCode: status }), String(status)).toBe(true);
    }
    expect(isRetryableError({ response: { status: 502 } })).toBe(true);
  });

  it('never retries AMAS decisions, aborts, other 4xx or unknown errors', () => {
    const no: unknown[] = [
      new AbortedError(),
      new DOMException('stop', 'AbortError'),
      new BreakerOpenError('open', { retryAfterMs: 5 }),
      new RateLimitedError('limited', { retryAfterMs: 5 }),
      new BulkheadFullError('full'),
      new InvalidOptionError([]),
      new BudgetExceededError('budget'),
      { status: 400 },
      { status: 401 },
      { statusCode: 404 },
      { status: 501 },
      { status: 429, name: 'AbortError' },
      Object.assign(new Error('nope'), { code: 'ENOENT' }),
      new Error('plain'),
      'string',
      null,
      undefined,
      42,
    ];
    for (const error of no) expect(isRetryableError(error), String(error)).toBe(false);
  });
});
