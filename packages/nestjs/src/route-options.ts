import type { RouteOptions } from '@amas/core';
import {
  AMAS_BREAKER_METADATA,
  AMAS_CACHE_METADATA,
  AMAS_DEDUP_METADATA,
  AMAS_LIMIT_METADATA,
  AMAS_ROUTE_METADATA,
  AMAS_SEMANTIC_CACHE_METADATA,
  AMAS_SKIP_METADATA,
} from './constants.js';
import type { BreakerMetadata, DeduplicateOptions, LimitMetadata } from './decorators.js';

// eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
type Target = Function;

/**
 * The route options of one handler: the controller's decorators, then the method's (per option, the method
 * wins). Within one level, `@AmasRoute` comes first and the specific decorators override it.
 */
export function routeOptionsFor(controller: Target, handler: Target): RouteOptions {
  const fromClass = layer(controller, controller.name || 'controller');
  const fromMethod = layer(handler, `${controller.name || 'controller'}.${handler.name || 'handler'}`);
  // A malformed @AmasRoute value is handed on as is, so compile() reports it with its path.
  if (!isObject(fromClass)) return fromClass as RouteOptions;
  if (!isObject(fromMethod)) return fromMethod as RouteOptions;
  return { ...fromClass, ...fromMethod };
}

function layer(target: Target, defaultBreakerName: string): unknown {
  const raw: unknown = Reflect.getMetadata(AMAS_ROUTE_METADATA, target);
  if (raw !== undefined && !isObject(raw)) return raw;
  const out: Record<string, unknown> = { ...(raw as Record<string, unknown> | undefined) };
  const breaker = Reflect.getMetadata(AMAS_BREAKER_METADATA, target) as BreakerMetadata | undefined;
  if (breaker) {
    const name = breaker.name ?? defaultBreakerName;
    out.breaker = breaker.options === undefined ? name : { ...breaker.options, name };
  }
  const limit = Reflect.getMetadata(AMAS_LIMIT_METADATA, target) as LimitMetadata | undefined;
  if (limit) {
    out.limit = limit.spec;
    if (limit.options?.key !== undefined) out.identity = limit.options.key;
  }
  const dedup = Reflect.getMetadata(AMAS_DEDUP_METADATA, target) as DeduplicateOptions | undefined;
  if (dedup) out.dedup = dedup.key === undefined ? true : { key: dedup.key };
  if (Reflect.getMetadata(AMAS_SKIP_METADATA, target) === true) out.skip = true;
  const cache = Reflect.getMetadata(AMAS_CACHE_METADATA, target) as Record<string, unknown> | undefined;
  if (cache !== undefined) out.cache = isObject(cache) && Object.keys(cache).length === 0 ? true : cache;
  const semantic = Reflect.getMetadata(AMAS_SEMANTIC_CACHE_METADATA, target) as Record<string, unknown> | undefined;
  if (semantic !== undefined) out.semanticCache = isObject(semantic) && Object.keys(semantic).length === 0 ? true : semantic;
  return out;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Joins route path pieces the way Nest does: `/api` + `users` + `:id` -> `/api/users/:id`. */
export function joinPath(...parts: Array<string | undefined>): string {
  const segments: string[] = [];
  for (const part of parts) {
    if (!part) continue;
    const trimmed = part.replace(/^\/+|\/+$/g, '');
    if (trimmed) segments.push(trimmed);
  }
  return `/${segments.join('/')}`;
}

/** The first path of a Nest path metadata value (a string or an array of strings). */
export function firstPath(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (Array.isArray(value) && typeof value[0] === 'string') return value[0];
  return undefined;
}
