/**
 * The shared breaker and the shared single-flight on a 3-node Redis Cluster the test starts: their scripts'
 * keys share one hash tag, their Pub/Sub works through the cluster, and they behave as on a single node.
 * Two engines with their own cluster connections stand for two replicas.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAmas, silentLogger, type Amas } from '@amas/core';
import { redisCommand, startRedisCluster, stopAllRedis, waitUntil, type RedisClusterHandle } from './support/redis-servers.js';

let cluster: RedisClusterHandle;
const engines: Amas[] = [];
const prefix = `test:${Math.random().toString(36).slice(2, 8)}:`;

async function replica(): Promise<Amas> {
  const amas = createAmas({
    redis: { cluster: { nodes: cluster.nodes }, prefix },
    logger: silentLogger,
    breakers: { upstream: { shared: true, failureThreshold: 1, recoveryTimeoutMs: 200 } },
  });
  amas.breaker('upstream');
  await amas.ready(10_000);
  engines.push(amas);
  return amas;
}

beforeAll(async () => {
  cluster = await startRedisCluster();
});

afterAll(async () => {
  for (const amas of engines) await amas.close();
  await cluster?.stop();
  await stopAllRedis();
});

describe('shared state on a Redis Cluster', () => {
  it('a breaker opened on one replica opens the other; after recovery one probe runs for both, and closes both', async () => {
    const a = await replica();
    const b = await replica();
    const seenByB: Array<{ to: string; origin?: string }> = [];
    b.breaker('upstream').on('stateChange', (e) => seenByB.push({ to: e.to, origin: e.origin }));
    await a.breaker('upstream').execute(async () => {
      throw new Error('down');
    }).catch(() => undefined);
    // Events, not a poll of the state: with a short recovery time B may already be half-open when polled.
    await waitUntil('B to adopt the open breaker', async () => seenByB.some((e) => e.to === 'open' && e.origin !== undefined), { timeoutMs: 5000 });

    await waitUntil('half-open on both', async () => a.breaker('upstream').getState() === 'half-open' && b.breaker('upstream').getState() === 'half-open', { timeoutMs: 5000 });
    let upstreamCalls = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const calls = [a, b].flatMap((r) =>
      Array.from({ length: 5 }, () => r.breaker('upstream').execute(async () => {
        upstreamCalls++;
        await gate;
        return 'ok';
      }).then((v) => v, (e: unknown) => (e as { code?: string }).code)),
    );
    await waitUntil('one probe in flight', async () => upstreamCalls === 1, { timeoutMs: 5000 });
    release();
    const outcomes = await Promise.all(calls);
    expect(upstreamCalls).toBe(1);
    expect(outcomes.filter((o) => o === 'ok')).toHaveLength(1);
    expect(outcomes.filter((o) => o === 'AMAS_BREAKER_OPEN')).toHaveLength(9);
    await waitUntil('both closed', async () => a.breaker('upstream').getState() === 'closed' && b.breaker('upstream').getState() === 'closed', { timeoutMs: 5000 });
  });

  it('identical calls on two replicas run once', async () => {
    const [a, b] = engines;
    const fa = a!.singleFlight({ shared: true });
    const fb = b!.singleFlight({ shared: true });
    let runs = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const work = async () => {
      runs++;
      await gate;
      return { answer: 42, body: Buffer.from('bytes') };
    };
    const first = fa.do('same-prompt', work);
    await waitUntil('the leader to run', async () => runs === 1, { timeoutMs: 5000 });
    const second = fb.do('same-prompt', work);
    // Release the leader only once the follower waits on the cluster: it subscribes to the key's channel
    // after finding the lease held (Pub/Sub channels are per node, so ask every node).
    await waitUntil('the follower to wait', async () => {
      const perNode = await Promise.all(cluster.nodes.map((n) => redisCommand(n.port, 'PUBSUB', 'CHANNELS', `${prefix}df:*`)));
      return perNode.some((channels) => Array.isArray(channels) && channels.length > 0);
    }, { timeoutMs: 5000 });
    release();
    const [x, y] = await Promise.all([first, second]);
    expect(runs).toBe(1);
    expect(x).toEqual(y);
    expect(Buffer.isBuffer((y as { body: Buffer }).body)).toBe(true);
  });
});
