#!/usr/bin/env node
/**
 * AMAS benchmark runner. Usage (from the repo root, after `pnpm build`; `pnpm bench` does both):
 *   node bench/run.mjs [--quick] [--only <group>[,<group>...]] [--rounds <n>]
 *
 * Every variant is measured against a baseline and its peers IN THE SAME RUN, interleaved: each round
 * visits every variant once (starting at a different variant each round), and the reported number is the
 * median over rounds. Ratios of medians are what matter; absolute numbers depend on the machine.
 *
 * Micro benches: one fresh child process per sample (no JIT cross-talk between variants).
 * HTTP benches: one child process per server (kept up for the whole run, warmed first), load from
 * autocannon in another child process (bench/load.mjs), loopback only.
 *
 * Output: one table on stdout (progress goes to stderr), and bench/results/latest.json.
 */
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

// ---------------------------------------------------------------------------------------------------------
// What is measured

const GROUPS = {
  'breaker-closed': {
    kind: 'micro',
    script: 'micro/breaker-closed.mjs',
    unit: 'ops/s',
    variants: [
      { id: 'baseline', label: 'bare `await fn()` loop', baseline: true },
      { id: 'amas', label: 'AMAS CircuitBreaker.execute', target: 0.5 },
      { id: 'cockatiel', label: 'cockatiel circuitBreaker(ConsecutiveBreaker(5))' },
      { id: 'opossum', label: 'opossum fire() (timeout: false)' },
    ],
  },
  'breaker-open': {
    kind: 'micro',
    script: 'micro/breaker-open.mjs',
    unit: 'ops/s',
    variants: [
      { id: 'baseline', label: '`Promise.reject(prebuilt)` caught', baseline: true },
      { id: 'amas', label: 'AMAS CircuitBreaker (open) fast-fail', target: 0.8 },
      { id: 'cockatiel', label: 'cockatiel (open) fast-fail' },
      { id: 'opossum', label: 'opossum (open) fast-fail' },
    ],
  },
  limiter: {
    kind: 'micro',
    script: 'micro/limiter.mjs',
    unit: 'ops/s',
    variants: [
      { id: 'baseline', label: 'bare Map get+set counter', baseline: true },
      { id: 'amas-sliding-window', label: 'AMAS sliding window tryAcquire()', target: 0.6 },
      { id: 'amas-token-bucket', label: 'AMAS token bucket tryAcquire()', target: 0.6 },
      { id: 'amas-sliding-window-check', label: 'AMAS sliding window check() (with report)' },
      { id: 'amas-token-bucket-check', label: 'AMAS token bucket check() (with report)' },
      { id: 'rate-limiter-flexible', label: 'rate-limiter-flexible Memory (await consume)' },
    ],
  },
  'http-express': {
    kind: 'http',
    script: 'servers/express.mjs',
    unit: 'req/s',
    variants: [
      { id: 'bare', label: 'Express 5 bare', baseline: true },
      { id: 'amas', label: 'amasMiddleware (limit+breaker+dedup+metrics)', target: 0.92 },
      { id: 'express-rate-limit', label: 'express-rate-limit alone' },
      { id: 'bare-headers', label: "bare + AMAS's 4 response headers, constant (ceiling)" },
    ],
  },
  'http-fastify': {
    kind: 'http',
    script: 'servers/fastify.mjs',
    unit: 'req/s',
    variants: [
      { id: 'bare', label: 'Fastify 5 bare', baseline: true },
      { id: 'amas', label: '@amas/fastify (limit+breaker+dedup+metrics)', target: 0.88 },
      { id: 'fastify-rate-limit', label: '@fastify/rate-limit alone' },
      { id: 'bare-headers', label: "bare + AMAS's 4 response headers, constant (ceiling)" },
    ],
  },
  // I/O-bound: 64 concurrent callers looping `await check()` for a fixed time (bench/lib/concurrent-harness.mjs).
  'redis-limiter': {
    kind: 'micro',
    script: 'micro/redis-limiter.mjs',
    unit: 'ops/s',
    timing: { full: { sampleMs: 2000, warmupMs: 1000 }, quick: { sampleMs: 500, warmupMs: 300 } },
    cpu: true,
    variants: [
      { id: 'baseline', label: 'raw ioredis EVALSHA `return 1` (auto-pipelining)', baseline: true },
      { id: 'baseline-no-autopipelining', label: 'raw ioredis EVALSHA `return 1` (no auto-pipelining)' },
      { id: 'baseline-corked', label: 'raw ioredis EVALSHA `return 1`, writes batched as RedisStore does' },
      { id: 'amas', label: 'AMAS store limiter, 3 windows (1m/1h/1d), defaults', target: 0.9 },
      { id: 'amas-autopipelining', label: 'AMAS store limiter, 3 windows, autoPipelining: true' },
      { id: 'amas-script-raw', label: "AMAS's check script via raw ioredis EVALSHA (diagnostic)" },
      { id: 'rate-limiter-flexible', label: 'rate-limiter-flexible Redis consume (auto-pipelining)' },
      { id: 'rate-limiter-flexible-no-autopipelining', label: 'rate-limiter-flexible Redis consume (no auto-pipelining)' },
    ],
  },
  // In-process cache hits: `await get(key)` on 1024 warm keys (bench/micro/cache-l1.mjs).
  'cache-l1': {
    kind: 'micro',
    script: 'micro/cache-l1.mjs',
    unit: 'ops/s',
    variants: [
      { id: 'baseline', label: 'lru-cache 11 `await get` (max 10k, ttl 5 min)', baseline: true },
      { id: 'lru-cache-no-ttl', label: 'lru-cache 11 `await get`, no ttl (diagnostic)' },
      { id: 'amas', label: 'AMAS TieredCache get (L1 only)', target: 0.5 },
      { id: 'cache-manager', label: 'cache-manager 7 createCache() get' },
      { id: 'cacheable', label: 'cacheable 2 new Cacheable() get' },
      { id: 'bentocache', label: 'bentocache 1.6 get (memory driver)' },
    ],
  },
  // L2-only reads from Redis, 64 concurrent callers (bench/micro/cache-l2.mjs, bench/lib/concurrent-harness.mjs).
  'cache-l2': {
    kind: 'micro',
    script: 'micro/cache-l2.mjs',
    unit: 'ops/s',
    timing: { full: { sampleMs: 2000, warmupMs: 1000 }, quick: { sampleMs: 500, warmupMs: 300 } },
    cpu: true,
    variants: [
      { id: 'baseline', label: 'raw ioredis GET + JSON.parse (auto-pipelining)', baseline: true },
      { id: 'baseline-no-autopipelining', label: 'raw ioredis GET + JSON.parse (no auto-pipelining)' },
      { id: 'baseline-corked', label: 'raw ioredis GET + JSON.parse, writes batched as RedisStore does' },
      { id: 'amas', label: 'AMAS TieredCache get (L2 only, RedisStore)', target: 0.85 },
      { id: 'amas-record-raw', label: "AMAS's entries via raw ioredis getBuffer + parse (diagnostic)" },
      { id: 'cache-manager', label: 'cache-manager 7 + Keyv/@keyv/redis get' },
      { id: 'bentocache', label: 'bentocache 1.6 get (redis driver, L2 only)' },
    ],
  },
  // 100 concurrent getOrSet misses on one key, factory 50 ms: wall time and factory runs (bench/micro/cache-stampede.mjs).
  'cache-stampede': {
    kind: 'latency',
    script: 'micro/cache-stampede.mjs',
    unit: 'ms',
    trials: { full: { trials: 15, warmup: 3 }, quick: { trials: 5, warmup: 2 } },
    variants: [
      { id: 'floor', label: 'no cache: a Map of in-flight promises (floor)', floor: true },
      { id: 'amas-l1', label: 'AMAS getOrSet, L1 only', target: { maxMs: 55, factoryRuns: 1 } },
      { id: 'amas-redis', label: 'AMAS getOrSet, L1 + Redis L2, cross-replica lock', target: { maxMs: 55, factoryRuns: 1 } },
      { id: 'bentocache', label: 'bentocache getOrSet (memory)' },
      { id: 'bentocache-redis', label: 'bentocache getOrSet (memory + redis)' },
      { id: 'cache-manager', label: 'cache-manager wrap (memory)' },
      { id: 'cache-manager-redis', label: 'cache-manager wrap (Keyv redis)' },
    ],
  },
  'http-express-redis': {
    kind: 'http',
    script: 'servers/express.mjs',
    unit: 'req/s',
    cpu: true,
    variants: [
      { id: 'bare', label: 'Express 5 bare', baseline: true },
      { id: 'amas-redis', label: 'amasMiddleware (Redis per-IP limit)', target: 0.9 },
      { id: 'express-rate-limit-redis', label: 'express-rate-limit + rate-limit-redis' },
    ],
  },
  'http-fastify-redis': {
    kind: 'http',
    script: 'servers/fastify.mjs',
    unit: 'req/s',
    cpu: true,
    variants: [
      { id: 'bare', label: 'Fastify 5 bare', baseline: true },
      { id: 'amas-redis', label: '@amas/fastify (Redis per-IP limit)', target: 0.8 },
      { id: 'fastify-rate-limit-redis', label: '@fastify/rate-limit (redis: ioredis client)' },
    ],
  },
};

const ALIASES = {
  micro: ['breaker-closed', 'breaker-open', 'limiter'],
  breaker: ['breaker-closed', 'breaker-open'],
  http: ['http-express', 'http-fastify'],
  express: ['http-express'],
  fastify: ['http-fastify'],
  redis: ['redis-limiter', 'http-express-redis', 'http-fastify-redis'],
  cache: ['cache-l1', 'cache-l2', 'cache-stampede'],
};

const SETTINGS = {
  full: { microRounds: 7, sampleMs: 400, warmupMs: 300, httpRounds: 3, seconds: 5, warmupSeconds: 3, connections: 50 },
  quick: { microRounds: 3, sampleMs: 150, warmupMs: 100, httpRounds: 2, seconds: 1, warmupSeconds: 1, connections: 50 },
};

// ---------------------------------------------------------------------------------------------------------
// Command line

function parseCli(argv) {
  const cli = { quick: false, only: undefined, rounds: undefined };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--quick') cli.quick = true;
    else if (arg === '--only' || arg.startsWith('--only=')) {
      const value = arg.includes('=') ? arg.slice(7) : argv[++i];
      if (!value) fail('--only needs a group');
      cli.only = value;
    } else if (arg === '--rounds' || arg.startsWith('--rounds=')) {
      const value = Number(arg.includes('=') ? arg.slice(9) : argv[++i]);
      if (!Number.isInteger(value) || value < 1) fail('--rounds needs a positive integer');
      cli.rounds = value;
    } else if (arg === '--help' || arg === '-h') {
      console.log(
        `usage: node bench/run.mjs [--quick] [--only <group>[,...]] [--rounds <n>]\n` +
          `groups: ${Object.keys(GROUPS).join(', ')}\naliases: ${Object.keys(ALIASES).join(', ')}`,
      );
      process.exit(0);
    } else fail(`unknown argument "${arg}" (try --help)`);
  }
  return cli;
}

function selectGroups(only) {
  if (only === undefined) return Object.keys(GROUPS);
  const selected = new Set();
  for (const name of only.split(',').map((s) => s.trim()).filter(Boolean)) {
    if (GROUPS[name]) selected.add(name);
    else if (ALIASES[name]) ALIASES[name].forEach((g) => selected.add(g));
    else fail(`unknown group "${name}"; groups: ${Object.keys(GROUPS).join(', ')}; aliases: ${Object.keys(ALIASES).join(', ')}`);
  }
  return Object.keys(GROUPS).filter((g) => selected.has(g));
}

function fail(message) {
  console.error(`bench: ${message}`);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------------------
// Child processes (every one we start is tracked and killed by pid if we are interrupted)

const children = new Set();

function killAll() {
  for (const child of children) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}
process.once('SIGINT', () => {
  killAll();
  process.exit(130);
});
process.once('SIGTERM', () => {
  killAll();
  process.exit(143);
});
process.once('exit', killAll);

/** Runs `node <script> ...args` to completion and parses the last JSON line it printed. */
function runJson(script, args, timeoutMs) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(here, script), ...args.map(String)], {
      cwd: here,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${script} ${args.join(' ')}: timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      children.delete(child);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      children.delete(child);
      const line = out.trim().split('\n').filter(Boolean).pop();
      if (code !== 0 || !line) {
        reject(new Error(`${script} ${args.join(' ')} exited ${code}: ${lastLines(err || out)}`));
        return;
      }
      try {
        resolve(JSON.parse(line));
      } catch {
        reject(new Error(`${script}: unparseable output: ${line.slice(0, 200)}`));
      }
    });
  });
}

/** Starts a server child and resolves once it printed its ready line ({ready, port}). */
function startServer(script, variant) {
  return new Promise((resolve, reject) => {
    // stdin is a pipe the server watches: if this runner dies, the server exits too.
    const child = spawn(process.execPath, [path.join(here, script), variant, '0'], {
      cwd: here,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    children.add(child);
    let out = '';
    let err = '';
    let settled = false;
    const timer = setTimeout(() => finish(new Error(`${script} ${variant}: no ready line within 20 s`)), 20_000);
    const finish = (error, value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error) {
        child.kill('SIGKILL');
        reject(error);
      } else resolve(value);
    };
    child.stdout.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      try {
        const msg = JSON.parse(out.slice(0, nl));
        if (msg.ready) finish(undefined, { child, port: msg.port });
      } catch {
        finish(new Error(`${script} ${variant}: bad ready line ${out.slice(0, nl)}`));
      }
    });
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => {
      children.delete(child);
      finish(new Error(`${script} ${variant} exited ${code} before ready: ${lastLines(err)}`));
    });
  });
}

function stopServer(server) {
  return new Promise((resolve) => {
    const { child } = server;
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

function lastLines(text, n = 4) {
  return text.trim().split('\n').slice(-n).join(' | ').slice(0, 600);
}

// ---------------------------------------------------------------------------------------------------------
// Measurement

/**
 * results[group][variant] = { byRound: (number|null)[], errors, problems, extra, cpu }; byRound[r] is the sample
 * taken in round r (null when it failed), so a variant can be paired with its baseline's same-round sample.
 */
function emptyResults(groups) {
  const results = {};
  for (const g of groups) {
    results[g] = {};
    for (const v of GROUPS[g].variants) results[g][v.id] = { byRound: [], errors: [], problems: [], extra: [], cpu: [] };
  }
  return results;
}

/** Round r starts at variant r (mod n): no variant is always first or always right after another one. */
function rotate(list, r) {
  const k = r % list.length;
  return [...list.slice(k), ...list.slice(0, k)];
}

const fmtCount = (x) => formatRate(x);

function progress(text) {
  process.stderr.write(`${text}\n`);
}

async function runMicroGroups(groups, s, results) {
  if (groups.length === 0) return;
  progress(`micro: ${s.microRounds} rounds x ${groups.map((g) => `${g}(${GROUPS[g].variants.length})`).join(', ')}; ` +
    `${s.sampleMs} ms per sample after ${s.warmupMs} ms warm-up, fresh process per sample`);
  // A group may set its own sample and warm-up times (`timing`, e.g. the I/O-bound Redis group).
  const timing = (g) => GROUPS[g].timing?.[s.mode] ?? { sampleMs: s.sampleMs, warmupMs: s.warmupMs };
  for (const g of groups.filter((g) => GROUPS[g].timing)) {
    const t = timing(g);
    progress(`  ${g}: ${t.sampleMs} ms per sample after ${t.warmupMs} ms warm-up`);
  }
  for (let r = 0; r < s.microRounds; r++) {
    const line = [];
    for (const g of groups) {
      const t = timing(g);
      const timeoutMs = (t.sampleMs + t.warmupMs) * 10 + 30_000;
      for (const v of rotate(GROUPS[g].variants, r)) {
        const slot = results[g][v.id];
        try {
          const out = await runJson(GROUPS[g].script, [v.id, t.sampleMs, t.warmupMs], timeoutMs);
          slot.byRound[r] = out.opsPerSec;
          if (out.extra) slot.cpu[r] = out.extra;
          if (out.problem) slot.problems.push(out.problem);
          line.push(`${g}/${v.id} ${fmtCount(out.opsPerSec)}`);
        } catch (error) {
          slot.errors.push(error.message);
          line.push(`${g}/${v.id} ERROR`);
        }
      }
    }
    progress(`  round ${r + 1}/${s.microRounds}: ${line.join(', ')}`);
  }
}

/**
 * Latency groups (cache-stampede): one fresh process per sample, as the micro groups, interleaved the same way.
 * A sample is several trials; the script prints the wall time and factory runs of each, and its median.
 */
async function runLatencyGroups(groups, s, results) {
  if (groups.length === 0) return;
  const rounds = s.microRounds;
  const trials = (g) => GROUPS[g].trials[s.mode];
  progress(`latency: ${rounds} rounds x ${groups.map((g) => `${g}(${GROUPS[g].variants.length}, ${trials(g).trials} trials after ${trials(g).warmup} warm-up)`).join(', ')}; fresh process per sample`);
  for (let r = 0; r < rounds; r++) {
    const line = [];
    for (const g of groups) {
      const t = trials(g);
      for (const v of rotate(GROUPS[g].variants, r)) {
        const slot = results[g][v.id];
        try {
          const out = await runJson(GROUPS[g].script, [v.id, t.trials, t.warmup], (t.trials + t.warmup) * 5_000 + 30_000);
          slot.byRound[r] = out.medianWallMs;
          slot.extra.push({ round: r, wallMs: out.wallMs, factoryRuns: out.factoryRuns });
          if (out.problem) slot.problems.push(out.problem);
          line.push(`${g}/${v.id} ${out.medianWallMs.toFixed(1)} ms (${[...new Set(out.factoryRuns)].join('/')} run)`);
        } catch (error) {
          slot.errors.push(error.message);
          line.push(`${g}/${v.id} ERROR`);
        }
      }
    }
    progress(`  round ${r + 1}/${rounds}: ${line.join(', ')}`);
  }
}

async function runHttpGroups(groups, s, results) {
  if (groups.length === 0) return;
  const targets = groups.flatMap((g) => GROUPS[g].variants.map((v) => ({ g, v })));
  progress(`http: ${s.httpRounds} rounds x ${targets.length} servers; ${s.connections} connections, ` +
    `${s.seconds} s per sample after ${s.warmupSeconds} s warm-up per server`);
  const servers = new Map();
  let probe;
  try {
    for (const { g, v } of targets) {
      try {
        servers.set(`${g}/${v.id}`, await startServer(GROUPS[g].script, v.id));
      } catch (error) {
        results[g][v.id].errors.push(error.message);
        progress(`  ${g}/${v.id}: could not start: ${error.message}`);
      }
    }
    const load = (server, seconds) =>
      runJson('load.mjs', [`http://127.0.0.1:${server.port}/hello`, s.connections, seconds], seconds * 1000 + 30_000);
    // Groups with `cpu: true` (the Redis ones): server and Redis CPU per request around every sample, and a
    // probe request after it that reads the limiter's own count (see cpuProbe).
    probe = groups.some((g) => GROUPS[g].cpu) ? await cpuProbe() : undefined;
    for (const { g, v } of targets) {
      const server = servers.get(`${g}/${v.id}`);
      if (!server) continue;
      try {
        await load(server, s.warmupSeconds);
        if (probe && GROUPS[g].cpu) server.counted = await probe.count(server);
      } catch (error) {
        results[g][v.id].errors.push(`warm-up: ${error.message}`);
      }
    }
    for (let r = 0; r < s.httpRounds; r++) {
      const line = [];
      for (const { g, v } of rotate(targets, r)) {
        const server = servers.get(`${g}/${v.id}`);
        if (!server) continue;
        const slot = results[g][v.id];
        try {
          const measureCpu = probe && GROUPS[g].cpu;
          const before = measureCpu ? await probe.counters(server) : undefined;
          const out = await load(server, s.seconds);
          const after = measureCpu ? await probe.counters(server) : undefined;
          slot.byRound[r] = out.reqPerSec;
          slot.extra.push({ latencyP50: out.latencyP50, latencyP99: out.latencyP99 });
          if (out.non2xx > 0 || out.errors > 0 || out.timeouts > 0) {
            slot.problems.push(`non2xx=${out.non2xx} errors=${out.errors} timeouts=${out.timeouts}`);
          }
          if (measureCpu) {
            slot.cpu[r] = {
              serverCpuUsPerOp: ((after.serverSeconds - before.serverSeconds) * 1e6) / out.requests,
              serverCpuShare: (after.serverSeconds - before.serverSeconds) / out.seconds,
              redisCpuUsPerOp: ((after.redisSeconds - before.redisSeconds) * 1e6) / out.requests,
              redisCpuShare: (after.redisSeconds - before.redisSeconds) / out.seconds,
              redisCommandsPerOp: (after.redisCommands - before.redisCommands) / out.requests,
              redisEvalshaPerOp: (after.evalshaCalls - before.evalshaCalls) / out.requests,
              redisUsPerEvalsha:
                after.evalshaCalls > before.evalshaCalls
                  ? (after.evalshaUsec - before.evalshaUsec) / (after.evalshaCalls - before.evalshaCalls)
                  : null,
            };
            const problem = await probe.check(server, v, out.requests, s.connections);
            if (problem) slot.problems.push(problem);
          }
          line.push(`${g}/${v.id} ${fmtCount(out.reqPerSec)}`);
        } catch (error) {
          slot.errors.push(error.message);
          line.push(`${g}/${v.id} ERROR`);
        }
      }
      progress(`  round ${r + 1}/${s.httpRounds}: ${line.join(', ')}`);
    }
  } finally {
    probe?.close();
    await Promise.all([...servers.values()].map(stopServer));
  }
}

/**
 * CPU and count checks for the Redis HTTP groups.
 * - counters(server): the server process's CPU seconds (/proc/<pid>/stat utime+stime) and Redis's CPU
 *   seconds and command count (INFO; Redis is shared, so these include anyone else's traffic).
 * - count(server): one GET /hello whose rate-limit headers say how many requests the limiter has counted for
 *   this client (limit - remaining, from `RateLimit: ...;r=<remaining>` or `X-RateLimit-Remaining`).
 * - check(...): a Redis variant must answer with such a header, and its count must have grown by the
 *   sample's completed requests plus the probe itself, plus at most one in-flight request per connection
 *   (autocannon stops without waiting for them): each request counted once, in Redis, shared by nothing else.
 */
async function cpuProbe() {
  const { connect, storeLikeOptions } = await import('./lib/redis.mjs');
  const { readFile } = await import('node:fs/promises');
  const { execFileSync } = await import('node:child_process');
  let ticksPerSecond = 100;
  try {
    ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    // keep 100, the Linux default
  }
  const redis = await connect(storeLikeOptions(false));
  const LIMIT = 1_000_000_000; // bench/servers/common.mjs
  return {
    async counters(server) {
      const stat = await readFile(`/proc/${server.child.pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields[0] is field 3 (state)
      const serverSeconds = (Number(fields[11]) + Number(fields[12])) / ticksPerSecond; // utime, stime
      const info = await redis.call('INFO', 'cpu', 'stats', 'commandstats');
      const num = (name) => Number(new RegExp(`^${name}:([0-9.]+)`, 'm').exec(info)?.[1] ?? NaN);
      const evalsha = /^cmdstat_evalsha:calls=(\d+),usec=(\d+)/m.exec(info);
      return {
        serverSeconds,
        redisSeconds: num('used_cpu_sys') + num('used_cpu_user'),
        redisCommands: num('total_commands_processed'),
        evalshaCalls: Number(evalsha?.[1] ?? 0),
        evalshaUsec: Number(evalsha?.[2] ?? 0),
      };
    },
    async count(server) {
      const res = await fetch(`http://127.0.0.1:${server.port}/hello`);
      await res.arrayBuffer();
      if (res.status !== 200) return { error: `probe answered ${res.status}` };
      const draft = /;\s*r=(\d+)/.exec(res.headers.get('ratelimit') ?? '');
      const remaining = draft ? Number(draft[1]) : Number(res.headers.get('x-ratelimit-remaining') ?? NaN);
      if (!Number.isFinite(remaining)) return { error: 'no rate-limit header on the probe' };
      return { used: LIMIT - remaining };
    },
    async check(server, v, requests, connections) {
      if (!v.id.includes('redis')) return undefined;
      const previous = server.counted;
      const now = await this.count(server);
      server.counted = now;
      if (now.error) return now.error;
      if (!previous || previous.error) return undefined;
      const grew = now.used - previous.used;
      if (grew < requests + 1 || grew > requests + 1 + connections) {
        return `limiter count grew by ${grew} for ${requests} completed requests + 1 probe`;
      }
      return undefined;
    },
    close: () => redis.disconnect(),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Reporting

function median(values) {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

const present = (values) => values.filter((x) => typeof x === 'number');

function formatRate(x) {
  if (!Number.isFinite(x)) return 'n/a';
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)}M`;
  if (x >= 1e5) return `${(x / 1e3).toFixed(0)}k`;
  return Math.round(x).toLocaleString('en-US');
}

function summarise(groups, results) {
  const rows = [];
  for (const g of groups) {
    const def = GROUPS[g];
    if (def.kind === 'latency') {
      rows.push(...summariseLatency(g, results));
      continue;
    }
    const base = def.variants.find((v) => v.baseline);
    const baseRounds = results[g][base.id].byRound;
    const baseMedian = median(present(baseRounds));
    for (const v of def.variants) {
      const slot = results[g][v.id];
      const samples = present(slot.byRound);
      const med = median(samples);
      // The reported ratio is the median of same-round ratios (variant / baseline measured seconds apart),
      // which cancels background load that drifts between rounds; the ratio of medians is kept in the JSON.
      const paired = [];
      slot.byRound.forEach((x, r) => {
        const b = baseRounds[r];
        if (typeof x === 'number' && typeof b === 'number' && b > 0) paired.push(x / b);
      });
      const ratio = median(paired);
      const ratioOfMedians = med / baseMedian;
      const spread = samples.length > 1 ? (Math.max(...samples) - Math.min(...samples)) / med : 0;
      let met = null;
      if (v.target !== undefined) {
        if (slot.problems.length > 0) met = 'INVALID';
        else if (!Number.isFinite(ratio)) met = 'ERROR';
        else met = ratio >= v.target ? 'yes' : 'NO';
      }
      rows.push({
        group: g,
        variant: v.id,
        label: v.label,
        unit: def.unit,
        baseline: Boolean(v.baseline),
        samples: slot.byRound,
        median: Number.isFinite(med) ? med : null,
        ratio: Number.isFinite(ratio) ? ratio : null,
        pairedRatios: paired,
        ratioOfMedians: Number.isFinite(ratioOfMedians) ? ratioOfMedians : null,
        spread,
        target: v.target ?? null,
        met,
        problems: slot.problems,
        errors: slot.errors,
        ...(slot.extra.length ? { latency: slot.extra } : {}),
        ...(slot.cpu.length ? { cpu: slot.cpu } : {}),
      });
    }
  }
  return rows;
}

/**
 * Latency rows: the median over rounds of each sample's median wall time; `overFloorMs` is the median of
 * same-round differences with the floor variant; factory runs are the min and max over every measured trial.
 * A target is met when the median wall time is within `maxMs` and EVERY trial ran the factory exactly
 * `factoryRuns` times.
 */
function summariseLatency(g, results) {
  const def = GROUPS[g];
  const floor = def.variants.find((v) => v.floor);
  const floorRounds = floor ? results[g][floor.id].byRound : [];
  return def.variants.map((v) => {
    const slot = results[g][v.id];
    const samples = present(slot.byRound);
    const med = median(samples);
    const diffs = [];
    slot.byRound.forEach((x, r) => {
      const f = floorRounds[r];
      if (typeof x === 'number' && typeof f === 'number') diffs.push(x - f);
    });
    const runs = slot.extra.flatMap((e) => e.factoryRuns ?? []);
    const factoryRuns = runs.length ? { min: Math.min(...runs), max: Math.max(...runs) } : null;
    const spread = samples.length > 1 ? (Math.max(...samples) - Math.min(...samples)) / med : 0;
    let met = null;
    if (v.target !== undefined) {
      if (slot.problems.length > 0) met = 'INVALID';
      else if (!Number.isFinite(med) || factoryRuns === null) met = 'ERROR';
      else met = med <= v.target.maxMs && factoryRuns.min === v.target.factoryRuns && factoryRuns.max === v.target.factoryRuns ? 'yes' : 'NO';
    }
    return {
      group: g,
      variant: v.id,
      label: v.label,
      unit: def.unit,
      kind: 'latency',
      floor: Boolean(v.floor),
      samples: slot.byRound,
      median: Number.isFinite(med) ? med : null,
      overFloorMs: v.floor || diffs.length === 0 ? null : median(diffs),
      factoryRuns,
      trials: slot.extra,
      spread,
      target: v.target ?? null,
      met,
      problems: slot.problems,
      errors: slot.errors,
    };
  });
}

function renderLatencyTable(rows) {
  const header = ['group', 'variant', 'wall time (median)', 'vs floor', 'factory runs', 'target', 'met?'];
  const body = rows.map((r) => [
    r.group,
    r.label,
    r.median === null ? 'n/a' : `${r.median.toFixed(1)} ms`,
    r.floor ? '(floor)' : r.overFloorMs === null ? 'n/a' : `${r.overFloorMs >= 0 ? '+' : ''}${r.overFloorMs.toFixed(1)} ms`,
    r.factoryRuns === null ? 'n/a' : r.factoryRuns.min === r.factoryRuns.max ? String(r.factoryRuns.min) : `${r.factoryRuns.min}-${r.factoryRuns.max}`,
    r.target === null ? '' : `<= ${r.target.maxMs} ms, ${r.target.factoryRuns} run`,
    r.met ?? '',
  ]);
  const right = (i) => i >= 2 && i <= 5;
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (cells) => `| ${cells.map((c, i) => (right(i) ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join(' | ')} |`;
  const sep = `|${widths.map((w, i) => (right(i) ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [line(header), sep, ...body.map(line)].join('\n');
}

function renderTable(rows) {
  const header = ['group', 'variant', 'median', 'ratio vs baseline', 'target', 'met?'];
  const body = rows.map((r) => [
    r.group,
    r.label,
    r.median === null ? 'n/a' : `${formatRate(r.median)} ${r.unit}`,
    r.baseline ? '1.00 (baseline)' : r.ratio === null ? 'n/a' : r.ratio.toFixed(2),
    r.target === null ? '' : `>= ${r.target.toFixed(2)}`,
    r.met ?? '',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (cells) => `| ${cells.map((c, i) => (i >= 2 && i <= 4 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join(' | ')} |`;
  const sep = `|${widths.map((w, i) => (i >= 2 && i <= 4 ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [line(header), sep, ...body.map(line)].join('\n');
}

// ---------------------------------------------------------------------------------------------------------

const cli = parseCli(process.argv.slice(2));
const mode = cli.quick ? 'quick' : 'full';
const settings = { ...SETTINGS[mode], mode };
if (cli.rounds) settings.microRounds = settings.httpRounds = cli.rounds;
const groups = selectGroups(cli.only);
const results = emptyResults(groups);
const started = Date.now();

const machine = {
  node: process.version,
  platform: `${os.platform()} ${os.release()} ${os.arch()}`,
  cpus: os.cpus().length,
  cpuModel: os.cpus()[0]?.model ?? 'unknown',
  memoryGb: Math.round(os.totalmem() / 2 ** 30),
  loadAvgAtStart: os.loadavg().map((x) => Number(x.toFixed(2))),
};
progress(`bench (${mode}) on ${machine.cpus} x ${machine.cpuModel}, node ${machine.node}, load avg ${machine.loadAvgAtStart.join(' ')}`);

await runMicroGroups(groups.filter((g) => GROUPS[g].kind === 'micro'), settings, results);
await runLatencyGroups(groups.filter((g) => GROUPS[g].kind === 'latency'), settings, results);
await runHttpGroups(groups.filter((g) => GROUPS[g].kind === 'http'), settings, results);

const rows = summarise(groups, results);
const elapsedSeconds = Math.round((Date.now() - started) / 1000);
const throughputRows = rows.filter((r) => r.kind !== 'latency');
const latencyRows = rows.filter((r) => r.kind === 'latency');
// Throughput rows (ratios against a baseline) and latency rows (milliseconds against a limit) in two tables.
const table = [
  ...(throughputRows.length ? [renderTable(throughputRows)] : []),
  ...(latencyRows.length ? [renderLatencyTable(latencyRows)] : []),
].join('\n\n');

console.log();
console.log(table);
console.log();
console.log(
  `${mode} run, ${elapsedSeconds} s; medians over ${settings.microRounds} micro / ${settings.httpRounds} http interleaved rounds ` +
    `(ratio = median of same-round variant/baseline ratios${latencyRows.length ? '; latency: median over rounds of each sample\'s median trial, vs floor = median of same-round differences' : ''}); ` +
    `node ${machine.node}, ${machine.cpus} CPUs (${machine.cpuModel}), load avg at start ${machine.loadAvgAtStart.join(' ')}`,
);
const cpuRows = rows.filter((r) => r.cpu);
if (cpuRows.length) {
  // Medians over rounds. Redis is shared: its CPU and command counts include anyone else's traffic.
  const med = (r, k) => median(present(r.cpu.filter(Boolean).map((c) => c[k])));
  const f = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
  console.log();
  console.log('CPU per operation (medians over rounds; client = the bench process for micro, the server process for http).');
  console.log('Redis is shared: its CPU and command counts include other clients; EVALSHA time is Redis executing the script.');
  for (const r of cpuRows) {
    const client = med(r, 'clientCpuUsPerOp');
    const server = med(r, 'serverCpuUsPerOp');
    const own = Number.isFinite(client) ? `client ${f(client)} us (${f(med(r, 'clientCpuShare') * 100, 0)}% of a core)` : `server ${f(server)} us (${f(med(r, 'serverCpuShare') * 100, 0)}% of a core)`;
    const evalsha = med(r, 'redisUsPerEvalsha');
    console.log(
      `  ${r.group}/${r.variant}: ${own}; Redis (whole server) ${f(med(r, 'redisCpuUsPerOp'))} us (${f(med(r, 'redisCpuShare') * 100, 0)}%), ` +
        `${f(med(r, 'redisCommandsPerOp'), 2)} commands incl. inside scripts` +
        (Number.isFinite(evalsha) && med(r, 'redisEvalshaPerOp') >= 0.01 ? `; EVALSHA ${f(med(r, 'redisEvalshaPerOp'), 2)}/op at ${f(evalsha, 2)} us each` : ''),
    );
  }
}
const noisy = rows.filter((r) => r.spread > 0.15).map((r) => `${r.group}/${r.variant} ${(r.spread * 100).toFixed(0)}%`);
if (noisy.length) console.log(`noisy (max-min over median > 15%): ${noisy.join(', ')}`);
for (const r of rows) {
  if (r.problems.length) console.log(`INVALID ${r.group}/${r.variant}: ${[...new Set(r.problems)].join('; ')}`);
  if (r.errors.length) console.log(`ERROR ${r.group}/${r.variant}: ${[...new Set(r.errors)].join('; ')}`);
}

await mkdir(path.join(here, 'results'), { recursive: true });
await writeFile(
  path.join(here, 'results', 'latest.json'),
  `${JSON.stringify({ date: new Date().toISOString(), mode, settings, groups, machine, elapsedSeconds, rows, table }, null, 2)}\n`,
);
console.log(`results: bench/results/latest.json`);
process.exitCode = rows.some((r) => r.errors.length || r.problems.length) ? 1 : 0;
