/**
 * In-process cache hits: `await cache.get(key)` on warm keys, keys cycling over 1024 entries that were all set
 * beforehand (a realistic hit path: a Map lookup on a key seen a thousand calls ago, not the same key every
 * call). Values: a small JSON object per key. Every library is given the same bounds (10 000 entries) and the
 * same TTL (5 minutes), so the TTL checks a real cache does are part of every row.
 *
 *   node bench/micro/cache-l1.mjs <variant> <sampleMs> <warmupMs>
 *
 * Variants:
 * - baseline: `await lru.get(key)` on `new LRUCache({ max: 10_000, ttl: 300_000 })` (lru-cache 11): the least an
 *   awaited, bounded, expiring in-process cache can do;
 * - lru-cache-no-ttl (diagnostic): the same without `ttl`: what lru-cache's own TTL bookkeeping costs;
 * - amas: `await new TieredCache({ logger }).get(key)`, L1 only (no store);
 * - cache-manager: `await createCache().get(key)` (v7, its default in-memory Keyv store);
 * - cacheable: `await new Cacheable().get(key)` (v2, its default in-memory primary);
 * - bentocache: `await bento.get({ key })`, a store with the memory driver only (L1; its default, serialized
 *   entries, so every hit parses JSON and returns a new object).
 * - baseline-key-per-call, amas-key-per-call (diagnostics for the command line, not run by run.mjs): lru-cache
 *   and AMAS with the key string built for every call (`user:${j}`), as a server building it from a request
 *   does; compare the two with each other.
 * Each variant checks that every get returned the object stored under that key (its `id` field): a miss or a
 * wrong value makes the sample INVALID; AMAS also that every get was an L1 hit and nothing was logged.
 */
import { runMicro } from '../lib/micro-harness.mjs';

const N = 1024;
const MASK = N - 1;
const KEYS = Array.from({ length: N }, (_, i) => `user:${i}`);
const VALUES = KEYS.map((_, i) => ({ id: i, name: `user ${i}`, plan: i % 3 === 0 ? 'pro' : 'free', active: true, score: i * 1.5 }));
const TTL_MS = 300_000;
const MAX_ENTRIES = 10_000;

/** A logger that fails the sample if the cache had anything to warn about. */
function recordingLogger() {
  const lines = [];
  return { lines, warn: (m) => lines.push(`warn: ${m}`), error: (m) => lines.push(`error: ${m}`) };
}

/**
 * The common loop: every variant pays the same loop, await and check. `get(key)` is the library's own call,
 * returned as is (a promise or a plain value; awaited either way).
 */
function hits(get, extra = {}) {
  let wrong = 0;
  const keyPerCall = extra.keyPerCall === true;
  return {
    async run(n) {
      for (let i = 0; i < n; i++) {
        const j = i & MASK;
        // keyPerCall: the key string is built for every call, as a server building it from a request does
        // (a fresh string, so its hash is computed again on every lookup).
        const value = await get(keyPerCall ? `user:${j}` : KEYS[j]);
        if (value === undefined || value.id !== j) wrong++;
      }
    },
    verify(calls) {
      if (wrong) return `${wrong} of ${calls} gets did not return the stored value`;
      return extra.verify?.(calls);
    },
    close: extra.close,
  };
}

async function lruCache(options, extra) {
  const { LRUCache } = await import('lru-cache');
  const lru = new LRUCache(options);
  KEYS.forEach((k, i) => lru.set(k, VALUES[i]));
  return hits((k) => lru.get(k), extra);
}

async function amas(extra = {}) {
  const { TieredCache } = await import('@amas/core');
  const logger = recordingLogger();
  // Its defaults are the bounds and TTL the others are given: 10 000 entries (and 64 MiB), 5 minutes.
  const cache = new TieredCache({ logger });
  for (let i = 0; i < N; i++) await cache.set(KEYS[i], VALUES[i]);
  const before = cache.stats().levels.l1.hits;
  return hits((k) => cache.get(k), {
    ...extra,
    verify(calls) {
      if (logger.lines.length) return `the cache logged: ${logger.lines[0]}`;
      const l1 = cache.stats().levels.l1;
      if (l1.hits - before !== calls) return `${l1.hits - before} L1 hits for ${calls} gets`;
      return undefined;
    },
    close: () => cache.close(),
  });
}

await runMicro('cache-l1', {
  baseline: () => lruCache({ max: MAX_ENTRIES, ttl: TTL_MS }),
  // Diagnostics, not run by run.mjs: both sides with the key string built per call (see hits()).
  'baseline-key-per-call': () => lruCache({ max: MAX_ENTRIES, ttl: TTL_MS }, { keyPerCall: true }),
  'amas-key-per-call': () => amas({ keyPerCall: true }),
  'lru-cache-no-ttl': () => lruCache({ max: MAX_ENTRIES }),
  amas: () => amas(),
  'cache-manager': async () => {
    const { createCache } = await import('cache-manager');
    const cache = createCache();
    for (let i = 0; i < N; i++) await cache.set(KEYS[i], VALUES[i], TTL_MS);
    return hits((k) => cache.get(k), { close: () => cache.disconnect?.() });
  },
  cacheable: async () => {
    const { Cacheable } = await import('cacheable');
    const cache = new Cacheable();
    for (let i = 0; i < N; i++) await cache.set(KEYS[i], VALUES[i], TTL_MS);
    return hits((k) => cache.get(k), { close: () => cache.disconnect?.() });
  },
  bentocache: async () => {
    const { BentoCache, bentostore } = await import('bentocache');
    const { memoryDriver } = await import('bentocache/drivers/memory');
    const bento = new BentoCache({ default: 'memory', stores: { memory: bentostore().useL1Layer(memoryDriver({ maxItems: MAX_ENTRIES })) } });
    for (let i = 0; i < N; i++) await bento.set({ key: KEYS[i], value: VALUES[i], ttl: TTL_MS });
    return hits((key) => bento.get({ key }), { close: () => bento.disconnectAll() });
  },
});
