#!/usr/bin/env node
/**
 * Semantic-cache vector index benchmark (standalone; not a bench/run.mjs group because it reports latency
 * percentiles, build time and memory, not ops/s ratios, and a 100k-entry build takes a while).
 *
 *   node bench/semantic/index-bench.mjs [--sizes 1000,10000,100000] [--data clustered,random]
 *                                       [--queries 1000] [--ef 96,400] [--json <file>]
 *
 * For every (size, data set) a fresh child process (node --expose-gc) generates L2-normalized 512-dim
 * vectors, builds the exact index and the HNSW index, and measures:
 * - lookup latency p50/p99 of search(query, k=5) (no embedding: queries are vectors), one query at a time;
 * - build time (adds from empty) and memory per entry (heapUsed + arrayBuffers deltas after a full GC, plus
 *   the HNSW index's WebAssembly.Memory and typed arrays, which memoryUsage() does not report; / size);
 * - recall@5 of HNSW against the exact top-5 for the same queries, for each efSearch in --ef (one graph);
 * - TTL churn: remove 30% of the entries and add as many new ones (tombstones + compaction), then recall.
 * Queries are half "near duplicates" (a stored vector plus noise, cosine ~0.9-0.95: what a semantic-cache hit
 * looks like) and half fresh draws from the same distribution (what a miss looks like).
 * Data sets: `clustered` (200 topic centres, points at cosine ~0.6-0.7 from their centre; sentence
 * embeddings cluster like this) and `random` (isotropic Gaussian: the worst case for any graph index).
 *
 * Imports the indexes from @amas/core (built dist) when it exports them, else bundles
 * packages/core/src/semantic/vector-index.ts with the workspace's esbuild (no build step needed).
 */
import { spawnSync } from 'node:child_process';
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

async function loadIndexModule() {
  try {
    const core = await import('@amas/core');
    if (typeof core.createVectorIndex === 'function') return core;
  } catch {
    // not built or not exported yet
  }
  const req = createRequire(path.join(root, 'package.json'));
  const esbuildPath = createRequire(req.resolve('tsup')).resolve('esbuild');
  const { build } = await import(pathToFileURL(esbuildPath).href);
  const outfile = path.join(os.tmpdir(), `amas-vector-index-${process.pid}.mjs`);
  await build({
    entryPoints: [path.join(root, 'packages/core/src/semantic/vector-index.ts')],
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

async function child(size, dataKind, queryCount, efs) {
  const mod = await loadIndexModule();
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
  const m2 = memory() + hnsw.memoryBytes;
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

  // TTL churn: 30% of the entries expire, as many new ones arrive.
  const churn = Math.floor(size * 0.3);
  t0 = performance.now();
  for (let i = 0; i < churn; i++) {
    exact.remove(`prompt:${i}`);
    hnsw.remove(`prompt:${i}`);
  }
  for (let i = 0; i < churn; i++) {
    const v = gen();
    exact.add(`new:${i}`, v);
    hnsw.add(`new:${i}`, v);
  }
  const churnMs = performance.now() - t0;
  const e2 = latency(exact, queries);
  const h2 = latency(hnsw, queries);

  return {
    size,
    data: dataKind,
    exact: { buildMs: exactBuildMs, p50: e.p50, p99: e.p99, bytesPerEntry: (m1 - m0) / size },
    hnsw: { buildMs: hnswBuildMs, bytesPerEntry: (m2 - m1) / size, perEf },
    churn: { ms: churnMs, efSearch: perEf[0].efSearch, exactP99: e2.p99, hnswP99: h2.p99, recall: recall(e2.results, h2.results), tombstones: hnsw.tombstoneCount },
  };
}

// ---------------------------------------------------------------------------------------------------------
// Parent

const f = (n, d = 2) => (n >= 100 ? n.toFixed(0) : n.toFixed(d));

async function main() {
  if (process.argv[2] === '--child') {
    const [size, dataKind, queryCount, ef] = process.argv.slice(3);
    const out = await child(Number(size), dataKind, Number(queryCount), ef === '-' ? [] : ef.split(',').map(Number));
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return;
  }
  const sizes = arg('sizes', '1000,10000,100000').split(',').map(Number);
  const datas = arg('data', 'clustered,random').split(',');
  const queryCount = Number(arg('queries', '1000'));
  const ef = arg('ef', '96,400');
  const rows = [];
  for (const data of datas) {
    for (const size of sizes) {
      process.stderr.write(`semantic-index: ${data} ${size} ...\n`);
      const r = spawnSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--child', String(size), data, String(queryCount), ef], {
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
  lines.push('', 'After TTL churn (30% of entries removed, as many added; HNSW at the first --ef):', '');
  lines.push('| data      | entries | churn s | exact p99 ms | hnsw p99 ms | hnsw recall@5 | tombstones left |', '|-----------|--------:|--------:|-------------:|------------:|--------------:|----------------:|');
  for (const r of rows) {
    lines.push(`| ${r.data.padEnd(9)} | ${String(r.size).padStart(7)} | ${cell(r.churn.ms / 1000, 7)} | ${cell(r.churn.exactP99, 12)} | ${cell(r.churn.hnswP99, 11)} | ${r.churn.recall.toFixed(3).padStart(13)} | ${String(r.churn.tombstones).padStart(15)} |`);
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
