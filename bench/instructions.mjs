/**
 * Instructions per request of an HTTP bench server's main thread, counted by valgrind's callgrind: a
 * repeatable measure (within about 1% run to run) on a machine whose req/s ratios move by ±0.1 between runs.
 *
 *   node bench/instructions.mjs [--group fastify|express] [--variants bare,amas,...] [--requests 4000] [--warmup 6000]
 *
 * Each variant's server (bench/servers/<group>.mjs) runs under callgrind with counting off; autocannon (in
 * this process, 10 connections) sends the warm-up requests, counting is switched on for the measured ones
 * and off again, and the main thread's count is divided by the requests. Only the main thread is counted:
 * V8's helper threads (compiler, concurrent GC) run on other cores and, under valgrind, keep compiling long
 * after a normal run would have finished. Instructions are not time (cache misses, syscalls and the kernel's
 * share are not in them): read this next to `run.mjs`'s req/s ratios, not instead of them.
 * About 45 s a variant. Needs valgrind (Debian package `valgrind`; present on these machines).
 */
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';

const GROUPS = {
  fastify: ['bare', 'amas', 'fastify-rate-limit', 'bare-headers'],
  express: ['bare', 'amas', 'express-rate-limit', 'bare-headers'],
};

function parseCli(argv) {
  const cli = { group: 'fastify', variants: undefined, requests: 4000, warmup: 6000 };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=');
    const value = inline ?? argv[++i];
    if (flag === '--group') cli.group = value;
    else if (flag === '--variants') cli.variants = value?.split(',').filter(Boolean);
    else if (flag === '--requests') cli.requests = Number(value);
    else if (flag === '--warmup') cli.warmup = Number(value);
    else usage(`unknown argument "${argv[i]}"`);
  }
  if (!GROUPS[cli.group]) usage(`--group must be one of ${Object.keys(GROUPS).join(', ')}`);
  cli.variants ??= GROUPS[cli.group];
  if (cli.variants.length === 0) usage('--variants needs at least one variant');
  for (const name of ['requests', 'warmup']) {
    if (!Number.isInteger(cli[name]) || cli[name] < 1) usage(`--${name} must be a positive integer`);
  }
  return cli;
}

function usage(problem) {
  console.error(`${problem}\nusage: node bench/instructions.mjs [--group fastify|express] [--variants a,b] [--requests n] [--warmup n]`);
  process.exit(2);
}

function hasValgrind() {
  try {
    execFileSync('valgrind', ['--version'], { stdio: 'ignore' });
    execFileSync('callgrind_control', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function send(port, amount) {
  const result = await autocannon({ url: `http://127.0.0.1:${port}/hello`, connections: 10, amount });
  if (result.non2xx > 0 || result.errors > 0) throw new Error(`non-2xx or errors from the server: ${result.non2xx} / ${result.errors}`);
  return result.requests.total;
}

/** Main-thread instructions per request of one server variant. */
async function measure(script, variant, { requests, warmup }) {
  const dir = mkdtempSync(join(tmpdir(), 'amas-callgrind-'));
  const child = spawn(
    'valgrind',
    ['--tool=callgrind', '--separate-threads=yes', '--instr-atstart=no', `--callgrind-out-file=${join(dir, 'cg.out')}`, process.execPath, script, variant, '0'],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  try {
    const port = await new Promise((resolve, reject) => {
      createInterface({ input: child.stdout }).once('line', (line) => resolve(JSON.parse(line).port));
      child.once('exit', (code) => reject(new Error(`${variant} exited with ${code} before it was ready\n${stderr.slice(-2000)}`)));
    });
    await send(port, warmup);
    const control = (...args) => execFileSync('callgrind_control', [...args, String(child.pid)], { stdio: 'ignore' });
    control('-i', 'on');
    const sent = await send(port, requests);
    control('-i', 'off');
    control('-d');
    // The dump written by -d is cg.out.<n>-<thread>; thread 01 is the main thread.
    const dump = readdirSync(dir).find((f) => /^cg\.out\.\d+-01$/.test(f));
    if (!dump) throw new Error(`no callgrind dump for ${variant} in ${dir}`);
    const totals = /^totals:\s+(\d+)/m.exec(readFileSync(join(dir, dump), 'utf8'));
    if (!totals) throw new Error(`no totals line in ${dump}`);
    return Number(totals[1]) / sent;
  } finally {
    child.kill('SIGTERM');
    await new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', resolve)));
    rmSync(dir, { recursive: true, force: true });
  }
}

const cli = parseCli(process.argv.slice(2));
if (!hasValgrind()) {
  console.error('valgrind and callgrind_control are needed (Debian: apt-get install valgrind)');
  process.exit(2);
}
const script = fileURLToPath(new URL(`servers/${cli.group}.mjs`, import.meta.url));
const rows = [];
for (const variant of cli.variants) {
  process.stderr.write(`${cli.group}/${variant}: ${cli.warmup} warm-up + ${cli.requests} counted requests under callgrind...\n`);
  rows.push({ variant, perRequest: await measure(script, variant, cli) });
}
const base = rows.find((r) => r.variant === 'bare');
console.log(`\n| ${cli.group} variant | main-thread instructions / request | bare / variant | added to bare |`);
console.log('|---|---:|---:|---:|');
for (const r of rows) {
  const ratio = base ? (base.perRequest / r.perRequest).toFixed(2) : 'n/a';
  const added = base ? Math.round(r.perRequest - base.perRequest).toLocaleString('en-US') : 'n/a';
  console.log(`| ${r.variant} | ${Math.round(r.perRequest).toLocaleString('en-US')} | ${ratio} | ${added} |`);
}
