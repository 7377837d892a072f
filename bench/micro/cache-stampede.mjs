/**
 * Cache stampede: 100 concurrent `getOrSet(sameKey, factory)` calls on a key nobody has, where the factory
 * takes 50 ms (a setTimeout). One trial is: start all 100 calls at once, wait for all of them; its wall time
 * (hrtime, first call made to last answer) and how many times the factory ran. A latency row, not a throughput
 * ratio: the floor is 50 ms plus timer slack, and the target is <= 55 ms with exactly one factory run.
 *
 *   node bench/micro/cache-stampede.mjs <variant> <trials> <warmupTrials>
 *
 * Prints one JSON line: { wallMs: [per trial], medianWallMs, factoryRuns: [per trial], problem }. Every trial
 * uses a key of its own (a fresh miss). Warm-up trials (JIT, connections, scripts loaded) are not reported.
 *
 * Variants:
 * - floor: no cache, a hand-rolled in-process single flight (a Map of in-flight promises): what 100 callers
 *   waiting on one 50 ms timer cost here, measured the same way;
 * - amas-l1: `new TieredCache({ logger }).getOrSet(key, factory)`, L1 only (in-process single flight);
 * - amas-redis: `new TieredCache({ store: new RedisStore({ url, prefix }), logger })`, its defaults: L1, L2 on
 *   Redis, invalidation, and the cross-replica lock (a lease in Redis; one factory run across replicas);
 * - bentocache: `bento.getOrSet({ key, factory, ttl })`, memory driver only;
 * - bentocache-redis: the same with a memory L1 and a Redis L2 (no bus; its stampede lock is in-process);
 * - cache-manager: `cache.wrap(key, factory, ttl)` on `createCache()` (memory);
 * - cache-manager-redis: the same on `createCache({ stores: [createKeyv(url, { namespace })] })`.
 * Each trial checks that all 100 callers got the value of the factory run(s) of that trial.
 *
 * Diagnostic: `AMAS_BENCH_TRACE=1 node bench/micro/cache-stampede.mjs amas-redis 5 3` prints, for every measured
 * trial, a timeline to stderr: when each RedisStore call (getBuffer, run <script>, set, publish) started and
 * settled and when the factory ran, in ms from the trial's start (RedisStore's methods wrapped in this process).
 */
import { connect, deletePrefix, REDIS_URL, storeLikeOptions, uniquePrefix } from '../lib/redis.mjs';

const CALLERS = 100;
const FACTORY_MS = 50;
const TTL_MS = 60_000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function recordingLogger() {
  const lines = [];
  return { lines, warn: (m) => lines.push(`warn: ${m}`), error: (m) => lines.push(`error: ${m}`) };
}

async function redisSide(prefix) {
  const side = await connect(storeLikeOptions(false));
  return {
    async close() {
      await deletePrefix(side, prefix);
      side.disconnect();
    },
  };
}

/** `getOrSet(key, factory)` returns the library's promise; `close()` releases what the variant opened. */
const variants = {
  floor: async () => {
    const inFlight = new Map();
    return {
      getOrSet(key, factory) {
        let p = inFlight.get(key);
        if (p === undefined) {
          p = factory().finally(() => inFlight.delete(key));
          inFlight.set(key, p);
        }
        return p;
      },
    };
  },
  'amas-l1': async () => {
    const { TieredCache } = await import('@amas/core');
    const logger = recordingLogger();
    const cache = new TieredCache({ logger });
    return {
      getOrSet: (key, factory) => cache.getOrSet(key, factory, { ttl: TTL_MS }),
      problem: () => (logger.lines.length ? `the cache logged: ${logger.lines[0]}` : undefined),
      close: () => cache.close(),
    };
  },
  'amas-redis': async () => {
    const { RedisStore, TieredCache } = await import('@amas/core');
    if (process.env.AMAS_BENCH_TRACE === '1') traceStore(RedisStore);
    const prefix = uniquePrefix('stampede-amas');
    const store = new RedisStore({ url: REDIS_URL, prefix });
    await store.ready();
    const logger = recordingLogger();
    const cache = new TieredCache({ store, logger });
    await cache.ready();
    const side = await redisSide(prefix);
    return {
      getOrSet: (key, factory) => cache.getOrSet(key, factory, { ttl: TTL_MS }),
      problem() {
        if (logger.lines.length) return `the cache logged: ${logger.lines[0]}`;
        if (cache.stats().levels.l2.errors) return `${cache.stats().levels.l2.errors} L2 errors`;
        return undefined;
      },
      async close() {
        await cache.close();
        await store.close();
        await side.close();
      },
    };
  },
  bentocache: async () => bento(false),
  'bentocache-redis': async () => bento(true),
  'cache-manager': async () => cacheManager(false),
  'cache-manager-redis': async () => cacheManager(true),
};

/** AMAS_BENCH_TRACE=1: the timeline of each trial (see the header). */
const trace = { t0: 0n, lines: [] };
const traceMs = () => (Number(process.hrtime.bigint() - trace.t0) / 1e6).toFixed(2);
function traceStore(RedisStore) {
  trace.on = true;
  for (const name of ['getBuffer', 'run', 'set', 'publish']) {
    const original = RedisStore.prototype[name];
    RedisStore.prototype[name] = function (...args) {
      const label = name === 'run' ? `run ${args[0]?.name}` : name;
      const start = traceMs();
      const reply = original.apply(this, args);
      reply.then(
        () => trace.lines.push([Number(start), `${start} -> ${traceMs()} ms  ${label}`]),
        () => trace.lines.push([Number(start), `${start} -> ${traceMs()} ms  ${label} FAILED`]),
      );
      return reply;
    };
  }
}

async function bento(withRedis) {
  const { BentoCache, bentostore } = await import('bentocache');
  const { memoryDriver } = await import('bentocache/drivers/memory');
  let store = bentostore().useL1Layer(memoryDriver({ maxItems: 10_000 }));
  let side;
  if (withRedis) {
    const { redisDriver } = await import('bentocache/drivers/redis');
    const prefix = uniquePrefix('stampede-bento');
    const url = new URL(REDIS_URL);
    store = store.useL2Layer(redisDriver({ connection: { host: url.hostname, port: Number(url.port) }, prefix: `${prefix}bento` }));
    side = await redisSide(prefix);
  }
  const cache = new BentoCache({ default: 'c', stores: { c: store } });
  return {
    getOrSet: (key, factory) => cache.getOrSet({ key, factory: () => factory(), ttl: TTL_MS }),
    async close() {
      await cache.disconnectAll();
      await side?.close();
    },
  };
}

async function cacheManager(withRedis) {
  const { createCache } = await import('cache-manager');
  let cache;
  let side;
  if (withRedis) {
    const { createKeyv } = await import('@keyv/redis');
    const prefix = uniquePrefix('stampede-cm');
    cache = createCache({ stores: [createKeyv(REDIS_URL, { namespace: `${prefix}cm` })] });
    side = await redisSide(prefix);
  } else {
    cache = createCache();
  }
  return {
    getOrSet: (key, factory) => cache.wrap(key, () => factory(), TTL_MS),
    async close() {
      await cache.disconnect();
      await side?.close();
    },
  };
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

const [variant, trialsArg = '15', warmupArg = '3'] = process.argv.slice(2);
const factoryOf = variants[variant];
if (!factoryOf) {
  console.error(`cache-stampede: unknown variant "${variant}" (known: ${Object.keys(variants).join(', ')})`);
  process.exit(2);
}
const trials = Number(trialsArg);
const warmup = Number(warmupArg);
const v = await factoryOf();
const wallMs = [];
const factoryRuns = [];
const problems = [];
for (let t = 0; t < warmup + trials; t++) {
  const key = `stampede:${t}`;
  let runs = 0;
  const factory = async () => {
    const run = ++runs;
    if (trace.on) trace.lines.push([Number(traceMs()), `${traceMs()} ms  factory starts`]);
    await sleep(FACTORY_MS);
    if (trace.on) trace.lines.push([Number(traceMs()), `${traceMs()} ms  factory returns`]);
    return { key, run };
  };
  trace.lines = [];
  const t0 = process.hrtime.bigint();
  trace.t0 = t0;
  const results = await Promise.all(Array.from({ length: CALLERS }, () => v.getOrSet(key, factory)));
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const wrong = results.filter((r) => r == null || r.key !== key || !(r.run >= 1 && r.run <= runs)).length;
  if (wrong) problems.push(`trial ${t}: ${wrong} of ${CALLERS} callers did not get the factory's value`);
  if (t >= warmup) {
    wallMs.push(ms);
    factoryRuns.push(runs);
  }
  await sleep(10); // let the trial's background work (writes, releases, messages) finish before the next
  if (trace.on && t >= warmup) {
    process.stderr.write(`trial ${t}: ${ms.toFixed(2)} ms, ${runs} factory run(s)\n`);
    for (const [, line] of trace.lines.sort((a, b) => a[0] - b[0])) process.stderr.write(`  ${line}\n`);
  }
}
const own = v.problem?.();
if (own) problems.push(own);
process.stdout.write(
  `${JSON.stringify({ group: 'cache-stampede', variant, callers: CALLERS, factoryMs: FACTORY_MS, trials, wallMs, medianWallMs: median(wallMs), factoryRuns, problem: problems[0] ?? null })}\n`,
);
if (v.close) await v.close();
process.exit(0);
