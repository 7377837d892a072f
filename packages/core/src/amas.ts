import type { Registry } from 'prom-client';
import { systemClock, type Clock } from './clock.js';
import { InvalidOptionError } from './errors.js';
import { consoleLogger, type Logger } from './logger.js';
import { AmasMetrics } from './metrics/amas-metrics.js';
import { amasOptionsSchema, type AmasOptions, type ParsedAmasOptions } from './options/schema.js';
import { parseOptions, toOptionIssues } from './options/validate.js';
import { BreakerRegistry } from './policies/breaker-registry.js';
import { Bulkhead, type BulkheadOptions } from './policies/bulkhead.js';
import type { CircuitBreaker, CircuitBreakerOptions } from './policies/circuit-breaker.js';
import { Resilience, type ResiliencePart, type ResilienceParts } from './policies/compose.js';
import type { Limiter } from './policies/limit-decision.js';
import { createLimiter, limiterSpecSchema, type LimiterSpec } from './policies/limiters.js';
import { RetryPolicy, type RetryOptions } from './policies/retry.js';
import { SingleFlight, type SingleFlightOptions } from './policies/single-flight.js';
import { TimeoutPolicy, type TimeoutOptions } from './policies/timeout.js';
import { HttpPipeline, type PipelineHost, type ResolvedHttpOptions } from './http/pipeline.js';
import { defaultRejectionBody } from './http/rejection.js';
import { stableKey } from './util/stable-key.js';

const AMAS_BRAND = Symbol.for('amas.instance');

/**
 * One AMAS engine: it owns its breakers, limiters, policies and metrics registry. Adapters drive it;
 * `close()` releases everything it holds.
 */
export class Amas implements PipelineHost {
  readonly options: ParsedAmasOptions;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly breakers: BreakerRegistry;
  readonly metrics: AmasMetrics;
  readonly http: HttpPipeline;
  readonly httpOptions: ResolvedHttpOptions;
  private readonly namedLimiters = new Map<string, Limiter>();
  private readonly inlineLimiters = new Map<string, Limiter>();
  private readonly owned: Array<{ close(): void } | { dispose(): void }> = [];
  private closed = false;

  constructor(options: AmasOptions = {}) {
    Object.defineProperty(this, AMAS_BRAND, { value: true });
    this.options = parseOptions(amasOptionsSchema, options ?? {}, 'AMAS options');
    this.clock = this.options.clock ?? systemClock;
    this.logger = this.options.logger ?? consoleLogger;
    this.breakers = new BreakerRegistry({
      defaults: this.options.breakerDefaults as CircuitBreakerOptions | undefined,
      breakers: this.options.breakers as Record<string, CircuitBreakerOptions> | undefined,
      clock: this.clock,
    });
    this.metrics = new AmasMetrics(this.options.metrics ?? {}, this.breakers);
    const http = this.options.http ?? {};
    this.httpOptions = {
      limit: http.limit,
      breaker: http.breaker,
      dedup: http.dedup as ResolvedHttpOptions['dedup'],
      identity: http.identity as ResolvedHttpOptions['identity'],
      trustProxy: http.trustProxy ?? false,
      rateLimitHeaders: http.rateLimitHeaders ?? 'draft',
      responseTime: http.responseTime ?? true,
      observeBreakers: http.observeBreakers ?? true,
      isFailureStatus: guardedFailureStatus(http.isFailureStatus as ((s: number) => boolean) | undefined, this.logger),
      rejectionBody: (http.rejectionBody as ResolvedHttpOptions['rejectionBody'] | undefined) ?? defaultRejectionBody,
      maxSharedBodyBytes: http.maxSharedBodyBytes ?? 8 * 1024 * 1024,
    };
    for (const [name, spec] of Object.entries(this.options.limits ?? {})) {
      this.namedLimiters.set(name, createLimiter(spec as LimiterSpec, { clock: this.clock, name }));
    }
    this.http = new HttpPipeline(this);
    // Compile the global HTTP options once now, so a bad global limit or breaker fails at start-up.
    this.http.compile({});
  }

  /** A named circuit breaker, created on first use from `breakerDefaults` <- `breakers[name]` <- overrides. */
  breaker(name: string, overrides?: CircuitBreakerOptions): CircuitBreaker {
    return this.breakers.get(name, overrides);
  }

  /** A named limiter from the `limits` option. */
  limiter(name: string): Limiter {
    const limiter = this.namedLimiters.get(name);
    if (!limiter) {
      throw new InvalidOptionError(
        [{ path: 'limits', received: JSON.stringify(name), expected: `one of the configured limits (${[...this.namedLimiters.keys()].join(', ') || 'none configured'})` }],
        'AMAS limit name',
      );
    }
    return limiter;
  }

  /** A new limiter owned (and closed) by this instance. */
  createLimiter(spec: LimiterSpec, name?: string): Limiter {
    const limiter = createLimiter(spec, { clock: this.clock, name });
    this.owned.push(limiter);
    return limiter;
  }

  /** @internal Resolves a route's limit reference: a configured name or an inline spec (one limiter per distinct spec). */
  resolveLimiter(ref: unknown, where: string): Limiter {
    if (typeof ref === 'string') {
      if (!this.namedLimiters.has(ref)) {
        throw new InvalidOptionError(
          [{ path: 'limit', received: JSON.stringify(ref), expected: `the name of a configured limit (${[...this.namedLimiters.keys()].join(', ') || 'none configured'})` }],
          where,
        );
      }
      return this.namedLimiters.get(ref)!;
    }
    const parsed = limiterSpecSchema.safeParse(ref);
    if (!parsed.success) throw new InvalidOptionError(toOptionIssues(parsed.error.issues, ref, 'limit'), where);
    const key = stableKey(ref);
    let limiter = this.inlineLimiters.get(key);
    if (!limiter) {
      const spec = ref as LimiterSpec;
      limiter = createLimiter(spec, { clock: this.clock, name: spec.name ?? `inline-${this.inlineLimiters.size + 1}` });
      this.inlineLimiters.set(key, limiter);
    }
    return limiter;
  }

  retry(options: RetryOptions = {}): RetryPolicy {
    return new RetryPolicy({ clock: this.clock, ...options });
  }

  timeout(options: TimeoutOptions | number): TimeoutPolicy {
    return new TimeoutPolicy(typeof options === 'number' ? { timeoutMs: options, clock: this.clock } : { clock: this.clock, ...options });
  }

  bulkhead(options: BulkheadOptions): Bulkhead {
    return new Bulkhead({ clock: this.clock, ...options });
  }

  singleFlight(options: SingleFlightOptions = {}): SingleFlight {
    const flight = new SingleFlight({ clock: this.clock, ...options });
    this.owned.push(flight);
    return flight;
  }

  /** retry, breaker, bulkhead, timeout and dedup around one call, in DEFAULT_ORDER unless `order` says otherwise. */
  resilience(parts: ResilienceParts, options?: { order?: ResiliencePart[] }): Resilience {
    return new Resilience(parts, options);
  }

  /** The Prometheus registry holding this instance's metrics. */
  get registry(): Registry {
    return this.metrics.registry;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Releases every timer, listener and store this instance holds. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const limiter of [...this.namedLimiters.values(), ...this.inlineLimiters.values()]) limiter.close();
    for (const item of this.owned) ('close' in item ? item.close() : item.dispose());
    this.breakers.close();
    this.metrics.close();
  }
}

/**
 * The user's `http.isFailureStatus`, made safe to call when a response closes: one that throws would crash
 * the process from an event listener, so its error is logged once and the default (status >= 500) used.
 */
function guardedFailureStatus(custom: ((status: number) => boolean) | undefined, logger: Logger): (status: number) => boolean {
  const fallback = (status: number) => status >= 500;
  if (!custom) return fallback;
  let warned = false;
  return (status) => {
    try {
      return custom(status) === true;
    } catch (error) {
      if (!warned) {
        warned = true;
        logger.warn('http.isFailureStatus threw; using status >= 500 instead', error);
      }
      return fallback(status);
    }
  };
}

export function createAmas(options?: AmasOptions): Amas {
  return new Amas(options);
}

/** True for an Amas instance from any copy of this package. */
export function isAmas(value: unknown): value is Amas {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[AMAS_BRAND] === true;
}

/** What adapters accept: an instance (shared, not closed by the adapter) or options (an owned instance). */
export function resolveAmas(optionsOrInstance: AmasOptions | Amas | undefined): { amas: Amas; owned: boolean } {
  if (isAmas(optionsOrInstance)) return { amas: optionsOrInstance, owned: false };
  return { amas: createAmas(optionsOrInstance), owned: true };
}
