import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { BreakerRegistry } from '../policies/breaker-registry.js';
import { FastCounter, type CounterSeriesRef } from './fast-counter.js';
import { RequestMetrics } from './request-metrics.js';
import { CacheMetrics } from './cache-metrics.js';
import type { SemanticCache } from '../semantic/semantic-cache.js';
import { SemanticCacheMetrics } from './semantic-cache-metrics.js';
import type { TieredCache } from '../cache/tiered-cache.js';
import type { AiService } from '../ai/ai-service.js';
import { AiMetrics } from './ai-metrics.js';

export interface MetricsOptions {
  /** A prom-client Registry to register into (e.g. the app's own); default: a new one owned by the instance. */
  registry?: Registry;
  /** Metric name prefix; default `amas_`. */
  prefix?: string;
  /** Upper bound on distinct route label values; routes beyond it are reported as `other`. */
  maxRoutes?: number;
  /** Histogram buckets for request durations, in seconds. */
  buckets?: number[];
  /**
   * Per-caller series, off by default (a label per user is unbounded cardinality): `{ max: 100 }` adds
   * amas_user_requests_total{user,outcome} (and amas_user_ai_cost_usd_total{user} with the `ai` option) for
   * the first `max` callers seen; later ones are counted as user="other".
   */
  userLabels?: { max: number };
}

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
function normaliseMethod(method: string): string {
  const upper = method.toUpperCase();
  return METHODS.has(upper) ? upper : 'OTHER';
}

const BREAKER_STATE_VALUE = { closed: 0, 'half-open': 1, open: 2, isolated: 3 } as const;

/**
 * Every metric AMAS exports, registered in one registry per instance. Label values are bounded: routes are
 * patterns (capped by maxRoutes), never raw URLs; user ids are never labels.
 */
export class AmasMetrics {
  readonly registry: Registry;
  readonly ownsRegistry: boolean;
  /** amas_http_requests_total and amas_http_request_duration_seconds (hot path: see RequestMetrics). */
  readonly requests: RequestMetrics;
  readonly breakerState: Gauge<'breaker'>;
  readonly breakerTransitions: Counter<'breaker' | 'from' | 'to'>;
  readonly breakerCalls: Counter<'breaker' | 'outcome'>;
  readonly rateLimitDecisions: FastCounter;
  readonly dedupShared: FastCounter;
  /** amas_http_cache_total{route,status}: responses by cache status (HIT, MISS, STALE, BYPASS). */
  readonly httpCache: FastCounter;
  /** amas_http_cache_request_duration_seconds{route,status}: latency of cached routes' responses by cache status. */
  readonly httpCacheDuration: Histogram<'route' | 'status'>;
  private cacheMetrics: CacheMetrics | undefined;
  private semanticMetrics: SemanticCacheMetrics | undefined;
  private aiMetrics: AiMetrics | undefined;
  private readonly prefix: string;
  /** Per limit name: its [allowed, limited] series. */
  private readonly limitSeries = new Map<string, [CounterSeriesRef, CounterSeriesRef]>();
  private readonly routes = new Set<string>();
  private readonly maxRoutes: number;
  /** amas_user_requests_total, when `userLabels` is on. */
  readonly userRequests: FastCounter | undefined;
  private readonly userCap: number;
  private readonly userRequestLabel: (identity: string) => string;

  constructor(options: MetricsOptions, breakers: BreakerRegistry) {
    this.ownsRegistry = !options.registry;
    this.registry = options.registry ?? new Registry();
    this.maxRoutes = options.maxRoutes ?? 200;
    const p = options.prefix ?? 'amas_';
    const registers = [this.registry];
    this.requests = new RequestMetrics(
      this.registry,
      { requests: `${p}http_requests_total`, duration: `${p}http_request_duration_seconds` },
      options.buckets ?? [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      (route, method, status, outcome) => ({
        route: this.routeLabel(route),
        method: normaliseMethod(method),
        status: status >= 100 && status <= 599 ? String(Math.trunc(status)) : 'other',
        outcome,
      }),
    );
    this.breakerState = new Gauge({
      name: `${p}breaker_state`,
      help: 'Circuit breaker state: 0 closed, 1 half-open, 2 open, 3 isolated',
      labelNames: ['breaker'],
      registers,
      collect: () => {
        for (const breaker of breakers.all()) {
          this.breakerState.set({ breaker: breaker.name }, BREAKER_STATE_VALUE[breaker.getState()]);
        }
      },
    });
    this.breakerTransitions = new Counter({
      name: `${p}breaker_transitions_total`,
      help: 'Circuit breaker state transitions',
      labelNames: ['breaker', 'from', 'to'],
      registers,
    });
    this.breakerCalls = new Counter({
      name: `${p}breaker_calls_total`,
      help: 'Calls through circuit breakers by outcome (success, failure, rejected, ignored)',
      labelNames: ['breaker', 'outcome'],
      registers,
      // Read from each breaker's own totals at scrape time: a per-call listener would take every breaker
      // off its allocation-free fast path.
      collect: () => {
        this.breakerCalls.reset();
        for (const breaker of breakers.all()) {
          const { totals } = breaker.stats();
          const name = breaker.name;
          this.breakerCalls.inc({ breaker: name, outcome: 'success' }, totals.successes);
          this.breakerCalls.inc({ breaker: name, outcome: 'failure' }, totals.failures);
          this.breakerCalls.inc({ breaker: name, outcome: 'rejected' }, totals.rejections);
          this.breakerCalls.inc({ breaker: name, outcome: 'ignored' }, totals.ignored);
        }
      },
    });
    this.rateLimitDecisions = new FastCounter(this.registry, `${p}ratelimit_decisions_total`, 'Rate limit decisions by limit name and outcome (allowed, limited)');
    this.dedupShared = new FastCounter(
      this.registry,
      `${p}dedup_shared_total`,
      'Requests answered from another identical in-flight request instead of running again',
    );
    this.httpCache = new FastCounter(this.registry, `${p}http_cache_total`, 'HTTP responses of cached routes by cache status (HIT, MISS, STALE, BYPASS)');
    this.httpCacheDuration = new Histogram({
      name: `${p}http_cache_request_duration_seconds`,
      help: 'Duration of responses of cached routes (response or semantic cache) by cache status: what a HIT saves over a MISS',
      labelNames: ['route', 'status'],
      buckets: options.buckets ?? [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.userCap = options.userLabels?.max ?? 0;
    this.userRequestLabel = this.userLabeler();
    this.userRequests = this.userCap > 0 ? new FastCounter(this.registry, `${p}user_requests_total`, 'HTTP requests by caller (first metrics.userLabels.max callers; the rest as "other") and outcome') : undefined;
    this.prefix = p;
    breakers.on('stateChange', (e) => this.breakerTransitions.inc({ breaker: e.name, from: e.from, to: e.to }));
  }

  /** Counts one HTTP request and observes its duration (the per-request hot path). */
  recordRequest(route: string | undefined, method: string, status: number, outcome: string, seconds: number): void {
    this.requests.record(route, method, status, outcome, seconds);
  }

  /** True when per-caller series are on (`metrics.userLabels`). */
  get userLabels(): boolean {
    return this.userCap > 0;
  }

  /** A capped label for callers: each caller's id while fewer than `max` were seen, else `other`. */
  userLabeler(): (identity: string) => string {
    const seen = new Set<string>();
    return (identity) => {
      if (seen.has(identity)) return identity;
      if (seen.size < this.userCap) {
        seen.add(identity);
        return identity;
      }
      return 'other';
    };
  }

  /** Counts one request of a caller (only with `userLabels`). */
  recordUserRequest(identity: string, outcome: string): void {
    if (this.userRequests !== undefined) this.userRequests.seriesFor({ user: this.userRequestLabel(identity), outcome }).value++;
  }

  observeHttpCacheDuration(route: string | undefined, status: string, seconds: number): void {
    this.httpCacheDuration.observe({ route: this.routeLabel(route), status }, seconds);
  }

  /** Counts one limit decision (per-request path: one Map lookup). */
  recordRateLimit(limit: string, allowed: boolean): void {
    let pair = this.limitSeries.get(limit);
    if (!pair) {
      pair = [this.rateLimitDecisions.seriesFor({ limit, outcome: 'allowed' }), this.rateLimitDecisions.seriesFor({ limit, outcome: 'limited' })];
      this.limitSeries.set(limit, pair);
    }
    pair[allowed ? 0 : 1].value++;
  }

  /** Counts one request answered by an identical in-flight request. */
  recordDedupShared(route: string | undefined): void {
    this.dedupShared.seriesFor({ route: this.routeLabel(route) }).value++;
  }

  /** Counts one response of a cached route by its X-Cache status. */
  recordHttpCache(route: string | undefined, status: string): void {
    this.httpCache.seriesFor({ route: this.routeLabel(route), status }).value++;
  }

  /** Exports a tiered cache's counters (read from its stats when scraped). */
  watchCache(cache: TieredCache): void {
    (this.cacheMetrics ??= new CacheMetrics(this.registry, this.prefix)).watch(cache);
  }

  /** Exports a semantic cache's counters (read from its stats when scraped). */
  watchSemanticCache(cache: SemanticCache): void {
    (this.semanticMetrics ??= new SemanticCacheMetrics(this.registry, this.prefix)).watch(cache);
  }

  /** Exports an AI service's metrics: endpoints, pools, fallbacks, retries, tokens, cost, budgets (see AiMetrics). */
  watchAi(service: AiService): void {
    (this.aiMetrics ??= new AiMetrics(this.registry, this.prefix, this.userCap > 0 ? this.userLabeler() : undefined)).watch(service);
  }

  /** The label value for a route: its pattern while under the cap, else `other`. */
  routeLabel(route: string | undefined): string {
    if (!route) return 'unmatched';
    if (this.routes.has(route)) return route;
    if (this.routes.size >= this.maxRoutes) return 'other';
    this.routes.add(route);
    return route;
  }

  /** Prometheus text exposition of this instance's registry. */
  async expose(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** Removes AMAS metrics from a registry the user passed in (an owned registry is simply dropped). */
  close(): void {
    // Listeners on the AI service go whoever owns the registry.
    this.aiMetrics?.detach();
    if (this.ownsRegistry) return;
    this.requests.unregister();
    this.rateLimitDecisions.unregister();
    this.dedupShared.unregister();
    this.httpCache.unregister();
    this.cacheMetrics?.unregister();
    this.semanticMetrics?.unregister();
    this.aiMetrics?.unregister();
    this.userRequests?.unregister();
    for (const metric of [this.breakerState, this.breakerTransitions, this.breakerCalls, this.httpCacheDuration]) {
      this.registry.removeSingleMetric((metric as unknown as { name: string }).name);
    }
  }
}
