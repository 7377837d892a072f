import { Inject, SetMetadata } from '@nestjs/common';
import type { CircuitBreakerOptions, LimiterSpec, ResponseCacheOption, RouteOptions, SemanticCacheOption } from '@amas/core';
import {
  AMAS,
  AMAS_BREAKER_METADATA,
  AMAS_CACHE_METADATA,
  AMAS_DEDUP_METADATA,
  AMAS_LIMIT_METADATA,
  AMAS_ROUTE_METADATA,
  AMAS_SEMANTIC_CACHE_METADATA,
  AMAS_SKIP_METADATA,
} from './constants.js';

/** A limit: the name of one in the `limits` option, an inline spec, or several (all must allow). */
export type RateLimitSpec = LimiterSpec | string | Array<LimiterSpec | string>;

export interface RateLimitOptions {
  /**
   * Who is charged. Provider methods: called with the method's arguments; default: one shared 'global' key.
   * HTTP routes: called with the NeutralRequest and used as the route's `identity` (default: user, then IP).
   */
  key?: (...args: any[]) => string | number | undefined | null;
}

export interface DeduplicateOptions {
  /**
   * What makes two calls identical. Provider methods: called with the arguments (default `stableKey(args)`).
   * HTTP routes: called with the NeutralRequest (default: identity, method, URL and body).
   */
  key?: (...args: any[]) => string;
  /** Provider methods only: also share a successful result this long after it settles. Default 0. */
  shareWindowMs?: number;
}

/** @internal */
export interface BreakerMetadata {
  name?: string;
  options?: CircuitBreakerOptions;
}

/** @internal */
export interface LimitMetadata {
  spec: RateLimitSpec;
  options?: RateLimitOptions;
}

type AmasDecorator = ClassDecorator & MethodDecorator;

/** Injects the Amas instance of `AmasModule`. */
export const InjectAmas = (): PropertyDecorator & ParameterDecorator => Inject(AMAS);

/**
 * A circuit breaker. On a controller (class or method) it guards the HTTP route and answers 503 while open;
 * on a provider method the call runs through `amas.breaker(name).execute`. Default name: `Class.method`
 * (the class name when on a controller class). `options` apply when the named breaker is first created.
 */
export function CircuitProtected(name?: string, options?: CircuitBreakerOptions): AmasDecorator {
  return SetMetadata<string, BreakerMetadata>(AMAS_BREAKER_METADATA, { name, options });
}

/**
 * A rate limit. On a controller: the route's `limit` (429 with rate-limit headers when exceeded). On a
 * provider method: checked before each call, throwing (or rejecting, for async methods) RateLimitedError.
 */
export function RateLimit(spec: RateLimitSpec, options?: RateLimitOptions): AmasDecorator {
  return SetMetadata<string, LimitMetadata>(AMAS_LIMIT_METADATA, { spec, options });
}

/** Identical concurrent calls share one execution (HTTP: followers get the leader's response). */
export function Deduplicate(options: DeduplicateOptions = {}): AmasDecorator {
  return SetMetadata<string, DeduplicateOptions>(AMAS_DEDUP_METADATA, options);
}

/** What `@Cached()` takes: on a controller, the route's response-cache options; on a provider method, ttl/namespace/key. */
export type CachedDecoratorOptions = Omit<Exclude<ResponseCacheOption, boolean>, 'key'> & {
  /** Provider methods: the key of a call from its arguments (default `Class.method:` + a hash of the arguments). Controllers: (request) => string. */
  key?: (...args: any[]) => string;
};

/**
 * Caching. On a controller (class or method): the route's HTTP response cache (X-Cache, ETag/304, keys
 * partitioned by identity unless `shared`, GET/HEAD unless `methods` says otherwise). On a provider method:
 * its result is cached in `amas.cache` under a key derived from its arguments; concurrent identical calls
 * share one run.
 */
export function Cached(options: CachedDecoratorOptions = {}): AmasDecorator {
  return SetMetadata<string, CachedDecoratorOptions>(AMAS_CACHE_METADATA, options);
}

/**
 * What `@SemanticCached()` takes: on a controller, the route's `semanticCache` options; on a provider method,
 * `prompt` / `partition` (functions of the arguments), `ttl`, `threshold` and `cache`.
 */
export type SemanticCachedDecoratorOptions = Exclude<SemanticCacheOption, boolean> & {
  /** Provider methods: the prompt of a call, a string or a chat request (default: the first argument). */
  prompt?: (...args: any[]) => unknown;
  /** Provider methods: an exact partition of a call on top of the prompt's own, e.g. the tenant. */
  partition?: (...args: any[]) => string;
};

/**
 * The semantic cache. On a controller (class or method) of an OpenAI-style chat completions route: a request
 * whose last user message means the same as a cached one, in the same context (model, system prompt, earlier
 * turns, tools, sampling, caller), is answered from the cache as JSON or as an event stream
 * (`X-Cache: SEMANTIC-HIT`). On a provider method: a call whose prompt (first argument, or `prompt(...args)`)
 * means the same as an earlier call's returns that call's result.
 */
export function SemanticCached(options: SemanticCachedDecoratorOptions = {}): AmasDecorator {
  return SetMetadata<string, SemanticCachedDecoratorOptions>(AMAS_SEMANTIC_CACHE_METADATA, options);
}

/** Raw per-route options (`limit`, `breaker`, `dedup`, `identity`, `skip`); the decorators above override them. */
export function AmasRoute(options: RouteOptions): AmasDecorator {
  return SetMetadata<string, RouteOptions>(AMAS_ROUTE_METADATA, options);
}

/** Leaves a controller or route alone entirely: no limits, timing headers or metrics. */
export function SkipAmas(): AmasDecorator {
  return SetMetadata<string, boolean>(AMAS_SKIP_METADATA, true);
}
