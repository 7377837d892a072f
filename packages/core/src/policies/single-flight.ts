import { z } from 'zod';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import { Emitter } from '../events.js';
import { clockSchema, parseOptions, positiveInt, timerMs } from '../options/validate.js';
import { abortedError, NEVER_ABORTED, type Policy, type Work } from './policy.js';

export interface SingleFlightOptions {
  /** Keep a successful result this long after it settles (errors are never kept). Default 0. */
  shareWindowMs?: number;
  clock?: Clock;
  /** In-flight plus shared entries kept at most; beyond it calls run unshared. Default 10 000. */
  maxKeys?: number;
}

export const singleFlightOptionsSchema = z.strictObject({
  shareWindowMs: timerMs.optional(),
  clock: clockSchema.optional(),
  maxKeys: positiveInt.optional(),
});

export interface SingleFlightEvents extends Record<string, unknown> {
  /** A caller got another caller's execution (in flight or within the share window). */
  shared: { key: string };
}

export interface SingleFlightStats {
  /** Executions actually run (including unshared runs beyond maxKeys). */
  leaders: number;
  /** Callers that joined an execution still in flight. */
  followers: number;
  /** Callers served a result kept by the share window. */
  windowHits: number;
}

interface Entry {
  promise: Promise<unknown>;
  settled: boolean;
  timer: TimerHandle | undefined;
  /** Aborts the shared run once every caller that joined it has aborted (policy runs only). */
  controller: AbortController | undefined;
  /** Callers still waiting; a caller without a signal can never leave. */
  live: number;
}

/** Collapses identical concurrent calls (same key) into one execution whose result or error all share. */
export class SingleFlight {
  private readonly shareWindowMs: number;
  private readonly clock: Clock;
  private readonly maxKeys: number;
  private readonly entries = new Map<string, Entry>();
  private readonly events = new Emitter<SingleFlightEvents>();
  private leaders = 0;
  private followers = 0;
  private windowHits = 0;
  private closed = false;

  constructor(options: SingleFlightOptions = {}) {
    const o = parseOptions(singleFlightOptionsSchema, options ?? {}, 'SingleFlight options');
    this.shareWindowMs = o.shareWindowMs ?? 0;
    this.clock = o.clock ?? systemClock;
    this.maxKeys = o.maxKeys ?? 10_000;
  }

  get size(): number {
    return this.entries.size;
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  join<T>(key: string): Promise<T> | undefined {
    return this.entries.get(key)?.promise as Promise<T> | undefined;
  }

  stats(): SingleFlightStats {
    return { leaders: this.leaders, followers: this.followers, windowHits: this.windowHits };
  }

  on<K extends keyof SingleFlightEvents>(event: K, listener: (e: SingleFlightEvents[K]) => void): () => void {
    return this.events.on(event, listener);
  }

  do<T>(key: string, fn: () => Promise<T> | T): Promise<T> {
    const entry = this.entries.get(key);
    if (entry) {
      this.follow(key, entry);
      return entry.promise as Promise<T>;
    }
    if (this.entries.size >= this.maxKeys) {
      this.leaders++;
      return invoke(fn);
    }
    return this.lead(key, fn, undefined).promise as Promise<T>;
  }

  /**
   * A Policy bound to `key`. Unlike `do`, each caller's signal only cancels that caller's wait; the
   * shared run's signal aborts when every caller that joined it has aborted.
   */
  policy(key: string): Policy {
    return { execute: (work, signal) => this.runPolicy(key, work, signal) };
  }

  /** Forgets every entry: later calls start new runs; promises already handed out still settle. */
  clear(): void {
    for (const entry of this.entries.values()) {
      if (entry.timer !== undefined) this.clock.clearTimeout(entry.timer);
    }
    this.entries.clear();
  }

  /** Clears share-window timers and stops keeping results; calls still work, unshared by window. */
  close(): void {
    this.closed = true;
    this.clear();
  }

  private runPolicy<T>(key: string, work: Work<T>, signal: AbortSignal | undefined): Promise<T> {
    const watched = signal === NEVER_ABORTED ? undefined : signal;
    if (watched?.aborted) return Promise.reject(abortedError(watched));
    let entry = this.entries.get(key);
    if (entry) {
      this.follow(key, entry);
    } else if (this.entries.size >= this.maxKeys) {
      this.leaders++;
      return invoke(() => work({ signal: watched ?? NEVER_ABORTED, attempt: 1 }));
    } else {
      const controller = watched ? new AbortController() : undefined;
      const runSignal = controller ? controller.signal : NEVER_ABORTED;
      entry = this.lead(key, () => work({ signal: runSignal, attempt: 1 }), controller);
    }
    return watched && !entry.settled ? this.wait(key, entry, watched) : (entry.promise as Promise<T>);
  }

  private lead<T>(key: string, fn: () => Promise<T> | T, controller: AbortController | undefined): Entry {
    this.leaders++;
    const promise = invoke(fn);
    const entry: Entry = { promise, settled: false, timer: undefined, controller, live: 1 };
    this.entries.set(key, entry);
    promise.then(
      () => this.keep(key, entry),
      () => this.drop(key, entry),
    );
    return entry;
  }

  private follow(key: string, entry: Entry): void {
    if (entry.settled) this.windowHits++;
    else {
      this.followers++;
      entry.live++;
    }
    if (this.events.has('shared')) this.events.emit('shared', { key });
  }

  /** One caller's view of a shared run: its own abort rejects only its own promise. */
  private wait<T>(key: string, entry: Entry, signal: AbortSignal): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => {
        reject(abortedError(signal));
        if (--entry.live === 0 && !entry.settled) {
          // Nobody wants the result any more: cancel the run and let the next caller start afresh.
          this.drop(key, entry);
          entry.controller?.abort(signal.reason);
        }
      };
      signal.addEventListener('abort', onAbort, { once: true });
      entry.promise.then(
        (value) => {
          signal.removeEventListener('abort', onAbort);
          resolve(value as T);
        },
        (error: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(error);
        },
      );
    });
  }

  private keep(key: string, entry: Entry): void {
    if (this.entries.get(key) !== entry) return;
    if (this.shareWindowMs > 0 && !this.closed) {
      entry.settled = true;
      entry.timer = this.clock.setTimeout(() => {
        entry.timer = undefined;
        this.drop(key, entry);
      }, this.shareWindowMs);
    } else {
      this.entries.delete(key);
    }
  }

  private drop(key: string, entry: Entry): void {
    if (this.entries.get(key) !== entry) return;
    if (entry.timer !== undefined) this.clock.clearTimeout(entry.timer);
    this.entries.delete(key);
  }
}

function invoke<T>(fn: () => Promise<T> | T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (error) {
    return Promise.reject(error);
  }
}
