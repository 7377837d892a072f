/**
 * Redis-backed rate-limit decisions: 64 concurrent callers, each looping `await check()`, decisions per
 * second over a fixed time (bench/lib/concurrent-harness.mjs). Keys cycle over 1024 users; limits are high
 * enough never to deny. Every variant runs against the same Redis (127.0.0.1:6379) with a key prefix of its
 * own, deleted when the sample is done.
 *
 *   node bench/micro/redis-limiter.mjs <variant> <sampleMs> <warmupMs> [concurrency]
 *
 * Variants (run.mjs's table says which are measured; the others are diagnostics for the command line):
 * - baseline: raw ioredis `EVALSHA <sha of "return 1"> 1 <key>` with RedisStore's client options and
 *   auto-pipelining ON (the faster of the two for this trivial script): the ceiling for "one script call per
 *   decision";
 * - baseline-no-autopipelining: the same with auto-pipelining OFF;
 * - baseline-corked: the same, auto-pipelining off, writes batched as RedisStore batches them (the socket corked
 *   for an event-loop iteration, flushed every 16 commands): the ceiling for RedisStore's way of writing;
 * - amas: createAmas({ redis, limits: { api: { windows: [1m, 1h, 1d] } } }).limiter('api').check(key), with the
 *   store's defaults (auto-pipelining off);
 * - amas-autopipelining: the same with `redis.autoPipelining: true` (is the store's default right?);
 * - amas-script-raw[-no-autopipelining]: AMAS's own check script with raw ioredis, no AMAS code: splits the
 *   gap into what the script costs (baseline -> this) and what AMAS's JavaScript costs (this -> amas);
 * - rate-limiter-flexible[-no-autopipelining]: RateLimiterRedis (one window) `await consume(key)`, on an
 *   ioredis client with the baseline's options.
 * Each sample checks itself: no denial, one reply per call, every decision made on the store (not by the
 * fallback), one store command per decision, and per key and window the limiter's count equals what was sent
 * (rate-limiter-flexible: its counters in Redis equal what was sent).
 */
import { RateLimiterRedis } from 'rate-limiter-flexible';
import { runConcurrent } from '../lib/concurrent-harness.mjs';
import { connect, corker, deletePrefix, REDIS_URL, storeLikeOptions, uniquePrefix } from '../lib/redis.mjs';

const LIMIT = 1_000_000_000;
const KEYS = Array.from({ length: 1024 }, (_, i) => `user:${i}`);
const MASK = KEYS.length - 1;
const WINDOWS = [
  { name: 'minute', limit: LIMIT, window: '1m' },
  { name: 'hour', limit: LIMIT, window: '1h' },
  { name: 'day', limit: LIMIT, window: '1d' },
];

/** Per-key counts of what this process sent, to check against what the limiter says it counted. */
function tally() {
  const sent = new Map();
  return {
    add(key) {
      sent.set(key, (sent.get(key) ?? 0) + 1);
    },
    sent,
    total: () => [...sent.values()].reduce((a, b) => a + b, 0),
  };
}

/** A side connection for INFO (Redis CPU) and for cleaning up the prefix, never used by the measured path. */
async function sideConnection() {
  return connect(storeLikeOptions(false));
}

function rawEvalsha(autoPipelining, corkLikeStore = false) {
  return async () => {
    const prefix = uniquePrefix('raw');
    const client = await connect(storeLikeOptions(autoPipelining));
    const side = await sideConnection();
    const sha = await client.script('LOAD', 'return 1');
    const keys = KEYS.map((k) => `${prefix}${k}`);
    const cork = corkLikeStore ? corker(client) : undefined;
    let bad = 0;
    let replies = 0;
    return {
      redis: side,
      async op(i) {
        cork?.();
        const reply = await client.evalsha(sha, 1, keys[i & MASK]);
        replies++;
        if (reply !== 1) bad++;
      },
      verify(calls) {
        if (bad) return `${bad} replies were not 1`;
        if (replies !== calls) return `${replies} replies for ${calls} calls`;
        return undefined;
      },
      async close() {
        client.disconnect();
        await deletePrefix(side, prefix);
        side.disconnect();
      },
    };
  };
}

function amas(autoPipelining) {
  return async () => {
    // Imported here so the other variants run without a build of @amas/core.
    const { createAmas } = await import('@amas/core');
    const prefix = uniquePrefix('amas');
    const engine = createAmas({
      redis: { url: REDIS_URL, prefix, ...(autoPipelining === undefined ? {} : { autoPipelining }) },
      limits: { api: { windows: WINDOWS } },
    });
    await engine.ready();
    const side = await sideConnection();
    const limiter = engine.limiter('api');
    const sent = tally();
    // Per key, the latest decision's windows. Replies on one connection arrive in the order Redis ran the
    // scripts, so the latest decision for a key carries that key's full count.
    const last = new Map();
    let denied = 0;
    let decisions = 0;
    let badShape = 0;
    let notOnStore = 0; // decided by the local fallback (store unavailable): not what this row measures
    const commandsBefore = engine.store.health().commands;
    return {
      redis: side,
      async op(i) {
        const key = KEYS[i & MASK];
        sent.add(key);
        const d = await limiter.check(key);
        decisions++;
        if (!d.allowed) denied++;
        if (d.source !== 'store') notOnStore++;
        if (d.windows.length !== 3) badShape++;
        last.set(key, d.windows);
      },
      verify(calls) {
        if (denied) return `${denied} decisions were denied (limit should never be reached)`;
        if (notOnStore) return `${notOnStore} decisions were not made on the store (fallback)`;
        if (badShape) return `${badShape} decisions did not carry 3 windows`;
        if (decisions !== calls) return `${decisions} decisions for ${calls} calls`;
        // Counts add up: for every key and every window, limit - remaining == what this process sent.
        for (const [key, n] of sent.sent) {
          const windows = last.get(key);
          for (const w of windows) {
            if (w.limit - w.remaining !== n) return `${key} window ${w.name}: counted ${w.limit - w.remaining}, sent ${n}`;
          }
        }
        // One store command (one EVALSHA) per decision, whatever the number of windows.
        const commands = engine.store.health().commands - commandsBefore;
        if (commands !== calls) return `${commands} store commands for ${calls} decisions (expected one each)`;
        return undefined;
      },
      async close() {
        await engine.close();
        await deletePrefix(side, prefix);
        side.disconnect();
      },
    };
  };
}

/**
 * Diagnostic: AMAS's own check script (the StoreLimiter's, same ARGV and key layout) sent with raw ioredis
 * EVALSHA, without AMAS's client code. baseline -> this row is what the script costs in Redis; this row ->
 * `amas` is what AMAS's JavaScript costs per decision.
 */
function amasScriptRaw(autoPipelining) {
  return async () => {
    const { createAmas } = await import('@amas/core');
    const prefix = uniquePrefix('amas-raw');
    // Only to read the script, the ARGV template and the key layout from the real limiter.
    const engine = createAmas({ redis: { url: REDIS_URL, prefix, autoPipelining }, limits: { api: { windows: WINDOWS } } });
    await engine.ready();
    const store = engine.store;
    const limiter = engine.limiter('api');
    const script = limiter.scripts?.check;
    const argv = limiter.args?.(1);
    if (!script?.lua || !Array.isArray(argv)) throw new Error('StoreLimiter internals changed: cannot read its check script');
    const keys = KEYS.map((k) => store.key(limiter.keyTag + k));
    await engine.close();
    const client = await connect(storeLikeOptions(autoPipelining));
    const side = await sideConnection();
    const sha = await client.script('LOAD', script.lua);
    const args = [...argv, '']; // the store appends '' (use Redis TIME) when it has no test clock
    let denied = 0;
    return {
      redis: side,
      async op(i) {
        const reply = await client.evalsha(sha, 1, keys[i & MASK], ...args);
        // An allowed decision is usually one packed integer; otherwise an array led by retryAfterMs (0 = allowed).
        if (Array.isArray(reply) && reply[0] !== 0) denied++;
      },
      verify() {
        return denied ? `${denied} decisions were denied` : undefined;
      },
      async close() {
        client.disconnect();
        await deletePrefix(side, prefix);
        side.disconnect();
      },
    };
  };
}

export const variants = {
  'amas-script-raw': amasScriptRaw(true),
  'amas-script-raw-no-autopipelining': amasScriptRaw(false),
  baseline: rawEvalsha(true),
  'baseline-no-autopipelining': rawEvalsha(false),
  'baseline-corked': rawEvalsha(false, true),
  amas: amas(undefined), // the store's default (autoPipelining: false)
  'amas-autopipelining': amas(true),
  'rate-limiter-flexible': rlf(true),
  'rate-limiter-flexible-no-autopipelining': rlf(false),
};

function rlf(autoPipelining) {
  return async () => {
    const prefix = uniquePrefix('rlf');
    const client = await connect(storeLikeOptions(autoPipelining));
    const side = await sideConnection();
    // keyPrefix is joined with ':' by the library: keys are `${prefix}rlf:${key}`.
    const limiter = new RateLimiterRedis({ storeClient: client, keyPrefix: `${prefix}rlf`, points: LIMIT, duration: 60 });
    const sent = tally();
    let denied = 0;
    return {
      redis: side,
      async op(i) {
        const key = KEYS[i & MASK];
        sent.add(key);
        try {
          await limiter.consume(key, 1);
        } catch (error) {
          if (error instanceof Error) throw error; // a Redis error, not a denial
          denied++;
        }
      },
      async verify(calls) {
        if (denied) return `${denied} calls were denied (limit should never be reached)`;
        if (sent.total() !== calls) return `${sent.total()} sent for ${calls} calls`;
        // Counts add up: the library's per-key counters in Redis hold exactly what was consumed.
        const keys = [...sent.sent.keys()];
        const values = await side.mget(...keys.map((k) => `${prefix}rlf:${k}`));
        for (let j = 0; j < keys.length; j++) {
          if (Number(values[j]) !== sent.sent.get(keys[j])) return `${keys[j]}: Redis holds ${values[j]}, sent ${sent.sent.get(keys[j])}`;
        }
        return undefined;
      },
      async close() {
        client.disconnect();
        await deletePrefix(side, prefix);
        side.disconnect();
      },
    };
  };
}

await runConcurrent('redis-limiter', variants);
