/**
 * Limits shared by real replicas: 4 Node processes running an Express app, one Redis (single node, then a
 * 3-node Cluster the test starts). The whole stack is real: HTTP, the Express adapter, the pipeline, the
 * store-backed limiter and its Lua script.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { startRedisCluster, startRedisServer, stopAllRedis, waitUntil } from './support/redis-servers.js';
import { startReplicas, stopAllReplicas, type ReplicaGroup } from './support/replicas.js';

const FIXTURE = new URL('./fixtures/limit-replica.mjs', import.meta.url);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = () => `test:${Math.random().toString(36).slice(2, 8)}:`;
const agent = new Agent({ connections: 256, pipelining: 1 });

afterAll(async () => {
  await stopAllReplicas();
  await stopAllRedis();
  await agent.close();
});

async function ports(replicas: ReplicaGroup): Promise<number[]> {
  return Promise.all(replicas.map((r) => r.request<{ port: number }>({ type: 'listen' }).then((x) => x.port)));
}

/** Fires `perReplica` concurrent GETs at every replica at once; returns the status codes. */
async function burst(portsList: number[], perReplica: number): Promise<number[]> {
  const all = portsList.flatMap((port) =>
    Array.from({ length: perReplica }, () =>
      request(`http://127.0.0.1:${port}/work`, { dispatcher: agent }).then(async (res) => {
        await res.body.dump();
        return res.statusCode;
      }),
    ),
  );
  return Promise.all(all);
}

async function exactness(redis: Record<string, unknown>): Promise<void> {
  const replicas = await startReplicas(4, FIXTURE, {
    // A generous deadline: this test is about exactness while Redis answers, on a machine that may be busy;
    // what happens when it does not answer is the next test's subject.
    AMAS_REDIS: JSON.stringify({ commandTimeoutMs: 5000, ...redis }),
    AMAS_LIMIT: JSON.stringify({ limit: 100, window: '1m' }),
    AMAS_REPLICAS: '4',
  });
  try {
    const statuses = await burst(await ports(replicas), 200);
    const stats = await Promise.all(replicas.map((r) => r.request<{ localDecisions: number; storeDecisions: number; warnings: string[] }>({ type: 'stats' })));
    expect(stats.flatMap((s) => s.warnings)).toEqual([]);
    expect(statuses).toHaveLength(800);
    expect(statuses.filter((s) => s === 200)).toHaveLength(100);
    expect(statuses.filter((s) => s === 429)).toHaveLength(700);
    // Every decision was made on Redis: no replica fell back to its local share.
    for (const s of stats) {
      expect(s.localDecisions).toBe(0);
      expect(s.storeDecisions).toBe(200);
    }
  } finally {
    await replicas.stopAll();
  }
}

describe('a limit shared by 4 replicas', () => {
  it('admits exactly 100 of 4 × 200 concurrent requests against 100/minute on one Redis', async () => {
    await exactness({ url: REDIS_URL, prefix: prefix() });
  });

  it('admits exactly 100 of 4 × 200 on a 3-node Redis Cluster', async () => {
    const cluster = await startRedisCluster();
    try {
      await exactness({ cluster: { nodes: cluster.nodes }, prefix: prefix() });
    } finally {
      await cluster.stop();
    }
  });
});

describe('when Redis dies mid-load', () => {
  it('no request fails because of AMAS; decisions fall back locally, then return to Redis within 5 s of its restart', async () => {
    const server = await startRedisServer();
    const replicas = await startReplicas(2, FIXTURE, {
      AMAS_REDIS: JSON.stringify({ url: server.url, prefix: prefix(), commandTimeoutMs: 200 }),
      // Large enough that nothing is limited: every non-200 would be a failure AMAS caused.
      AMAS_LIMIT: JSON.stringify({ limit: 1_000_000, window: '1m' }),
      AMAS_REPLICAS: '2',
    });
    const portList = await ports(replicas);
    const statuses = new Map<number | string, number>();
    let running = true;
    const load = (async () => {
      let i = 0;
      while (running) {
        const port = portList[i++ % portList.length]!;
        const batch = Array.from({ length: 8 }, () =>
          request(`http://127.0.0.1:${port}/work`, { dispatcher: agent })
            .then(async (res) => {
              await res.body.dump();
              return res.statusCode as number | string;
            })
            .catch((e: unknown) => `error: ${(e as Error).message}`),
        );
        for (const s of await Promise.all(batch)) statuses.set(s, (statuses.get(s) ?? 0) + 1);
      }
    })();
    const stats = () => Promise.all(replicas.map((r) => r.request<{ onStore: boolean; localDecisions: number; storeDecisions: number; warnings: string[] }>({ type: 'stats' })));
    try {
      await waitUntil('load on Redis', async () => (await stats()).every((s) => s.storeDecisions > 50), { timeoutMs: 10_000 });
      await server.kill('SIGKILL');
      await waitUntil('every replica to decide locally', async () => (await stats()).every((s) => !s.onStore && s.localDecisions > 20), { timeoutMs: 10_000 });
      const local = await stats();
      await server.restart();
      // The bound: decisions back on Redis within 5 s of Redis answering again.
      await waitUntil('decisions back on Redis', async () => {
        const now = await stats();
        return now.every((s, i) => s.onStore && s.storeDecisions > local[i]!.storeDecisions);
      }, { timeoutMs: 5000, intervalMs: 50 });
      running = false;
      await load;
      const final = await stats();
      for (const s of final) {
        // One line when falling back, one when back, per outage.
        expect(s.warnings.filter((w) => /store is unavailable/i.test(w))).toHaveLength(1);
        expect(s.warnings.filter((w) => /answers again; deciding on it/i.test(w)), s.warnings.join('\n')).toHaveLength(1);
      }
    } finally {
      running = false;
      await load;
      await replicas.stopAll();
      await server.stop();
    }
    expect([...statuses.keys()]).toEqual([200]);
    expect(statuses.get(200)).toBeGreaterThan(100);
  });
});
