import { z } from 'zod';
import { sleep, systemClock, type Clock } from '../clock.js';
import { isAmasError, TimeoutError } from '../errors.js';
import { Emitter } from '../events.js';
import { clockSchema, fn, parseOptions, positiveInt, timerMs } from '../options/validate.js';
import { abortedError, NEVER_ABORTED, signalOrNever, type Policy, type Work } from './policy.js';
import { retryAfterFromError } from './retry-after.js';

export type JitterMode = 'full' | 'equal' | 'none';

export interface RetryOptions {
  /** Total attempts including the first (>= 1). Default 3. */
  maxAttempts?: number;
  /** Backoff before the first retry. Default 100 ms. */
  baseDelayMs?: number;
  /** Cap on the exponential backoff. Default 10 000 ms. */
  maxDelayMs?: number;
  /** Backoff growth per attempt (>= 1). Default 2. */
  multiplier?: number;
  /** Default 'full' (AWS "full jitter"): spreads retries of many clients so they do not stampede. */
  jitter?: JitterMode;
  /** Which failures to retry. Default `isRetryableError`. */
  retryOn?: (error: unknown, attempt: number) => boolean;
  /** Wait what the server asked (Retry-After, retry-after-ms, error.retryAfterMs). Default true. */
  respectRetryAfter?: boolean;
  /** A server-sent delay above this is capped to it. Default 30 000 ms. */
  maxRetryAfterMs?: number;
  clock?: Clock;
  /** Source of jitter in [0, 1). Default Math.random. */
  random?: () => number;
}

export const retryOptionsSchema = z.strictObject({
  maxAttempts: positiveInt.optional(),
  baseDelayMs: timerMs.optional(),
  maxDelayMs: timerMs.optional(),
  multiplier: z.number().finite().min(1).optional(),
  jitter: z.enum(['full', 'equal', 'none']).optional(),
  retryOn: fn.optional(),
  respectRetryAfter: z.boolean().optional(),
  maxRetryAfterMs: timerMs.optional(),
  clock: clockSchema.optional(),
  random: fn.optional(),
});

export interface RetryEvents extends Record<string, unknown> {
  retry: { attempt: number; delayMs: number; error: unknown };
  giveUp: { attempts: number; error: unknown };
}

const RETRYABLE_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
]);
const RETRYABLE_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);

/**
 * Default retry predicate: transient network failures, timeouts and the HTTP statuses that mean "try
 * again". AMAS's own rejections (open breaker, full bulkhead, local rate limit, budget, abort, bad options)
 * are never retried: they are decisions, and retrying them only burns attempts.
 */
export function isRetryableError(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  if (isAmasError(error)) return error instanceof TimeoutError;
  const e = error as { name?: unknown; status?: unknown; statusCode?: unknown; response?: { status?: unknown } | null };
  if (e.name === 'AbortError') return false;
  if (e.name === 'TimeoutError') return true; // DOMException from AbortSignal.timeout()
  const status =
    typeof e.status === 'number'
      ? e.status
      : typeof e.statusCode === 'number'
        ? e.statusCode
        : typeof e.response === 'object' && e.response !== null && typeof e.response.status === 'number'
          ? e.response.status
          : undefined;
  if (status !== undefined) return RETRYABLE_STATUS.has(status);
  // fetch() wraps socket failures: TypeError('fetch failed') with the system error as `cause`.
  let current: unknown = error;
  for (let depth = 0; depth < 4 && typeof current === 'object' && current !== null; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && RETRYABLE_CODES.has(code)) return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

/** Retries failed work with exponential backoff and jitter, honouring server Retry-After hints. */
export class RetryPolicy implements Policy {
  readonly maxAttempts: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly multiplier: number;
  private readonly jitter: JitterMode;
  private readonly retryOn: (error: unknown, attempt: number) => boolean;
  private readonly respectRetryAfter: boolean;
  private readonly maxRetryAfterMs: number;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly events = new Emitter<RetryEvents>();

  constructor(options: RetryOptions = {}) {
    const o = parseOptions(retryOptionsSchema, options ?? {}, 'RetryPolicy options');
    this.maxAttempts = o.maxAttempts ?? 3;
    this.baseDelayMs = o.baseDelayMs ?? 100;
    this.maxDelayMs = o.maxDelayMs ?? 10_000;
    this.multiplier = o.multiplier ?? 2;
    this.jitter = o.jitter ?? 'full';
    this.retryOn = (o.retryOn as RetryOptions['retryOn']) ?? isRetryableError;
    this.respectRetryAfter = o.respectRetryAfter ?? true;
    this.maxRetryAfterMs = o.maxRetryAfterMs ?? 30_000;
    this.clock = o.clock ?? systemClock;
    this.random = (o.random as RetryOptions['random']) ?? Math.random;
  }

  on<K extends keyof RetryEvents>(event: K, listener: (e: RetryEvents[K]) => void): () => void {
    return this.events.on(event, listener);
  }

  /** Delay before the retry that follows failed attempt `attempt` (1-based). */
  delayFor(attempt: number, error?: unknown): number {
    if (this.respectRetryAfter && error !== undefined) {
      const hinted = retryAfterFromError(error, this.clock.now());
      if (hinted !== undefined) return Math.min(hinted, this.maxRetryAfterMs);
    }
    const growth = Math.pow(this.multiplier, Math.max(0, attempt - 1));
    // base 0 * Infinity would be NaN.
    const ceiling = this.baseDelayMs === 0 ? 0 : Math.min(this.maxDelayMs, this.baseDelayMs * growth);
    switch (this.jitter) {
      case 'none':
        return ceiling;
      case 'equal':
        return ceiling / 2 + this.random() * (ceiling / 2);
      default:
        return this.random() * ceiling;
    }
  }

  async execute<T>(work: Work<T>, signal?: AbortSignal): Promise<T> {
    const watched = signal === undefined || signal === NEVER_ABORTED ? undefined : signal;
    const ctxSignal = signalOrNever(signal);
    if (watched?.aborted) throw abortedError(watched);
    for (let attempt = 1; ; attempt++) {
      try {
        const result = work({ signal: ctxSignal, attempt });
        return await (watched ? raceAbort(result, watched) : result);
      } catch (error) {
        if (watched?.aborted) throw abortedError(watched);
        if (attempt >= this.maxAttempts || !this.retryOn(error, attempt)) {
          if (this.events.has('giveUp')) this.events.emit('giveUp', { attempts: attempt, error });
          throw error;
        }
        const delayMs = this.delayFor(attempt, error);
        if (this.events.has('retry')) this.events.emit('retry', { attempt, delayMs, error });
        if (delayMs > 0) {
          try {
            await sleep(delayMs, this.clock, watched);
          } catch {
            throw abortedError(watched!);
          }
        }
      }
    }
  }
}

/** Settles with `value`, or rejects with AbortedError as soon as `signal` aborts, whichever comes first. */
function raceAbort<T>(value: T | Promise<T>, signal: AbortSignal): Promise<T> {
  if (typeof (value as { then?: unknown } | null)?.then !== 'function') return Promise.resolve(value);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortedError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    Promise.resolve(value).then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
