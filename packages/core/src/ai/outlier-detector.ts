/**
 * Passive outlier detection (Envoy's outlier_detection): real traffic, not probes, tells which endpoint of a
 * group is misbehaving. An endpoint is ejected (taken out of balancing) after `consecutiveErrors` endpoint
 * errors in a row, or when its error rate over a rolling window passes a threshold with enough volume. It comes
 * back by itself after the ejection time, which grows with each ejection (base x count, capped) and shrinks
 * again while the endpoint behaves. At most `maxEjectionPercent` of the group is ever out at once, and never
 * all of it: a group of one is never ejected (its circuit breaker protects it instead).
 *
 * What counts as an error is the caller's decision (`failure()` vs `success()`); `isOutlierError` gives the
 * usual one: 5xx, network failures and timeouts, and 429 only when asked (a rate limit is load, not breakage).
 */
import { z } from 'zod';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import { Emitter } from '../events.js';
import { nonNegativeInt, positiveInt, timerMs } from '../options/validate.js';
import { UpstreamError } from './provider-types.js';

export interface OutlierDetectionOptions {
  /** Default true. */
  enabled?: boolean;
  /** Endpoint errors in a row that eject it. Default 5; 0 turns this trigger off. */
  consecutiveErrors?: number;
  /**
   * Ejects when errors / calls over the last `windowMs` (default 30 000) reach `threshold` (0 < x <= 1), once the
   * window holds at least `minimumRequests` (default 20) calls. Off unless set.
   */
  errorRate?: { threshold: number; windowMs?: number; minimumRequests?: number };
  /** First ejection time; the n-th ejection lasts n x this. Default 30 000 ms. */
  baseEjectionMs?: number;
  /** Cap on one ejection. Default 300 000 ms. */
  maxEjectionMs?: number;
  /**
   * Most of the group that may be ejected at once, in percent (rounded down, but at least one endpoint when
   * > 0, and never the whole group). Default 50.
   */
  maxEjectionPercent?: number;
  /** Count 429 (rate limited) as an endpoint error. Default false. */
  countRateLimited?: boolean;
}

export const outlierDetectionOptionsSchema = z.strictObject({
  enabled: z.boolean().optional(),
  consecutiveErrors: nonNegativeInt.optional(),
  errorRate: z
    .strictObject({
      threshold: z.number().gt(0).lte(1),
      windowMs: timerMs.min(1).optional(),
      minimumRequests: positiveInt.optional(),
    })
    .optional(),
  baseEjectionMs: timerMs.optional(),
  maxEjectionMs: timerMs.optional(),
  maxEjectionPercent: z.number().min(0).max(100).optional(),
  countRateLimited: z.boolean().optional(),
});

export type EjectionReason = 'consecutive-errors' | 'error-rate' | 'manual';

export type OutlierEvents = {
  ejected: { endpoint: string; reason: EjectionReason; ejections: number; durationMs: number; until: number };
  returned: { endpoint: string; ejectedForMs: number };
  /** An endpoint met an ejection condition but `maxEjectionPercent` kept it in. */
  ejectionSkipped: { endpoint: string; reason: EjectionReason; ejected: number; maxEjected: number };
};

export interface OutlierEndpointStats {
  ejected: boolean;
  /** Epoch ms when the current ejection ends. */
  ejectedUntil?: number;
  /** Times ejected since created (the multiplier of the next ejection may be lower: it decays). */
  ejections: number;
  consecutiveErrors: number;
  window: { calls: number; errors: number };
}

/** The usual "this endpoint is broken" test: 5xx, network failure, timeout; 429 only with `countRateLimited`. */
export function isOutlierError(error: unknown, countRateLimited = false): boolean {
  if (error instanceof UpstreamError) {
    if (error.network) return true;
    return error.status >= 500 || (countRateLimited && error.status === 429);
  }
  if (typeof error !== 'object' || error === null) return false;
  const e = error as { name?: unknown; code?: unknown; status?: unknown };
  if (e.code === 'AMAS_TIMEOUT' || e.name === 'TimeoutError') return true;
  if (typeof e.status === 'number') return e.status >= 500 || (countRateLimited && e.status === 429);
  return false;
}

const BUCKETS = 10;

interface EndpointRecord {
  id: string;
  consecutive: number;
  /** Ejections counted for the multiplier (decays while the endpoint behaves). */
  multiplier: number;
  ejections: number;
  ejectedAt: number | undefined;
  until: number | undefined;
  returnedAt: number | undefined;
  timer: TimerHandle | undefined;
  bucketEpoch: number[];
  bucketCalls: number[];
  bucketErrors: number[];
}

/** One detector per endpoint group. Owns one timer per ejected endpoint; `stop()` releases them. */
export class OutlierDetector {
  readonly enabled: boolean;
  private readonly consecutiveErrors: number;
  private readonly rateThreshold: number;
  private readonly windowMs: number;
  private readonly minimumRequests: number;
  private readonly baseEjectionMs: number;
  private readonly maxEjectionMs: number;
  private readonly maxEjectionPercent: number;
  readonly countRateLimited: boolean;
  private readonly clock: Clock;
  private readonly records = new Map<string, EndpointRecord>();
  private readonly emitter = new Emitter<OutlierEvents>();
  private stopped = false;

  /** `options` are trusted (the router validates them with `outlierDetectionOptionsSchema`). */
  constructor(endpoints: readonly string[], options: OutlierDetectionOptions = {}, clock: Clock = systemClock) {
    this.enabled = options.enabled ?? true;
    this.consecutiveErrors = options.consecutiveErrors ?? 5;
    this.rateThreshold = options.errorRate?.threshold ?? 0;
    this.windowMs = options.errorRate?.windowMs ?? 30_000;
    this.minimumRequests = options.errorRate?.minimumRequests ?? 20;
    this.baseEjectionMs = options.baseEjectionMs ?? 30_000;
    this.maxEjectionMs = Math.max(options.maxEjectionMs ?? 300_000, 0);
    this.maxEjectionPercent = options.maxEjectionPercent ?? 50;
    this.countRateLimited = options.countRateLimited ?? false;
    this.clock = clock;
    for (const id of endpoints) {
      this.records.set(id, {
        id,
        consecutive: 0,
        multiplier: 0,
        ejections: 0,
        ejectedAt: undefined,
        until: undefined,
        returnedAt: undefined,
        timer: undefined,
        bucketEpoch: new Array<number>(BUCKETS).fill(-1),
        bucketCalls: new Array<number>(BUCKETS).fill(0),
        bucketErrors: new Array<number>(BUCKETS).fill(0),
      });
    }
  }

  on<K extends keyof OutlierEvents>(event: K, listener: (e: OutlierEvents[K]) => void): () => void {
    return this.emitter.on(event, listener);
  }

  /** Most endpoints that may be ejected at the same time. */
  get maxEjected(): number {
    const n = this.records.size;
    if (n <= 1 || this.maxEjectionPercent <= 0) return 0;
    return Math.min(n - 1, Math.max(1, Math.floor((n * this.maxEjectionPercent) / 100)));
  }

  /** A call that says nothing bad about the endpoint (2xx, or a 4xx the caller caused). */
  success(id: string): void {
    const r = this.records.get(id);
    if (r === undefined || !this.enabled) return;
    r.consecutive = 0;
    if (this.rateThreshold > 0) this.count(r, false);
  }

  /** An endpoint error (see isOutlierError). May eject the endpoint. */
  failure(id: string): void {
    const r = this.records.get(id);
    if (r === undefined || !this.enabled || this.stopped) return;
    r.consecutive++;
    if (this.rateThreshold > 0) this.count(r, true);
    if (this.isEjected(id)) return; // a late result of a call sent before the ejection
    if (this.consecutiveErrors > 0 && r.consecutive >= this.consecutiveErrors) {
      this.tryEject(r, 'consecutive-errors');
      return;
    }
    if (this.rateThreshold > 0) {
      const { calls, errors } = this.window(r);
      if (calls >= this.minimumRequests && errors / calls >= this.rateThreshold) this.tryEject(r, 'error-rate');
    }
  }

  /** Ejects now (subject to maxEjectionPercent). Returns whether it is ejected afterwards. */
  eject(id: string): boolean {
    const r = this.records.get(id);
    if (r === undefined || this.stopped) return false;
    if (!this.isEjected(id)) this.tryEject(r, 'manual');
    return this.isEjected(id);
  }

  isEjected(id: string): boolean {
    const r = this.records.get(id);
    if (r?.until === undefined) return false;
    // The return timer may be late (or the clock may be a ManualClock that jumped): time decides.
    if (this.clock.now() >= r.until) {
      this.restore(r);
      return false;
    }
    return true;
  }

  /** Epoch ms when the endpoint's ejection ends, if it is ejected. */
  ejectedUntil(id: string): number | undefined {
    return this.isEjected(id) ? this.records.get(id)!.until : undefined;
  }

  ejectedCount(): number {
    let n = 0;
    for (const id of this.records.keys()) if (this.isEjected(id)) n++;
    return n;
  }

  stats(id: string): OutlierEndpointStats | undefined {
    const r = this.records.get(id);
    if (r === undefined) return undefined;
    const ejected = this.isEjected(id);
    return {
      ejected,
      ...(ejected ? { ejectedUntil: r.until } : {}),
      ejections: r.ejections,
      consecutiveErrors: r.consecutive,
      window: this.window(r),
    };
  }

  /** Releases the return timers. Ejected endpoints stay ejected until their time passes (checked lazily). */
  stop(): void {
    this.stopped = true;
    for (const r of this.records.values()) {
      if (r.timer !== undefined) this.clock.clearTimeout(r.timer);
      r.timer = undefined;
    }
    this.emitter.removeAll();
  }

  private tryEject(r: EndpointRecord, reason: EjectionReason): void {
    const ejected = this.ejectedCount();
    const max = this.maxEjected;
    if (ejected >= max) {
      if (this.emitter.has('ejectionSkipped')) this.emitter.emit('ejectionSkipped', { endpoint: r.id, reason, ejected, maxEjected: max });
      return;
    }
    const now = this.clock.now();
    // The multiplier drops by one for each base ejection time the endpoint spent back in service (Envoy).
    if (r.returnedAt !== undefined && this.baseEjectionMs > 0) {
      r.multiplier = Math.max(0, r.multiplier - Math.floor((now - r.returnedAt) / this.baseEjectionMs));
    }
    r.multiplier++;
    r.ejections++;
    const durationMs = Math.min(this.maxEjectionMs, this.baseEjectionMs * r.multiplier);
    r.ejectedAt = now;
    r.until = now + durationMs;
    r.consecutive = 0;
    if (r.timer !== undefined) this.clock.clearTimeout(r.timer);
    r.timer = this.stopped ? undefined : this.clock.setTimeout(() => {
      r.timer = undefined;
      if (r.until !== undefined && this.clock.now() >= r.until) this.restore(r);
    }, durationMs);
    this.emitter.emit('ejected', { endpoint: r.id, reason, ejections: r.ejections, durationMs, until: r.until });
  }

  private restore(r: EndpointRecord): void {
    if (r.until === undefined) return;
    const now = this.clock.now();
    const ejectedForMs = now - (r.ejectedAt ?? now);
    r.until = undefined;
    r.ejectedAt = undefined;
    r.returnedAt = now;
    r.consecutive = 0;
    this.clearWindow(r);
    if (r.timer !== undefined) this.clock.clearTimeout(r.timer);
    r.timer = undefined;
    this.emitter.emit('returned', { endpoint: r.id, ejectedForMs });
  }

  // ---- rolling error-rate window: BUCKETS buckets of windowMs / BUCKETS ----

  private count(r: EndpointRecord, error: boolean): void {
    const bucketMs = this.windowMs / BUCKETS;
    const epoch = Math.floor(this.clock.now() / bucketMs);
    const i = epoch % BUCKETS;
    if (r.bucketEpoch[i] !== epoch) {
      r.bucketEpoch[i] = epoch;
      r.bucketCalls[i] = 0;
      r.bucketErrors[i] = 0;
    }
    r.bucketCalls[i]++;
    if (error) r.bucketErrors[i]++;
  }

  private window(r: EndpointRecord): { calls: number; errors: number } {
    const bucketMs = this.windowMs / BUCKETS;
    const epoch = Math.floor(this.clock.now() / bucketMs);
    let calls = 0;
    let errors = 0;
    for (let i = 0; i < BUCKETS; i++) {
      if (r.bucketEpoch[i] > epoch - BUCKETS && r.bucketEpoch[i] <= epoch) {
        calls += r.bucketCalls[i];
        errors += r.bucketErrors[i];
      }
    }
    return { calls, errors };
  }

  private clearWindow(r: EndpointRecord): void {
    r.bucketEpoch.fill(-1);
    r.bucketCalls.fill(0);
    r.bucketErrors.fill(0);
  }
}
