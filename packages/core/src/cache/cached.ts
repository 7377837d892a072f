/**
 * `cached(fn, options)` and the `@Cached()` method decorator: memoize a function's result in a TieredCache
 * under a key derived from its arguments (object key order does not matter: `{a:1,b:2}` and `{b:2,a:1}` are
 * one key). Concurrent calls with the same arguments share one run (getOrSet).
 */
import { stableKey } from '../util/stable-key.js';
import type { CacheSetOptions } from './tiered-cache-options.js';
import { CacheView, TieredCache } from './tiered-cache.js';

type CacheRef = TieredCache | CacheView | (() => TieredCache | CacheView);

export interface CachedOptions<A extends unknown[]> extends Omit<CacheSetOptions, 'namespace'> {
  /** The cache (or a function returning it, resolved at call time). Default: the one set with setDefaultCache(). */
  cache?: CacheRef;
  namespace?: string;
  /**
   * The key for a call: a function of the arguments, or a fixed prefix. Default: the function's name plus a
   * hash of the arguments (give `name` for anonymous functions).
   */
  key?: string | ((...args: A) => string);
  /** Names the function in default keys (default: `fn.name`). Two functions must not share a name in one namespace. */
  name?: string;
}

export interface CachedFunction<A extends unknown[], R> {
  (...args: A): Promise<R>;
  /** The cache key of a call with these arguments. */
  keyFor(...args: A): string;
  /** Drops the cached result of a call with these arguments. */
  invalidate(...args: A): Promise<void>;
}

let defaultCache: CacheRef | undefined;

/** The cache `cached()` and `@Cached()` use when given none (a process-wide convenience; passing one is better). */
export function setDefaultCache(cache: CacheRef | undefined): void {
  defaultCache = cache;
}

export function cached<A extends unknown[], R>(fn: (...args: A) => R | Promise<R>, options: CachedOptions<A> = {}): CachedFunction<A, Awaited<R>> {
  if (typeof fn !== 'function') throw new TypeError('cached(): the first argument must be a function');
  const name = options.name ?? fn.name;
  if (!name && options.key === undefined) throw new TypeError('cached(): an anonymous function needs options.name or options.key');
  const keyFor = makeKeyFor<A>(name, options.key, 'cached()');
  const call = async function (this: unknown, ...args: A): Promise<Awaited<R>> {
    const view = resolveCache(options.cache, `cached(${name || 'anonymous'})`);
    const key = keyFor(...args);
    return getOrSet(view, key, () => fn.apply(this, args) as Awaited<R>, options);
  } as CachedFunction<A, Awaited<R>>;
  call.keyFor = keyFor;
  call.invalidate = (...args: A) => del(resolveCache(options.cache, `cached(${name})`), keyFor(...args), options.namespace);
  return call;
}

/**
 * Caches a method's result. Works with TypeScript's legacy decorators (`experimentalDecorators`, as NestJS
 * uses) and with standard (TC39) decorators. The cache is, in order: `options.cache`, the instance's
 * `amasCache` property, the default cache (setDefaultCache / AmasModule).
 */
export function Cached(options: CachedOptions<unknown[]> = {}) {
  return function decorate(target: unknown, context: unknown, descriptor?: PropertyDescriptor): any {
    // Standard decorators: (method, context); legacy: (prototype, name, descriptor).
    if (typeof target === 'function' && typeof context === 'object' && context !== null && 'kind' in context) {
      const ctx = context as { kind: string; name: string | symbol };
      if (ctx.kind !== 'method') throw new TypeError('@Cached() applies to methods');
      return wrapMethod(target as (...args: unknown[]) => unknown, String(ctx.name), undefined, options);
    }
    if (descriptor === undefined || typeof descriptor.value !== 'function') throw new TypeError('@Cached() applies to methods');
    const owner = (target as { constructor?: { name?: string } }).constructor?.name ?? 'Object';
    descriptor.value = wrapMethod(descriptor.value, String(context), owner, options);
    return descriptor;
  };
}

function wrapMethod(method: (...args: unknown[]) => unknown, methodName: string, owner: string | undefined, options: CachedOptions<unknown[]>) {
  const wrapped = async function (this: unknown, ...args: unknown[]): Promise<unknown> {
    const className = owner ?? (this as { constructor?: { name?: string } })?.constructor?.name ?? 'Object';
    const label = `${className}.${methodName}`;
    const view = resolveCache(options.cache ?? instanceCache(this), `@Cached() on ${label}`);
    const key = makeKeyFor(label, options.key, `@Cached() on ${label}`)(...args);
    return getOrSet(view, key, () => method.apply(this, args), options);
  };
  Object.defineProperty(wrapped, 'name', { value: methodName });
  return wrapped;
}

function instanceCache(self: unknown): CacheRef | undefined {
  const own = (self as { amasCache?: unknown } | undefined)?.amasCache;
  return own instanceof TieredCache || own instanceof CacheView ? own : undefined;
}

function makeKeyFor<A extends unknown[]>(name: string, key: CachedOptions<A>['key'], where: string): (...args: A) => string {
  if (typeof key === 'function') {
    return (...args: A) => {
      const k = key(...args);
      if (typeof k !== 'string' || k.length === 0) throw new TypeError(`${where}: options.key returned ${JSON.stringify(k)}, expected a non-empty string`);
      return k;
    };
  }
  const prefix = key ?? name;
  // Arguments go through stableKey: order-independent for objects, fixed length whatever their size.
  return (...args: A) => (args.length === 0 ? prefix : `${prefix}:${stableKey(args)}`);
}

function resolveCache(ref: CacheRef | undefined, where: string): TieredCache | CacheView {
  const found = ref ?? defaultCache;
  const cache = typeof found === 'function' ? found() : found;
  if (cache instanceof TieredCache || cache instanceof CacheView) return cache;
  throw new TypeError(`${where}: no cache: pass options.cache, give the instance an amasCache property, or call setDefaultCache()`);
}

function getOrSet<R>(cache: TieredCache | CacheView, key: string, run: () => R | Promise<R>, options: CachedOptions<never>): Promise<R> {
  const { ttl, grace, namespace } = options;
  const callOptions = { ...(ttl !== undefined && { ttl }), ...(grace !== undefined && { grace }) };
  if (cache instanceof CacheView) return cache.getOrSet(key, run as never, callOptions) as Promise<R>;
  return cache.getOrSet(key, run, { ...callOptions, ...(namespace !== undefined && { namespace }) });
}

function del(cache: TieredCache | CacheView, key: string, namespace: string | undefined): Promise<void> {
  if (cache instanceof CacheView) return cache.delete(key);
  return cache.delete(key, namespace === undefined ? undefined : { namespace });
}
