import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/logger.js';
import { cached, Cached, setDefaultCache } from '../../src/cache/cached.js';
import { TieredCache } from '../../src/cache/tiered-cache.js';
import { createAmas } from '../../src/amas.js';
import { InvalidOptionError } from '../../src/errors.js';
import { invalidOption } from '../helpers.js';

const caches: TieredCache[] = [];
const newCache = () => {
  const cache = new TieredCache({ logger: silentLogger });
  caches.push(cache);
  return cache;
};
afterEach(async () => {
  setDefaultCache(undefined);
  while (caches.length) await caches.pop()!.close();
});

describe('cached()', () => {
  it('memoizes by arguments; object key order does not matter; concurrent calls share one run', async () => {
    const cache = newCache();
    let runs = 0;
    const search = cached(
      async (query: { q: string; filters: Record<string, number> }) => {
        runs++;
        await new Promise((r) => setTimeout(r, 10));
        return `results for ${query.q}`;
      },
      { cache, name: 'search', ttl: '1m' },
    );
    const [a, b] = await Promise.all([search({ q: 'x', filters: { a: 1, b: 2 } }), search({ filters: { b: 2, a: 1 }, q: 'x' })]);
    expect([a, b]).toEqual(['results for x', 'results for x']);
    expect(runs).toBe(1);
    expect(search.keyFor({ q: 'x', filters: { a: 1, b: 2 } })).toBe(search.keyFor({ filters: { b: 2, a: 1 }, q: 'x' }));
    expect(search.keyFor({ q: 'x', filters: {} })).not.toBe(search.keyFor({ q: 'y', filters: {} }));
    await search({ q: 'y', filters: {} });
    expect(runs).toBe(2);
    await search.invalidate({ q: 'x', filters: { b: 2, a: 1 } });
    await search({ q: 'x', filters: { a: 1, b: 2 } });
    expect(runs).toBe(3);
  });

  it('uses a custom key function and namespace, and the default cache when given none', async () => {
    const cache = newCache();
    setDefaultCache(cache);
    const user = cached((id: number) => ({ id }), { key: (id) => `user:${id}`, namespace: 'users' });
    expect(await user(7)).toEqual({ id: 7 });
    expect(await cache.get('user:7', { namespace: 'users' })).toEqual({ id: 7 });
  });

  it('fails clearly without a cache, with an anonymous function and no name, and on a bad key', async () => {
    expect(() => cached(() => 1, {} as never)).toThrow(/anonymous function needs options.name or options.key/);
    const lonely = cached(function named() {
      return 1;
    });
    await expect(lonely()).rejects.toThrow(/no cache/);
    const cache = newCache();
    const badKey = cached((x: number) => x, { cache, name: 'bad', key: () => '' });
    await expect(badKey(1)).rejects.toThrow(/options.key returned ""/);
  });
});

describe('@Cached()', () => {
  it('works as a legacy (experimentalDecorators, NestJS) decorator and as a standard decorator', async () => {
    const cache = newCache();
    let runs = 0;
    class Legacy {
      amasCache = cache;
      load(id: string, opts: { deep: boolean }) {
        runs++;
        return { id, deep: opts.deep, runs };
      }
    }
    const descriptor = Object.getOwnPropertyDescriptor(Legacy.prototype, 'load')!;
    Object.defineProperty(Legacy.prototype, 'load', Cached({ ttl: '1m' })(Legacy.prototype, 'load', descriptor));
    const legacy = new Legacy();
    expect(await legacy.load('a', { deep: true })).toEqual({ id: 'a', deep: true, runs: 1 });
    expect(await legacy.load('a', { deep: true })).toEqual({ id: 'a', deep: true, runs: 1 });
    expect(await cache.get(`Legacy.load:${(await import('../../src/util/stable-key.js')).stableKey(['a', { deep: true }])}`)).toBeDefined();

    let standardRuns = 0;
    class Standard {
      compute(n: number) {
        standardRuns++;
        return n * 2;
      }
    }
    const replaced = Cached({ cache, namespace: 'std' })(Standard.prototype.compute, { kind: 'method', name: 'compute' } as never);
    Standard.prototype.compute = replaced;
    const s = new Standard();
    expect(await s.compute(21)).toBe(42);
    expect(await s.compute(21)).toBe(42);
    expect(standardRuns).toBe(1);
    expect(() => Cached()(class {}, { kind: 'field', name: 'x' } as never)).toThrow(/applies to methods/);
  });
});

describe('createAmas({ cache })', () => {
  it('builds amas.cache from the option at start-up; bad values fail with the option path', async () => {
    const amas = createAmas({ logger: silentLogger, cache: { ttl: '30s', namespace: 'app' } });
    try {
      await amas.cache.set('k', 1);
      expect(await amas.cache.get('k', { namespace: 'app' })).toBe(1);
      expect(amas.cache.levelNames).toEqual(['l1']);
      expect(await amas.registry.metrics()).toContain('amas_cache_requests_total');
    } finally {
      await amas.close();
    }
    const bad = invalidOption(() => createAmas({ logger: silentLogger, cache: { ttl: 'soon' } }));
    expect(bad.message).toMatch(/cache\.ttl/);
    expect(invalidOption(() => createAmas({ logger: silentLogger, cache: { store: {} } })).message).toMatch(/cache\.store/);
    expect(invalidOption(() => createAmas({ logger: silentLogger, http: { cache: { methods: ['FETCH' as never] } } })).message).toMatch(/http\.cache\.methods/);
    expect(invalidOption(() => createAmas({ logger: silentLogger, http: { fields: { maxDepth: 0 } } })).message).toMatch(/fields/);
    expect(invalidOption(() => createAmas({ logger: silentLogger, http: { compression: { encodings: ['zstd' as never] } } })).message).toMatch(/compression/);
    const engine = createAmas({ logger: silentLogger });
    try {
      expect(() => engine.http.compile({ cache: { ttl: -5 } }, '/x')).toThrow(InvalidOptionError);
      expect(() => engine.http.compile({ cache: { varyBy: ['bad header'] } }, '/x')).toThrow(/cache\.varyBy/);
    } finally {
      await engine.close();
    }
  });
});
