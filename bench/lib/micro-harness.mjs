/**
 * Runs ONE micro-benchmark variant in this (fresh) process and prints one JSON line to stdout:
 *   node bench/micro/<group>.mjs <variant> <sampleMs> <warmupMs>
 *
 * A variant is `{ run(n), verify?(calls) }`: `run(n)` performs n operations in its own loop (so every
 * variant, baselines included, pays the same loop overhead), `verify` returns a problem string when the
 * variant did not do what it claims (e.g. a "closed" breaker that rejected), so a broken setup cannot
 * produce a flattering number.
 */
const now = () => process.hrtime.bigint();

export async function runMicro(group, variants) {
  const [variant, sampleArg = '400', warmupArg = '300'] = process.argv.slice(2);
  const factory = variants[variant];
  if (!factory) {
    console.error(`${group}: unknown variant "${variant}" (known: ${Object.keys(variants).join(', ')})`);
    process.exit(2);
  }
  const sampleNs = BigInt(Math.round(Number(sampleArg) * 1e6));
  const warmupNs = BigInt(Math.round(Number(warmupArg) * 1e6));
  const v = await factory();

  // Warm up, growing the batch until one batch takes >= 10 ms so timer reads are noise-free.
  let batch = 256;
  let calls = 0;
  const warmEnd = now() + warmupNs;
  while (now() < warmEnd) {
    const t0 = now();
    await v.run(batch);
    calls += batch;
    if (now() - t0 < 10_000_000n && batch < 1 << 24) batch *= 2;
  }

  let ops = 0;
  let ns = 0n;
  while (ns < sampleNs) {
    const t0 = now();
    await v.run(batch);
    ns += now() - t0;
    ops += batch;
  }
  calls += ops;
  const problem = v.verify ? v.verify(calls) : undefined;
  const opsPerSec = (ops * 1e9) / Number(ns);
  process.stdout.write(`${JSON.stringify({ group, variant, ops, ns: Number(ns), opsPerSec, problem: problem ?? null })}\n`);
  if (v.close) await v.close();
  // Libraries may hold timers (opossum stats, limiter sweeps): the sample is done, leave now.
  process.exit(0);
}
