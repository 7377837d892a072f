import {
  InvalidOptionError,
  RateLimitedError,
  limiterSpecSchema,
  parseOptions,
  stableKey,
  checkLimits,
  getOrSetOptionsSchema,
  semanticCached,
  type Amas,
  type CheckableLimiter,
  type LimiterSpec,
  type LimitsOutcome,
} from '@amas/core';
import { AMAS_BREAKER_METADATA, AMAS_CACHE_METADATA, AMAS_DEDUP_METADATA, AMAS_LIMIT_METADATA, AMAS_SEMANTIC_CACHE_METADATA } from './constants.js';
import type { BreakerMetadata, CachedDecoratorOptions, DeduplicateOptions, LimitMetadata, SemanticCachedDecoratorOptions } from './decorators.js';

type AnyFn = (this: unknown, ...args: unknown[]) => unknown;
type Call = (self: unknown, args: unknown[]) => unknown;

const AsyncFunction = (async () => undefined).constructor;
const GLOBAL_KEY = 'global';

/** True when the method carries a provider-level AMAS decorator. */
export function hasProviderPolicies(method: unknown): boolean {
  return (
    typeof method === 'function' &&
    (Reflect.hasMetadata(AMAS_BREAKER_METADATA, method) ||
      Reflect.hasMetadata(AMAS_LIMIT_METADATA, method) ||
      Reflect.hasMetadata(AMAS_DEDUP_METADATA, method) ||
      Reflect.hasMetadata(AMAS_CACHE_METADATA, method) ||
      Reflect.hasMetadata(AMAS_SEMANTIC_CACHE_METADATA, method))
  );
}

/**
 * Replaces `instance[name]` (an own property; the prototype is untouched) by a method applying, in the
 * pipeline's order: SemanticCached -> Cached -> RateLimit -> Deduplicate -> CircuitProtected -> the original method (a cache
 * hit is charged no limit and needs no breaker). Resolves every
 * limiter, breaker and flight now, so a bad option fails at start-up. `label` is `Class.method`.
 */
export function wrapProviderMethod(amas: Amas, instance: object, name: string, label: string): void {
  const original = (instance as Record<string, unknown>)[name] as AnyFn;
  const breakerMeta = Reflect.getMetadata(AMAS_BREAKER_METADATA, original) as BreakerMetadata | undefined;
  const dedupMeta = Reflect.getMetadata(AMAS_DEDUP_METADATA, original) as DeduplicateOptions | undefined;
  const limitMeta = Reflect.getMetadata(AMAS_LIMIT_METADATA, original) as LimitMetadata | undefined;
  const where = (decorator: string) => `@${decorator} on ${label}`;

  let call: Call = (self, args) => original.apply(self, args);

  if (breakerMeta) {
    const breaker = withWhere(where('CircuitProtected'), () => amas.breaker(breakerMeta.name ?? label, breakerMeta.options));
    const inner = call;
    call = (self, args) => breaker.execute(() => inner(self, args));
  }

  if (dedupMeta) {
    const { key: keyFn, shareWindowMs } = dedupMeta;
    if (keyFn !== undefined && typeof keyFn !== 'function') {
      throw new InvalidOptionError([{ path: 'key', received: typeof keyFn, expected: 'a function' }], where('Deduplicate'));
    }
    const flight = withWhere(where('Deduplicate'), () => amas.singleFlight(shareWindowMs === undefined ? {} : { shareWindowMs }));
    const inner = call;
    call = (self, args) => {
      let key: unknown;
      try {
        key = keyFn ? keyFn(...args) : stableKey(args);
      } catch {
        key = undefined; // unkeyable arguments (e.g. circular): run unshared rather than fail the call
      }
      if (typeof key !== 'string' || key === '') return invoke(inner, self, args);
      return flight.do(key, () => inner(self, args));
    };
  }

  if (limitMeta) {
    const limiters = resolveLimiters(amas, limitMeta.spec, where('RateLimit'), label);
    const keyFn = limitMeta.options?.key;
    if (keyFn !== undefined && typeof keyFn !== 'function') {
      throw new InvalidOptionError([{ path: 'key', received: typeof keyFn, expected: 'a function' }], where('RateLimit'));
    }
    // A method that already returns a promise reports the limit as a rejection; a plain sync one throws.
    const rejects = breakerMeta !== undefined || dedupMeta !== undefined || original instanceof AsyncFunction;
    const inner = call;
    call = (self, args) => {
      const key = keyFn ? toKey(keyFn(...args)) : GLOBAL_KEY;
      const checked = checkLimits(limiters, key, 1);
      if (checked instanceof Promise) {
        // Store-backed limits decide over the network: the method becomes asynchronous with them.
        return checked.then((outcome) => (outcome.denied ? Promise.reject(limitError(outcome)) : inner(self, args)));
      }
      if (checked.denied) {
        const error = limitError(checked);
        if (rejects) return Promise.reject(error);
        throw error;
      }
      return inner(self, args);
    };
  }

  const cacheMeta = Reflect.getMetadata(AMAS_CACHE_METADATA, original) as CachedDecoratorOptions | undefined;
  if (cacheMeta) {
    const { ttl, grace, namespace, key: keyFn } = cacheMeta;
    if (keyFn !== undefined && typeof keyFn !== 'function') {
      throw new InvalidOptionError([{ path: 'key', received: typeof keyFn, expected: 'a function' }], where('Cached'));
    }
    const cache = withWhere(where('Cached'), () => amas.cache);
    const setOptions = { ...(ttl !== undefined && { ttl }), ...(grace !== undefined && { grace }), ...(namespace !== undefined && { namespace }) };
    // A bad ttl or namespace fails at start-up, not on the first call.
    withWhere(where('Cached'), () => parseOptions(getOrSetOptionsSchema, setOptions, where('Cached')));
    const inner = call;
    call = (self, args) => {
      let key: unknown;
      try {
        key = keyFn ? keyFn(...args) : `${label}:${stableKey(args)}`;
      } catch {
        key = undefined;
      }
      if (typeof key !== 'string' || key === '') return invoke(inner, self, args); // unkeyable: run uncached
      return cache.getOrSet(key, () => inner(self, args), setOptions);
    };
  }

  const semanticMeta = Reflect.getMetadata(AMAS_SEMANTIC_CACHE_METADATA, original) as SemanticCachedDecoratorOptions | undefined;
  if (semanticMeta) {
    const { prompt, partition, ttl, threshold, cache, ...routeOnly } = semanticMeta;
    const unknown = Object.keys(routeOnly);
    if (unknown.length > 0) {
      throw new InvalidOptionError(
        [{ path: unknown[0]!, received: typeof (routeOnly as Record<string, unknown>)[unknown[0]!], expected: 'nothing on a provider method (prompt, partition, ttl, threshold and cache apply there)' }],
        where('SemanticCached'),
      );
    }
    const semantic = cache ?? withWhere(where('SemanticCached'), () => amas.semantic);
    const inner = call;
    const run = withWhere(where('SemanticCached'), () =>
      semanticCached((self: unknown, args: unknown[]) => inner(self, args), {
        cache: semantic,
        name: label,
        // The wrapped function takes (self, args): the prompt is read from args, the first one by default.
        prompt: (_self: unknown, args: unknown[]) => (prompt !== undefined ? prompt(...args) : args[0]) as string,
        ...(partition !== undefined && { partition: (_self: unknown, args: unknown[]) => partition(...args) }),
        ...(ttl !== undefined && { ttl }),
        ...(threshold !== undefined && { threshold }),
      }, where('SemanticCached')),
    );
    call = (self, args) => run(self, args);
  }

  const wrapped = function (this: unknown, ...args: unknown[]): unknown {
    // A detached call (`const f = svc.method; f()`) still runs against the provider.
    return call(this ?? instance, args);
  };
  Object.defineProperty(wrapped, 'name', { value: original.name, configurable: true });
  // Other explorers (schedulers, event listeners) find their metadata on the method they see.
  for (const key of Reflect.getMetadataKeys(original)) Reflect.defineMetadata(key, Reflect.getMetadata(key, original), wrapped);
  Object.defineProperty(instance, name, { value: wrapped, writable: true, configurable: true, enumerable: false });
}

function limitError(outcome: LimitsOutcome): RateLimitedError {
  const decision = outcome.decisions[outcome.decisions.length - 1]!;
  const name = outcome.denied!.name;
  return new RateLimitedError(`Rate limit "${name}" exceeded; retry in ${Math.ceil(decision.retryAfterMs / 1000)}s`, {
    retryAfterMs: decision.retryAfterMs,
    details: { limit: name },
  });
}

function resolveLimiters(amas: Amas, spec: unknown, where: string, label: string): CheckableLimiter[] {
  const refs = Array.isArray(spec) ? spec : [spec];
  if (refs.length === 0) throw new InvalidOptionError([{ path: 'limit', received: 'an array of 0', expected: 'at least one limit' }], where);
  return refs.map((ref, i) => {
    const path = refs.length > 1 || Array.isArray(spec) ? `limit[${i}]` : 'limit';
    if (typeof ref === 'string') {
      return withWhere(where, () => amas.limiter(ref), path);
    }
    parseOptions(limiterSpecSchema, ref, where, path);
    // Each decorated method gets its own limiter (inline specs are not shared between methods).
    return amas.createLimiter(ref as LimiterSpec, refs.length > 1 ? `${label}[${i}]` : label);
  });
}

function toKey(value: unknown): string {
  if (typeof value === 'string' && value !== '') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  return GLOBAL_KEY;
}

function invoke(inner: Call, self: unknown, args: unknown[]): Promise<unknown> {
  try {
    return Promise.resolve(inner(self, args));
  } catch (error) {
    return Promise.reject(error);
  }
}

/** Re-labels an InvalidOptionError with the decorator and method it came from. */
function withWhere<T>(where: string, build: () => T, path?: string): T {
  try {
    return build();
  } catch (error) {
    if (error instanceof InvalidOptionError) {
      const issues = path ? error.issues.map((i) => ({ ...i, path: i.path === 'limits' ? path : i.path ? `${path}.${i.path}` : path })) : error.issues;
      throw new InvalidOptionError(issues, where);
    }
    throw error;
  }
}
