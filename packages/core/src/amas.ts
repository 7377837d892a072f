import { createHash } from 'node:crypto';
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
import { SharedSingleFlight, type SharedSingleFlightOptions } from './policies/shared-single-flight.js';
import { describe as describeValue } from './options/validate.js';
import { TimeoutPolicy, type TimeoutOptions } from './policies/timeout.js';
import { HttpPipeline, type PipelineHost, type ResolvedHttpOptions } from './http/pipeline.js';
import { defaultRejectionBody } from './http/rejection.js';
import { stableKey } from './util/stable-key.js';
import type { CheckableLimiter } from './policies/limit-check.js';
import { createStoreLimiter, type StoreLimiter } from './policies/store-limiter.js';
import { StoreMetrics } from './metrics/store-metrics.js';
import { RedisStore, type RedisStoreOptions } from './stores/redis-store.js';
import type { Store } from './stores/store.js';
import { TieredCache } from './cache/tiered-cache.js';
import { SemanticCache, type SemanticCacheOptions } from './semantic/semantic-cache.js';
import { AiService, type AiOptions } from './ai/ai-service.js';
import type { TieredCacheOptions } from './cache/tiered-cache-options.js';

const AMAS_BRAND = Symbol.for('amas.instance');

/** Options of a shared single-flight the engine fills in itself (store, clock, logger). */
export type SharedDedupOptions = Omit<SharedSingleFlightOptions, 'store' | 'clock' | 'logger'>;

/** Options that give the engine a shared store (`redis` or `store`): its limiters are store-backed. */
export type SharedAmasOptions = AmasOptions & ({ redis: NonNullable<AmasOptions['redis']> } | { store: Store });

/** Options without a shared store: everything stays in this process, limiters decide synchronously. */
export type LocalAmasOptions = AmasOptions & { redis?: undefined; store?: undefined };

/**
 * One AMAS engine: it owns its breakers, limiters, policies and metrics registry. Adapters drive it;
 * `close()` releases everything it holds.
 *
 * `L` is the kind of limiter it hands out, when its options tell (see createAmas): in memory (`Limiter`,
 * synchronous `check`) without a store, store-backed (`StoreLimiter`, `check` returns a promise) with one.
 */
export class Amas<L extends Limiter | StoreLimiter = Limiter | StoreLimiter> implements PipelineHost {
  readonly options: ParsedAmasOptions;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly breakers: BreakerRegistry;
  readonly metrics: AmasMetrics;
  readonly http: HttpPipeline;
  readonly httpOptions: ResolvedHttpOptions;
  /** The store replicas share state through (`redis` or `store` option); undefined: one process, in memory. */
  readonly store: Store | undefined;
  private readonly ownsStore: boolean;
  private readonly storeMetrics: StoreMetrics | undefined;
  private readonly namedLimiters = new Map<string, Limiter | StoreLimiter>();
  private readonly inlineLimiters = new Map<string, Limiter | StoreLimiter>();
  private readonly storeLimiters: StoreLimiter[] = [];
  private readonly sharedFlights = new Map<string, SharedSingleFlight>();
  private readonly owned: Array<{ close(): void | Promise<void> } | { dispose(): void }> = [];
  private tieredCache: TieredCache | undefined;
  private defaultSemantic: SemanticCache | undefined;
  private aiService: AiService | undefined;
  private closed = false;

  constructor(options: AmasOptions = {}) {
    Object.defineProperty(this, AMAS_BRAND, { value: true });
    this.options = parseOptions(amasOptionsSchema, options ?? {}, 'AMAS options');
    this.clock = this.options.clock ?? systemClock;
    this.logger = this.options.logger ?? consoleLogger;
    if (this.options.store) {
      this.store = this.options.store;
      this.ownsStore = false;
    } else if (this.options.redis !== undefined) {
      const redis = this.options.redis;
      this.store = new RedisStore(typeof redis === 'string' ? { url: redis, logger: this.logger } : { logger: this.logger, ...(redis as RedisStoreOptions) });
      this.ownsStore = true;
    } else {
      this.store = undefined;
      this.ownsStore = false;
    }
    this.breakers = new BreakerRegistry({
      defaults: this.options.breakerDefaults as CircuitBreakerOptions | undefined,
      breakers: this.options.breakers as Record<string, CircuitBreakerOptions> | undefined,
      clock: this.clock,
      store: this.store,
      logger: this.logger,
    });
    this.metrics = new AmasMetrics(this.options.metrics ?? {}, this.breakers);
    this.storeMetrics = this.store
      ? new StoreMetrics(this.metrics.registry, this.options.metrics?.prefix ?? 'amas_', { store: () => this.store, limiters: () => this.storeLimiters })
      : undefined;
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
      cache: http.cache,
      compression: http.compression,
      fields: http.fields,
    };
    for (const [name, spec] of Object.entries(this.options.limits ?? {})) {
      this.namedLimiters.set(name, this.buildLimiter(spec as LimiterSpec, name));
    }
    this.http = new HttpPipeline(this);
    try {
      // Built now when configured, so a bad cache option fails at start-up like every other option.
      if (this.options.cache !== undefined) this.buildCache();
      if (this.options.semanticCache !== undefined) this.buildSemantic();
      if (this.options.ai !== undefined) this.buildAi();
      // Compile the global HTTP options once now, so a bad global limit or breaker fails at start-up.
      this.http.compile({});
    } catch (error) {
      // The constructor throws, so nobody could close what it already opened (the Redis connections).
      void this.close();
      throw error;
    }
  }

  /**
   * The engine's tiered cache: L1 in memory, L2 on the engine's store (`redis`/`store`) when it has one, and
   * the L3 of the `cache` option. Built on first use when no `cache` option was given.
   */
  get cache(): TieredCache {
    return this.tieredCache ?? this.buildCache();
  }

  private buildCache(): TieredCache {
    if (this.closed) throw new InvalidOptionError([{ path: 'cache', received: 'a closed engine', expected: 'an open AMAS instance' }], 'AMAS cache');
    const options = (this.options.cache ?? {}) as TieredCacheOptions;
    for (const key of ['store', 'clock', 'logger'] as const) {
      if (key in options) throw new InvalidOptionError([{ path: `cache.${key}`, received: describeValue(options[key]), expected: `nothing: the engine passes its own ${key}` }], 'AMAS options');
    }
    try {
      this.tieredCache = new TieredCache({ ...options, store: this.store, clock: this.clock, logger: this.logger });
    } catch (error) {
      if (!(error instanceof InvalidOptionError)) throw error;
      throw new InvalidOptionError(error.issues.map((i) => ({ ...i, path: i.path ? `cache.${i.path}` : 'cache' })), 'AMAS options');
    }
    this.owned.push(this.tieredCache);
    this.metrics.watchCache(this.tieredCache);
    return this.tieredCache;
  }

  /**
   * The AI provider layer of the `ai` option: `amas.ai.chat(body, { user })`, `chatStream`, `embeddings`,
   * `usage`, `budget`, `recommendations`. Calls are routed across the configured endpoints, budgets are
   * enforced before each call, and usage and cost are recorded (in the engine's store when it has one).
   */
  get ai(): AiService {
    if (this.aiService === undefined) {
      throw new InvalidOptionError([{ path: 'ai', received: 'undefined', expected: 'the ai option ({ models: { "<model>": { endpoints: [{ url }] } } }) before amas.ai is used' }], 'AMAS options');
    }
    return this.aiService;
  }

  private buildAi(): void {
    const breakers = this.breakers;
    this.aiService = new AiService(this.options.ai as unknown as AiOptions, {
      ...(this.store !== undefined && { store: this.store }),
      breakers: { get: (name, overrides) => breakers.get(name, overrides as CircuitBreakerOptions | undefined) },
      clock: this.clock,
      logger: this.logger,
    });
    this.metrics.watchAi(this.aiService);
    this.owned.push(this.aiService);
  }

  /**
   * The engine's semantic cache (what routes with `semanticCache: true` use), from the `semanticCache`
   * option, its entries in the engine's store when it has one. Built on first use when no option was given.
   */
  get semantic(): SemanticCache {
    return this.defaultSemantic ?? this.buildSemantic();
  }

  private buildSemantic(): SemanticCache {
    const options = (this.options.semanticCache ?? {}) as SemanticCacheOptions;
    try {
      this.defaultSemantic = this.semanticCache(options);
    } catch (error) {
      if (!(error instanceof InvalidOptionError)) throw error;
      throw new InvalidOptionError(error.issues.map((i) => ({ ...i, path: i.path ? `semanticCache.${i.path}` : 'semanticCache' })), 'AMAS options');
    }
    return this.defaultSemantic;
  }

  /**
   * A semantic cache owned (and closed) by this engine, its entries in the engine's store when it has one
   * (replicas share them). Options as for `new SemanticCache()`, without `store`, `clock` and `logger`.
   */
  semanticCache<V = unknown>(options: Omit<SemanticCacheOptions, 'store' | 'clock' | 'logger'> = {}): SemanticCache<V> {
    for (const key of ['store', 'clock', 'logger'] as const) {
      if (options && key in options) {
        throw new InvalidOptionError([{ path: key, received: describeValue((options as Record<string, unknown>)[key]), expected: `nothing: the engine passes its own ${key}` }], 'AMAS semanticCache options');
      }
    }
    const cache = new SemanticCache<V>({ ...options, store: this.store, clock: this.clock, logger: this.logger });
    this.owned.push(cache);
    this.metrics.watchSemanticCache(cache as SemanticCache);
    return cache;
  }

  /** A named circuit breaker, created on first use from `breakerDefaults` <- `breakers[name]` <- overrides. */
  breaker(name: string, overrides?: CircuitBreakerOptions): CircuitBreaker {
    return this.breakers.get(name, overrides);
  }

  /**
   * A named limiter from the `limits` option: in memory (synchronous `check`) in one process, shared through
   * the store (`check` returns a promise) when `redis` or `store` is set.
   */
  limiter(name: string): L {
    const limiter = this.namedLimiters.get(name) as L | undefined;
    if (!limiter) {
      throw new InvalidOptionError(
        [{ path: 'limits', received: JSON.stringify(name), expected: `one of the configured limits (${[...this.namedLimiters.keys()].join(', ') || 'none configured'})` }],
        'AMAS limit name',
      );
    }
    return limiter;
  }

  /** A new limiter owned (and closed) by this instance; shared through the store when there is one. */
  createLimiter(spec: LimiterSpec, name?: string): L {
    const limiter = this.buildLimiter(spec, name);
    this.owned.push(limiter);
    return limiter as L;
  }

  /** Resolves once the shared store is connected (at once without one); rejects after `timeoutMs`. */
  async ready(timeoutMs = 5000): Promise<void> {
    await this.store?.ready?.(timeoutMs);
    // Shared breakers read the cluster-wide state once connected (a breaker open elsewhere starts open here).
    await this.breakers.ready();
    await this.tieredCache?.ready();
    await this.defaultSemantic?.ready();
  }

  /**
   * For adapters' start-up hooks: waits up to `timeoutMs` for the store, like `ready()`, but never fails the
   * app's start: without Redis the features run on their fallbacks and one line says so. Resolves whether the
   * store answered.
   */
  async warmUp(timeoutMs = 5000): Promise<boolean> {
    try {
      await this.ready(timeoutMs);
      return true;
    } catch (error) {
      this.logger.warn(`the shared store is not ready (${error instanceof Error ? error.message : String(error)}); starting on local fallbacks`);
      return false;
    }
  }

  private buildLimiter(spec: LimiterSpec, name: string | undefined): Limiter | StoreLimiter {
    if (!this.store) return createLimiter(spec, { clock: this.clock, name });
    const limiter = createStoreLimiter(spec, {
      store: this.store,
      name,
      clock: this.clock,
      logger: this.logger,
      replicas: this.options.replicas,
      onStoreFailure: this.options.onStoreFailure,
    });
    this.storeLimiters.push(limiter);
    return limiter;
  }

  /** @internal Resolves a route's limit reference: a configured name or an inline spec (one limiter per distinct spec). */
  resolveLimiter(ref: unknown, where: string): CheckableLimiter {
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
      // Named by content, not by order, so every replica's copy of this spec shares one key space in the store.
      limiter = this.buildLimiter(spec, spec.name ?? `inline-${createHash('sha1').update(key).digest('hex').slice(0, 10)}`);
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

  /**
   * Collapses identical concurrent calls. `shared` (needs the `redis` or `store` option) also collapses them
   * across replicas: one replica runs the call, the others receive its result (see SharedSingleFlight).
   */
  singleFlight(options?: SingleFlightOptions & { shared?: false }): SingleFlight;
  singleFlight(options: SingleFlightOptions & { shared: true | SharedDedupOptions }): SharedSingleFlight;
  singleFlight(options: SingleFlightOptions & { shared?: boolean | SharedDedupOptions } = {}): SingleFlight | SharedSingleFlight {
    const { shared, ...local } = options ?? {};
    if (shared === undefined || shared === false) {
      const flight = new SingleFlight({ clock: this.clock, ...local });
      this.owned.push(flight);
      return flight;
    }
    if (!this.store) {
      throw new InvalidOptionError(
        [{ path: 'shared', received: describeValue(shared), expected: 'the engine to have a `redis` or `store` option (shared dedup lives in the store)' }],
        'AMAS singleFlight options',
      );
    }
    const flight = new SharedSingleFlight({
      shareWindowMs: local.shareWindowMs,
      ...(shared === true ? {} : shared),
      store: this.store,
      clock: local.clock ?? this.clock,
      logger: this.logger,
    });
    this.owned.push(flight);
    return flight;
  }

  /** @internal The cross-replica flight behind `http.dedup.shared` (one per distinct options). */
  sharedFlight(options: unknown, where: string): SharedSingleFlight {
    if (!this.store) {
      throw new InvalidOptionError(
        [{ path: 'dedup.shared', received: describeValue(options), expected: 'the engine to have a `redis` or `store` option (shared dedup lives in the store)' }],
        where,
      );
    }
    const settings = options === true ? {} : (options as SharedDedupOptions);
    const key = stableKey(settings);
    let flight = this.sharedFlights.get(key);
    if (!flight) {
      try {
        flight = new SharedSingleFlight({ ...settings, store: this.store, clock: this.clock, logger: this.logger });
      } catch (error) {
        // Name the route option the bad value came from, not the class it was handed to.
        if (!(error instanceof InvalidOptionError)) throw error;
        throw new InvalidOptionError(error.issues.map((i) => ({ ...i, path: i.path ? `dedup.shared.${i.path}` : 'dedup.shared' })), where);
      }
      this.sharedFlights.set(key, flight);
      this.owned.push(flight);
    }
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
    await Promise.all(this.owned.map((item) => ('close' in item ? item.close() : item.dispose())));
    await this.breakers.close();
    this.storeMetrics?.unregister();
    this.metrics.close();
    if (this.ownsStore) await this.store!.close();
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

export function createAmas(options: SharedAmasOptions): Amas<StoreLimiter>;
export function createAmas(options?: LocalAmasOptions): Amas<Limiter>;
export function createAmas(options?: AmasOptions): Amas;
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
