/**
 * Options of the HTTP response layer: caching (`cache`), compression (`compression`) and `?fields=`
 * filtering (`fields`). Each may be set globally (`http.*`) and per route; a route's value replaces the
 * global one.
 */
import { z } from 'zod';
import { NAMESPACE_PATTERN } from '../cache/cache-level.js';
import { durationSchema } from '../options/duration.js';
import { MAX_TIMER_MS, positiveInt } from '../options/validate.js';
import type { NeutralRequest } from './neutral-request.js';
import type { SemanticCache } from '../semantic/semantic-cache.js';

const positiveDuration = durationSchema.pipe(z.number().positive('a duration > 0').max(MAX_TIMER_MS, 'a duration of at most 24.8 days'));
const duration = durationSchema.pipe(z.number().max(MAX_TIMER_MS, 'a duration of at most 24.8 days'));
const headerName = z
  .string()
  .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'an HTTP header name')
  .transform((s) => s.toLowerCase());
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'QUERY'] as const;
/** A function of the neutral request (typed for users; validated as a function). */
const requestFn = <R>() => z.custom<(req: NeutralRequest) => R>((v) => typeof v === 'function', { message: 'a function' });

export const responseCacheSchema = z.union([
  z.boolean(),
  z.strictObject({
    /** How long a response stays fresh. Default: the response's s-maxage / max-age, else the cache's ttl. */
    ttl: positiveDuration.optional(),
    /** How long past it a stale response may be served while one request refreshes it, or when the handler fails. */
    grace: duration.optional(),
    /**
     * Methods whose responses are cached. Default GET and HEAD; add POST for deterministic requests (e.g.
     * chat completions with temperature 0): they are keyed on their normalized body.
     */
    methods: z
      .array(z.string().transform((m) => m.toUpperCase()).pipe(z.enum(METHODS)))
      .min(1)
      .optional(),
    /** One entry for every caller (public data). Default false: entries are partitioned by identity. */
    shared: z.boolean().optional(),
    /** Request headers that select a variant (a response whose Vary lists others is not stored). */
    varyBy: z.array(headerName).optional(),
    /** Body fields left out of the key (dotted paths), e.g. request ids: `['metadata.request_id', 'user']`. */
    excludeBodyFields: z.array(z.string().min(1)).optional(),
    /** Query parameters left out of the key (`fields` always is). */
    excludeQuery: z.array(z.string().min(1)).optional(),
    /** Cache-Control sent with this route's responses when the handler sets none, e.g. 'public, max-age=60'. */
    cacheControl: z.string().min(1).optional(),
    /** A key of your own: (request) => string; identity is still added unless `shared`. */
    key: requestFn<string>().optional(),
    /**
     * Which requests are cached at all: (request) => boolean, e.g. chat completions with temperature 0 and
     * no streaming. Others pass through without an X-Cache header. Default: every request of `methods`.
     */
    when: requestFn<boolean>().optional(),
    /** Largest body stored (bytes); larger responses pass through uncached. Default 1 MiB. */
    maxBodyBytes: positiveInt.optional(),
    /** Where entries live in the cache. Default 'http'. */
    namespace: z.string().regex(NAMESPACE_PATTERN, `a namespace matching ${NAMESPACE_PATTERN}`).optional(),
  }),
]);

export const compressionSchema = z.union([
  z.boolean(),
  z.strictObject({
    /** Bodies smaller than this are sent as they are. Default 1024 bytes. */
    thresholdBytes: z.number().int().nonnegative().optional(),
    /** Encodings offered, in preference order for ties. Default ['br', 'gzip', 'deflate']. */
    encodings: z.array(z.enum(['br', 'gzip', 'deflate'])).min(1).optional(),
    /** Largest body compressed in one piece (bytes); larger ones pass through. Default 8 MiB. */
    maxBodyBytes: positiveInt.optional(),
  }),
]);

export const fieldsSchema = z.union([
  z.boolean(),
  z.strictObject({
    /** The query parameter. Default 'fields'. */
    param: z.string().min(1).optional(),
    maxLength: positiveInt.optional(),
    maxFields: positiveInt.optional(),
    maxDepth: positiveInt.optional(),
  }),
]);

/**
 * The semantic cache on an OpenAI-style `/v1/chat/completions` route: a request whose last user message means
 * the same as a cached one (same model, system prompt, earlier turns, tools, sampling bucket and caller) is
 * answered from the cache, as JSON or as an event stream like the provider's (`X-Cache: SEMANTIC-HIT`).
 */
export const semanticCacheSchema = z.union([
  z.boolean(),
  z.strictObject({
    /** A cache you built (`amas.semanticCache({...})`). Default: the engine's (`semanticCache` engine option). */
    cache: z
      .custom<SemanticCache>((v) => typeof v === 'object' && v !== null && typeof (v as SemanticCache).getSimilar === 'function' && typeof (v as SemanticCache).set === 'function', {
        message: 'a SemanticCache (amas.semanticCache())',
      })
      .optional(),
    /** How long an answer is kept. Default: the cache's ttl. */
    ttl: positiveDuration.optional(),
    /** Lowest cosine for a semantic hit on this route. Default: the cache's threshold. */
    threshold: z.number().gt(0).max(1).optional(),
    /** One partition for every caller. Default false: a caller is only ever answered from its own answers. */
    shared: z.boolean().optional(),
    /**
     * Whether clients may steer the cache per request: `X-Amas-Cache: bypass | refresh`, `Cache-Control:
     * no-store | no-cache`, `X-Amas-Cache-Ttl` and `X-Amas-Cache-Threshold`. Default true.
     */
    requestControls: z.boolean().optional(),
    /** Longest `X-Amas-Cache-Ttl` a client may ask for. Default 1 day. */
    maxTtl: positiveDuration.optional(),
    /** Which requests use the cache at all: (request) => boolean. Default: every POST with a chat body. */
    when: requestFn<boolean>().optional(),
    /** Largest response body read for the cache (bytes); larger answers pass through uncached. Default 1 MiB. */
    maxBodyBytes: positiveInt.optional(),
  }),
]);

/** Whether a route's `when(request)` lets `req` in; a predicate that throws lets nothing in (never fails the request). */
export function requestWanted(req: NeutralRequest, when: ((req: NeutralRequest) => boolean) | undefined): boolean {
  if (when === undefined) return true;
  try {
    return when(req) === true;
  } catch {
    return false;
  }
}

export type SemanticCacheOption = z.input<typeof semanticCacheSchema>;
export type ResponseCacheOption = z.input<typeof responseCacheSchema>;
export type CompressionOption = z.input<typeof compressionSchema>;
export type FieldsOption = z.input<typeof fieldsSchema>;
