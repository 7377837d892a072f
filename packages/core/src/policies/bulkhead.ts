import { z } from 'zod';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import { BulkheadFullError } from '../errors.js';
import { Emitter } from '../events.js';
import { clockSchema, nonNegativeInt, parseOptions, positiveInt, timerMs } from '../options/validate.js';
import { abortedError, NEVER_ABORTED, signalOrNever, type Policy, type Work } from './policy.js';

export interface BulkheadOptions {
  /** Executions allowed to run at once (>= 1). */
  maxConcurrent: number;
  /** Callers allowed to wait for a slot, FIFO. Default 0: reject as soon as every slot is busy. */
  maxQueue?: number;
  /** Longest a queued caller waits for a slot. Default: no limit. */
  queueTimeoutMs?: number;
  clock?: Clock;
  /** Reported in errors and events. Default 'bulkhead'. */
  name?: string;
}

export const bulkheadOptionsSchema = z.strictObject({
  maxConcurrent: positiveInt,
  maxQueue: nonNegativeInt.optional(),
  queueTimeoutMs: timerMs.optional(),
  clock: clockSchema.optional(),
  name: z.string().min(1).optional(),
});

export type BulkheadRejectReason = 'full' | 'queue-timeout';

export interface BulkheadEvents extends Record<string, unknown> {
  rejected: { reason: BulkheadRejectReason };
}

export interface BulkheadStats {
  running: number;
  queued: number;
  rejected: number;
}

/** A caller waiting for a slot; a doubly linked list so abort/timeout removal is O(1). */
interface Waiter {
  work: Work<unknown>;
  signal: AbortSignal | undefined;
  resolve: (value: Promise<unknown>) => void;
  reject: (error: unknown) => void;
  timer: TimerHandle | undefined;
  onAbort: (() => void) | undefined;
  prev: Waiter | undefined;
  next: Waiter | undefined;
}

/** Caps concurrent executions so one slow dependency cannot hold every connection or worker. */
export class Bulkhead implements Policy {
  readonly name: string;
  readonly maxConcurrent: number;
  readonly maxQueue: number;
  private readonly queueTimeoutMs: number | undefined;
  private readonly clock: Clock;
  private readonly events = new Emitter<BulkheadEvents>();
  private running = 0;
  private queued = 0;
  private rejected = 0;
  private head: Waiter | undefined;
  private tail: Waiter | undefined;
  private readonly release = (): void => {
    this.running--;
    this.startNext();
  };

  constructor(options: BulkheadOptions) {
    const o = parseOptions(bulkheadOptionsSchema, options, 'Bulkhead options');
    this.maxConcurrent = o.maxConcurrent;
    this.maxQueue = o.maxQueue ?? 0;
    this.queueTimeoutMs = o.queueTimeoutMs;
    this.clock = o.clock ?? systemClock;
    this.name = o.name ?? 'bulkhead';
  }

  on<K extends keyof BulkheadEvents>(event: K, listener: (e: BulkheadEvents[K]) => void): () => void {
    return this.events.on(event, listener);
  }

  stats(): BulkheadStats {
    return { running: this.running, queued: this.queued, rejected: this.rejected };
  }

  execute<T>(work: Work<T>, signal?: AbortSignal): Promise<T> {
    const watched = signal === NEVER_ABORTED ? undefined : signal;
    if (watched?.aborted) return Promise.reject(abortedError(watched));
    if (this.running < this.maxConcurrent) return this.start(work, signal);
    if (this.queued >= this.maxQueue) return Promise.reject(this.reject('full'));
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter = {
        work: work as Work<unknown>,
        signal,
        resolve: resolve as (value: Promise<unknown>) => void,
        reject,
        timer: undefined,
        onAbort: undefined,
        prev: this.tail,
        next: undefined,
      };
      if (this.tail) this.tail.next = waiter;
      else this.head = waiter;
      this.tail = waiter;
      this.queued++;
      if (this.queueTimeoutMs !== undefined) {
        waiter.timer = this.clock.setTimeout(() => {
          waiter.timer = undefined;
          this.unlink(waiter);
          waiter.reject(this.reject('queue-timeout'));
        }, this.queueTimeoutMs);
      }
      if (watched) {
        waiter.onAbort = () => {
          this.unlink(waiter);
          waiter.reject(abortedError(watched));
        };
        watched.addEventListener('abort', waiter.onAbort, { once: true });
      }
    });
  }

  private start<T>(work: Work<T>, signal: AbortSignal | undefined): Promise<T> {
    this.running++;
    let result: Promise<T>;
    try {
      result = Promise.resolve(work({ signal: signalOrNever(signal), attempt: 1 }));
    } catch (error) {
      result = Promise.reject(error);
    }
    // The slot is freed however the work ends, including a synchronous throw.
    return result.finally(this.release);
  }

  private startNext(): void {
    const waiter = this.head;
    if (!waiter || this.running >= this.maxConcurrent) return;
    this.unlink(waiter);
    waiter.resolve(this.start(waiter.work, waiter.signal));
  }

  /** Removes a waiter from the queue and drops its timer and abort listener. */
  private unlink(waiter: Waiter): void {
    if (waiter.prev) waiter.prev.next = waiter.next;
    else this.head = waiter.next;
    if (waiter.next) waiter.next.prev = waiter.prev;
    else this.tail = waiter.prev;
    waiter.prev = waiter.next = undefined;
    this.queued--;
    if (waiter.timer !== undefined) this.clock.clearTimeout(waiter.timer);
    if (waiter.onAbort) waiter.signal?.removeEventListener('abort', waiter.onAbort);
  }

  private reject(reason: BulkheadRejectReason): BulkheadFullError {
    this.rejected++;
    if (this.events.has('rejected')) this.events.emit('rejected', { reason });
    const message =
      reason === 'full'
        ? `Bulkhead "${this.name}" is full (${this.maxConcurrent} running, ${this.maxQueue} queued)`
        : `Bulkhead "${this.name}": no slot freed within ${this.queueTimeoutMs} ms`;
    return new BulkheadFullError(message, { details: { bulkhead: this.name, reason } });
  }
}
