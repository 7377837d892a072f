import { it } from 'vitest';
import { Redis } from 'ioredis';
import { RedisStore } from '../../src/stores/redis-store.js';
import { createStoreLimiter } from '../../src/policies/store-limiter.js';
import { silentLogger } from '../../src/logger.js';

const KEYS = Array.from({ length: Number(process.env.NKEYS ?? 1024) }, (_, i) => `user:${i}`);
const MASK = KEYS.length - 1;
const LIMIT = 1_000_000_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function measure(op: (i: number) => Promise<unknown>, ms = 2000, warm = 700): Promise<number> {
  let running = true, done = 0, seq = 0;
  const workers = Array.from({ length: 64 }, async () => { while (running) { await op(seq++); done++; } });
  await sleep(warm);
  const d0 = done; const t0 = performance.now();
  await sleep(ms);
  const d1 = done; const t1 = performance.now();
  running = false; await Promise.all(workers);
  return ((d1 - d0) / (t1 - t0)) * 1000;
}

it('bench', async () => {
  const prefix = `test:bench:${Math.random().toString(36).slice(2, 8)}:`;
  const client = new Redis('redis://127.0.0.1:6379', { enableOfflineQueue: false, enableAutoPipelining: true, maxRetriesPerRequest: 0 });
  await new Promise((r) => client.once('ready', r));
  const sha = (await client.script('LOAD', 'return 1')) as string;
  const store = new RedisStore({ url: 'redis://127.0.0.1:6379', prefix, logger: silentLogger });
  await store.ready();
  const limiter = createStoreLimiter({ windows: [{ limit: LIMIT, window: '1m' }, { limit: LIMIT, window: '1h' }, { limit: LIMIT, window: '1d' }] }, { store, name: 'api' });
  const anyL = limiter as any;
  const rawSha = (await client.script('LOAD', anyL.scripts.check.lua)) as string;
  const args = [...anyL.args(1), ''];
  const rawKeys = KEYS.map((k) => store.key(anyL.keyTag + k));
  const variants: Record<string, (i: number) => Promise<unknown>> = {
    baseline: (i) => client.evalsha(sha, 1, prefix + KEYS[i & MASK]),
    script: (i) => client.evalsha(rawSha, 1, rawKeys[i & MASK], ...args),
    amas: (i) => limiter.check(KEYS[i & MASK]!),
  };
  const results: Record<string, number[]> = { baseline: [], script: [], amas: [] };
  const info0 = await client.info('commandstats');
  for (let round = 0; round < Number(process.env.ROUNDS ?? 4); round++) {
    const order = Object.keys(variants); for (let k = 0; k < round % 3; k++) order.push(order.shift()!);
    for (const v of order) results[v]!.push(await measure(variants[v]!));
  }
  const med = (a: number[]) => a.slice().sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  for (const [v, r] of Object.entries(results)) console.log(v, r.map((x) => Math.round(x)).join(' '), 'median', Math.round(med(r)), 'ratio', (med(r) / med(results.baseline!)).toFixed(3));
  const stats = await client.info('commandstats');
  console.log(stats.split('\n').filter((l) => /evalsha|hget|hset|pexpire|hmget/.test(l)).join('\n'));
  console.log(JSON.stringify(limiter.stats()));
  const keys = await client.keys(prefix + '*'); if (keys.length) await client.del(...keys);
  limiter.close(); await store.close(); client.disconnect();
}, 120_000);
