import { z } from 'zod';
import type { Clock } from '../clock.js';
import type { Logger } from '../logger.js';
import { durationSchema } from '../options/duration.js';
import { clockSchema, fn, MAX_TIMER_MS, positiveInt, loggerSchema } from '../options/validate.js';
import { isStore, type Store } from '../stores/store.js';
import { NAMESPACE_PATTERN, type CacheLevel } from './cache-level.js';
import type { CacheSerializer } from './value-codec.js';

type Duration = number | string;

export interface TieredCacheOptions {
  /** Names this cache's keys and channels in shared levels, so two caches on one Redis never collide. Default 'amas'. */
  name?: string;
  /** The namespace of calls that name none. Default 'default'. */
  namespace?: string;
  /** How long a value stays fresh. Default '5m'. */
  ttl?: Duration;
  /**
   * How long past its TTL a value may still be served stale: while one refresh runs (stale-while-revalidate)
   * and when the factory fails (stale-if-error). Default 0: no stale values.
   */
  grace?: Duration;
  /** With grace: getOrSet answers a stale value at once and refreshes in the background. Default true. */
  staleWhileRevalidate?: boolean;
  /** L1, in-process. false turns it off. */
  l1?: false | { maxEntries?: number; maxBytes?: number; ttl?: Duration };
  /**
   * L2 on the shared store (Redis): on by default when `store` is given. `ttl` caps how long L2 keeps an entry.
   */
  l2?: false | { ttl?: Duration };
  /** L3, persistent: PostgreSQL, a directory, or any CacheLevel. Off by default. */
  l3?:
    | false
    | CacheLevel
    | { postgres: { connectionString?: string; pool?: unknown; table?: string }; ttl?: Duration }
    | { file: { directory: string }; ttl?: Duration };
  /** The shared store: L2, cross-replica L1 invalidation and the cross-replica getOrSet lock. */
  store?: Store;
  /** Compression of values written to L2/L3. Default gzip above 1024 bytes when it saves at least 10%. */
  compression?: false | { algorithm?: 'gzip' | 'br'; thresholdBytes?: number; minSavings?: number };
  serializer?: CacheSerializer;
  /** Factory timeouts for getOrSet: soft answers a stale value when there is one; hard aborts the factory. */
  timeouts?: { soft?: Duration; hard?: Duration };
  /** The cross-replica getOrSet lock (on by default with a store). */
  lock?: false | { leaseMs?: number; waitTimeoutMs?: number };
  /** Cross-replica L1 invalidation through the store's Pub/Sub (on by default with a store). */
  invalidation?: boolean;
  /** A level that failed is skipped this long before it is tried again (doubling up to 30s). Default 1000 ms. */
  levelRetryMs?: number;
  clock?: Clock;
  logger?: Logger;
}

const duration = durationSchema.pipe(z.number().max(MAX_TIMER_MS, 'a duration of at most 24.8 days'));
const positiveDuration = durationSchema.pipe(z.number().positive('a duration > 0').max(MAX_TIMER_MS, 'a duration of at most 24.8 days'));
const namespace = z.string().regex(NAMESPACE_PATTERN, `a namespace matching ${NAMESPACE_PATTERN} (letters, digits, _ - .)`);

export function isCacheLevel(value: unknown): value is CacheLevel {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return ['get', 'getMany', 'set', 'setMany', 'delete', 'clear', 'close'].every((m) => typeof v[m] === 'function') && typeof v.name === 'string';
}

export const tieredCacheOptionsSchema = z.strictObject({
  name: namespace.optional(),
  namespace: namespace.optional(),
  ttl: positiveDuration.optional(),
  grace: duration.optional(),
  staleWhileRevalidate: z.boolean().optional(),
  l1: z
    .union([
      z.literal(false),
      z.strictObject({
        maxEntries: positiveInt.optional(),
        maxBytes: positiveInt.optional(),
        ttl: positiveDuration.optional(),
      }),
    ])
    .optional(),
  l2: z.union([z.literal(false), z.strictObject({ ttl: positiveDuration.optional() })]).optional(),
  l3: z
    .union([
      z.literal(false),
      z.custom<CacheLevel>(isCacheLevel, { message: 'a CacheLevel' }),
      z.strictObject({
        postgres: z.strictObject({ connectionString: z.string().min(1).optional(), pool: z.unknown().optional(), table: z.string().optional() }),
        ttl: positiveDuration.optional(),
      }),
      z.strictObject({ file: z.strictObject({ directory: z.string().min(1) }), ttl: positiveDuration.optional() }),
    ])
    .optional(),
  store: z.custom<Store>(isStore, { message: 'a Store (MemoryStore or RedisStore)' }).optional(),
  compression: z
    .union([
      z.literal(false),
      z.strictObject({
        algorithm: z.enum(['gzip', 'br']).optional(),
        thresholdBytes: z.number().int().nonnegative().optional(),
        minSavings: z.number().min(0).max(0.99).optional(),
      }),
    ])
    .optional(),
  serializer: z
    .custom<CacheSerializer>(
      (v) => typeof v === 'object' && v !== null && typeof (v as CacheSerializer).serialize === 'function' && typeof (v as CacheSerializer).deserialize === 'function',
      { message: 'an object with serialize() and deserialize()' },
    )
    .optional(),
  timeouts: z.strictObject({ soft: positiveDuration.optional(), hard: positiveDuration.optional() }).optional(),
  lock: z
    .union([z.literal(false), z.strictObject({ leaseMs: positiveInt.min(10).max(MAX_TIMER_MS).optional(), waitTimeoutMs: positiveInt.max(MAX_TIMER_MS).optional() })])
    .optional(),
  invalidation: z.boolean().optional(),
  levelRetryMs: positiveInt.max(MAX_TIMER_MS).optional(),
  clock: clockSchema.optional(),
  logger: loggerSchema
    .optional(),
});

/** Per-call options of get/set/getOrSet. */
export interface CacheCallOptions {
  namespace?: string;
}

export interface CacheSetOptions extends CacheCallOptions {
  ttl?: Duration;
  grace?: Duration;
}

export interface GetOrSetOptions extends CacheSetOptions {
  /** Run the factory even when a fresh value is cached (and store its result). */
  forceRefresh?: boolean;
  staleWhileRevalidate?: boolean;
  timeouts?: { soft?: Duration; hard?: Duration };
}

export const callOptionsSchema = z.strictObject({ namespace: namespace.optional() });
export const setOptionsSchema = z.strictObject({ namespace: namespace.optional(), ttl: positiveDuration.optional(), grace: duration.optional() });
export const getOrSetOptionsSchema = setOptionsSchema.extend({
  forceRefresh: z.boolean().optional(),
  staleWhileRevalidate: z.boolean().optional(),
  timeouts: z.strictObject({ soft: positiveDuration.optional(), hard: positiveDuration.optional() }).optional(),
});

export { fn };
