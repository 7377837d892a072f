import { z } from 'zod';
import { systemClock, type Clock } from '../clock.js';
import { AbortedError, TimeoutError } from '../errors.js';
import { clockSchema, parseOptions, timerMs } from '../options/validate.js';
import { NEVER_ABORTED, abortedError, type Policy, type Work } from './policy.js';

export interface TimeoutOptions {
  /** Deadline for one execution, in ms (> 0). */
  timeoutMs: number;
  clock?: Clock;
}

export const timeoutOptionsSchema = z.strictObject({
  timeoutMs: timerMs.positive(),
  clock: clockSchema.optional(),
});

/**
 * Bounds one execution. The work gets a signal that aborts when time is up (reason: the TimeoutError) or
 * the caller aborts; the returned promise settles at the deadline without waiting for the work.
 */
export class TimeoutPolicy implements Policy {
  readonly timeoutMs: number;
  private readonly clock: Clock;

  constructor(options: TimeoutOptions | number) {
    const input = typeof options === 'number' ? { timeoutMs: options } : options;
    const parsed = parseOptions(timeoutOptionsSchema, input, 'TimeoutPolicy options');
    this.timeoutMs = parsed.timeoutMs;
    this.clock = parsed.clock ?? systemClock;
  }

  execute<T>(work: Work<T>, signal?: AbortSignal): Promise<T> {
    const outer = signal === NEVER_ABORTED ? undefined : signal;
    if (outer?.aborted) return Promise.reject(abortedError(outer));
    const controller = new AbortController();
    const { clock, timeoutMs } = this;

    return new Promise<T>((resolve, reject) => {
      let done = false;
      const onAbort = (): void => {
        if (done) return;
        done = true;
        clock.clearTimeout(timer);
        controller.abort(outer!.reason);
        reject(abortedError(outer!));
      };
      const timer = clock.setTimeout(() => {
        if (done) return;
        done = true;
        outer?.removeEventListener('abort', onAbort);
        const error = new TimeoutError(`Operation timed out after ${timeoutMs} ms`, { details: { timeoutMs } });
        controller.abort(error);
        reject(error);
      }, timeoutMs);
      outer?.addEventListener('abort', onAbort, { once: true });

      const settle = (ok: boolean, value: unknown): void => {
        if (done) return;
        done = true;
        clock.clearTimeout(timer);
        outer?.removeEventListener('abort', onAbort);
        if (ok) resolve(value as T);
        else reject(value);
      };
      let result: T | Promise<T>;
      try {
        result = work({ signal: controller.signal, attempt: 1 });
      } catch (error) {
        settle(false, error);
        return;
      }
      Promise.resolve(result).then(
        (value) => settle(true, value),
        (error: unknown) => settle(false, error),
      );
    });
  }
}
