/**
 * The tiered cache (`amas.cache`) across real replicas: 2 Node processes, each an AMAS engine with its own
 * Redis connections on one Redis (a key prefix of its own per test). Proves the three things a multi-replica
 * cache promises: a stampede on one key runs the factory once in the whole fleet; a write, delete or
 * namespace clear on one replica drops the stale copy from the other's L1 (and only that); and a replica
 * that dies holding the getOrSet lease does not block the key: another takes over once the lease lapses.
 * The last test pins down a start-up race: a replica whose command connection comes up after its Pub/Sub
 * connection must still subscribe to invalidations (the same race makes the subscription check at the start
 * of the second test fail now and then while it is unfixed).
 */
import { createHash } from 'node:crypto';
import net, { type AddressInfo } from 'node:net';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { redisCommand, waitUntil, type RedisReply } from './support/redis-servers.js';
import { startReplicas, stopAllReplicas, type ReplicaGroup, type ReplicaHandle } from './support/replicas.js';

const FIXTURE = new URL('./fixtures/cache-replica.mjs', import.meta.url);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const REDIS_PORT = Number(new URL(REDIS_URL).port || 6379);
const RUN = Math.random().toString(36).slice(2, 8);

interface LevelStats {
  hits: number;
  misses: number;
  operations: number;
}
interface Stats {
  levels: { l1: LevelStats; l2: LevelStats };
  factoryRuns: number;
  coalesced: number;
  invalidations: { sent: number; received: number };
  l1: { entries: number; bytes: number; evictions: number };
}
interface Produced {
  by: number;
  run: number;
}
interface Burst {
  values: Produced[];
  errors: string[];
  factoryRuns: number;
  stats: Stats;
  warnings: string[];
}
interface Read {
  found: boolean;
  value: unknown;
  stats: Stats;
}

const groups: ReplicaGroup[] = [];
const prefixes: string[] = [];
const cleanups: Array<() => Promise<void>> = [];

function newPrefix(): string {
  const prefix = `test:cache-replicas:${RUN}:${prefixes.length}:`;
  prefixes.push(prefix);
  return prefix;
}

async function start(cache: Record<string, unknown> = {}, opts: { count?: number; url?: string; prefix?: string } = {}): Promise<ReplicaGroup> {
  const prefix = opts.prefix ?? newPrefix();
  const group = await startReplicas(opts.count ?? 2, FIXTURE, { AMAS_REDIS: JSON.stringify({ url: opts.url ?? REDIS_URL, prefix }), AMAS_CACHE: JSON.stringify(cache) });
  groups.push(group);
  return group;
}

/** The warning a cache logs when its invalidation subscription failed at start-up (see the last test). */
const SUBSCRIBE_FAILED = /could not subscribe to invalidations/;
/** Warnings other than that one: the first three tests are about other things. */
const otherThanSubscribe = (warnings: string[]) => warnings.filter((w) => !SUBSCRIBE_FAILED.test(w));

/** Replicas subscribed to the invalidation channel of the cache named 'amas' under `prefix`. */
async function invalidationSubscribers(prefix: string): Promise<number> {
  return Number(((await redisCommand(REDIS_PORT, 'PUBSUB', 'NUMSUB', `${prefix}cache:amas:invalidate`)) as RedisReply[])[1]);
}

/** SIGTERM: the replica closes its engine, then exits 0 (a close() that hangs fails the test on its timeout). */
async function stopCleanly(group: ReplicaHandle[]): Promise<void> {
  const exits = await Promise.all(group.map((r) => r.kill('SIGTERM')));
  for (const exit of exits) expect(exit).toEqual({ code: 0, signal: null });
}

async function dropKeys(prefix: string): Promise<void> {
  const keys = (await redisCommand(REDIS_PORT, 'KEYS', `${prefix}*`)) as string[];
  if (keys.length) await redisCommand(REDIS_PORT, 'DEL', ...keys);
}

afterEach(async () => {
  await Promise.all(groups.splice(0).map((g) => g.stopAll()));
  for (const cleanup of cleanups.splice(0)) await cleanup();
  await dropKeys(prefixes[prefixes.length - 1]!);
});

afterAll(async () => {
  await stopAllReplicas();
  for (const prefix of prefixes) await dropKeys(prefix);
});

/** Reads `key` on `replica` until `accept` says yes (1 s at most); the accepted read is returned. */
async function readUntil(replica: ReplicaHandle, what: string, req: { key: string; namespace?: string }, accept: (r: Read) => boolean): Promise<Read> {
  try {
    return await waitUntil(
      what,
      async () => {
        const read = await replica.request<Read>({ type: 'get', ...req });
        return accept(read) ? read : undefined;
      },
      { timeoutMs: 1_000, intervalMs: 5 },
    );
  } catch (error) {
    const { warnings } = await replica.request<{ warnings: string[] }>({ type: 'stats' });
    throw new Error(`${(error as Error).message}; the replica's warnings: ${JSON.stringify(warnings)}`);
  }
}

/**
 * Waits until `replica` has received `count` invalidations in all. A read on it that overlaps the arrival of
 * one does not fill its L1 (by design: it may have read the old value), so tests that count L1 hits let the
 * message land first. (`set` resolves before its invalidation is published: there is no waiting on it.)
 */
function invalidationsReceived(replica: ReplicaHandle, count: number): Promise<unknown> {
  return waitUntil(
    `the replica to have received ${count} invalidation(s)`,
    async () => (await replica.request<{ stats: Stats }>({ type: 'stats' })).stats.invalidations.received >= count,
    { timeoutMs: 1_000, intervalMs: 5 },
  );
}

describe('TieredCache across 2 replica processes on one Redis', () => {
  it('a stampede of 2 x 50 concurrent getOrSet on one key runs the factory once in total; all 100 callers get its value', async () => {
    const [a, b] = await start();
    await Promise.all([a!, b!].map((r) => r.request({ type: 'arm', key: 'hot', n: 50, sleepMs: 50 })));
    // Both release their 50 calls at the same wall-clock instant (one clock on one machine).
    const at = Date.now() + 50;
    const [ra, rb] = await Promise.all([a!, b!].map((r) => r.request<Burst>({ type: 'go', at })));

    expect(ra!.errors).toEqual([]);
    expect(rb!.errors).toEqual([]);
    expect(ra!.factoryRuns + rb!.factoryRuns).toBe(1);
    expect(ra!.stats.factoryRuns + rb!.stats.factoryRuns).toBe(1);
    const values = [...ra!.values, ...rb!.values];
    expect(values).toHaveLength(100);
    const leader = ra!.factoryRuns === 1 ? a! : b!;
    for (const v of values) expect(v).toEqual({ by: leader.pid, run: 1 });
    // Every caller but the leader joined the run in flight (here, or on the other replica through the
    // lease): none of them came late and merely found the value in L2.
    expect(ra!.stats.coalesced + rb!.stats.coalesced).toBe(99);
    expect(otherThanSubscribe([...ra!.warnings, ...rb!.warnings])).toEqual([]);

    await stopCleanly([a!, b!]);
  });

  it('a set, a delete and a namespace clear on one replica reach the other replica’s L1', async () => {
    const prefix = newPrefix();
    const [a, b] = await start({}, { prefix });
    // cache.ready() resolved in both (the fixture waits for it): both listen for invalidations.
    expect(await invalidationSubscribers(prefix), 'replicas subscribed to invalidations once cache.ready() resolved').toBe(2);

    // A writes v1; B reads it from L2 and keeps it in its L1 (the second read is an L1 hit, no L2 call).
    await a!.request({ type: 'set', key: 'k', value: 'v1' });
    await invalidationsReceived(b!, 1);
    const first = await b!.request<Read>({ type: 'get', key: 'k' });
    expect(first).toMatchObject({ found: true, value: 'v1' });
    expect(first.stats.levels.l2.hits).toBe(1);
    const second = await b!.request<Read>({ type: 'get', key: 'k' });
    expect(second).toMatchObject({ found: true, value: 'v1' });
    expect(second.stats.levels.l1.hits).toBe(first.stats.levels.l1.hits + 1);
    expect(second.stats.levels.l2.operations).toBe(first.stats.levels.l2.operations);

    // A writes v2: B's L1 copy (fresh for 5 more minutes by its TTL) is dropped, and B reads v2.
    await a!.request({ type: 'set', key: 'k', value: 'v2' });
    const updated = await readUntil(b!, 'B to read v2', { key: 'k' }, (r) => r.value === 'v2');
    expect(updated.found).toBe(true);

    // A deletes k: B's L1 copy goes too.
    await a!.request({ type: 'delete', key: 'k' });
    await readUntil(b!, 'B to read k as absent', { key: 'k' }, (r) => !r.found);
    const afterDelete = (await b!.request<{ stats: Stats }>({ type: 'stats' })).stats.invalidations.received;

    // Two namespaces, both in B's L1.
    await a!.request({ type: 'set', key: 'x', value: 'in ns1', namespace: 'ns1' });
    await a!.request({ type: 'set', key: 'y', value: 'in ns2', namespace: 'ns2' });
    await invalidationsReceived(b!, afterDelete + 2);
    for (const [key, namespace, value] of [['x', 'ns1', 'in ns1'], ['y', 'ns2', 'in ns2']] as const) {
      expect(await b!.request<Read>({ type: 'get', key, namespace })).toMatchObject({ found: true, value });
      const again = await b!.request<Read>({ type: 'get', key, namespace });
      expect(again).toMatchObject({ found: true, value });
      expect(again.stats.levels.l1.hits).toBeGreaterThan(0);
    }
    const before = (await b!.request<{ stats: Stats }>({ type: 'stats' })).stats;
    expect(before.l1).toMatchObject({ entries: 2 });

    // A clears ns1: B loses ns1's entries, and only those.
    await a!.request({ type: 'clear', namespace: 'ns1' });
    const cleared = await readUntil(b!, 'B to read ns1:x as absent', { key: 'x', namespace: 'ns1' }, (r) => !r.found);
    expect(cleared.stats.invalidations.received).toBe(before.invalidations.received + 1);
    const kept = await b!.request<Read>({ type: 'get', key: 'y', namespace: 'ns2' });
    expect(kept).toMatchObject({ found: true, value: 'in ns2' });
    // Served from B's L1: one more L1 hit, no L2 call.
    expect(kept.stats.levels.l1.hits).toBe(cleared.stats.levels.l1.hits + 1);
    expect(kept.stats.levels.l2.operations).toBe(cleared.stats.levels.l2.operations);
    // A itself has lost ns1 (its L1 and L2), not ns2.
    expect(await a!.request<Read>({ type: 'get', key: 'x', namespace: 'ns1' })).toMatchObject({ found: false });
    expect(await a!.request<Read>({ type: 'get', key: 'y', namespace: 'ns2' })).toMatchObject({ found: true, value: 'in ns2' });

    const warnings = await Promise.all([a!, b!].map((r) => r.request<{ warnings: string[] }>({ type: 'stats' })));
    expect(warnings.flatMap((w) => w.warnings)).toEqual([]);
    await stopCleanly([a!, b!]);
  });

  it('when the replica holding the getOrSet lease is SIGKILLed, the other takes over once the lease lapses and runs its factory once', async () => {
    const leaseMs = 500;
    const prefix = newPrefix();
    const [a, b] = await start({ lock: { leaseMs } }, { prefix });
    const key = 'lost';
    // The lease is per full key (`<namespace>:<key>`); a replica waiting on it subscribes to its channel.
    const channel = `${prefix}df:${createHash('sha1').update(`default:${key}`).digest('hex')}`;
    const waiters = async () => Number(((await redisCommand(REDIS_PORT, 'PUBSUB', 'NUMSUB', channel)) as RedisReply[])[1]);

    // A's factory runs (A holds the lease) and never settles.
    await a!.request({ type: 'hang', key });
    const call = b!.request<Burst & { began: number; ended: number }>({ type: 'getOrSet', key, n: 5 }, { timeoutMs: 5_000 });
    let settled = false;
    void call.then(
      () => (settled = true),
      () => (settled = true),
    );
    await waitUntil('B to wait on the lease A holds', async () => (await waiters()) === 1, { timeoutMs: 2_000, intervalMs: 10 });

    // While A lives it renews the lease: B still waits after twice the lease.
    await new Promise((resolve) => setTimeout(resolve, 2 * leaseMs));
    expect(settled).toBe(false);

    const exit = await a!.kill('SIGKILL');
    expect(exit.signal).toBe('SIGKILL');
    const killedAt = Date.now();

    const result = await call;
    expect(result.errors).toEqual([]);
    expect(result.values).toHaveLength(5);
    for (const v of result.values) expect(v).toEqual({ by: b!.pid, run: 1 });
    expect(result.factoryRuns).toBe(1);
    expect(result.stats.factoryRuns).toBe(1);
    // Taken over within the lease (plus scheduling slack), not after some long timeout.
    expect(result.ended - killedAt).toBeLessThan(leaseMs + 700);
    expect(otherThanSubscribe(result.warnings)).toEqual([]);

    // B's value is the cached one now: L1 here, and in L2 for everyone.
    expect(await b!.request<Read>({ type: 'get', key })).toMatchObject({ found: true, value: { by: b!.pid, run: 1 } });
    const l2Key = `${prefix}{cache:amas:default:${key}}`;
    expect(await redisCommand(REDIS_PORT, 'EXISTS', l2Key)).toBe(1);

    await stopCleanly([b!]);
  });

  it('a replica whose Redis command connection is ready after its Pub/Sub connection still receives invalidations', async () => {
    // A loopback TCP proxy to Redis that holds the first connection it accepts for 300 ms: the replica behind
    // it makes its command connection first (RedisStore's constructor), then its subscriber connection (the
    // cache's constructor subscribes), so the subscriber is ready first: the start-up order a busy network or
    // a slow TLS handshake produces now and then.
    const proxy = await startDelayingProxy(300);
    cleanups.push(() => proxy.close());
    const prefix = newPrefix();
    const [slow] = await start({}, { count: 1, url: proxy.url, prefix });
    const [writer] = await start({}, { count: 1, prefix });
    expect(proxy.connections()).toBeGreaterThanOrEqual(2);

    await writer!.request({ type: 'set', key: 'k', value: 'v1' });
    await waitUntil('the slow replica to read v1 from its L1', async () => {
      await slow!.request<Read>({ type: 'get', key: 'k' });
      const read = await slow!.request<Read>({ type: 'get', key: 'k' });
      return read.value === 'v1' && read.stats.levels.l1.hits > 0;
    }, { timeoutMs: 1_000, intervalMs: 5 });

    await writer!.request({ type: 'set', key: 'k', value: 'v2' });
    // Without the invalidation, its L1 would answer v1 for the 5 minutes of the TTL.
    await readUntil(slow!, 'the slow replica to read v2', { key: 'k' }, (r) => r.value === 'v2');
    expect(await invalidationSubscribers(prefix)).toBe(2);
    const { warnings } = await slow!.request<{ warnings: string[] }>({ type: 'stats' });
    expect(warnings).toEqual([]);

    await stopCleanly([slow!, writer!]);
  });
});

/** A TCP proxy on 127.0.0.1 to the test Redis; the first connection it accepts is forwarded only after `delayMs`. */
async function startDelayingProxy(delayMs: number): Promise<{ url: string; connections(): number; close(): Promise<void> }> {
  const target = new URL(REDIS_URL);
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((client) => {
    const delay = ++accepted === 1 ? delayMs : 0;
    sockets.add(client);
    client.pause();
    client.on('error', () => client.destroy());
    client.on('close', () => sockets.delete(client));
    setTimeout(() => {
      if (client.destroyed) return;
      const upstream = net.connect(Number(target.port || 6379), '127.0.0.1');
      sockets.add(upstream);
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      upstream.on('error', end);
      upstream.on('close', () => {
        sockets.delete(upstream);
        end();
      });
      client.on('close', end);
      client.pipe(upstream).pipe(client);
      client.resume();
    }, delay);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `redis://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections: () => accepted,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
