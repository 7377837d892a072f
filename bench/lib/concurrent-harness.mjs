/**
 * Runs ONE I/O-bound micro-benchmark variant in this (fresh) process and prints one JSON line to stdout:
 *   node bench/micro/<group>.mjs <variant> <sampleMs> <warmupMs> [concurrency]
 *
 * Unlike bench/lib/micro-harness.mjs (CPU-bound, batches of n synchronous-ish operations), an operation here
 * waits on the network, so throughput comes from concurrency: `concurrency` callers (default 64) each loop
 * `await v.op(i)` until told to stop, all sharing the variant's one client. The sample is a fixed time:
 * after `warmupMs`, completions are counted for `sampleMs` (hrtime at both marks), then the callers stop and
 * the in-flight operations drain (they count towards `verify`, not towards the rate).
 *
 * A variant is `{ op(i), verify?(calls), close?(), redis? }`:
 * - `op(i)` performs one operation (i is a global sequence number, for cycling keys);
 * - `verify(calls)` returns a problem string when the variant did not do what it claims (a denial, counts
 *   that do not add up), so a broken setup cannot produce a flattering number; may be async;
 * - `redis` (an ioredis client on a SEPARATE connection, optional): INFO cpu/stats are read at both marks to
 *   report Redis CPU per operation. Redis is shared, so its CPU includes anyone else's traffic: the foreign
 *   command count over the sample is reported too.
 * The output also has this process's CPU (user+system) per operation over the measured phase.
 */
const now = () => process.hrtime.bigint();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function redisCounters(redis) {
  if (!redis) return undefined;
  const text = await redis.call('INFO', 'cpu', 'stats', 'commandstats');
  const num = (name) => Number(new RegExp(`^${name}:([0-9.]+)`, 'm').exec(text)?.[1] ?? NaN);
  const evalsha = /^cmdstat_evalsha:calls=(\d+),usec=(\d+)/m.exec(text);
  return {
    cpuSeconds: num('used_cpu_sys') + num('used_cpu_user'),
    commands: num('total_commands_processed'),
    evalshaCalls: Number(evalsha?.[1] ?? 0),
    evalshaUsec: Number(evalsha?.[2] ?? 0),
  };
}

export async function runConcurrent(group, variants) {
  const [variant, sampleArg = '2000', warmupArg = '1000', concurrencyArg = '64'] = process.argv.slice(2);
  const factory = variants[variant];
  if (!factory) {
    console.error(`${group}: unknown variant "${variant}" (known: ${Object.keys(variants).join(', ')})`);
    process.exit(2);
  }
  const sampleMs = Number(sampleArg);
  const warmupMs = Number(warmupArg);
  const concurrency = Number(concurrencyArg);
  const v = await factory();

  let running = true;
  let done = 0;
  let seq = 0;
  let failure;
  const worker = async () => {
    while (running) {
      await v.op(seq++);
      done++;
    }
  };
  const workers = Array.from({ length: concurrency }, () =>
    worker().catch((error) => {
      failure ??= error;
      running = false;
    }),
  );

  await sleep(warmupMs);
  const r0 = await redisCounters(v.redis);
  const c0 = process.cpuUsage();
  const d0 = done;
  const t0 = now();
  await sleep(sampleMs);
  const d1 = done;
  const t1 = now();
  const c1 = process.cpuUsage(c0);
  running = false;
  const r1 = await redisCounters(v.redis);
  await Promise.all(workers);

  const ops = d1 - d0;
  const ns = Number(t1 - t0);
  let problem = failure ? `an operation threw: ${failure?.message ?? failure}` : undefined;
  if (!problem && v.verify) problem = await v.verify(done);
  const extra = {
    concurrency,
    calls: done,
    clientCpuUsPerOp: (c1.user + c1.system) / ops,
    clientCpuShare: (c1.user + c1.system) / (ns / 1000),
  };
  if (r0 && r1) {
    // Whole-server counters: they include the INFO commands and anyone else's traffic on the shared Redis.
    extra.redisCpuUsPerOp = ((r1.cpuSeconds - r0.cpuSeconds) * 1e6) / ops;
    extra.redisCpuShare = ((r1.cpuSeconds - r0.cpuSeconds) * 1e9) / ns;
    extra.redisCommandsPerOp = (r1.commands - r0.commands) / ops;
    // Time Redis spent executing each EVALSHA (the script, commands inside it included), from commandstats.
    const calls = r1.evalshaCalls - r0.evalshaCalls;
    extra.redisEvalshaPerOp = calls / ops;
    extra.redisUsPerEvalsha = calls > 0 ? (r1.evalshaUsec - r0.evalshaUsec) / calls : null;
  }
  const opsPerSec = (ops * 1e9) / ns;
  process.stdout.write(
    `${JSON.stringify({ group, variant, ops, ns, opsPerSec, problem: problem ?? null, extra })}\n`,
  );
  if (v.close) await v.close();
  process.exit(0);
}
