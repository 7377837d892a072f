/**
 * A circuit breaker shared by real replicas: separate Node processes (test/fixtures/shared-breaker-replica.mjs,
 * the built @amas/core), each with its own RedisStore on one Redis, in front of a real HTTP upstream on
 * loopback that counts what reaches it. Every wait is "until this holds, or fail after a deadline"; nothing
 * asserts on elapsed time.
 */
import { afterAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { redisCommand, waitUntil } from './support/redis-servers.js';
import { startReplicas, stopAllReplicas, type ReplicaHandle } from './support/replicas.js';

const FIXTURE = new URL('./fixtures/shared-breaker-replica.mjs', import.meta.url);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const run = Math.random().toString(36).slice(2, 8);

afterAll(async () => {
  await stopAllReplicas();
});

interface StateReply {
  state: string;
  changes: Array<{ from: string; to: string; reason: string; origin?: string }>;
  epoch: number;
  warnings: string[];
}

/** The upstream: /fail answers 500; /probe is counted and held until release(); anything else answers 200. */
async function startUpstream() {
  const hits = { fail: 0, probe: 0, other: 0 };
  const held: http.ServerResponse[] = [];
  const server = http.createServer((req, res) => {
    if (req.url === '/fail') {
      hits.fail++;
      res.writeHead(500).end('down');
    } else if (req.url === '/probe') {
      hits.probe++;
      held.push(res);
    } else {
      hits.other++;
      res.end('ok');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    hits,
    release() {
      for (const res of held.splice(0)) res.end('recovered');
    },
    async close() {
      for (const res of held.splice(0)) res.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

const state = (r: ReplicaHandle) => r.request<StateReply>({ type: 'state' });

describe('a circuit breaker shared by replicas through Redis', () => {
  it('opens everywhere when one replica opens it, starts open in a new replica, and lets one probe through for the whole cluster', async () => {
    const upstream = await startUpstream();
    const env = (id: string) => ({
      AMAS_REDIS_URL: REDIS_URL,
      AMAS_PREFIX: `test:sbr:${run}:`,
      AMAS_BREAKER: `upstream-${run}`,
      AMAS_UPSTREAM: upstream.url,
      AMAS_REPLICA_ID: id,
    });
    // Three replicas, started one by one so each gets its own id.
    const replicas: ReplicaHandle[] = [];
    const groups: Array<{ stopAll(): Promise<void> }> = [];
    const start = async (id: string) => {
      const group = await startReplicas(1, FIXTURE, env(id));
      groups.push(group);
      replicas.push(group[0]!);
      return group[0]!;
    };
    try {
      const [a, b, c] = await Promise.all([start('A'), start('B'), start('C')]);

      // Failing calls in A open it...
      expect(await a!.request({ type: 'fail', times: 3 })).toBe('open');
      expect(upstream.hits.fail).toBe(3);

      // ...and B and C hear it.
      for (const r of [b!, c!]) {
        const seen = await waitUntil(`replica ${r.index} to report open`, async () => {
          const s = await state(r);
          return s.state === 'open' ? s : undefined;
        });
        expect(seen.changes).toEqual([{ name: `upstream-${run}`, from: 'closed', to: 'open', reason: 'consecutiveFailures', origin: 'A' }]);
      }

      // A replica started now reads the shared state before it serves: it is open from its first answer.
      const d = await start('D');
      const first = await state(d);
      expect(first.state).toBe('open');
      expect(first.changes).toEqual([{ name: `upstream-${run}`, from: 'closed', to: 'open', reason: 'consecutiveFailures', origin: 'A' }]);

      // Past the recovery timeout (60 s, moved on every replica's clock), every replica fires 20 concurrent
      // calls at once: with halfOpenMaxProbes 1 the upstream gets exactly one probe, not one per replica.
      await Promise.all(replicas.map((r) => r.request({ type: 'advance', ms: 61_000 })));
      const bursts = await Promise.all(
        replicas.map((r) => r.request<{ started: number; rejected: Array<{ state: string; retryAfterMs: number }> }>({ type: 'burst', n: 20, path: '/probe' })),
      );
      expect(bursts.reduce((sum, x) => sum + x.started, 0)).toBe(1);
      const rejected = bursts.flatMap((x) => x.rejected);
      expect(rejected).toHaveLength(79);
      for (const r of rejected) {
        expect(r.state).toBe('half-open');
        expect(r.retryAfterMs).toBeGreaterThan(0);
      }
      // Every other call was turned away before the probe's request could even arrive, so no second one can follow.
      await waitUntil('the probe to reach the upstream', async () => upstream.hits.probe >= 1);
      expect(upstream.hits.probe).toBe(1);

      // The probe succeeds: it closes the breaker in every replica.
      upstream.release();
      for (const r of replicas) {
        await waitUntil(`replica ${r.index} to report closed`, async () => (await state(r)).state === 'closed');
      }
      const prober = replicas[bursts.findIndex((x) => x.started === 1)]!;
      expect(await prober.request({ type: 'results' })).toEqual({ ok: 1, failed: 0, inFlight: 0 });
      expect(upstream.hits.probe).toBe(1);

      // Closed everywhere: calls reach the upstream again, from a replica that never probed.
      const other = replicas.find((r) => r !== prober)!;
      expect(await other.request({ type: 'call', path: '/ok' })).toBe('ok');
      expect(upstream.hits.other).toBe(1);
      for (const r of replicas) expect((await state(r)).warnings).toEqual([]);
    } finally {
      await Promise.all(groups.map((g) => g.stopAll()));
      await upstream.close();
      // Leave nothing behind on the shared Redis.
      const key = (part: string) => `test:sbr:${run}:{breaker:upstream-${run}}:${part}`;
      const port = Number(new URL(REDIS_URL).port || 6379);
      await redisCommand(port, 'DEL', key('state'), key('probes')).catch(() => undefined);
    }
  });
});
