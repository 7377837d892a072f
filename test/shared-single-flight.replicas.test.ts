/**
 * Dedup across real replicas: 3 Node processes, each with its own RedisStore on one Redis, call the same key
 * at once against a counting upstream (a real HTTP server in this process that answers only when the test
 * lets it). Then the replica running the call is SIGKILLed mid-call, and one survivor must take over.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { redisCommand, waitUntil, type RedisReply } from './support/redis-servers.js';
import { startReplicas, stopAllReplicas, type ReplicaGroup } from './support/replicas.js';

const FIXTURE = new URL('./fixtures/dedup-replica.mjs', import.meta.url);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const REDIS_PORT = Number(new URL(REDIS_URL).port || 6379);

interface Hit {
  pid: number;
  res: ServerResponse;
}

/** The "AI provider": counts hits, and answers each one only when the test says so (or at once after `answerFromNow`). */
class Upstream {
  readonly hits: Hit[] = [];
  private server: Server | undefined;
  private autoAnswer = false;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const hit = { pid: Number(req.headers['x-replica-pid']), res };
      this.hits.push(hit);
      if (this.autoAnswer) this.answer(hit);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/v1/chat`;
  }

  answer(hit: Hit): void {
    const n = this.hits.indexOf(hit) + 1;
    hit.res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ completion: `answer #${n}`, hit: n }));
  }

  /** Hits from now on are answered at once; earlier ones stay pending. */
  answerFromNow(): void {
    this.autoAnswer = true;
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server!.close(resolve));
  }
}

type CallResult = { value: { body: { completion: string; hit: number }; ranOn: number }; pid: number };
type Stats = { leaders: number; localFollowers: number; remoteFollowers: number; takeovers: number; fallbacks: number; warnings: string[] };

const prefix = `test:dedup-replicas:${Math.random().toString(36).slice(2, 8)}:`;
const channelOf = (key: string) => `${prefix}df:${createHash('sha1').update(key).digest('hex')}`;

/** How many replicas are waiting on `key`: each subscribes to the key's channel while it waits. */
async function waitersOn(key: string): Promise<number> {
  const reply = (await redisCommand(REDIS_PORT, 'PUBSUB', 'NUMSUB', channelOf(key))) as RedisReply[];
  return Number(reply[1]);
}

const sum = (stats: Stats[], field: keyof Omit<Stats, 'warnings'>) => stats.reduce((n, s) => n + s[field], 0);

let upstream: Upstream;
let replicas: ReplicaGroup | undefined;

beforeAll(async () => {
  upstream = new Upstream();
  await upstream.start();
});

afterEach(async () => {
  await replicas?.stopAll();
  replicas = undefined;
});

afterAll(async () => {
  await stopAllReplicas();
  await upstream.stop();
  // Every key expires within seconds; remove them now so the shared Redis stays tidy.
  const keys = (await redisCommand(REDIS_PORT, 'KEYS', `${prefix}*`)) as string[];
  if (keys.length) await redisCommand(REDIS_PORT, 'DEL', ...keys);
});

function start(dedup: Record<string, unknown>): Promise<ReplicaGroup> {
  return startReplicas(3, FIXTURE, { AMAS_REDIS: JSON.stringify({ url: REDIS_URL, prefix }), AMAS_DEDUP: JSON.stringify(dedup) });
}

describe('SharedSingleFlight across 3 replica processes', () => {
  it('calls the upstream once for a key called concurrently on 3 replicas, and all 3 get the answer', async () => {
    replicas = await start({ leaseMs: 2_000, pollIntervalMs: 200 });
    const key = 'chat:gpt:what is a lease?';
    const calls = replicas.map((r) => r.request<CallResult>({ type: 'call', key, url: upstream.url }));
    await waitUntil('the first replica to reach the upstream', async () => upstream.hits.length === 1);
    // Answer only once the other two wait on this call, so the overlap is certain rather than likely.
    await waitUntil('two replicas waiting on the key', async () => (await waitersOn(key)) === 2);
    const hit = upstream.hits[0]!;
    upstream.answer(hit);

    const results = await Promise.all(calls);
    expect(upstream.hits).toHaveLength(1);
    expect(new Set(results.map((r) => r.pid))).toEqual(new Set(replicas.map((r) => r.pid)));
    for (const r of results) expect(r.value).toEqual({ body: { completion: 'answer #1', hit: 1 }, ranOn: hit.pid });

    const stats = await Promise.all(replicas.map((r) => r.request<Stats>({ type: 'stats' })));
    expect(sum(stats, 'leaders')).toBe(1);
    expect(sum(stats, 'remoteFollowers')).toBe(2);
    expect(sum(stats, 'fallbacks')).toBe(0);
    expect(stats.flatMap((s) => s.warnings)).toEqual([]);
  });

  it('when the replica running the call is SIGKILLed, its lease lapses and exactly one survivor calls the upstream again', async () => {
    replicas = await start({ leaseMs: 500, pollIntervalMs: 5_000 });
    const key = 'chat:gpt:who takes over?';
    const calls = replicas.map((r) =>
      r.request<CallResult>({ type: 'call', key, url: upstream.url }).then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      ),
    );
    const first = upstream.hits.length;
    await waitUntil('the first replica to reach the upstream', async () => upstream.hits.length === first + 1);
    await waitUntil('two replicas waiting on the key', async () => (await waitersOn(key)) === 2);
    const holderPid = upstream.hits[first]!.pid;
    const holder = replicas.find((r) => r.pid === holderPid)!;
    const survivors = replicas.filter((r) => r !== holder);
    expect(survivors).toHaveLength(2);

    // The holder's upstream call never answers; the next one (the takeover's) is answered at once.
    upstream.answerFromNow();
    const exit = await holder.kill('SIGKILL');
    expect(exit.signal).toBe('SIGKILL');

    const outcomes = await Promise.all(calls);
    const byPid = new Map(replicas.map((r, i) => [r.pid, outcomes[i]!]));
    expect((byPid.get(holderPid) as { error?: Error }).error?.message).toMatch(/SIGKILL/);
    const taker = upstream.hits[first + 1]!;
    expect(upstream.hits).toHaveLength(first + 2);
    expect(survivors.map((r) => r.pid)).toContain(taker.pid);
    for (const survivor of survivors) {
      const { value } = byPid.get(survivor.pid) as { value: CallResult };
      expect(value.value).toEqual({ body: { completion: `answer #${first + 2}`, hit: first + 2 }, ranOn: taker.pid });
    }

    const stats = await Promise.all(survivors.map((r) => r.request<Stats>({ type: 'stats' })));
    expect(sum(stats, 'takeovers')).toBe(1);
    expect(sum(stats, 'leaders')).toBe(1);
    expect(sum(stats, 'remoteFollowers')).toBe(1);
    expect(sum(stats, 'fallbacks')).toBe(0);
    // Still exactly two upstream calls once everyone has answered.
    expect(upstream.hits).toHaveLength(first + 2);
  });
});
