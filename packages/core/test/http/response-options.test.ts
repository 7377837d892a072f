import { afterAll, describe, expect, it } from 'vitest';
import { createAmas } from '../../src/amas.js';
import { silentLogger } from '../../src/logger.js';
import { invalidOption } from '../helpers.js';

const amas = createAmas({ logger: silentLogger });
afterAll(() => amas.close());

describe('route response options (cache, compression, fields, semanticCache): bad values fail at compile with the path', () => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['cache: string', { cache: 'yes' }, /cache/],
    ['cache.ttl: 0', { cache: { ttl: 0 } }, /cache\.ttl/],
    ['cache.ttl: words', { cache: { ttl: 'a while' } }, /cache\.ttl/],
    ['cache.grace: negative', { cache: { grace: -1 } }, /cache\.grace/],
    ['cache.methods: unknown', { cache: { methods: ['FETCH'] } }, /cache\.methods/],
    ['cache.methods: empty', { cache: { methods: [] } }, /cache\.methods/],
    ['cache.shared: string', { cache: { shared: 'true' } }, /cache\.shared/],
    ['cache.varyBy: bad header', { cache: { varyBy: ['x y'] } }, /cache\.varyBy/],
    ['cache.excludeBodyFields: empty name', { cache: { excludeBodyFields: [''] } }, /cache\.excludeBodyFields/],
    ['cache.excludeQuery: number', { cache: { excludeQuery: [1] } }, /cache\.excludeQuery/],
    ['cache.cacheControl: empty', { cache: { cacheControl: '' } }, /cache\.cacheControl/],
    ['cache.key: string', { cache: { key: 'id' } }, /cache\.key/],
    ['cache.when: boolean', { cache: { when: true } }, /cache\.when/],
    ['cache.maxBodyBytes: 0', { cache: { maxBodyBytes: 0 } }, /cache\.maxBodyBytes/],
    ['cache.namespace: colon', { cache: { namespace: 'a:b' } }, /cache\.namespace/],
    ['cache: unknown key', { cache: { tll: '1m' } }, /tll/],
    ['compression: string', { compression: 'gzip' }, /compression/],
    ['compression.thresholdBytes: negative', { compression: { thresholdBytes: -1 } }, /compression\.thresholdBytes/],
    ['compression.encodings: zstd', { compression: { encodings: ['zstd'] } }, /compression\.encodings/],
    ['compression.maxBodyBytes: 1.5', { compression: { maxBodyBytes: 1.5 } }, /compression\.maxBodyBytes/],
    ['fields: number', { fields: 1 }, /fields/],
    ['fields.param: empty', { fields: { param: '' } }, /fields\.param/],
    ['fields.maxDepth: 0', { fields: { maxDepth: 0 } }, /fields\.maxDepth/],
    ['fields.maxFields: -3', { fields: { maxFields: -3 } }, /fields\.maxFields/],
    ['semanticCache: string', { semanticCache: 'on' }, /semanticCache/],
    ['semanticCache.threshold: 0', { semanticCache: { threshold: 0 } }, /semanticCache\.threshold/],
    ['semanticCache.threshold: 1.2', { semanticCache: { threshold: 1.2 } }, /semanticCache\.threshold/],
    ['semanticCache.ttl: words', { semanticCache: { ttl: 'soon' } }, /semanticCache\.ttl/],
    ['semanticCache.maxTtl: 0', { semanticCache: { maxTtl: 0 } }, /semanticCache\.maxTtl/],
    ['semanticCache.cache: object', { semanticCache: { cache: {} } }, /semanticCache\.cache/],
    ['semanticCache.when: string', { semanticCache: { when: 'always' } }, /semanticCache\.when/],
    ['semanticCache.requestControls: string', { semanticCache: { requestControls: 'no' } }, /semanticCache\.requestControls/],
    ['semanticCache.maxBodyBytes: -1', { semanticCache: { maxBodyBytes: -1 } }, /semanticCache\.maxBodyBytes/],
    ['semanticCache: unknown key', { semanticCache: { treshold: 0.8 } }, /treshold/],
  ];
  it.each(cases)('%s', (label, options, path) => {
    const error = invalidOption(() => amas.http.compile(options as never, '/route'), label);
    expect(error.message).toMatch(path);
    expect(error.message).toMatch(/\/route/);
  });

  it('a valid route still compiles after the bad ones (nothing was left half-registered)', () => {
    const route = amas.http.compile({ cache: { ttl: '1m', methods: ['get', 'POST'] }, compression: true, fields: { maxDepth: 4 } }, '/ok');
    expect(route.response?.cache?.methods).toEqual(new Set(['GET', 'POST']));
    expect(route.response?.fields?.limits.maxDepth).toBe(4);
  });
});

describe('the engine semanticCache option', () => {
  it('a bad value fails at construction with the path under semanticCache', () => {
    const error = invalidOption(() => createAmas({ logger: silentLogger, semanticCache: { threshold: 2 } }), 'semanticCache.threshold');
    expect(error.message).toMatch(/semanticCache\.threshold/);
    expect(invalidOption(() => createAmas({ logger: silentLogger, semanticCache: { store: {} } }), 'semanticCache.store').message).toMatch(/semanticCache\.store/);
  });

  it('a route with semanticCache: true uses the engine cache, with its options', async () => {
    const engine = createAmas({ logger: silentLogger, semanticCache: { name: 'chat', threshold: 0.9 } });
    try {
      const route = engine.http.compile({ semanticCache: { maxTtl: '2h' } }, '/v1/chat/completions');
      expect(route.response?.semantic?.cache).toBe(engine.semantic);
      expect(engine.semantic.name).toBe('chat');
      expect(route.response?.semantic?.maxTtlMs).toBe(7_200_000);
    } finally {
      await engine.close();
    }
  });
});
