#!/usr/bin/env node
/**
 * Semantic-cache vector index benchmark (standalone; not a bench/run.mjs group because it reports latency
 * percentiles, build time and memory, not ops/s ratios, and a 100k-entry build takes a while).
 *
 *   node bench/semantic/index-bench.mjs [--sizes 1000,10000,100000] [--data clustered,random]
 *                                       [--queries 1000] [--ef 96,400] [--churn 1] [--json <file>]
 *                                       [--entry <path to a vector-index.ts> | --dist]
 *
 * For every (size, data set) a fresh child process (node --expose-gc) generates L2-normalized 512-dim
 * vectors, builds the exact index and the HNSW index, and measures:
 * - lookup latency p50/p99 of search(query, k=5) (no embedding: queries are vectors), one query at a time;
 * - build time (adds from empty) and memory per entry (heapUsed + arrayBuffers deltas after a full GC, plus
 *   the HNSW index's WebAssembly.Memory, which memoryUsage() does not report; / size);
 * - recall@5 of HNSW against the exact top-5 for the same queries, for each efSearch in --ef (one graph);
 * - TTL churn: entries expire oldest first, in bursts of 1% of the size, each burst followed by as many adds,
 *   until `--churn` × size entries were replaced (default 1: every entry once), with 10 searches after each
 *   burst. Every add/remove/search on the HNSW index is timed on its own: p50, p99 and the worst single call
 *   (what blocks the event loop), then recall on fresh queries (near duplicates of entries alive after the
 *   churn, and fresh draws) against the pre-churn recall, the slot count against the peak, and memory.
 * Queries are half "near duplicates" (a stored vector plus noise, cosine ~0.9-0.95: what a semantic-cache hit
 * looks like) and half fresh draws from the same distribution (what a miss looks like).
 * Data sets: `clustered` (200 topic centres, points at cosine ~0.6-0.7 from their centre; sentence
 * embeddings cluster like this) and `random` (isotropic Gaussian: the worst case for any graph index).
 *
 * Bundles packages/core/src/semantic/vector-index.ts with the workspace's esbuild (no build step needed), so
 * it measures the working tree; `--entry` bundles another copy of vector-index.ts instead (an A/B against an
 * older version of the sources), `--dist` imports the built @amas/core (which may be stale).
 */
import { spawnSync } from 'node:child_process';
import { PerformanceObserver } from 'node:perf_hooks';
import { createRequire } from 'node:module';
import { rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const DIM = 512;
const K = 5;

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? fallback : process.argv[i + 1];
}

async function loadIndexModule(entry) {
  if (entry === 'dist') return import('@amas/core');
  const req = createRequire(path.join(root, 'package.json'));
  const esbuildPath = createRequire(req.resolve('tsup')).resolve('esbuild');
  const { build } = await import(pathToFileURL(esbuildPath).href);
  const outfile = path.join(os.tmpdir(), `amas-vector-index-${process.pid}.mjs`);
  await build({
    entryPoints: [entry ? path.resolve(entry) : path.join(root, 'packages/core/src/semantic/vector-index.ts')],
    bundle: true,
    format: 'esm',
    platform: 'node',
    outfile,
    logLevel: 'warning',
  });
  try {
    return await import(pathToFileURL(outfile).href);
  } finally {
    rmSync(outfile, { force: true });
  }
}

// ---------------------------------------------------------------------------------------------------------
// Child: one (size, data set)

function makeRng(seed) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const gauss = () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
  return { next, gauss };
}

function normalize(v) {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i] * v[i];
  s = 1 / Math.sqrt(s);
  for (let i = 0; i < v.length; i++) v[i] *= s;
  return v;
}

function makeData(kind, rng) {
  const gaussVec = () => {
    const v = new Float32Array(DIM);
    for (let i = 0; i < DIM; i++) v[i] = rng.gauss();
    return normalize(v);
  };
  if (kind === 'random') return gaussVec;
  const centres = Array.from({ length: 200 }, gaussVec);
  // noise of norm ~1.1 around a unit centre: cosine to the centre ~0.65, between two members ~0.45
  const sigma = 1.1 / Math.sqrt(DIM);
  return () => {
    const c = centres[Math.floor(rng.next() * centres.length)];
    const v = new Float32Array(DIM);
    for (let i = 0; i < DIM; i++) v[i] = c[i] + rng.gauss() * sigma;
    return normalize(v);
  };
}

function nearDuplicate(v, rng) {
  // noise of norm ~0.35: cosine to the original ~0.94
  const sigma = 0.35 / Math.sqrt(DIM);
  const out = new Float32Array(DIM);
  for (let i = 0; i < DIM; i++) out[i] = v[i] + rng.gauss() * sigma;
  return normalize(out);
}

function memory() {
  globalThis.gc?.();
  globalThis.gc?.();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

function percentile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))];
}

function spread(times) {
  const sorted = Float64Array.from(times).sort();
  return { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: sorted[sorted.length - 1] ?? 0 };
}

/**
 * Times one call into `into`: wall-clock ms, the process CPU ms (all threads, so GC helpers count), and the
 * call's [start, end] on the performance clock (to tell which calls a GC pause landed in).
 */
function timed(fn, into) {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  fn();
  const t1 = performance.now();
  const c = process.cpuUsage(c0);
  into.wall.push(t1 - t0);
  into.cpu.push((c.user + c.system) / 1000);
  into.at.push(t0, t1);
}

/** The wall times of the calls no GC event (scavenge or mark-compact) overlapped. */
function withoutGc(into, gcs) {
  const out = [];
  let g = 0;
  for (let i = 0; i < into.wall.length; i++) {
    const t0 = into.at[2 * i];
    const t1 = into.at[2 * i + 1];
    while (g < gcs.length && gcs[g][1] < t0) g++;
    if (g < gcs.length && gcs[g][0] <= t1) continue;
    out.push(into.wall[i]);
  }
  return out;
}

function latency(index, queries) {
  for (let i = 0; i < Math.min(50, queries.length); i++) index.search(queries[i], K); // warm up
  const times = new Float64Array(queries.length);
  const results = [];
  for (let i = 0; i < queries.length; i++) {
    const t0 = process.hrtime.bigint();
    const r = index.search(queries[i], K);
    times[i] = Number(process.hrtime.bigint() - t0) / 1e6;
    results.push(r);
  }
  times.sort();
  return { p50: percentile(times, 0.5), p99: percentile(times, 0.99), results };
}

function recall(truth, got) {
  let hit = 0;
  let total = 0;
  for (let i = 0; i < truth.length; i++) {
    const want = new Set(truth[i].map((r) => r.id));
    total += want.size;
    for (const r of got[i]) if (want.has(r.id)) hit++;
  }
  return total === 0 ? 1 : hit / total;
}

async function child(size, dataKind, queryCount, efs, churnFactor, entry) {
  const mod = await loadIndexModule(entry);
  const rng = makeRng(size * 31 + (dataKind === 'random' ? 7 : 13));
  const gen = makeData(dataKind, rng);
  const vectors = Array.from({ length: size }, gen);
  const queries = [];
  for (let i = 0; i < queryCount; i++) {
    queries.push(i % 2 === 0 ? nearDuplicate(vectors[Math.floor(rng.next() * size)], rng) : gen());
  }
  const m0 = memory();
  let t0 = performance.now();
  const exact = mod.createVectorIndex({ dimensions: DIM, kind: 'exact' });
  for (let i = 0; i < size; i++) exact.add(`prompt:${i}`, vectors[i]);
  const exactBuildMs = performance.now() - t0;
  const m1 = memory();
  t0 = performance.now();
  const hnsw = mod.createVectorIndex({ dimensions: DIM, kind: 'approximate' });
  for (let i = 0; i < size; i++) hnsw.add(`prompt:${i}`, vectors[i]);
  const hnswBuildMs = performance.now() - t0;
  // arrayBuffers already holds the index's typed arrays; only its WebAssembly.Memory is missing (older
  // versions without `wasmBytes` get the typed arrays counted twice).
  const m2 = memory() + (hnsw.wasmBytes ?? hnsw.memoryBytes);
  // Keep the generated vectors alive until here, so their collection does not hide the index's memory.
  if (vectors.length !== size) throw new Error('unreachable');

  const e = latency(exact, queries);
  const nearIdx = queries.map((_, i) => i).filter((i) => i % 2 === 0);
  const perEf = [];
  for (const ef of efs.length ? efs : [hnsw.efSearch]) {
    hnsw.efSearch = ef;
    const h = latency(hnsw, queries);
    perEf.push({
      efSearch: ef,
      p50: h.p50,
      p99: h.p99,
      recall: recall(e.results, h.results),
      recallNear: recall(nearIdx.map((i) => e.results[i]), nearIdx.map((i) => h.results[i])),
      // A semantic-cache hit is the best stored entry: does HNSW return the same top-1 for near duplicates?
      top1Near: nearIdx.filter((i) => h.results[i][0]?.id === e.results[i][0]?.id).length / nearIdx.length,
    });
  }
  hnsw.efSearch = perEf[0].efSearch;

  // TTL churn: the oldest entries expire in bursts of 1% of the size, each burst followed by as many adds and
  // a few searches, until churnFactor × size entries were replaced. Each HNSW call is timed on its own.
  const total = Math.floor(size * churnFactor);
  const burst = Math.max(1, Math.floor(size / 100));
  const order = Array.from({ length: size }, (_, i) => `prompt:${i}`);
  const live = vectors.slice(); // live[i] is the vector of order[i] until it expires
  const adds = { wall: [], cpu: [], at: [] };
  const removes = { wall: [], cpu: [], at: [] };
  const searches = { wall: [], cpu: [], at: [] };
  // Calls are timed one by one, so a GC pause (of the whole process, bench data included) lands in one of
  // them; GC events are recorded to report the worst call without one as well.
  const gcs = [];
  const gcObserver = new PerformanceObserver((list) => {
    for (const g of list.getEntries()) gcs.push([g.startTime, g.startTime + g.duration]);
  });
  gcObserver.observe({ entryTypes: ['gc'] });
  const memBefore = hnsw.memoryBytes;
  let oldest = 0;
  let maxNodes = hnsw.nodeCount ?? size;
  globalThis.gc?.();
  t0 = performance.now();
  for (let done = 0; done < total; ) {
    const b = Math.min(burst, total - done);
    for (let j = 0; j < b; j++) {
      const id = order[oldest];
      live[oldest++] = undefined;
      exact.remove(id);
      timed(() => hnsw.remove(id), removes);
    }
    for (let j = 0; j < b; j++) {
      const id = `new:${done + j}`;
      const v = gen();
      order.push(id);
      live.push(v);
      exact.add(id, v);
      timed(() => hnsw.add(id, v), adds);
    }
    for (let j = 0; j < 10; j++) {
      const q = queries[(done + j) % queries.length];
      timed(() => hnsw.search(q, K), searches);
    }
    done += b;
    maxNodes = Math.max(maxNodes, hnsw.nodeCount ?? 0);
    await new Promise((resolve) => setImmediate(resolve)); // lets the GC observer deliver
  }
  const churnMs = performance.now() - t0;
  gcObserver.disconnect();
  gcs.sort((a, b) => a[0] - b[0]);
  // Fresh queries on what is alive now: half near duplicates of live entries, half fresh draws.
  const after = [];
  for (let i = 0; i < queryCount; i++) {
    after.push(i % 2 === 0 ? nearDuplicate(live[oldest + Math.floor(rng.next() * size)], rng) : gen());
  }
  const e2 = latency(exact, after);
  const h2 = latency(hnsw, after);

  return {
    size,
    data: dataKind,
    exact: { buildMs: exactBuildMs, p50: e.p50, p99: e.p99, bytesPerEntry: (m1 - m0) / size },
    hnsw: { buildMs: hnswBuildMs, bytesPerEntry: (m2 - m1) / size, perEf },
    churn: {
      replaced: total,
      ms: churnMs,
      efSearch: perEf[0].efSearch,
      add: spread(adds.wall),
      remove: spread(removes.wall),
      search: spread(searches.wall),
      // CPU time per call: on a shared machine the wall-clock tail also holds time the process was not running.
      cpu: { add: spread(adds.cpu), remove: spread(removes.cpu), search: spread(searches.cpu) },
      noGc: { add: spread(withoutGc(adds, gcs)), remove: spread(withoutGc(removes, gcs)), search: spread(withoutGc(searches, gcs)) },
      gcEvents: gcs.length,
      exactP99: e2.p99,
      hnswP99: h2.p99,
      recallBefore: perEf[0].recall,
      recall: recall(e2.results, h2.results),
      top1Near: nearIdx.filter((i) => h2.results[i][0]?.id === e2.results[i][0]?.id).length / nearIdx.length,
      // Slots (live + free) after the churn and at most during it; undefined on versions without nodeCount.
      nodes: hnsw.nodeCount,
      maxNodes: hnsw.nodeCount === undefined ? undefined : maxNodes,
      tombstones: hnsw.tombstoneCount,
      hnswBytesBefore: memBefore,
      hnswBytesAfter: hnsw.memoryBytes,
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// Parent

const f = (n, d = 2) => (n >= 100 ? n.toFixed(0) : n.toFixed(d));

async function main() {
  if (process.argv[2] === '--child') {
    const [size, dataKind, queryCount, ef, churn, entry] = process.argv.slice(3);
    const efs = ef === '-' ? [] : ef.split(',').map(Number);
    const out = await child(Number(size), dataKind, Number(queryCount), efs, Number(churn), entry === '-' ? undefined : entry);
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return;
  }
  const sizes = arg('sizes', '1000,10000,100000').split(',').map(Number);
  const datas = arg('data', 'clustered,random').split(',');
  const queryCount = Number(arg('queries', '1000'));
  const ef = arg('ef', '96,400');
  const churn = arg('churn', '1');
  const entry = process.argv.includes('--dist') ? 'dist' : arg('entry', '-');
  const rows = [];
  for (const data of datas) {
    for (const size of sizes) {
      process.stderr.write(`semantic-index: ${data} ${size} ...\n`);
      const r = spawnSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--child', String(size), data, String(queryCount), ef, churn, entry], {
        encoding: 'utf8',
        maxBuffer: 1 << 24,
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      if (r.status !== 0) throw new Error(`child ${data} ${size} failed with ${r.status}`);
      rows.push(JSON.parse(r.stdout.trim().split('\n').pop()));
    }
  }

  const lines = [
    `Semantic index: ${DIM} dims, k=${K}, ${queryCount} queries (half near-duplicates, half fresh), node ${process.version}, ${os.cpus().length} CPUs`,
    '',
    '| data      | entries | index        | build s | p50 ms | p99 ms | bytes/entry | recall@5 | near-dup recall@5, top-1 |',
    '|-----------|--------:|--------------|--------:|-------:|-------:|------------:|---------:|--------------------------|',
  ];
  const cell = (v, w, d = 3) => f(v, d).padStart(w);
  for (const r of rows) {
    lines.push(`| ${r.data.padEnd(9)} | ${String(r.size).padStart(7)} | exact        | ${cell(r.exact.buildMs / 1000, 7)} | ${cell(r.exact.p50, 6)} | ${cell(r.exact.p99, 6)} | ${cell(r.exact.bytesPerEntry, 11)} |        1 | 1, 1                     |`);
    r.hnsw.perEf.forEach((h, i) => {
      const build = i === 0 ? cell(r.hnsw.buildMs / 1000, 7) : '      -';
      const bytes = i === 0 ? cell(r.hnsw.bytesPerEntry, 11) : '          -';
      lines.push(`| ${r.data.padEnd(9)} | ${String(r.size).padStart(7)} | ${`hnsw ef=${h.efSearch}`.padEnd(12)} | ${build} | ${cell(h.p50, 6)} | ${cell(h.p99, 6)} | ${bytes} | ${h.recall.toFixed(3).padStart(8)} | ${`${h.recallNear.toFixed(3)}, ${h.top1Near.toFixed(3)}`.padEnd(24)} |`);
    });
  }
  lines.push(
    '',
    `TTL churn (oldest expire in bursts of 1% of the size, as many added, 10 searches a burst; --churn ${churn} × size replaced; HNSW at the first --ef). ms per single HNSW call, wall clock p50 / p99 / max; the largest CPU time of one call; the largest wall time of a call no GC event overlapped:`,
    '',
    '| data      | entries | churn s | add ms                 | remove ms              | search ms              | max CPU ms add / remove / search | max ms without GC add / remove / search |',
    '|-----------|--------:|--------:|------------------------|------------------------|------------------------|----------------------------------|-----------------------------------------|',
  );
  const trio = (t) => `${f(t.p50, 3)} / ${f(t.p99, 3)} / ${f(t.max, 3)}`.padEnd(22);
  for (const r of rows) {
    const c = r.churn;
    const cpu = `${f(c.cpu.add.max, 3)} / ${f(c.cpu.remove.max, 3)} / ${f(c.cpu.search.max, 3)}`.padEnd(32);
    const noGc = `${f(c.noGc.add.max, 3)} / ${f(c.noGc.remove.max, 3)} / ${f(c.noGc.search.max, 3)}`.padEnd(39);
    lines.push(`| ${r.data.padEnd(9)} | ${String(r.size).padStart(7)} | ${cell(c.ms / 1000, 7)} | ${trio(c.add)} | ${trio(c.remove)} | ${trio(c.search)} | ${cpu} | ${noGc} |`);
  }
  lines.push(
    '',
    'After the churn (fresh queries: near duplicates of live entries, and fresh draws):',
    '',
    '| data      | entries | recall@5 before -> after | near-dup top-1 after | slots after (max) | off-heap bytes/entry before -> after |',
    '|-----------|--------:|--------------------------|---------------------:|------------------:|-------------------------------------:|',
  );
  for (const r of rows) {
    const c = r.churn;
    const slots = c.nodes === undefined ? '-' : `${c.nodes} (${c.maxNodes})`;
    const mb = `${(c.hnswBytesBefore / r.size).toFixed(0)} -> ${(c.hnswBytesAfter / r.size).toFixed(0)}`;
    lines.push(
      `| ${r.data.padEnd(9)} | ${String(r.size).padStart(7)} | ${`${c.recallBefore.toFixed(3)} -> ${c.recall.toFixed(3)}`.padEnd(24)} | ${c.top1Near.toFixed(3).padStart(20)} | ${slots.padStart(17)} | ${mb.padStart(36)} |`,
    );
  }
  lines.push('');
  for (const data of datas) {
    const at = (n) => rows.find((r) => r.data === data && r.size === n);
    const big = at(100_000);
    const mid = at(10_000);
    if (!big) continue;
    big.hnsw.perEf.forEach((h, i) => {
      let line = `${data}, hnsw ef=${h.efSearch}: p99 at 100k ${f(h.p99, 3)} ms (target <= 5 ms: ${h.p99 <= 5 ? 'met' : 'NOT met'})`;
      if (mid) {
        const g = h.p99 / mid.hnsw.perEf[i].p99;
        line += `, growth 10k -> 100k ${g.toFixed(2)}x (target < 3x: ${g < 3 ? 'met' : 'NOT met'})`;
      }
      lines.push(`${line}, recall@5 ${h.recall.toFixed(3)}`);
    });
    if (mid) lines.push(`${data}, exact: p99 at 100k ${f(big.exact.p99, 3)} ms, growth 10k -> 100k ${(big.exact.p99 / mid.exact.p99).toFixed(2)}x`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  const json = arg('json', undefined);
  if (json) writeFileSync(json, JSON.stringify({ date: new Date().toISOString(), rows }, null, 2));
}

await main();
