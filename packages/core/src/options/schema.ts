import { z } from 'zod';
import { circuitBreakerOptionsSchema } from '../policies/circuit-breaker.js';
import { limiterSpecSchema } from '../policies/limiters.js';
import { clockSchema, fn, positiveInt, loggerSchema } from './validate.js';
import { redisStoreOptionsSchema } from '../stores/redis-store-options.js';
import { isStore, type Store } from '../stores/store.js';
import { compressionSchema, fieldsSchema, responseCacheSchema, semanticCacheSchema } from '../http/response-options.js';

/** A limit on a route: the name of one in `limits`, or an inline spec. */
export const limitRefSchema = z.union([z.string().min(1), limiterSpecSchema]);

const breakerRefSchema = z.union([
  z.literal(false),
  z.string().min(1),
  z.looseObject({ name: z.string().min(1) }).and(circuitBreakerOptionsSchema),
]);

const dedupOptionSchema = z.union([
  z.boolean(),
  z.strictObject({
    key: fn.optional(),
    /** true, or SharedSingleFlight options (leaseMs, maxResultBytes, ...), validated when the route compiles. */
    shared: z.union([z.boolean(), z.record(z.string(), z.unknown())]).optional(),
  }),
]);

/** Per-route options; each overrides the global `http` option of the same name. */
export const routeOptionsSchema = z.strictObject({
  /** Limits checked for this route (all must allow). false: no limit even if one is set globally. */
  limit: z.union([z.literal(false), limitRefSchema, z.array(limitRefSchema)]).optional(),
  /** A named breaker that guards this route and rejects with 503 while open. false: none. */
  breaker: breakerRefSchema.optional(),
  /**
   * Share one execution among identical concurrent requests (same method, URL, identity and body).
   * `shared` (needs the engine's `redis` or `store`) shares it across replicas too.
   */
  dedup: dedupOptionSchema.optional(),
  /** How to name the caller for limits and dedup; see resolveIdentity. */
  identity: fn.optional(),
  /** Leave this route alone entirely (no limits, no timing, no metrics). */
  skip: z.boolean().optional(),
  /** Cache this route's responses (X-Cache, ETag/304, per-identity keys); see response-options.ts. */
  cache: responseCacheSchema.optional(),
  /** Compress responses negotiated from Accept-Encoding above a size threshold. */
  compression: compressionSchema.optional(),
  /** `?fields=id,items.price` filtering of JSON responses. */
  fields: fieldsSchema.optional(),
  /** The semantic cache for an OpenAI-style chat completions route (X-Cache: SEMANTIC-HIT); see response-options.ts. */
  semanticCache: semanticCacheSchema.optional(),
});

export const httpOptionsSchema = z.strictObject({
  limit: z.union([z.literal(false), limitRefSchema, z.array(limitRefSchema)]).optional(),
  breaker: breakerRefSchema.optional(),
  dedup: dedupOptionSchema.optional(),
  identity: fn.optional(),
  trustProxy: z.union([z.boolean(), z.number().int().nonnegative()]).optional(),
  /** Which rate-limit headers to send: IETF draft (default), legacy X-RateLimit-*, both, or none. */
  rateLimitHeaders: z.union([z.enum(['draft', 'legacy', 'both']), z.literal(false)]).optional(),
  /** X-Response-Time and Server-Timing on every response (default true). */
  responseTime: z.boolean().optional(),
  /**
   * Per-route breakers that only watch (state and metrics, never rejecting) when no enforcing breaker is
   * configured: what zero configuration gives you. Default true.
   */
  observeBreakers: z.boolean().optional(),
  /** Which response statuses count as upstream failures for breakers (default: status >= 500). */
  isFailureStatus: fn.optional(),
  /** Renders the JSON body of a 429/503 rejection (default `{ error: { code, message, status, retryAfterMs } }`). */
  rejectionBody: fn.optional(),
  /** Largest response body (bytes) a dedup leader captures for its followers (default 8 MiB). */
  maxSharedBodyBytes: positiveInt.optional(),
  cache: responseCacheSchema.optional(),
  compression: compressionSchema.optional(),
  fields: fieldsSchema.optional(),
});

export const metricsOptionsSchema = z.strictObject({
  registry: z
    .custom<import('prom-client').Registry>(
      (v) => typeof v === 'object' && v !== null && typeof (v as { metrics?: unknown }).metrics === 'function',
      { message: 'a prom-client Registry' },
    )
    .optional(),
  prefix: z.string().regex(/^[a-zA-Z_:][a-zA-Z0-9_:]*$/, 'a Prometheus metric name prefix').optional(),
  maxRoutes: positiveInt.optional(),
  /** Per-caller series for the first `max` callers (off by default: user ids are unbounded label values). */
  userLabels: z.strictObject({ max: positiveInt.max(10_000, 'at most 10 000 callers (each is a series)') }).optional(),
  buckets: z.array(z.number().positive()).min(1).optional(),
});

export const amasOptionsSchema = z
  .strictObject({
  /** Defaults for every named breaker. */
  breakerDefaults: circuitBreakerOptionsSchema.optional(),
  /** Per-name breaker options: `amas.breaker('openai')` uses `breakers.openai`. */
  breakers: z.record(z.string(), circuitBreakerOptionsSchema).optional(),
  /** Named limits that routes and `amas.limiter(name)` refer to. */
  limits: z.record(z.string(), limiterSpecSchema).optional(),
  http: httpOptionsSchema.optional(),
  metrics: metricsOptionsSchema.optional(),
  /**
   * Share limits (and the breakers and dedup that ask for it) between replicas through Redis: a URL or
   * RedisStore options. The instance owns the connections and closes them.
   */
  redis: z.union([redisStoreOptionsSchema.shape.url.unwrap(), redisStoreOptionsSchema]).optional(),
  /** A Store you built yourself (a RedisStore shared by several instances, a custom store); not closed by AMAS. */
  store: z.custom<Store>((v) => isStore(v), { message: 'a Store (MemoryStore, RedisStore or your own implementation)' }).optional(),
  /**
   * How many replicas share the store. While the store is unreachable each replica enforces its share of
   * every limit (limit / replicas) on its own. Default 1.
   */
  replicas: positiveInt.optional(),
  /** What limits do while the store is unreachable: decide locally (default), admit everything, or deny. */
  onStoreFailure: z.enum(['local', 'open', 'closed']).optional(),
  /**
   * The engine's tiered cache (`amas.cache`, the HTTP response cache, `@Cached`): L1 in memory, L2 on the
   * engine's store when it has one, optional L3. TieredCache options without `store`, `clock` and `logger`,
   * validated when the cache is first built.
   */
  cache: z.record(z.string(), z.unknown()).optional(),
  /**
   * The engine's semantic cache (routes with `semanticCache: true`): SemanticCache options without `store`,
   * `clock` and `logger`, validated when it is first built. Its entries live in the engine's store.
   */
  semanticCache: z.record(z.string(), z.unknown()).optional(),
  /**
   * The AI provider layer (`amas.ai`): models and their endpoints, client, prices, budgets, records; see
   * ai/ai-service.ts. Validated when the engine is built.
   */
  ai: z.record(z.string(), z.unknown()).optional(),
  clock: clockSchema.optional(),
  logger: loggerSchema
    .optional(),
  })
  .superRefine((o, ctx) => {
    if (o.redis !== undefined && o.store !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['store'], message: 'either redis or store, not both', input: '(a Store)' });
    }
  });

export type AmasOptions = z.input<typeof amasOptionsSchema>;
export type ParsedAmasOptions = z.output<typeof amasOptionsSchema>;
export type RouteOptions = z.input<typeof routeOptionsSchema>;
export type HttpOptions = z.input<typeof httpOptionsSchema>;
