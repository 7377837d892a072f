/**
 * The in-memory key store the built-in limiters share: LRU-bounded keys, expiry sweep, FIFO waiters.
 * Algorithms plug in as pure state transitions over plain per-key state, so another store (Redis + Lua)
 * can run the same math.
 */
import { coarseNow, systemClock, type Clock, type TimerHandle } from '../clock.js';
import { AbortedError, RateLimitedError } from '../errors.js';
import { describe, MAX_TIMER_MS } from '../options/validate.js';
import type { LimitDecision, Limiter, TakeOptions, WindowUsage } from './limit-decision.js';

export interface InMemoryLimiterConfig {
  name: string;
  clock: Clock;
  /** Largest cost a single call may ask for (a bigger one could never be admitted). */
  maxCost: number;
  maxKeys: number;
  maxQueue: number;
  sweepIntervalMs: number;
}


interface Waiter {
  cost: number;
  resolve: (decision: LimitDecision) => void;
  reject: (error: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

interface WaitQueue<S> {
  waiters: Waiter[];
  timer: TimerHandle | undefined;
  /** The key's state as it will be once every queued waiter is admitted, and when that happens. */
  projected: S;
  projectedAt: number;
  serve: () => void;
}

interface Entry<S> {
  key: string;
  state: S;
  older: Entry<S> | undefined;
  newer: Entry<S> | undefined;
  queue: WaitQueue<S> | undefined;
}

/**
 * In-memory store for per-key limiter state. One Map lookup per call; recency is an intrusive doubly
 * linked list (pointer swaps, not Map delete+set) so exact LRU eviction stays cheap.
 *
 * Fairness: while a key has waiters (from `take`), `check` on that key is denied too, so non-blocking
 * callers cannot starve queued ones; that also makes the projected admission times of waiters exact.
 */
export abstract class InMemoryLimiter<S> implements Limiter {
  readonly name: string;
  protected readonly clock: Clock;
  private readonly maxCost: number;
  private readonly maxKeys: number;
  private readonly maxQueue: number;
  private readonly sweepIntervalMs: number;
  private readonly entries = new Map<string, Entry<S>>();
  private oldest: Entry<S> | undefined;
  private newest: Entry<S> | undefined;
  private waiting = 0;
  private sweepTimer: TimerHandle | undefined;
  private closed = false;
  private readonly sweepFn = (): void => this.sweep();
  /**
   * The time `check` and `tryAcquire` decide at: systemClock through `coarseNow` (a reading costs more than
   * the rest of a decision; a window or refill measured with it is off by up to ~1 ms), an injected clock
   * directly. Waiters (`take`) are timed with the exact clock.
   */
  private readonly decisionNow: () => number;

  protected constructor(config: InMemoryLimiterConfig) {
    this.name = config.name;
    this.clock = config.clock;
    this.maxCost = config.maxCost;
    this.maxKeys = config.maxKeys;
    this.maxQueue = config.maxQueue;
    this.sweepIntervalMs = config.sweepIntervalMs;
    const clock = config.clock;
    this.decisionNow = clock === systemClock ? coarseNow : () => clock.now();
  }

  /** State of a key never seen (equivalently: fully expired) at `now`. */
  protected abstract initial(now: number): S;
  /** Moves `state` to `now` (refill / rotate) without charging. */
  protected abstract advance(state: S, now: number): void;
  /** Charges `cost` and returns 0, or charges nothing and returns ms (> 0) until it would fit. */
  protected abstract consume(state: S, now: number, cost: number): number;
  /** Gives back up to `cost` units charged earlier. */
  protected abstract giveBack(state: S, now: number, cost: number): void;
  /** True when dropping the state changes no future decision. */
  protected abstract idle(state: S, now: number): boolean;
  protected abstract clone(state: S): S;
  /** Builds the decision from the (already advanced) state. */
  protected abstract decision(state: S, now: number, cost: number, retryAfterMs: number): LimitDecision;
  protected abstract usage(state: S, now: number): WindowUsage[];

  get size(): number {
    return this.entries.size;
  }

  check(key: string, cost = 1): LimitDecision {
    if (typeof cost !== 'number' || !(cost >= 0 && cost <= this.maxCost)) throw this.costError(cost);
    const now = this.decisionNow();
    const entry = this.entry(key, now);
    const state = entry.state;
    if (entry.queue !== undefined) {
      this.advance(state, now);
      const decision = this.decision(state, now, cost, this.queuedWait(entry.queue, now, cost));
      for (const window of decision.windows) window.remaining = 0; // what is left is promised to waiters
      return decision;
    }
    return this.decision(state, now, cost, this.consume(state, now, cost));
  }

  tryAcquire(key: string, cost = 1): boolean {
    if (typeof cost !== 'number' || !(cost >= 0 && cost <= this.maxCost)) throw this.costError(cost);
    const now = this.decisionNow();
    const entry = this.entry(key, now);
    // While a key has waiters, what frees up is theirs (as in `check`).
    if (entry.queue !== undefined) return false;
    return this.consume(entry.state, now, cost) === 0;
  }

  getUsage(key: string): WindowUsage[] {
    const now = this.clock.now();
    const entry = this.entries.get(key);
    if (entry === undefined) return this.usage(this.initial(now), now);
    if (entry.queue === undefined && this.idle(entry.state, now)) {
      this.remove(entry);
      return this.usage(this.initial(now), now);
    }
    this.advance(entry.state, now);
    return this.usage(entry.state, now);
  }

  refund(key: string, cost = 1): void {
    if (typeof cost !== 'number' || !(cost >= 0 && Number.isFinite(cost))) {
      throw new RangeError(`${this.constructor.name} "${this.name}": refund must be a finite number >= 0, received ${describe(cost)}`);
    }
    const entry = this.entries.get(key);
    if (entry === undefined || cost === 0) return;
    const now = this.clock.now();
    this.giveBack(entry.state, now, cost);
    if (entry.queue !== undefined) {
      // The returned capacity may let the head waiter in sooner.
      this.reproject(entry);
      this.clock.clearTimeout(entry.queue.timer);
      entry.queue.serve();
    }
  }

  reset(key: string): void {
    const entry = this.entries.get(key);
    if (entry === undefined) return;
    if (entry.queue === undefined) {
      this.remove(entry);
      return;
    }
    // Waiters keep their place; the freed capacity goes to them first.
    entry.state = this.initial(this.clock.now());
    this.reproject(entry);
    this.clock.clearTimeout(entry.queue.timer);
    entry.queue.serve();
  }

  take(key: string, cost = 1, options?: TakeOptions): Promise<LimitDecision> {
    if (typeof cost !== 'number' || !(cost >= 0 && cost <= this.maxCost)) return Promise.reject(this.costError(cost));
    const timeoutMs = options?.timeoutMs ?? Infinity;
    if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0)) {
      return Promise.reject(
        new RangeError(`${this.label()}: take() timeoutMs must be a number >= 0, received ${describe(timeoutMs)}`),
      );
    }
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(abortedError(signal));
    if (this.closed) return Promise.reject(new AbortedError(`${this.label()} is closed`));

    const now = this.clock.now();
    const entry = this.entry(key, now);
    let queue = entry.queue;
    if (queue === undefined) {
      const wait = this.consume(entry.state, now, cost);
      if (wait === 0) return Promise.resolve(this.decision(entry.state, now, cost, 0));
    }
    // Must wait: project when this call is admitted behind everyone already queued.
    const projected = this.clone(queue === undefined ? entry.state : queue.projected);
    const at = this.projectAdmission(projected, queue === undefined ? now : Math.max(now, queue.projectedAt), cost);
    const wait = at - now;
    if (wait > timeoutMs || wait === Infinity) {
      return Promise.reject(
        new RateLimitedError(`${this.label()}: waiting ${Math.ceil(wait)}ms would exceed timeoutMs ${timeoutMs}`, {
          retryAfterMs: wait,
          details: { limiter: this.name, reason: 'timeout', cost },
        }),
      );
    }
    if (this.waiting >= this.maxQueue) {
      return Promise.reject(
        new RateLimitedError(`${this.label()}: wait queue is full (${this.maxQueue} waiters)`, {
          retryAfterMs: wait,
          details: { limiter: this.name, reason: 'queue_full', cost },
        }),
      );
    }
    return new Promise<LimitDecision>((resolve, reject) => {
      const waiter: Waiter = { cost, resolve, reject, signal, onAbort: undefined };
      if (signal !== undefined) {
        waiter.onAbort = () => this.abortWaiter(entry, waiter);
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      if (queue === undefined) {
        const q: WaitQueue<S> = {
          waiters: [],
          timer: undefined,
          projected,
          projectedAt: at,
          serve: () => this.serve(entry, q),
        };
        queue = entry.queue = q;
        q.timer = this.clock.setTimeout(q.serve, Math.min(wait, MAX_TIMER_MS));
      } else {
        queue.projected = projected;
        queue.projectedAt = at;
      }
      queue.waiters.push(waiter);
      this.waiting++;
    });
  }

  /** Stops the sweep timer, rejects every waiter with AbortedError and drops all state. */
  close(): void {
    this.closed = true;
    this.clock.clearTimeout(this.sweepTimer);
    this.sweepTimer = undefined;
    for (const entry of this.entries.values()) {
      const queue = entry.queue;
      if (queue === undefined) continue;
      this.clock.clearTimeout(queue.timer);
      entry.queue = undefined;
      for (const waiter of queue.waiters) {
        this.waiting--;
        detach(waiter);
        waiter.reject(new AbortedError(`${this.label()} was closed while waiting`));
      }
    }
    this.entries.clear();
    this.oldest = this.newest = undefined;
  }

  protected label(): string {
    return `${this.constructor.name} "${this.name}"`;
  }

  private costError(cost: unknown): RangeError {
    return new RangeError(
      `${this.label()}: cost must be a finite number from 0 to ${this.maxCost}, received ${describe(cost)}`,
    );
  }

  /** The key's entry, created if missing, marked most recently used. */
  private entry(key: string, now: number): Entry<S> {
    let entry = this.entries.get(key);
    if (entry !== undefined) {
      if (entry !== this.newest) {
        this.unlink(entry);
        this.link(entry);
      }
      return entry;
    }
    entry = { key, state: this.initial(now), older: undefined, newer: undefined, queue: undefined };
    this.entries.set(key, entry);
    this.link(entry);
    if (this.entries.size > this.maxKeys) this.evict();
    if (this.sweepTimer === undefined && !this.closed) {
      this.sweepTimer = this.clock.setTimeout(this.sweepFn, this.sweepIntervalMs);
    }
    return entry;
  }

  /** Drops the least recently used key that has no waiters. */
  private evict(): void {
    for (let e = this.oldest; e !== undefined && e !== this.newest; e = e.newer) {
      if (e.queue === undefined) {
        this.remove(e);
        return;
      }
    }
  }

  private sweep(): void {
    this.sweepTimer = undefined;
    if (this.closed) return;
    const now = this.clock.now();
    for (let e = this.oldest; e !== undefined; ) {
      const next = e.newer;
      if (e.queue === undefined && this.idle(e.state, now)) this.remove(e);
      e = next;
    }
    if (this.entries.size > 0) this.sweepTimer = this.clock.setTimeout(this.sweepFn, this.sweepIntervalMs);
  }

  private remove(entry: Entry<S>): void {
    this.entries.delete(entry.key);
    this.unlink(entry);
  }

  private link(entry: Entry<S>): void {
    entry.older = this.newest;
    entry.newer = undefined;
    if (this.newest !== undefined) this.newest.newer = entry;
    else this.oldest = entry;
    this.newest = entry;
  }

  private unlink(entry: Entry<S>): void {
    if (entry.older !== undefined) entry.older.newer = entry.newer;
    else this.oldest = entry.newer;
    if (entry.newer !== undefined) entry.newer.older = entry.older;
    else this.newest = entry.older;
    entry.older = entry.newer = undefined;
  }

  /** Earliest time >= `from` at which `cost` is admitted into `state` (which it then charges). */
  private projectAdmission(state: S, from: number, cost: number): number {
    let at = from;
    // Two rounds suffice (wait, then admit); the bound only guards against float edge cases.
    for (let round = 0; round < 64; round++) {
      const wait = this.consume(state, at, cost);
      if (wait === 0) return at;
      at += wait;
    }
    return Infinity;
  }

  private queuedWait(queue: WaitQueue<S>, now: number, cost: number): number {
    const at = this.projectAdmission(this.clone(queue.projected), Math.max(now, queue.projectedAt), cost);
    return Math.max(1, at - now);
  }

  /** Recomputes the projection after the queue or the state changed outside the normal flow. */
  private reproject(entry: Entry<S>): void {
    const queue = entry.queue!;
    const projected = this.clone(entry.state);
    let at = this.clock.now();
    for (const waiter of queue.waiters) at = this.projectAdmission(projected, at, waiter.cost);
    queue.projected = projected;
    queue.projectedAt = at;
  }

  /** Admits queued waiters in order while they fit; re-arms the timer for the first that does not. */
  private serve(entry: Entry<S>, queue: WaitQueue<S>): void {
    queue.timer = undefined;
    if (entry.queue !== queue) return;
    const now = this.clock.now();
    const waiters = queue.waiters;
    while (waiters.length > 0) {
      const waiter = waiters[0]!;
      const wait = this.consume(entry.state, now, waiter.cost);
      if (wait > 0) {
        queue.timer = this.clock.setTimeout(queue.serve, Math.min(wait, MAX_TIMER_MS));
        return;
      }
      waiters.shift();
      this.waiting--;
      detach(waiter);
      waiter.resolve(this.decision(entry.state, now, waiter.cost, 0));
    }
    entry.queue = undefined;
    if (this.entries.get(entry.key) === entry && entry !== this.newest) {
      this.unlink(entry);
      this.link(entry);
    }
  }

  private abortWaiter(entry: Entry<S>, waiter: Waiter): void {
    const queue = entry.queue;
    if (queue === undefined) return;
    const index = queue.waiters.indexOf(waiter);
    if (index < 0) return;
    queue.waiters.splice(index, 1);
    this.waiting--;
    waiter.reject(abortedError(waiter.signal!));
    if (queue.waiters.length === 0) {
      this.clock.clearTimeout(queue.timer);
      entry.queue = undefined;
      return;
    }
    this.reproject(entry);
    if (index === 0) {
      // The new head may need less: re-evaluate now.
      this.clock.clearTimeout(queue.timer);
      queue.serve();
    }
  }
}

function detach(waiter: Waiter): void {
  if (waiter.onAbort !== undefined) waiter.signal!.removeEventListener('abort', waiter.onAbort);
}

function abortedError(signal: AbortSignal): AbortedError {
  return new AbortedError('Waiting for the rate limiter was aborted', { cause: signal.reason });
}
