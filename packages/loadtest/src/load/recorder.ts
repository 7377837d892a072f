/**
 * Collects what the load generator saw: HDR latency histograms (overall, per mix entry, per second), statuses,
 * error kinds and `X-Cache` values. Latencies are recorded in microseconds and reported in milliseconds.
 */
import * as hdr from 'hdr-histogram-js';
import type { CacheSummary, EntryReport, LatencySummary, TimelinePoint } from './report.js';
import type { MixEntry } from './scenario.js';

type Histogram = hdr.Histogram;

const newHistogram = (): Histogram =>
  hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3, bitBucketSize: 32 });

const ms = (us: number) => Math.round(us) / 1000;

export function summarize(h: Histogram): LatencySummary {
  if (h.totalCount === 0) {
    return { count: 0, min: null, mean: null, stddev: null, p50: null, p75: null, p90: null, p95: null, p99: null, p999: null, max: null };
  }
  // Percentiles are the highest value equivalent to the recorded one (within 0.1%): never report above max.
  const max = h.maxValue;
  const at = (p: number) => ms(Math.min(h.getValueAtPercentile(p), max));
  return {
    count: h.totalCount,
    min: ms(h.minNonZeroValue === Number.MAX_SAFE_INTEGER ? 0 : h.minNonZeroValue),
    mean: ms(h.mean),
    stddev: ms(h.stdDeviation),
    p50: at(50),
    p75: at(75),
    p90: at(90),
    p95: at(95),
    p99: at(99),
    p999: at(99.9),
    max: ms(max),
  };
}

interface Bucket {
  requests: number;
  ok: number;
  errors: number;
  cacheHits: number;
  histogram: Histogram;
}

interface EntryStats {
  requests: number;
  ok: number;
  errors: number;
  cacheWithHeader: number;
  cacheHits: number;
  histogram: Histogram;
}

export type TransportErrorKind = 'timeout' | 'connection';

export interface ResponseSample {
  /** Index into the scenario's mix; -1 when unknown. */
  entry: number;
  status: number;
  /** `X-Cache` value, upper-cased; undefined when absent. */
  cache?: string;
  /** A 2xx event stream that did not end with `data: [DONE]` or carried an in-band error. */
  streamIncomplete?: boolean;
  latencyMs: number;
  bytes: number;
  /** Completion time, ms since the start of the run. */
  atMs: number;
}

const isHit = (cache: string | undefined) => cache === 'HIT' || cache === 'SEMANTIC-HIT';

export class Recorder {
  readonly overall = newHistogram();
  private readonly entries: EntryStats[];
  private readonly buckets: Bucket[] = [];
  readonly statuses: Record<string, number> = {};
  readonly errorKinds: Record<string, number> = {};
  readonly cacheByStatus: Record<string, number> = {};
  responses = 0;
  ok = 0;
  errors = 0;
  transportErrors = 0;
  bytes = 0;
  cacheWithHeader = 0;
  cacheHits = 0;
  semanticHits = 0;

  constructor(private readonly mix: readonly MixEntry[]) {
    this.entries = mix.map(() => ({ requests: 0, ok: 0, errors: 0, cacheWithHeader: 0, cacheHits: 0, histogram: newHistogram() }));
  }

  get requests(): number {
    return this.responses + this.transportErrors;
  }

  private bucket(atMs: number): Bucket {
    const i = Math.max(0, Math.floor(atMs / 1000));
    while (this.buckets.length <= i) this.buckets.push({ requests: 0, ok: 0, errors: 0, cacheHits: 0, histogram: newHistogram() });
    return this.buckets[i]!;
  }

  private countError(kind: string): void {
    this.errors++;
    this.errorKinds[kind] = (this.errorKinds[kind] ?? 0) + 1;
  }

  response(s: ResponseSample): void {
    const us = Math.max(1, Math.round(s.latencyMs * 1000));
    const key = String(s.status);
    this.responses++;
    this.bytes += s.bytes;
    this.statuses[key] = (this.statuses[key] ?? 0) + 1;
    this.overall.recordValue(us);
    const bucket = this.bucket(s.atMs);
    bucket.requests++;
    bucket.histogram.recordValue(us);
    const entry = this.entries[s.entry];
    if (entry) {
      entry.requests++;
      entry.histogram.recordValue(us);
    }
    const success = s.status >= 200 && s.status < 300;
    if (!success || s.streamIncomplete) {
      this.countError(success ? 'stream-incomplete' : key);
      bucket.errors++;
      if (entry) entry.errors++;
      return;
    }
    this.ok++;
    bucket.ok++;
    if (entry) entry.ok++;
    if (s.cache !== undefined) {
      this.cacheWithHeader++;
      this.cacheByStatus[s.cache] = (this.cacheByStatus[s.cache] ?? 0) + 1;
      if (entry) entry.cacheWithHeader++;
      if (isHit(s.cache)) {
        this.cacheHits++;
        if (s.cache === 'SEMANTIC-HIT') this.semanticHits++;
        bucket.cacheHits++;
        if (entry) entry.cacheHits++;
      }
    }
  }

  transportError(kind: TransportErrorKind, atMs: number): void {
    this.transportErrors++;
    this.countError(kind);
    const bucket = this.bucket(atMs);
    bucket.requests++;
    bucket.errors++;
  }

  latency(): LatencySummary {
    return summarize(this.overall);
  }

  /** Completions over the last second (sliding across two buckets), for the progress line. */
  recentRps(nowMs: number): number {
    const i = Math.floor(nowMs / 1000);
    const current = this.buckets[i];
    const previous = this.buckets[i - 1];
    const frac = (nowMs % 1000) / 1000;
    if (!previous) return frac > 0 ? (current?.requests ?? 0) / frac : 0;
    return (current?.requests ?? 0) + previous.requests * (1 - frac);
  }

  cache(): CacheSummary {
    return {
      withHeader: this.cacheWithHeader,
      hits: this.cacheHits,
      semanticHits: this.semanticHits,
      byStatus: { ...this.cacheByStatus },
      hitRate: this.cacheWithHeader ? this.cacheHits / this.cacheWithHeader : null,
    };
  }

  entryReports(): EntryReport[] {
    return this.mix.map((m, i) => {
      const e = this.entries[i]!;
      const l = summarize(e.histogram);
      return {
        name: m.name,
        type: m.type,
        weight: m.weight,
        requests: e.requests,
        ok: e.ok,
        errors: e.errors,
        errorRate: e.requests ? e.errors / e.requests : 0,
        latencyMs: { count: l.count, p50: l.p50, p95: l.p95, p99: l.p99, max: l.max },
        cache: { withHeader: e.cacheWithHeader, hits: e.cacheHits, hitRate: e.cacheWithHeader ? e.cacheHits / e.cacheWithHeader : null },
      };
    });
  }

  /** One point per second up to `durationMs` (seconds without any completion are included, empty). */
  timeline(durationMs: number): TimelinePoint[] {
    const seconds = Math.max(this.buckets.length, Math.ceil(durationMs / 1000 - 0.001));
    const out: TimelinePoint[] = [];
    for (let i = 0; i < seconds; i++) {
      const b = this.buckets[i];
      const l = b ? summarize(b.histogram) : undefined;
      out.push({
        second: i,
        requests: b?.requests ?? 0,
        ok: b?.ok ?? 0,
        errors: b?.errors ?? 0,
        cacheHits: b?.cacheHits ?? 0,
        p50: l?.p50 ?? null,
        p95: l?.p95 ?? null,
        p99: l?.p99 ?? null,
        max: l?.max ?? null,
      });
    }
    return out;
  }
}
