/**
 * L2 (Redis) cache reads: 64 concurrent callers, each looping `await get(key)`, gets per second over a fixed
 * time (bench/lib/concurrent-harness.mjs). Keys cycle over 1024 entries; every entry is a ~300-byte JSON object
 * written beforehand by the library under test itself (its own format, its own keys), with a 1 h TTL, so every
 * get is a hit read from Redis. No in-process level: every get is one trip to Redis.
 *
 *   node bench/micro/cache-l2.mjs <variant> <sampleMs> <warmupMs> [concurrency]
 *
 * Variants:
 * - baseline: raw ioredis `JSON.parse(await client.get(key))`, RedisStore's client options (bench/lib/redis.mjs)
 *   with auto-pipelining ON;
 * - baseline-no-autopipelining: the same with auto-pipelining OFF (ioredis's default, and RedisStore's);
 * - baseline-corked (diagnostic): auto-pipelining off, writes batched as RedisStore batches them (the socket
 *   corked for an event-loop iteration, flushed every 16 commands; bench/lib/redis.mjs corker): the ceiling
 *   for RedisStore's way of writing;
 * - amas: `new TieredCache({ store: new RedisStore({ url, prefix }), l1: false, invalidation: false, lock: false,
 *   compression: false }).get(key)`;
 * - amas-record-raw (diagnostic): AMAS's stored entries read with raw ioredis `getBuffer` (auto-pipelining on),
 *   the 26-byte record header skipped and the payload JSON-parsed, no AMAS code: baseline -> this row is what
 *   AMAS's entry format costs; this row -> amas is AMAS's JavaScript (and RedisStore's way of writing);
 * - cache-manager: cache-manager 7 `createCache({ stores: [createKeyv(url, { namespace })] })` (Keyv 5 +
 *   @keyv/redis 5, which talks to Redis through node-redis), `await cache.get(key)`;
 * - bentocache: `bentostore().useL2Layer(redisDriver({ connection: { host, port }, prefix }))` (no L1, no bus;
 *   the driver makes its own ioredis connection with ioredis's defaults), `await bento.get({ key })`.
 * Each sample checks itself: every get returned the value stored under its key (its `id` and size); for AMAS
 * also one store command per get (`store.health().commands`), every get an L2 hit, nothing logged. Each
 * process writes under a key prefix of its own and deletes it when done.
 */
import { runConcurrent } from '../lib/concurrent-harness.mjs';
import { connect, corker, deletePrefix, REDIS_URL, storeLikeOptions, uniquePrefix } from '../lib/redis.mjs';

const N = 1024;
const MASK = N - 1;
const KEYS = Array.from({ length: N }, (_, i) => `product:${i}`);
const TTL_MS = 3_600_000;

/** A ~300-byte JSON object (serialized length checked below). */
function value(i) {
  return {
    id: i,
    sku: `SKU-${String(i).padStart(6, '0')}`,
    title: `Product number ${i} in the benchmark catalogue`,
    description: 'A plain product record of the size an API caches per item: a few strings and numbers.',
    price: { amount: 1999 + i, currency: 'EUR' },
    stock: (i * 7) % 100,
    tags: ['bench', 'cache', i % 2 ? 'odd' : 'even'],
    updatedAt: '2026-11-29T00:00:00.000Z',
  };
}
const VALUES = KEYS.map((_, i) => value(i));
const SIZES = VALUES.map((v) => JSON.stringify(v).length);
if (Math.min(...SIZES) < 270 || Math.max(...SIZES) > 330) throw new Error(`values should be ~300 bytes, got ${Math.min(...SIZES)}-${Math.max(...SIZES)}`);

function recordingLogger() {
  const lines = [];
  return { lines, warn: (m) => lines.push(`warn: ${m}`), error: (m) => lines.push(`error: ${m}`) };
}

/** The common op: the library's get, then the same check for every variant. */
function reads(get, extra) {
  let wrong = 0;
  let replies = 0;
  return {
    redis: extra.side,
    async op(i) {
      const j = i & MASK;
      const v = await get(KEYS[j]);
      replies++;
      if (v == null || v.id !== j || v.sku !== VALUES[j].sku || v.tags?.length !== 3) wrong++;
    },
    async verify(calls) {
      if (wrong) return `${wrong} of ${calls} gets did not return the stored value`;
      if (replies !== calls) return `${replies} replies for ${calls} calls`;
      return extra.verify?.(calls);
    },
    close: extra.close,
  };
}

function raw(autoPipelining, corkLikeStore = false) {
  return async () => {
    const prefix = uniquePrefix('cache-raw');
    const client = await connect(storeLikeOptions(autoPipelining));
    const cork = corkLikeStore ? corker(client) : undefined;
    const side = await connect(storeLikeOptions(false));
    const keys = new Map(KEYS.map((k) => [k, `${prefix}${k}`]));
    const pipeline = side.pipeline();
    KEYS.forEach((k, i) => pipeline.set(keys.get(k), JSON.stringify(VALUES[i]), 'PX', TTL_MS));
    await pipeline.exec();
    return reads(async (k) => {
      cork?.();
      return JSON.parse(await client.get(keys.get(k)));
    }, {
      side,
      async close() {
        client.disconnect();
        await deletePrefix(side, prefix);
        side.disconnect();
      },
    });
  };
}

async function amasCache(prefix) {
  const { RedisStore, TieredCache } = await import('@amas/core');
  const store = new RedisStore({ url: REDIS_URL, prefix });
  await store.ready();
  const logger = recordingLogger();
  const cache = new TieredCache({ store, l1: false, invalidation: false, lock: false, compression: false, logger });
  for (let i = 0; i < N; i += 64) {
    await cache.mset(KEYS.slice(i, i + 64).map((key, j) => ({ key, value: VALUES[i + j], ttl: TTL_MS })));
  }
  return { store, cache, logger };
}

export const variants = {
  baseline: raw(true),
  'baseline-no-autopipelining': raw(false),
  'baseline-corked': raw(false, true),
  amas: async () => {
    const prefix = uniquePrefix('cache-amas');
    const { store, cache, logger } = await amasCache(prefix);
    const side = await connect(storeLikeOptions(false));
    const commandsBefore = store.health().commands;
    const hitsBefore = cache.stats().levels.l2.hits;
    return reads((k) => cache.get(k), {
      side,
      verify(calls) {
        if (logger.lines.length) return `the cache logged: ${logger.lines[0]}`;
        const l2 = cache.stats().levels.l2;
        if (l2.hits - hitsBefore !== calls) return `${l2.hits - hitsBefore} L2 hits for ${calls} gets`;
        const commands = store.health().commands - commandsBefore;
        if (commands !== calls) return `${commands} store commands for ${calls} gets (expected one each)`;
        return undefined;
      },
      async close() {
        await cache.close();
        await store.close();
        await deletePrefix(side, prefix);
        side.disconnect();
      },
    });
  },
  'amas-record-raw': async () => {
    const prefix = uniquePrefix('cache-amas-raw');
    const { store, cache } = await amasCache(prefix);
    // The key layout of RedisLevel (cache name 'amas'), read from the store so a change there fails loudly here.
    const keys = new Map(KEYS.map((k) => [k, store.key(`cache:amas:default:${k}`)]));
    await cache.close();
    await store.close();
    const client = await connect(storeLikeOptions(true));
    const side = await connect(storeLikeOptions(false));
    const HEADER = 26; // packages/core/src/cache/cache-record.ts
    return reads(
      async (k) => {
        const bytes = await client.getBuffer(keys.get(k));
        if (bytes === null || bytes[0] !== 0xa1) return undefined;
        return JSON.parse(bytes.toString('utf8', HEADER));
      },
      {
        side,
        async close() {
          client.disconnect();
          await deletePrefix(side, prefix);
          side.disconnect();
        },
      },
    );
  },
  'cache-manager': async () => {
    const { createCache } = await import('cache-manager');
    const { createKeyv } = await import('@keyv/redis');
    const prefix = uniquePrefix('cache-cm');
    // Keys are `<namespace>::<key>`, under our prefix.
    const cache = createCache({ stores: [createKeyv(REDIS_URL, { namespace: `${prefix}cm` })] });
    for (let i = 0; i < N; i++) await cache.set(KEYS[i], VALUES[i], TTL_MS);
    const side = await connect(storeLikeOptions(false));
    return reads((k) => cache.get(k), {
      side,
      async close() {
        await cache.disconnect();
        await deletePrefix(side, prefix);
        side.disconnect();
      },
    });
  },
  bentocache: async () => {
    const { BentoCache, bentostore } = await import('bentocache');
    const { redisDriver } = await import('bentocache/drivers/redis');
    const prefix = uniquePrefix('cache-bento');
    const url = new URL(REDIS_URL);
    // Keys are `<prefix>bento:<key>`.
    const bento = new BentoCache({
      default: 'redis',
      stores: { redis: bentostore().useL2Layer(redisDriver({ connection: { host: url.hostname, port: Number(url.port) }, prefix: `${prefix}bento` })) },
    });
    for (let i = 0; i < N; i++) await bento.set({ key: KEYS[i], value: VALUES[i], ttl: TTL_MS });
    const side = await connect(storeLikeOptions(false));
    return reads((key) => bento.get({ key }), {
      side,
      async close() {
        await bento.disconnectAll();
        await deletePrefix(side, prefix);
        side.disconnect();
      },
    });
  },
};

await runConcurrent('cache-l2', variants);
