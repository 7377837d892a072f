/**
 * Micro-batching: concurrent calls that arrive within a short window go out as one batch (one upstream
 * request), and each caller gets its own result.
 *
 * The window adapts to load. The batcher keeps a moving average of the time between calls; with fewer than
 * one call expected per `maxWaitMs` it does not wait at all (a lone call leaves on the next microtask, so only
 * calls made in the same synchronous turn — a `Promise.all` — share its batch), and the wait grows linearly
 * to the full `maxWaitMs` as four or more calls are expected per window. One long quiet gap is enough to
 * return to "no wait". A batch leaves as soon as it holds `maxBatchSize` items (or `maxBatchWeight`), and
 * `latencyBudgetMs` caps the wait so that wait + the recent average batch duration stays within it.
 * `adaptive: false` always waits `maxWaitMs` from a batch's first item (fixed-window batching). A window
 * opens with the first item queued while none is open; everything arriving before it closes leaves when it
 * closes (in batches of at most `maxBatchSize`), even if full batches left early and the queue ran empty.
 *
 * With `maxConcurrentBatches`, batches beyond the limit wait for a running one to finish and keep growing
 * meanwhile (up to the size cap): under load, batches get larger instead of more numerous.
 *
 * Errors are per caller. The batch function returns one result per item, in order; a slot holding
 * `batchItemError(error)` fails only that item's caller. A thrown / rejected batch (or a result array of
 * the wrong length) fails every caller with an item in that batch, and no other. A caller of `addMany`
 * whose items span several batches gets all its results or the first error. An aborted caller leaves at
 * once (AbortedError); a batch whose callers all left has its signal aborted.
 */
import { z } from 'zod';
import type { Clock, TimerHandle } from '../clock.js';
import { AbortedError } from '../errors.js';
import { clockSchema, fn, parseOptions, positiveInt, timerMs } from '../options/validate.js';

const ITEM_ERROR = Symbol.for('amas.batch-item-error');

/** A failed slot in a batch result (see `batchItemError`). */
export interface BatchItemError {
  readonly [ITEM_ERROR]: true;
  readonly error: unknown;
}

/** Marks one item of a batch as failed: put it in that item's slot of the result array. */
export function batchItemError(error: unknown): BatchItemError {
  return { [ITEM_ERROR]: true, error };
}

export function isBatchItemError(value: unknown): value is BatchItemError {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[ITEM_ERROR] === true;
}

export interface BatchContext {
  /** Aborted when every caller with an item in this batch has aborted, or the batcher is closed. */
  signal: AbortSignal;
  /** 1, 2, ... in dispatch order. */
  batch: number;
}

/** Runs one batch: one result (or `batchItemError`) per item, in the items' order. */
export type BatchFunction<I, O> = (items: I[], context: BatchContext) => Promise<ReadonlyArray<O | BatchItemError>> | ReadonlyArray<O | BatchItemError>;

export interface MicroBatcherOptions<I, O> {
  run: BatchFunction<I, O>;
  /** Items per batch at most; a full batch leaves at once. Default 64. */
  maxBatchSize?: number;
  /** The longest a batch's first item waits for company. Default 10 (0: same synchronous turn only). */
  maxWaitMs?: number;
  /** Wait + recent average batch duration stays within this (ms) when set. */
  latencyBudgetMs?: number;
  /** Adapt the window to the arrival rate (default true); false always waits `maxWaitMs`. */
  adaptive?: boolean;
  /** Batches running at once at most; later ones wait (and grow). Default: no limit. */
  maxConcurrentBatches?: number;
  /** With `weight`: the summed weight of a batch at most (e.g. tokens per embeddings request). An item heavier than this goes alone. */
  maxBatchWeight?: number;
  /** Weight of one item (a positive finite number). Default: 1 each. */
  weight?: (item: I) => number;
  /**
   * Timers for windows. The default is the wall clock with referenced timers: a caller waiting in a window
   * keeps the process alive until its batch is sent.
   */
  clock?: Clock;
  /** Reported in errors. Default 'micro-batcher'. */
  name?: string;
  /** The error queued and in-flight callers get from `close()`. Default: AbortedError with details.reason 'closed'. */
  closedError?: () => unknown;
}

export const microBatcherOptionsSchema = z.strictObject({
  run: fn,
  maxBatchSize: positiveInt.optional(),
  maxWaitMs: timerMs.optional(),
  latencyBudgetMs: timerMs.optional(),
  adaptive: z.boolean().optional(),
  maxConcurrentBatches: positiveInt.optional(),
  maxBatchWeight: z.number().finite().positive().optional(),
  weight: fn.optional(),
  clock: clockSchema.optional(),
  name: z.string().min(1).optional(),
  closedError: fn.optional(),
});

export interface BatchAddOptions {
  /** Aborting rejects this caller at once with AbortedError (its queued items are dropped). */
  signal?: AbortSignal;
}

export interface MicroBatcherStats {
  /** Batches dispatched. */
  batches: number;
  /** Items dispatched. */
  items: number;
  /** Batches whose function threw or rejected. */
  failedBatches: number;
  largestBatch: number;
  /** Items waiting for a batch now. */
  queued: number;
  /** Batches running now. */
  running: number;
  /** The wait a batch opened now would get (ms). */
  windowMs: number;
  /** Moving average of batch durations (ms). */
  batchMs: number;
}

interface Caller<O> {
  results: O[];
  remaining: number;
  done: boolean;
  resolve(values: O[]): void;
  reject(error: unknown): void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  flights: Set<Flight<unknown, O>>;
  /** Items still queued (0: nothing to remove from the queue when the caller leaves). */
  queued: number;
}

interface Entry<I, O> {
  item: I;
  weight: number;
  caller: Caller<O>;
  index: number;
  /** When the window this item arrived in closes: it leaves then at the latest (given a free slot). */
  deadline: number;
}

interface Flight<I, O> {
  entries: Entry<I, O>[];
  controller: AbortController;
  /** The batch function answered (or failed): leaving callers no longer abort it. */
  finished: boolean;
}

/** Moving-average weight of the newest observation. */
const ALPHA = 0.25;
/** Expected calls per maxWaitMs below which no wait is worth it, and from which the full window is used. */
const LOW_EXPECTED = 1;
const HIGH_EXPECTED = 4;

/** The wall clock with referenced timers (see the `clock` option). */
const referencedClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, Math.max(0, ms)),
  clearTimeout: (handle) => {
    if (handle !== undefined) clearTimeout(handle as NodeJS.Timeout);
  },
};

export class MicroBatcher<I, O> {
  readonly name: string;
  readonly maxBatchSize: number;
  readonly maxWaitMs: number;
  private readonly run: BatchFunction<I, O>;
  private readonly latencyBudgetMs: number | undefined;
  private readonly adaptive: boolean;
  private readonly maxConcurrent: number;
  private readonly maxWeight: number;
  private readonly weightOf: ((item: I) => number) | undefined;
  private readonly clock: Clock;
  private readonly closedError: () => unknown;

  private queue: Entry<I, O>[] = [];
  private queuedWeight = 0;
  private readonly flights = new Set<Flight<I, O>>();
  private timer: TimerHandle | undefined;
  /**
   * The open window: from the first item queued while none was open until its deadline. Items arriving
   * meanwhile share its deadline, even when full batches leave early and the queue runs empty.
   */
  private windowOpen = false;
  private windowDeadline = 0;
  /** Bumped to cancel a scheduled microtask. */
  private generation = 0;
  private lastArrival: number | undefined;
  /** Moving average of the gap between calls (ms); undefined until two calls were seen. */
  private gapMs: number | undefined;
  private batchMs = 0;
  private closed = false;
  private idleWaiters: Array<() => void> = [];
  private counters = { batches: 0, items: 0, failedBatches: 0, largestBatch: 0 };

  constructor(options: MicroBatcherOptions<I, O>) {
    const o = parseOptions(microBatcherOptionsSchema, options, 'MicroBatcher options');
    this.run = o.run as unknown as BatchFunction<I, O>;
    this.maxBatchSize = o.maxBatchSize ?? 64;
    this.maxWaitMs = o.maxWaitMs ?? 10;
    this.latencyBudgetMs = o.latencyBudgetMs;
    this.adaptive = o.adaptive ?? true;
    this.maxConcurrent = o.maxConcurrentBatches ?? Number.POSITIVE_INFINITY;
    this.maxWeight = o.maxBatchWeight ?? Number.POSITIVE_INFINITY;
    this.weightOf = o.weight as ((item: I) => number) | undefined;
    this.clock = o.clock ?? referencedClock;
    this.name = o.name ?? 'micro-batcher';
    const closedError = o.closedError as (() => unknown) | undefined;
    this.closedError = closedError ?? (() => new AbortedError(`${this.name}: closed`, { details: { reason: 'closed' } }));
  }

  /** Queues one item; resolves with its result. */
  add(item: I, options: BatchAddOptions = {}): Promise<O> {
    return this.addMany([item], options).then((results) => results[0]!);
  }

  /** Queues several items for one caller (they may span batches); resolves with their results, in order. */
  addMany(items: readonly I[], options: BatchAddOptions = {}): Promise<O[]> {
    return new Promise<O[]>((resolve, reject) => {
      if (this.closed) return reject(this.closedError());
      const signal = options.signal;
      if (signal?.aborted) return reject(new AbortedError(`${this.name}: aborted`, { cause: signal.reason }));
      if (items.length === 0) return resolve([]);
      const weights: number[] = [];
      for (const item of items) {
        const w = this.weightOf ? this.weightOf(item) : 1;
        if (typeof w !== 'number' || !Number.isFinite(w) || w <= 0) {
          return reject(new TypeError(`${this.name}: weight(item) must be a positive finite number, got ${String(w)}`));
        }
        weights.push(w);
      }
      const caller: Caller<O> = {
        results: new Array<O>(items.length),
        remaining: items.length,
        done: false,
        resolve,
        reject,
        signal,
        onAbort: undefined,
        flights: new Set(),
        queued: items.length,
      };
      if (signal) {
        caller.onAbort = () => this.abortCaller(caller);
        signal.addEventListener('abort', caller.onAbort, { once: true });
      }
      const now = this.clock.now();
      this.observeArrival(now);
      // Everything queued while a window is open leaves when it closes (in several batches if it must).
      if (!this.windowOpen) this.openWindow(now + this.windowMs());
      for (let i = 0; i < items.length; i++) {
        this.queue.push({ item: items[i]!, weight: weights[i]!, caller, index: i, deadline: this.windowDeadline });
        this.queuedWeight += weights[i]!;
      }
      this.pump(false);
    });
  }

  /** Sends everything queued now, ignoring windows (still within `maxConcurrentBatches`). */
  flush(): void {
    for (const entry of this.queue) entry.deadline = Number.NEGATIVE_INFINITY;
    this.closeWindow();
    this.pump(true);
  }

  /** Resolves when nothing is queued or running (call `flush()` first not to wait for windows). */
  onIdle(): Promise<void> {
    if (this.queue.length === 0 && this.flights.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** The wait a batch opened now would get, in ms (see the module notes). */
  windowMs(): number {
    let window = this.maxWaitMs;
    if (this.adaptive) {
      if (this.gapMs === undefined || this.maxWaitMs === 0) window = 0;
      else {
        const expected = this.maxWaitMs / Math.max(this.gapMs, 1e-3);
        const share = Math.min(1, Math.max(0, (expected - LOW_EXPECTED) / (HIGH_EXPECTED - LOW_EXPECTED)));
        window = this.maxWaitMs * share;
      }
    }
    if (this.latencyBudgetMs !== undefined) window = Math.min(window, Math.max(0, this.latencyBudgetMs - this.batchMs));
    return window;
  }

  stats(): MicroBatcherStats {
    return {
      ...this.counters,
      queued: this.queue.length,
      running: this.flights.size,
      windowMs: this.windowMs(),
      batchMs: this.batchMs,
    };
  }

  /**
   * Rejects every queued and running caller with `closedError()`, aborts running batches' signals and
   * refuses new calls. Idempotent.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.closeWindow();
    const queued = this.queue;
    this.queue = [];
    this.queuedWeight = 0;
    for (const { caller } of queued) this.settle(caller, { error: this.closedError() });
    for (const flight of [...this.flights]) {
      for (const { caller } of flight.entries) this.settle(caller, { error: this.closedError() });
      flight.controller.abort(this.closedError());
    }
    this.checkIdle();
  }

  private observeArrival(now: number): void {
    if (this.lastArrival !== undefined) {
      // A long quiet gap counts as at most 8 windows: enough to bring the estimate back to "rare" at once.
      const gap = Math.min(Math.max(0, now - this.lastArrival), 8 * Math.max(this.maxWaitMs, 1));
      this.gapMs = this.gapMs === undefined ? gap : ALPHA * gap + (1 - ALPHA) * this.gapMs;
    }
    this.lastArrival = now;
  }

  private isFull(): boolean {
    return this.queue.length >= this.maxBatchSize || this.queuedWeight >= this.maxWeight;
  }

  /**
   * Sends what should go now, within `maxConcurrentBatches`: full batches always; when `due` is set (a
   * window closed, or a running batch finished) also the head's batch once its deadline has passed.
   * Items waiting for a slot need no timer: a finishing batch pumps again.
   */
  private pump(due: boolean): void {
    if (this.closed) return;
    while (this.queue.length > 0 && this.flights.size < this.maxConcurrent) {
      if (!this.isFull() && !(due && this.queue[0]!.deadline <= this.clock.now())) break;
      this.dispatch(this.take());
    }
  }

  private take(): Entry<I, O>[] {
    let count = 0;
    let weight = 0;
    while (count < this.queue.length && count < this.maxBatchSize) {
      const w = this.queue[count]!.weight;
      if (count > 0 && weight + w > this.maxWeight) break;
      weight += w;
      count++;
    }
    const entries = this.queue.splice(0, count);
    this.queuedWeight -= weight;
    if (this.queue.length === 0) this.queuedWeight = 0;
    return entries;
  }

  /** Opens a window closing at `deadline`: on the next microtask when it is now, else on a clock timer. */
  private openWindow(deadline: number): void {
    this.windowOpen = true;
    this.windowDeadline = deadline;
    const generation = ++this.generation;
    const fire = () => {
      if (generation !== this.generation) return;
      this.timer = undefined;
      this.windowOpen = false;
      // Node timers may fire a millisecond early by Date.now(): re-arm for what is left rather than leave the
      // queue stranded until the next call arrives.
      const head = this.queue[0];
      if (head !== undefined && !this.closed && head.deadline > this.clock.now() && !this.isFull()) {
        this.openWindow(head.deadline);
        return;
      }
      this.pump(true);
      // Items that came after the batch just sent keep their own deadline.
      if (!this.closed && !this.windowOpen && this.queue.length > 0 && this.flights.size < this.maxConcurrent) this.openWindow(this.queue[0]!.deadline);
    };
    const delay = deadline - this.clock.now();
    if (delay <= 0) queueMicrotask(fire);
    else this.timer = this.clock.setTimeout(fire, delay);
  }

  private closeWindow(): void {
    this.generation++;
    this.windowOpen = false;
    if (this.timer !== undefined) {
      this.clock.clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  private dispatch(entries: Entry<I, O>[]): void {
    const flight: Flight<I, O> = { entries, controller: new AbortController(), finished: false };
    this.flights.add(flight);
    for (const entry of entries) {
      entry.caller.queued--;
      entry.caller.flights.add(flight as Flight<unknown, O>);
    }
    this.counters.batches++;
    this.counters.items += entries.length;
    if (entries.length > this.counters.largestBatch) this.counters.largestBatch = entries.length;
    const started = this.clock.now();
    let pending: Promise<ReadonlyArray<O | BatchItemError>>;
    try {
      pending = Promise.resolve(this.run(entries.map((e) => e.item), { signal: flight.controller.signal, batch: this.counters.batches }));
    } catch (error) {
      pending = Promise.reject(error);
    }
    pending
      .then(
        (results) => {
          flight.finished = true;
          if (!Array.isArray(results) || results.length !== entries.length) {
            const got = Array.isArray(results) ? `${results.length} results` : describeResult(results);
            throw new TypeError(`${this.name}: the batch function returned ${got} for ${entries.length} items`);
          }
          for (let i = 0; i < entries.length; i++) {
            const { caller, index } = entries[i]!;
            if (caller.done) continue;
            const result = results[i];
            if (isBatchItemError(result)) {
              this.settle(caller, { error: result.error });
              continue;
            }
            caller.results[index] = result as O;
            caller.flights.delete(flight as Flight<unknown, O>);
            if (--caller.remaining === 0) this.settle(caller);
          }
        },
      )
      .catch((error: unknown) => {
        flight.finished = true;
        if (!this.closed) this.counters.failedBatches++;
        for (const { caller } of entries) this.settle(caller, { error });
      })
      .finally(() => {
        this.flights.delete(flight);
        const duration = Math.max(0, this.clock.now() - started);
        this.batchMs = this.counters.batches === 1 ? duration : ALPHA * duration + (1 - ALPHA) * this.batchMs;
        this.pump(true);
        this.checkIdle();
      });
  }

  /** Resolves the caller with its results, or rejects it with `failure.error`. */
  private settle(caller: Caller<O>, failure?: { error: unknown }): void {
    if (caller.done) return;
    caller.done = true;
    if (caller.signal && caller.onAbort) caller.signal.removeEventListener('abort', caller.onAbort);
    if (caller.queued > 0) this.dropQueued(caller);
    for (const flight of caller.flights) this.release(flight);
    caller.flights.clear();
    if (failure) caller.reject(failure.error);
    else caller.resolve(caller.results);
  }

  /** Removes a finished caller's items that are still queued (they would be sent for nobody). */
  private dropQueued(caller: Caller<O>): void {
    this.queue = this.queue.filter((entry) => {
      if (entry.caller !== caller) return true;
      this.queuedWeight -= entry.weight;
      return false;
    });
    caller.queued = 0;
    if (this.queue.length === 0) this.queuedWeight = 0;
    this.checkIdle();
  }

  /** A caller left: when nobody waits for a running batch any more, its signal aborts. */
  private release(flight: Flight<unknown, O>): void {
    if (!flight.finished && flight.entries.every((entry) => entry.caller.done)) flight.controller.abort(new AbortedError(`${this.name}: every caller left the batch`));
  }

  private abortCaller(caller: Caller<O>): void {
    if (caller.done) return;
    this.settle(caller, { error: new AbortedError(`${this.name}: aborted`, { cause: caller.signal?.reason }) });
  }

  private checkIdle(): void {
    if (this.queue.length > 0 || this.flights.size > 0 || this.idleWaiters.length === 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

function describeResult(value: unknown): string {
  if (value === null) return 'null';
  return typeof value === 'object' ? 'a non-array object' : typeof value;
}
