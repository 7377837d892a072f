/** The run report, SLO checks, and baselines (save the key numbers; compare a later run against them). */
import { readFileSync, writeFileSync } from 'node:fs';
import { z } from 'zod';
import { LoadConfigError, type Scenario } from './scenario.js';

export interface LatencySummary {
  /** Responses measured (transport errors have no latency). */
  count: number;
  min: number | null;
  mean: number | null;
  stddev: number | null;
  p50: number | null;
  p75: number | null;
  p90: number | null;
  p95: number | null;
  p99: number | null;
  p999: number | null;
  max: number | null;
}

export interface CacheSummary {
  /** 2xx responses that carried an `X-Cache` header (the hit rate's denominator). */
  withHeader: number;
  /** `X-Cache: HIT` or `SEMANTIC-HIT`. */
  hits: number;
  semanticHits: number;
  /** `X-Cache` value -> count, over 2xx responses. */
  byStatus: Record<string, number>;
  /** hits / withHeader; null when no 2xx response carried `X-Cache`. */
  hitRate: number | null;
}

export interface EntryReport {
  name: string;
  type: 'chat' | 'stream' | 'embeddings';
  weight: number;
  requests: number;
  ok: number;
  errors: number;
  errorRate: number;
  latencyMs: Pick<LatencySummary, 'count' | 'p50' | 'p95' | 'p99' | 'max'>;
  cache: Pick<CacheSummary, 'withHeader' | 'hits' | 'hitRate'>;
}

/** One second of the run, by completion time. */
export interface TimelinePoint {
  /** Seconds since the start (this bucket covers [second, second + 1)). */
  second: number;
  requests: number;
  ok: number;
  errors: number;
  cacheHits: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  max: number | null;
}

export type SloId = 'p50' | 'p90' | 'p95' | 'p99' | 'maxErrorRate' | 'minCacheHitRate' | 'minRps';

export interface SloCheck {
  id: SloId;
  label: string;
  comparator: '<=' | '>=';
  target: number;
  actual: number | null;
  unit: 'ms' | 'ratio' | 'rps';
  pass: boolean;
  detail?: string;
}

export interface Baseline {
  amasLoadBaseline: 1;
  scenario: string;
  target: string;
  createdAt: string;
  durationMs: number;
  requests: number;
  rps: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  errorRate: number;
  cacheHitRate: number | null;
}

export interface RegressionCheck {
  id: 'p95' | 'p99' | 'errorRate';
  label: string;
  baseline: number | null;
  current: number | null;
  /** (current - baseline) / baseline; null when the baseline is 0 or missing. */
  change: number | null;
  regression: boolean;
}

export interface BaselineComparison {
  file?: string;
  scenario: string;
  createdAt: string;
  threshold: number;
  pass: boolean;
  checks: RegressionCheck[];
  warnings: string[];
}

export interface OutageReport {
  at: number;
  for: number;
  status: number;
  mock: string;
  /** When the outage was switched on / off, ms since the start. */
  appliedAtMs?: number;
  clearedAtMs?: number;
  error?: string;
}

export interface LoadReport {
  reportVersion: 1;
  tool: string;
  scenario: { name: string; description: string; source?: string };
  target: string;
  startedAt: string;
  finishedAt: string;
  /** Measured length of the run. */
  durationMs: number;
  /** Stopped early by the caller (Ctrl-C / AbortSignal). */
  interrupted: boolean;
  /** Stopped early after too many connection errors or timeouts. */
  bailedOut: boolean;
  config: {
    mode: 'rate' | 'concurrency';
    rate?: number;
    concurrency?: number;
    connections: number;
    plannedDurationMs: number;
    timeoutMs: number;
    users: number;
    seed: number;
    warmupRequests: number;
    loadGenerator: string;
  };
  totals: {
    /** Responses plus transport errors (timeouts, refused or reset connections). */
    requests: number;
    responses: number;
    ok: number;
    errors: number;
    errorRate: number;
    rps: number;
    bytes: number;
  };
  /** Over every response (errors included), in milliseconds. */
  latencyMs: LatencySummary;
  /** HTTP status -> count. */
  statuses: Record<string, number>;
  /** Error kind -> count: an HTTP status, 'timeout', 'connection', or 'stream-incomplete' (a 200 stream without [DONE]). */
  errors: Record<string, number>;
  cache: CacheSummary;
  entries: EntryReport[];
  timeline: TimelinePoint[];
  outage?: OutageReport;
  slo: { pass: boolean; checks: SloCheck[] };
  baseline?: BaselineComparison;
  /** Every SLO passed and no regression against the baseline. */
  pass: boolean;
}

const LATENCY_LABEL: Record<'p50' | 'p90' | 'p95' | 'p99', string> = {
  p50: 'p50 latency',
  p90: 'p90 latency',
  p95: 'p95 latency',
  p99: 'p99 latency',
};

/** Evaluates the scenario's SLOs against the measured numbers. */
export function evaluateSlos(slo: Scenario['slo'], report: Pick<LoadReport, 'latencyMs' | 'totals' | 'cache'>): { pass: boolean; checks: SloCheck[] } {
  const checks: SloCheck[] = [];
  for (const id of ['p50', 'p90', 'p95', 'p99'] as const) {
    const target = slo[id];
    if (target === undefined) continue;
    const actual = report.latencyMs[id];
    checks.push({
      id,
      label: LATENCY_LABEL[id],
      comparator: '<=',
      target,
      actual,
      unit: 'ms',
      pass: actual !== null && actual <= target,
      ...(actual === null ? { detail: 'no response was measured' } : {}),
    });
  }
  if (slo.maxErrorRate !== undefined) {
    const actual = report.totals.requests ? report.totals.errorRate : null;
    checks.push({
      id: 'maxErrorRate',
      label: 'error rate',
      comparator: '<=',
      target: slo.maxErrorRate,
      actual,
      unit: 'ratio',
      pass: actual !== null && actual <= slo.maxErrorRate,
      ...(actual === null ? { detail: 'no request was made' } : {}),
    });
  }
  if (slo.minCacheHitRate !== undefined) {
    const actual = report.cache.hitRate;
    checks.push({
      id: 'minCacheHitRate',
      label: 'cache hit rate',
      comparator: '>=',
      target: slo.minCacheHitRate,
      actual,
      unit: 'ratio',
      pass: actual !== null && actual >= slo.minCacheHitRate,
      ...(actual === null ? { detail: 'no 2xx response carried an X-Cache header' } : {}),
    });
  }
  if (slo.minRps !== undefined) {
    const actual = report.totals.rps;
    checks.push({ id: 'minRps', label: 'throughput', comparator: '>=', target: slo.minRps, actual, unit: 'rps', pass: actual >= slo.minRps });
  }
  return { pass: checks.every((c) => c.pass), checks };
}

/** The key numbers of a run, as written by `--save-baseline`. */
export function baselineOf(report: LoadReport): Baseline {
  return {
    amasLoadBaseline: 1,
    scenario: report.scenario.name,
    target: report.target,
    createdAt: report.finishedAt,
    durationMs: report.durationMs,
    requests: report.totals.requests,
    rps: report.totals.rps,
    p50: report.latencyMs.p50,
    p95: report.latencyMs.p95,
    p99: report.latencyMs.p99,
    errorRate: report.totals.errorRate,
    cacheHitRate: report.cache.hitRate,
  };
}

const nullableNumber = z.number().nonnegative().nullable();
const baselineSchema = z.object({
  amasLoadBaseline: z.literal(1),
  scenario: z.string(),
  target: z.string(),
  createdAt: z.string(),
  durationMs: z.number().nonnegative(),
  requests: z.number().int().nonnegative(),
  rps: z.number().nonnegative(),
  p50: nullableNumber,
  p95: nullableNumber,
  p99: nullableNumber,
  errorRate: z.number().min(0).max(1),
  cacheHitRate: z.number().min(0).max(1).nullable(),
});

/** Validates a baseline object; throws LoadConfigError naming the bad field. */
export function parseBaseline(value: unknown, source = 'baseline'): Baseline {
  const result = baselineSchema.safeParse(value);
  if (result.success) return result.data;
  const issues = result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
  throw new LoadConfigError(`Invalid ${source} (expected a file written by --save-baseline):\n  - ${issues.join('\n  - ')}`);
}

export function readBaseline(file: string): Baseline {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new LoadConfigError(`Cannot read baseline ${file}: ${(error as Error).message}`, [], { cause: error });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new LoadConfigError(`Baseline ${file} is not valid JSON: ${(error as Error).message}`, [], { cause: error });
  }
  return parseBaseline(value, `baseline ${file}`);
}

export function writeBaseline(file: string, report: LoadReport): Baseline {
  const baseline = baselineOf(report);
  writeFileSync(file, JSON.stringify(baseline, null, 2) + '\n');
  return baseline;
}

/**
 * Smallest absolute worsening that can count as a regression, whatever the ratio: sub-millisecond jitter on
 * a fast loopback run, or one error in a thousand, is noise rather than a regression.
 */
export const REGRESSION_FLOOR = { latencyMs: 1, errorRate: 0.001 } as const;

/**
 * Compares a run with a baseline: a regression when p95, p99 or the error rate is worse by more than
 * `threshold` (0.1 = 10%) of the baseline value, and by more than REGRESSION_FLOOR.
 */
export function compareWithBaseline(
  current: Pick<LoadReport, 'latencyMs' | 'totals' | 'scenario'>,
  baseline: Baseline,
  threshold: number,
  file?: string,
): BaselineComparison {
  const warnings: string[] = [];
  if (baseline.scenario !== current.scenario.name) {
    warnings.push(`the baseline was recorded for scenario "${baseline.scenario}", this run is "${current.scenario.name}"`);
  }
  const check = (id: RegressionCheck['id'], label: string, base: number | null, now: number | null, floor: number): RegressionCheck => {
    const change = base === null || now === null || base === 0 ? null : (now - base) / base;
    const regression = base !== null && now !== null && now > base * (1 + threshold) && now - base > floor;
    return { id, label, baseline: base, current: now, change, regression };
  };
  const checks = [
    check('p95', 'p95 latency', baseline.p95, current.latencyMs.p95, REGRESSION_FLOOR.latencyMs),
    check('p99', 'p99 latency', baseline.p99, current.latencyMs.p99, REGRESSION_FLOOR.latencyMs),
    check('errorRate', 'error rate', baseline.errorRate, current.totals.errorRate, REGRESSION_FLOOR.errorRate),
  ];
  return {
    ...(file ? { file } : {}),
    scenario: baseline.scenario,
    createdAt: baseline.createdAt,
    threshold,
    pass: checks.every((c) => !c.regression),
    checks,
    warnings,
  };
}
