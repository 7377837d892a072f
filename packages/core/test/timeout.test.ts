import { describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { AbortedError, InvalidOptionError, TimeoutError } from '../src/errors.js';
import { isRetryableError } from '../src/policies/retry.js';
import { TimeoutPolicy, type TimeoutOptions } from '../src/policies/timeout.js';
import { invalidOption } from './helpers.js';

function settle<T>(promise: Promise<T>): Promise<{ value?: T; error?: unknown }> {
  return promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
}

describe('TimeoutPolicy', () => {
  it('rejects with a retryable TimeoutError at the deadline and aborts the work signal with it', async () => {
    const clock = new ManualClock();
    const policy = new TimeoutPolicy({ timeoutMs: 500, clock });
    let workSignal: AbortSignal | undefined;
    let settled = false;
    const result = settle(
      policy.execute(({ signal }) => {
        workSignal = signal;
        return new Promise<never>(() => {}); // never settles: the policy must not wait for it
      }),
    ).finally(() => (settled = true));
    await clock.advance(499);
    expect(settled).toBe(false);
    expect(workSignal?.aborted).toBe(false);
    await clock.advance(1);
    const { error } = await result;
    expect(error).toBeInstanceOf(TimeoutError);
    expect((error as Error).message).toContain('500 ms');
    expect(isRetryableError(error)).toBe(true);
    expect(workSignal?.aborted).toBe(true);
    expect(workSignal?.reason).toBe(error);
    expect(clock.pendingTimers).toBe(0);
  });

  it('accepts a bare number', async () => {
    const policy = new TimeoutPolicy(250);
    expect(policy.timeoutMs).toBe(250);
    await expect(policy.execute(() => 'fast')).resolves.toBe('fast');
  });

  it('resolves with the work result and clears its timer and listener', async () => {
    const clock = new ManualClock();
    const policy = new TimeoutPolicy({ timeoutMs: 1_000, clock });
    const controller = new AbortController();
    let resolveWork!: (v: string) => void;
    let workSignal: AbortSignal | undefined;
    const result = settle(
      policy.execute(({ signal }) => {
        workSignal = signal;
        return new Promise<string>((r) => (resolveWork = r));
      }, controller.signal),
    );
    expect(clock.pendingTimers).toBe(1);
    await clock.advance(300);
    resolveWork('value');
    expect(await result).toEqual({ value: 'value' });
    expect(clock.pendingTimers).toBe(0);
    // the caller's later abort no longer reaches the finished work
    controller.abort();
    expect(workSignal?.aborted).toBe(false);
  });

  it('passes work rejections and synchronous throws through, cleaning up', async () => {
    const clock = new ManualClock();
    const policy = new TimeoutPolicy({ timeoutMs: 1_000, clock });
    const boom = new Error('boom');
    await expect(policy.execute(() => Promise.reject(boom))).rejects.toBe(boom);
    expect(clock.pendingTimers).toBe(0);
    await expect(
      policy.execute(() => {
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect(clock.pendingTimers).toBe(0);
  });

  it('rejects with AbortedError when the caller aborts, aborting the work with the caller reason', async () => {
    const clock = new ManualClock();
    const policy = new TimeoutPolicy({ timeoutMs: 1_000, clock });
    const controller = new AbortController();
    let workSignal: AbortSignal | undefined;
    const result = settle(
      policy.execute(({ signal }) => {
        workSignal = signal;
        return new Promise<never>(() => {});
      }, controller.signal),
    );
    await clock.advance(100);
    controller.abort('gone');
    const { error } = await result;
    expect(error).toBeInstanceOf(AbortedError);
    expect((error as Error).cause).toBe('gone');
    expect(workSignal?.reason).toBe('gone');
    expect(clock.pendingTimers).toBe(0);
  });

  it('never starts the work when the caller signal is already aborted', async () => {
    const clock = new ManualClock();
    const policy = new TimeoutPolicy({ timeoutMs: 10, clock });
    let calls = 0;
    await expect(policy.execute(() => ++calls, AbortSignal.abort())).rejects.toBeInstanceOf(AbortedError);
    expect(calls).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });

  it('ignores a work result that arrives after the deadline', async () => {
    const clock = new ManualClock();
    const policy = new TimeoutPolicy({ timeoutMs: 10, clock });
    let resolveWork!: (v: string) => void;
    const result = settle(policy.execute(() => new Promise<string>((r) => (resolveWork = r))));
    await clock.advance(10);
    resolveWork('late');
    expect((await result).error).toBeInstanceOf(TimeoutError);
  });

  it('rejects bad options naming the option', () => {
    const bad: Array<[unknown, string]> = [
      [0, 'timeoutMs'],
      [-5, 'timeoutMs'],
      [Number.NaN, 'timeoutMs'],
      [3e9, 'timeoutMs'],
      [{}, 'timeoutMs'],
      [{ timeoutMs: '100' }, 'timeoutMs'],
      [{ timeoutMs: 100, clock: Date }, 'clock'],
      [{ timeoutMs: 100, timeout: 5 }, ''],
    ];
    for (const [options, path] of bad) {
      const error = invalidOption(() => new TimeoutPolicy(options as TimeoutOptions), JSON.stringify(options));
      expect(error.issues[0]!.path, JSON.stringify(options)).toBe(path);
    }
    expect(() => new TimeoutPolicy(undefined as unknown as number)).toThrow(InvalidOptionError);
  });
});
