import { z } from 'zod';
import { systemClock, type Clock } from '../clock.js';
import { AbortedError, BreakerOpenError } from '../errors.js';
import { Emitter } from '../events.js';
import { clockSchema, durationMs, nonNegativeInt, parseOptions, positiveInt } from '../options/validate.js';
import { signalOrNever, type ExecuteContext, type Policy, type Work } from './policy.js';
import { sharedBreakerSettingSchema, type SharedBreakerSetting } from './shared-breaker-options.js';

/**
 * Circuit breaker: stops calling an upstream that keeps failing, then lets a few probe calls through to
 * find out whether it recovered. Time only moves forward through `clock.now()`: open -> half-open happens
 * lazily on the next call or inspection once `nextAttemptAt` has passed, so the breaker owns no timers.
 */
export type BreakerState = 'closed' | 'open' | 'half-open' | 'isolated';

export interface CircuitBreakerOptions {
  /** Used in errors, events and metrics. Default 'default'. */
  name?: string;
  /** Consecutive failures that open the breaker. Default 5; 0 disables this trigger. */
  failureThreshold?: number;
  /**
   * Opens when failures / calls over the rolling window reaches `threshold` (0 < x <= 1), once the window
   * holds at least `minimumCalls` calls. Evaluated whenever a failure is recorded.
   */
  failureRate?: { threshold: number; windowMs?: number; minimumCalls?: number; buckets?: number };
  /** Time spent open before probes are allowed. Default 30_000. */
  recoveryTimeoutMs?: number;
  /** Each reopen from half-open multiplies the open time by `multiplier` (default 2), up to `maxMs`; reset on close. */
  recoveryBackoff?: { multiplier?: number; maxMs: number };
  /** Concurrent probe calls allowed while half-open. Default 1. */
  halfOpenMaxProbes?: number;
  /** Probe successes needed to close. Default 1. */
  successThreshold?: number;
  /** Which errors count against the upstream. Default: all but AbortedError (a caller abort is not the upstream's fault). */
  isFailure?: (error: unknown) => boolean;
  /** Which resolved results count as failures (e.g. a 503 response object). Default: none. */
  isResultFailure?: (result: unknown) => boolean;
  clock?: Clock;
  /**
   * Share this breaker's state with other replicas through the registry's store (see SharedBreaker):
   * `true`, or `{ probeLeaseMs, stateTtlMs }`. Read by BreakerRegistry; a CircuitBreaker built directly
   * ignores it (attach a SharedBreaker yourself).
   */
  shared?: SharedBreakerSetting;
}

const DEFAULT_RECOVERY_MS = 30_000;
/** retryAfterMs when half-open with every probe slot busy: the probe should settle soon. */
const HALF_OPEN_RETRY_MS = 1000;

const predicate = z.custom<(value: unknown) => boolean>((v) => typeof v === 'function', { message: 'a function' });

export const circuitBreakerOptionsSchema = z
  .strictObject({
    name: z.string().min(1).optional(),
    failureThreshold: nonNegativeInt.optional(),
    failureRate: z
      .strictObject({
        threshold: z.number().gt(0).lte(1),
        windowMs: z.number().finite().positive().optional(),
        minimumCalls: positiveInt.optional(),
        buckets: positiveInt.max(1000).optional(),
      })
      .optional(),
    recoveryTimeoutMs: durationMs.optional(),
    recoveryBackoff: z
      .strictObject({
        multiplier: z.number().finite().gte(1).optional(),
        maxMs: durationMs,
      })
      .optional(),
    halfOpenMaxProbes: positiveInt.optional(),
    successThreshold: positiveInt.optional(),
    isFailure: predicate.optional(),
    isResultFailure: predicate.optional(),
    clock: clockSchema.optional(),
    shared: sharedBreakerSettingSchema.optional(),
  });

/**
 * The options as one breaker will use them. `circuitBreakerOptionsSchema` validates each piece alone
 * (engine defaults, per-name options); this also checks what only makes sense once they are merged.
 */
const resolvedOptionsSchema = circuitBreakerOptionsSchema.superRefine((o, ctx) => {
  const recovery = o.recoveryTimeoutMs ?? DEFAULT_RECOVERY_MS;
  if (o.recoveryBackoff && o.recoveryBackoff.maxMs < recovery) {
    ctx.addIssue({
      code: 'custom',
      path: ['recoveryBackoff', 'maxMs'],
      input: o.recoveryBackoff.maxMs,
      message: `a number >= recoveryTimeoutMs (${recovery})`,
    });
  }
});

/** Validates the final (merged) options of one breaker; throws InvalidOptionError. */
export function validateCircuitBreakerOptions(options: unknown, where: string, prefix = ''): CircuitBreakerOptions {
  return parseOptions(resolvedOptionsSchema, options ?? {}, where, prefix) as CircuitBreakerOptions;
}

export interface BreakerPermit {
  success(): void;
  /** Counts a failure unless `error` is one `isFailure` rejects (then it is 'ignored'). */
  failure(error?: unknown): void;
  /** Neither outcome: frees a probe slot, records nothing. */
  release(): void;
}

export interface BreakerStats {
  state: BreakerState;
  consecutiveFailures: number;
  consecutiveSuccesses: number;
  /** Tracked only when `failureRate` is set (it costs a clock read per call); zeros otherwise. */
  window: { calls: number; failures: number; failureRate: number };
  openedAt?: number;
  nextAttemptAt?: number;
  halfOpenInFlight: number;
  totals: { successes: number; failures: number; rejections: number; ignored: number };
}

export type BreakerEvents = {
  /** `origin` is set when the change was adopted from another replica (a shared breaker): its replica id. */
  stateChange: { name: string; from: BreakerState; to: BreakerState; reason: string; origin?: string };
  success: { name: string; durationMs: number };
  /** For a result flagged by `isResultFailure`, `error` is that result. */
  failure: { name: string; error: unknown; durationMs: number };
  rejected: { name: string; state: BreakerState; retryAfterMs: number };
  ignored: { name: string; error: unknown };
};

const time = z.number().finite();
const snapshotTotals = z.object({
  successes: nonNegativeInt,
  failures: nonNegativeInt,
  rejections: nonNegativeInt,
  ignored: nonNegativeInt,
});

export const breakerSnapshotSchema = z
  .object({
    version: z.literal(1),
    state: z.enum(['closed', 'open', 'half-open', 'isolated']),
    openedAt: time.nullable(),
    nextAttemptAt: time.nullable(),
    reopenCount: nonNegativeInt,
    consecutiveFailures: nonNegativeInt,
    consecutiveSuccesses: nonNegativeInt,
    window: z.object({
      bucketMs: z.number().finite().positive(),
      buckets: z.array(z.object({ start: time, calls: nonNegativeInt, failures: nonNegativeInt })),
    }),
    totals: snapshotTotals,
  })
  .superRefine((s, ctx) => {
    if (s.state === 'open' && s.nextAttemptAt === null) {
      ctx.addIssue({ code: 'custom', path: ['nextAttemptAt'], input: null, message: 'a number when state is "open"' });
    }
    s.window.buckets.forEach((b, i) => {
      if (b.failures > b.calls) {
        ctx.addIssue({ code: 'custom', path: ['window', 'buckets', i, 'failures'], input: b.failures, message: `a number <= calls (${b.calls})` });
      }
    });
  });

/** Plain JSON-serializable breaker state, for persisting across restarts or sharing between workers. */
export type BreakerSnapshot = z.output<typeof breakerSnapshotSchema>;

/** @internal A hold on one cluster-wide probe slot (SharedBreaker); released once the probe settles. */
export interface ProbeLease {
  release(): void;
}

/**
 * @internal How SharedBreaker plugs into one breaker. Only transitions and half-open admissions reach it:
 * the closed hot path never does, so an unshared-looking closed breaker costs nothing extra.
 */
export interface BreakerSync {
  /** Called synchronously after every local transition (manual ones and open -> open re-arms too), never for adopted ones. */
  transitioned(change: { from: BreakerState; to: BreakerState; reason: string; manual: boolean }): void;
  /** tryAcquire (synchronous): a lease this replica already holds, else undefined (it may start fetching one). */
  takeProbe(): ProbeLease | undefined;
  /** execute: asks the store; undefined means every cluster-wide slot is taken. Never rejects. */
  acquireProbe(): Promise<ProbeLease | undefined>;
  /** retryAfterMs for a call rejected because no cluster-wide probe slot was free. */
  probeRetryAfterMs(): number;
}

/** @internal A state decided by another replica, with its times relative to now (clocks differ between hosts). */
export interface AdoptedState {
  state: BreakerState;
  reason: string;
  origin: string;
  /** open: time left before probes are allowed. */
  openForMs?: number;
  /** open / isolated: how long ago it opened. */
  openedAgoMs?: number;
  reopenCount: number;
}

/** @internal What SharedBreaker writes for this breaker's current local state. */
export interface SyncView {
  state: BreakerState;
  openForMs?: number;
  reopenCount: number;
  maxProbes: number;
}

const NORMAL = 0;
const PROBE = 1;
const REJECTED = 2;

/** Shared context for calls without a signal: one frozen object instead of one per call. */
const NO_SIGNAL_CTX: ExecuteContext = Object.freeze({ signal: signalOrNever(undefined), attempt: 1 });

const defaultIsFailure = (error: unknown): boolean => !(error instanceof AbortedError);

export class CircuitBreaker implements Policy {
  readonly name: string;
  private readonly clock: Clock;
  private readonly emitter = new Emitter<BreakerEvents>();
  private readonly failureThreshold: number;
  private readonly rateThreshold: number; // 0 = rate trigger off
  private readonly minimumCalls: number;
  private readonly recoveryTimeoutMs: number;
  private readonly backoffMultiplier: number;
  private readonly backoffMaxMs: number;
  private readonly maxProbes: number;
  private readonly successThreshold: number;
  private readonly isFailure: (error: unknown) => boolean;
  private readonly isResultFailure: ((result: unknown) => boolean) | undefined;
  private readonly messages: Record<BreakerState, string>;
  private readonly openDetails: Record<BreakerState, Readonly<Record<string, unknown>>>;

  private state: BreakerState = 'closed';
  /** Bumped on every transition: outcomes of calls admitted under an older generation never move the state. */
  private generation = 0;
  private openedAt: number | undefined;
  private nextAttemptAt = 0;
  private reopenCount = 0;
  private consecutiveFailures = 0;
  private consecutiveSuccesses = 0;
  private halfOpenInFlight = 0;
  private rejectNow = 0;
  private fast = true;
  private totalSuccesses = 0;
  private totalFailures = 0;
  private totalRejections = 0;
  private totalIgnored = 0;
  /** Set by SharedBreaker: hears local transitions and gates half-open probes with cluster-wide leases. */
  private sync: BreakerSync | undefined;

  // Rolling window: a ring of time buckets with running totals, so recording a call is O(1).
  private readonly bucketMs: number;
  private readonly bucketCalls: number[];
  private readonly bucketFailures: number[];
  private headEpoch = -Infinity;
  private headIndex = 0;
  private windowCalls = 0;
  private windowFailures = 0;

  constructor(options: CircuitBreakerOptions = {}) {
    const name = typeof options?.name === 'string' ? options.name : 'default';
    const o = validateCircuitBreakerOptions(options, `circuit breaker "${name}" options`);
    this.name = o.name ?? 'default';
    this.clock = o.clock ?? systemClock;
    this.failureThreshold = o.failureThreshold ?? 5;
    this.rateThreshold = o.failureRate?.threshold ?? 0;
    this.minimumCalls = o.failureRate?.minimumCalls ?? 10;
    const buckets = o.failureRate?.buckets ?? 10;
    this.bucketMs = (o.failureRate?.windowMs ?? 10_000) / buckets;
    this.bucketCalls = new Array<number>(buckets).fill(0);
    this.bucketFailures = new Array<number>(buckets).fill(0);
    this.recoveryTimeoutMs = o.recoveryTimeoutMs ?? DEFAULT_RECOVERY_MS;
    this.backoffMultiplier = o.recoveryBackoff ? (o.recoveryBackoff.multiplier ?? 2) : 1;
    this.backoffMaxMs = o.recoveryBackoff?.maxMs ?? this.recoveryTimeoutMs;
    this.maxProbes = o.halfOpenMaxProbes ?? 1;
    this.successThreshold = o.successThreshold ?? 1;
    this.isFailure = o.isFailure ?? defaultIsFailure;
    this.isResultFailure = o.isResultFailure;
    this.updateFast();
    const quoted = `Circuit breaker "${this.name}"`;
    this.messages = {
      closed: `${quoted} is closed`,
      open: `${quoted} is open`,
      'half-open': `${quoted} is half-open and all probe slots are busy`,
      isolated: `${quoted} is isolated`,
    };
    // Shared, frozen details per state: a rejection must not allocate more than its error.
    const details = (state: BreakerState) => Object.freeze({ breaker: this.name, state });
    this.openDetails = { closed: details('closed'), open: details('open'), 'half-open': details('half-open'), isolated: details('isolated') };
  }

  /**
   * Runs `work` if the breaker admits it, else rejects with BreakerOpenError without calling it. Resolves
   * with the work's result even when `isResultFailure` counts that result as a failure.
   */
  execute<T>(work: Work<T>, signal?: AbortSignal): Promise<T> {
    if (this.state === 'closed' && this.fast) {
      // Hot path: prebound handlers (no per-call closures) and no clock reads.
      let pending: Promise<T> | T;
      try {
        pending = work(signal === undefined ? NO_SIGNAL_CTX : { signal, attempt: 1 });
      } catch (error) {
        pending = Promise.reject(error);
      }
      return (pending instanceof Promise ? pending : Promise.resolve(pending)).then(
        this.fastSettled as (result: T) => T,
        this.fastFailed,
      );
    }
    let probe = false;
    if (this.state !== 'closed') {
      const admitted = this.admitSlow();
      if (admitted === REJECTED) return Promise.reject(this.reject());
      probe = admitted === PROBE;
      if (probe && this.sync !== undefined) return this.executeGated(work, signal);
    }
    return this.executeTracked(work, signal, probe);
  }

  /**
   * A probe of a shared breaker: the local slot is already reserved (so at most halfOpenMaxProbes calls per
   * replica ask the store), and the call runs only once it holds a cluster-wide lease.
   */
  private async executeGated<T>(work: Work<T>, signal: AbortSignal | undefined): Promise<T> {
    const generation = this.generation;
    const lease = await this.sync!.acquireProbe();
    if (generation !== this.generation) {
      // The state moved while we waited (e.g. another replica's probe closed it): the slot went with the old
      // generation, so admit this call afresh under the new state.
      lease?.release();
      return this.execute(work, signal);
    }
    if (lease === undefined) {
      this.halfOpenInFlight--;
      throw this.reject(this.sync!.probeRetryAfterMs());
    }
    try {
      return await this.executeTracked(work, signal, true);
    } finally {
      // After the outcome was recorded: a transition it caused is written before the slot frees.
      lease.release();
    }
  }

  /** The general path: measures duration and remembers the generation it was admitted under. */
  private async executeTracked<T>(work: Work<T>, signal: AbortSignal | undefined, probe: boolean): Promise<T> {
    const generation = this.generation;
    const start = this.clock.now();
    let result: T;
    try {
      result = await work(signal === undefined ? NO_SIGNAL_CTX : { signal, attempt: 1 });
    } catch (error) {
      if (this._counts(error)) this._fail(error, generation, probe, start);
      else this._ignore(error, generation, probe);
      throw error;
    }
    if (this.isResultFailure !== undefined && this.resultFails(result)) this._fail(result, generation, probe, start);
    else this._succeed(generation, probe, start);
    return result;
  }

  /**
   * Fast-path outcomes. Without a generation they count only if the breaker is still closed; a call
   * admitted before an open -> half-open -> closed cycle that settles after it counts in the new closed
   * period, which is harmless (it is fresh evidence about the upstream).
   */
  private readonly fastSettled = (result: unknown): unknown => {
    if (this.isResultFailure !== undefined && this.resultFails(result)) {
      this.fastFailure(result);
    } else {
      this.totalSuccesses++;
      if (this.state === 'closed') {
        this.consecutiveFailures = 0;
        this.consecutiveSuccesses++;
      }
    }
    return result;
  };

  private readonly fastFailed = (error: unknown): never => {
    if (this._counts(error)) this.fastFailure(error);
    else this._ignore(error, -1, false);
    throw error;
  };

  private fastFailure(error: unknown): void {
    this.totalFailures++;
    // A listener added while the call ran: its start time was not read, so no duration is known.
    if (this.emitter.has('failure')) this.emitter.emit('failure', { name: this.name, error, durationMs: 0 });
    if (this.state === 'closed') this.applyFailure(this.clock.now());
  }

  /** For callers that run the work themselves. Throws BreakerOpenError when no call is allowed. */
  acquire(): BreakerPermit {
    const permit = this.tryAcquire();
    if (permit instanceof Permit) return permit;
    throw permit;
  }

  /** Like acquire() but returns the BreakerOpenError instead of throwing it. */
  tryAcquire(): BreakerPermit | BreakerOpenError {
    let probe = false;
    if (this.state !== 'closed') {
      const admitted = this.admitSlow();
      if (admitted === REJECTED) return this.reject();
      probe = admitted === PROBE;
      if (probe && this.sync !== undefined) {
        // Synchronous, so only a lease this replica already holds will do; takeProbe starts fetching one
        // for a later call when it has none.
        const lease = this.sync.takeProbe();
        if (lease === undefined) {
          this.halfOpenInFlight--;
          return this.reject(this.sync.probeRetryAfterMs());
        }
        return new Permit(this, this.generation, true, this.clock.now(), lease);
      }
    }
    return new Permit(this, this.generation, probe, this.clock.now());
  }

  getState(): BreakerState {
    this.refresh();
    return this.state;
  }

  stats(): BreakerStats {
    this.refresh();
    this.roll(Math.floor(this.clock.now() / this.bucketMs));
    return {
      state: this.state,
      consecutiveFailures: this.consecutiveFailures,
      consecutiveSuccesses: this.consecutiveSuccesses,
      window: {
        calls: this.windowCalls,
        failures: this.windowFailures,
        failureRate: this.windowCalls === 0 ? 0 : this.windowFailures / this.windowCalls,
      },
      ...(this.openedAt === undefined ? {} : { openedAt: this.openedAt }),
      ...(this.state === 'open' ? { nextAttemptAt: this.nextAttemptAt } : {}),
      halfOpenInFlight: this.halfOpenInFlight,
      totals: {
        successes: this.totalSuccesses,
        failures: this.totalFailures,
        rejections: this.totalRejections,
        ignored: this.totalIgnored,
      },
    };
  }

  /** Opens now (re-arming the recovery timeout if already open). Does not grow the backoff. */
  open(reason = 'manual'): void {
    this.transition('open', reason, this.clock.now(), true);
  }

  /** Closes now: counters, window and backoff reset, totals kept. No-op when already closed. */
  close(): void {
    if (this.state !== 'closed') this.transition('closed', 'manual', this.clock.now(), true);
  }

  /** Rejects every call until close() or reset(); no automatic recovery. */
  isolate(): void {
    if (this.state !== 'isolated') this.transition('isolated', 'isolate', this.clock.now(), true);
  }

  /** Closed, with every counter (totals included) cleared. */
  reset(): void {
    this.transition('closed', 'reset', this.clock.now(), true);
    this.totalSuccesses = this.totalFailures = this.totalRejections = this.totalIgnored = 0;
  }

  snapshot(): BreakerSnapshot {
    const now = this.clock.now();
    this.roll(Math.floor(now / this.bucketMs));
    const size = this.bucketCalls.length;
    const buckets: BreakerSnapshot['window']['buckets'] = [];
    for (let k = size - 1; k >= 0; k--) {
      const i = (this.headIndex - k + size) % size;
      if (this.bucketCalls[i] > 0) {
        buckets.push({ start: (this.headEpoch - k) * this.bucketMs, calls: this.bucketCalls[i], failures: this.bucketFailures[i] });
      }
    }
    return {
      version: 1,
      state: this.state,
      openedAt: this.openedAt ?? null,
      nextAttemptAt: this.state === 'open' ? this.nextAttemptAt : null,
      reopenCount: this.reopenCount,
      consecutiveFailures: this.consecutiveFailures,
      consecutiveSuccesses: this.consecutiveSuccesses,
      window: { bucketMs: this.bucketMs, buckets },
      totals: {
        successes: this.totalSuccesses,
        failures: this.totalFailures,
        rejections: this.totalRejections,
        ignored: this.totalIgnored,
      },
    };
  }

  /**
   * Adopts a snapshot (possibly from another process). Probes in flight cannot be carried over, so a
   * half-open snapshot restores with every probe slot free. Window buckets are dropped when this breaker
   * has no failureRate or a different bucket size. Throws InvalidOptionError for a malformed snapshot.
   */
  restore(snapshot: BreakerSnapshot): void {
    const s = parseOptions(breakerSnapshotSchema, snapshot, `circuit breaker "${this.name}" snapshot`);
    const from = this.state;
    this.state = s.state;
    this.generation++;
    this.halfOpenInFlight = 0;
    this.openedAt = s.openedAt ?? undefined;
    this.nextAttemptAt = s.nextAttemptAt ?? 0;
    this.reopenCount = s.reopenCount;
    this.consecutiveFailures = s.consecutiveFailures;
    this.consecutiveSuccesses = s.consecutiveSuccesses;
    this.totalSuccesses = s.totals.successes;
    this.totalFailures = s.totals.failures;
    this.totalRejections = s.totals.rejections;
    this.totalIgnored = s.totals.ignored;
    this.clearWindow();
    if (this.rateThreshold > 0 && s.window.bucketMs === this.bucketMs) {
      const size = this.bucketCalls.length;
      this.headEpoch = Math.floor(this.clock.now() / this.bucketMs);
      this.headIndex = 0;
      for (const b of s.window.buckets) {
        const age = this.headEpoch - Math.round(b.start / this.bucketMs);
        if (age < 0 || age >= size) continue;
        const i = (size - age) % size;
        this.bucketCalls[i] += b.calls;
        this.bucketFailures[i] += b.failures;
        this.windowCalls += b.calls;
        this.windowFailures += b.failures;
      }
    }
    this.sync?.transitioned({ from, to: s.state, reason: 'restore', manual: true });
    if (from !== s.state && this.emitter.has('stateChange')) {
      this.emitter.emit('stateChange', { name: this.name, from, to: s.state, reason: 'restore' });
    }
  }

  /** @internal SharedBreaker attaches itself here (undefined detaches). One at a time. */
  _attachSync(sync: BreakerSync | undefined): void {
    this.sync = sync;
  }

  /**
   * @internal Adopts a state another replica decided: emits stateChange (with `origin`) but is not reported
   * back to the sync hook, so a received transition is never re-published. Adopting the state the breaker
   * is already in keeps its counters and in-flight probes; an open breaker only takes the new timing.
   */
  _adopt(s: AdoptedState): void {
    if (s.state === this.state) {
      if (s.state === 'open') this.setOpenTiming(s, this.clock.now());
      return;
    }
    this.transition(s.state, s.reason, this.clock.now(), false, s);
  }

  /** @internal The current local state as SharedBreaker shares it. Does not move open -> half-open. */
  _syncView(): SyncView {
    return {
      state: this.state,
      ...(this.state === 'open' ? { openForMs: Math.max(0, this.nextAttemptAt - this.clock.now()) } : {}),
      reopenCount: this.reopenCount,
      maxProbes: this.maxProbes,
    };
  }

  on<K extends keyof BreakerEvents>(event: K, listener: (event: BreakerEvents[K]) => void): () => void {
    const off = this.emitter.on(event, listener);
    this.updateFast();
    return () => {
      off();
      this.updateFast();
    };
  }

  /** Removes every listener. The breaker owns no timers, so nothing else needs releasing. */
  dispose(): void {
    this.emitter.removeAll();
    this.updateFast();
  }

  /** The closed fast path skips clock reads, so it needs no window and nobody wanting durations. */
  private updateFast(): void {
    this.fast = this.rateThreshold === 0 && !this.emitter.has('success') && !this.emitter.has('failure');
  }

  // ---- outcome recording (called by execute and by permits) ----

  /** @internal */
  _succeed(generation: number, probe: boolean, start: number): void {
    const now = this.clock.now();
    this.totalSuccesses++;
    if (this.emitter.has('success')) this.emitter.emit('success', { name: this.name, durationMs: now - start });
    if (generation !== this.generation) return;
    if (probe) {
      this.halfOpenInFlight--;
      if (++this.consecutiveSuccesses >= this.successThreshold) this.transition('closed', 'probeSuccess', now);
      return;
    }
    this.consecutiveFailures = 0;
    this.consecutiveSuccesses++;
    if (this.rateThreshold > 0) this.record(now, false);
  }

  /** @internal */
  _fail(error: unknown, generation: number, probe: boolean, start: number): void {
    const now = this.clock.now();
    this.totalFailures++;
    if (this.emitter.has('failure')) this.emitter.emit('failure', { name: this.name, error, durationMs: now - start });
    if (generation !== this.generation) return;
    if (probe) {
      this.consecutiveFailures++;
      this.reopenCount++;
      this.transition('open', 'probeFailure', now);
      return;
    }
    this.applyFailure(now);
  }

  /** A counted failure of a call admitted while closed, the breaker still being closed. */
  private applyFailure(now: number): void {
    this.consecutiveFailures++;
    this.consecutiveSuccesses = 0;
    if (this.failureThreshold > 0 && this.consecutiveFailures >= this.failureThreshold) {
      if (this.rateThreshold > 0) this.record(now, true);
      this.transition('open', 'consecutiveFailures', now);
      return;
    }
    if (this.rateThreshold > 0) {
      this.record(now, true);
      if (this.windowCalls >= this.minimumCalls && this.windowFailures / this.windowCalls >= this.rateThreshold) {
        this.transition('open', 'failureRate', now);
      }
    }
  }

  /** @internal */
  _ignore(error: unknown, generation: number, probe: boolean): void {
    this.totalIgnored++;
    if (this.emitter.has('ignored')) this.emitter.emit('ignored', { name: this.name, error });
    this._release(generation, probe);
  }

  /** @internal */
  _release(generation: number, probe: boolean): void {
    if (probe && generation === this.generation) this.halfOpenInFlight--;
  }

  /** @internal Classifies an error; a predicate that throws counts the error as a failure. */
  _counts(error: unknown): boolean {
    try {
      return this.isFailure(error);
    } catch {
      return true;
    }
  }

  private resultFails(result: unknown): boolean {
    try {
      return this.isResultFailure!(result);
    } catch {
      return true;
    }
  }

  // ---- state machine ----

  /** Admission when not closed: lazily moves open -> half-open and hands out probe slots. */
  private admitSlow(): number {
    if (this.state === 'open') {
      const now = this.clock.now();
      if (now < this.nextAttemptAt) {
        this.rejectNow = now;
        return REJECTED;
      }
      this.transition('half-open', 'recoveryTimeout', now);
    }
    if (this.state === 'half-open') {
      if (this.halfOpenInFlight < this.maxProbes) {
        this.halfOpenInFlight++;
        return PROBE;
      }
      return REJECTED;
    }
    // A stateChange listener may have closed it; isolated always rejects.
    return this.state === 'closed' ? NORMAL : REJECTED;
  }

  private refresh(): void {
    if (this.state === 'open') {
      const now = this.clock.now();
      if (now >= this.nextAttemptAt) this.transition('half-open', 'recoveryTimeout', now);
    }
  }

  /** `retryAfterOverride`: a half-open shared breaker that got no cluster-wide probe slot knows better. */
  private reject(retryAfterOverride?: number): BreakerOpenError {
    const state = this.state;
    const retryAfterMs =
      retryAfterOverride !== undefined
        ? retryAfterOverride
        : state === 'open'
          ? this.nextAttemptAt - this.rejectNow
          : state === 'isolated'
            ? this.recoveryTimeoutMs
            : HALF_OPEN_RETRY_MS;
    this.totalRejections++;
    if (this.emitter.has('rejected')) this.emitter.emit('rejected', { name: this.name, state, retryAfterMs });
    return openError(this.messages[state], this.openDetails[state], retryAfterMs);
  }

  /**
   * `manual`: asked for through open()/close()/isolate()/reset() (a shared breaker publishes those even over
   * a newer shared state). `adopted`: decided by another replica; its timing replaces the local one and the
   * sync hook is not told.
   */
  private transition(to: BreakerState, reason: string, now: number, manual = false, adopted?: AdoptedState): void {
    const from = this.state;
    this.state = to;
    this.generation++;
    this.halfOpenInFlight = 0;
    this.consecutiveSuccesses = 0;
    switch (to) {
      case 'open': {
        if (adopted) {
          this.setOpenTiming(adopted, now);
          break;
        }
        this.openedAt = now;
        const timeout = this.recoveryTimeoutMs * Math.pow(this.backoffMultiplier, this.reopenCount);
        this.nextAttemptAt = now + Math.min(timeout, this.backoffMaxMs);
        break;
      }
      case 'half-open':
        this.consecutiveFailures = 0;
        if (adopted) this.reopenCount = adopted.reopenCount;
        break;
      case 'isolated':
        this.openedAt = now - (adopted?.openedAgoMs ?? 0);
        break;
      case 'closed':
        this.openedAt = undefined;
        this.reopenCount = 0;
        this.consecutiveFailures = 0;
        this.clearWindow();
        break;
    }
    // Before the event: a listener that moves the breaker again must be reported after this transition.
    if (adopted === undefined) this.sync?.transitioned({ from, to, reason, manual });
    if (from !== to && this.emitter.has('stateChange')) {
      this.emitter.emit(
        'stateChange',
        adopted === undefined ? { name: this.name, from, to, reason } : { name: this.name, from, to, reason, origin: adopted.origin },
      );
    }
  }

  private setOpenTiming(adopted: AdoptedState, now: number): void {
    this.openedAt = now - (adopted.openedAgoMs ?? 0);
    this.nextAttemptAt = now + (adopted.openForMs ?? this.recoveryTimeoutMs);
    // Shared so that whichever replica probes next backs off from the same point.
    this.reopenCount = adopted.reopenCount;
  }

  // ---- rolling window ----

  private record(now: number, failed: boolean): void {
    const epoch = Math.floor(now / this.bucketMs);
    if (epoch !== this.headEpoch) this.roll(epoch);
    const i = this.headIndex;
    this.bucketCalls[i]++;
    this.windowCalls++;
    if (failed) {
      this.bucketFailures[i]++;
      this.windowFailures++;
    }
  }

  /** Advances the ring to `epoch`, emptying buckets that fell out of the window. A clock going back is ignored. */
  private roll(epoch: number): void {
    if (epoch <= this.headEpoch) return;
    const size = this.bucketCalls.length;
    const steps = epoch - this.headEpoch;
    if (steps >= size) {
      this.clearWindow();
    } else {
      for (let k = 1; k <= steps; k++) {
        const i = (this.headIndex + k) % size;
        this.windowCalls -= this.bucketCalls[i];
        this.windowFailures -= this.bucketFailures[i];
        this.bucketCalls[i] = 0;
        this.bucketFailures[i] = 0;
      }
      this.headIndex = (this.headIndex + steps) % size;
    }
    this.headEpoch = epoch;
  }

  private clearWindow(): void {
    this.bucketCalls.fill(0);
    this.bucketFailures.fill(0);
    this.windowCalls = 0;
    this.windowFailures = 0;
    this.headIndex = 0;
    this.headEpoch = -Infinity;
  }
}

/** One admitted call run by the caller. Settles once; later calls are ignored. */
class Permit implements BreakerPermit {
  private settled = false;

  constructor(
    private readonly breaker: CircuitBreaker,
    private readonly generation: number,
    private readonly probe: boolean,
    private readonly start: number,
    /** A shared breaker's cluster-wide probe slot, freed after the outcome is recorded. */
    private readonly lease?: ProbeLease,
  ) {}

  success(): void {
    if (this.settled) return;
    this.settled = true;
    this.breaker._succeed(this.generation, this.probe, this.start);
    this.lease?.release();
  }

  failure(error?: unknown): void {
    if (this.settled) return;
    this.settled = true;
    if (error === undefined || this.breaker._counts(error)) this.breaker._fail(error, this.generation, this.probe, this.start);
    else this.breaker._ignore(error, this.generation, this.probe);
    this.lease?.release();
  }

  release(): void {
    if (this.settled) return;
    this.settled = true;
    this.breaker._release(this.generation, this.probe);
    this.lease?.release();
  }
}

/** An open breaker rejects every call, so building its error is the fast-fail hot path: see BreakerOpenError.fast. */
function openError(message: string, details: Readonly<Record<string, unknown>>, retryAfterMs: number): BreakerOpenError {
  return BreakerOpenError.fast(message, retryAfterMs, details as Record<string, unknown>);
}
