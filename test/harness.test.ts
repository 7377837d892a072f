// Tests of the multi-process test harness itself: real redis-server, Redis Cluster and Sentinel processes
// (test/support/redis-servers.ts) and Node child-process replicas (test/support/replicas.ts).
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import {
  parseInfo,
  redisCli,
  redisCommand,
  startRedisCluster,
  startRedisSentinel,
  startRedisServer,
  stopAllRedis,
  waitForClusterOk,
  type RedisClusterHandle,
  type RedisServerHandle,
} from './support/redis-servers.js';
import { startReplicas, stopAllReplicas, type ReplicaGroup } from './support/replicas.js';

const echoFixture = new URL('./fixtures/echo-replica.mjs', import.meta.url);

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// Whatever a failing test left running.
afterAll(async () => {
  await stopAllReplicas();
  await stopAllRedis();
});

describe('startRedisServer', () => {
  let server: RedisServerHandle | undefined;
  afterEach(async () => {
    await server?.stop();
    server = undefined;
  });

  it('answers PING and SET/GET on its own port, not 6379', async () => {
    server = await startRedisServer();
    expect(server.port).not.toBe(6379);
    expect(server.url).toBe(`redis://127.0.0.1:${server.port}`);
    expect(await redisCommand(server.port, 'PING')).toBe('PONG');
    expect(await redisCommand(server.port, 'SET', 'harness:k', 'v1')).toBe('OK');
    expect(await redisCommand(server.port, 'GET', 'harness:k')).toBe('v1');
    expect(await redisCli(server.port, 'GET', 'harness:k')).toBe('v1');
    const info = parseInfo(String(await redisCommand(server.port, 'INFO', 'server')));
    expect(Number(info.process_id)).toBe(server.pid);
    // no persistence
    expect(await redisCommand(server.port, 'CONFIG', 'GET', 'save')).toEqual(['save', '']);
    expect(await redisCommand(server.port, 'CONFIG', 'GET', 'appendonly')).toEqual(['appendonly', 'no']);
  });

  it('kill(SIGKILL) stops it answering; restart() brings it back on the same port (empty: no persistence)', async () => {
    server = await startRedisServer();
    const { port } = server;
    const firstPid = server.pid;
    await redisCommand(port, 'SET', 'harness:gone', '1');

    await server.kill('SIGKILL');
    expect(server.running).toBe(false);
    expect(isAlive(firstPid)).toBe(false);
    await expect(redisCommand(port, 'PING')).rejects.toThrow(/ECONNREFUSED|closed/);

    await server.restart();
    expect(server.port).toBe(port);
    expect(server.pid).not.toBe(firstPid);
    expect(await redisCommand(port, 'PING')).toBe('PONG');
    expect(await redisCommand(port, 'GET', 'harness:gone')).toBeNull();
  });

  it('pause() makes it hang without closing the port; resume() makes it answer again', async () => {
    server = await startRedisServer();
    server.pause();
    await expect(redisCommand({ port: server.port, timeoutMs: 300 }, 'PING')).rejects.toThrow(/no reply/);
    server.resume();
    expect(await redisCommand(server.port, 'PING')).toBe('PONG');
  });

  it('stop() ends the process and removes its temp dir; stop() twice is fine', async () => {
    server = await startRedisServer({ args: ['--maxmemory', '10mb'] });
    expect(await redisCommand(server.port, 'CONFIG', 'GET', 'maxmemory')).toEqual(['maxmemory', String(10 * 1024 * 1024)]);
    const { pid, dir } = server;
    expect(existsSync(dir)).toBe(true);
    await server.stop();
    await server.stop();
    expect(isAlive(pid)).toBe(false);
    expect(existsSync(dir)).toBe(false);
  });

  it('a server that cannot start fails with an error naming the port and its log', async () => {
    await expect(startRedisServer({ args: ['--no-such-directive', 'x'] })).rejects.toThrow(/127\.0\.0\.1:\d+[\s\S]*no-such-directive/i);
  });

  it('refuses to start on 6379', async () => {
    await expect(startRedisServer({ port: 6379 })).rejects.toThrow(/6379/);
  });
});

describe('startRedisCluster', () => {
  let cluster: RedisClusterHandle | undefined;
  afterAll(async () => {
    await cluster?.stop();
  });

  it('three masters, cluster_state:ok on every node, keys in different slots readable from any node', { timeout: 30_000 }, async () => {
    cluster = await startRedisCluster();
    console.log(`[harness] startRedisCluster took ${cluster.startMs} ms (${JSON.stringify(cluster.timings)})`);
    expect(cluster.nodes).toHaveLength(3);
    expect(new Set(cluster.nodes.map((n) => n.port)).size).toBe(3);

    for (const node of cluster.nodes) {
      expect(node.host).toBe('127.0.0.1');
      const info = parseInfo(String(await redisCommand(node.port, 'CLUSTER', 'INFO')));
      expect(info.cluster_state).toBe('ok');
      expect(info.cluster_slots_assigned).toBe('16384');
      expect(info.cluster_known_nodes).toBe('3');
      expect(info.cluster_size).toBe('3');
      const nodesLines = String(await redisCommand(node.port, 'CLUSTER', 'NODES')).trim().split('\n');
      expect(nodesLines.filter((l) => l.split(' ')[2]!.includes('master'))).toHaveLength(3);
    }

    // Which node owns which slot range.
    const slots = (await redisCommand(cluster.nodes[0]!.port, 'CLUSTER', 'SLOTS')) as Array<[number, number, [string, number, string]]>;
    const ownerOf = (slot: number) => slots.find(([from, to]) => slot >= from && slot <= to)![2][1];
    expect(new Set(slots.map((s) => s[2][1]))).toEqual(new Set(cluster.nodes.map((n) => n.port)));

    // Find one key per master, write each through node 0 and read it through node 2 (redis-cli -c follows MOVED).
    const keyFor = new Map<number, string>();
    for (let i = 0; keyFor.size < 3 && i < 1000; i++) {
      const key = `harness:slot:${i}`;
      const owner = ownerOf(Number(await redisCommand(cluster.nodes[0]!.port, 'CLUSTER', 'KEYSLOT', key)));
      if (!keyFor.has(owner)) keyFor.set(owner, key);
    }
    expect(keyFor.size).toBe(3);
    for (const [owner, key] of keyFor) {
      expect(await redisCli(cluster.nodes[0]!.port, '-c', 'SET', key, `v-${owner}`)).toBe('OK');
      expect(await redisCli(cluster.nodes[2]!.port, '-c', 'GET', key)).toBe(`v-${owner}`);
      // It really lives on its owner.
      expect(await redisCommand(owner, 'GET', key)).toBe(`v-${owner}`);
    }
    // And a non-owner answers MOVED rather than the value.
    const [owner, key] = [...keyFor][0]!;
    const other = cluster.nodes.find((n) => n.port !== owner)!.port;
    await expect(redisCommand(other, 'GET', key)).rejects.toThrow(new RegExp(`MOVED \\d+ 127\\.0\\.0\\.1:${owner}`));
  });

  it('a SIGKILLed node restarts on its port with its slots, and the cluster is ok again', async () => {
    if (!cluster) throw new Error('the cluster did not start (see the first cluster test)');
    const c = cluster;
    const victim = c.servers[1]!;
    const slotsBefore = await redisCommand(c.nodes[0]!.port, 'CLUSTER', 'SLOTS');
    await victim.kill('SIGKILL');
    await expect(redisCommand(victim.port, 'PING')).rejects.toThrow();
    await victim.restart();
    await waitForClusterOk(c.servers);
    expect(await redisCommand(victim.port, 'CLUSTER', 'SLOTS')).toEqual(slotsBefore);
  }, 30_000);

  it('stop() ends every node', async () => {
    if (!cluster) throw new Error('the cluster did not start (see the first cluster test)');
    const c = cluster;
    const pids = c.servers.map((s) => s.pid);
    await c.stop();
    cluster = undefined;
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
  });
});

describe('startRedisSentinel', () => {
  const stops: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const stop of stops.reverse()) await stop();
  });

  it('monitors the given master and reports its address', async () => {
    const master = await startRedisServer();
    stops.push(() => master.stop());
    const sentinel = await startRedisSentinel(master.port);
    stops.push(() => sentinel.stop());
    expect(sentinel.name).toBe('amasmaster');
    expect(sentinel.port).not.toBe(master.port);
    expect(await redisCommand(sentinel.port, 'SENTINEL', 'get-master-addr-by-name', 'amasmaster')).toEqual(['127.0.0.1', String(master.port)]);
    const info = parseInfo(String(await redisCommand(sentinel.port, 'INFO', 'server')));
    expect(info.redis_mode).toBe('sentinel');
  });
});

describe('startReplicas', () => {
  let replicas: ReplicaGroup | undefined;
  afterEach(async () => {
    await replicas?.stopAll();
    replicas = undefined;
  });

  it('replicas answer requests, each from its own process, with the env they were given', async () => {
    replicas = await startReplicas(3, echoFixture, { REPLICA_NAME: 'r' });
    expect(replicas).toHaveLength(3);
    const answers = await Promise.all(replicas.map((r, i) => r.request<{ value: unknown; pid: number; replicaName: string }>({ type: 'echo', value: { i, big: 10n } })));
    answers.forEach((a, i) => {
      expect(a.value).toEqual({ i, big: 10n });
      expect(a.pid).toBe(replicas![i]!.pid);
      expect(a.replicaName).toBe('r');
    });
    expect(new Set(answers.map((a) => a.pid)).size).toBe(3);
  });

  it('a handler error and an unknown type reject with the child error message', async () => {
    replicas = await startReplicas(1, echoFixture);
    const [r] = replicas;
    await expect(r!.request({ type: 'fail', reason: 'because' })).rejects.toMatchObject({ message: expect.stringMatching(/asked to fail: because/), code: 'ECHO_FAIL' });
    await expect(r!.request({ type: 'nope' })).rejects.toThrow(/no handler for type "nope"/);
    // Still serving afterwards.
    expect(await r!.request({ type: 'echo', value: 1 })).toMatchObject({ value: 1 });
  });

  it('kill(SIGKILL): exited resolves with signal SIGKILL, a pending request rejects, later requests reject', async () => {
    replicas = await startReplicas(2, echoFixture);
    const [victim, survivor] = replicas;
    const pending = victim!.request({ type: 'hang' });
    const exit = await victim!.kill('SIGKILL');
    expect(exit).toEqual({ code: null, signal: 'SIGKILL' });
    await expect(victim!.exited).resolves.toEqual({ code: null, signal: 'SIGKILL' });
    expect(isAlive(victim!.pid)).toBe(false);
    await expect(pending).rejects.toThrow(/killed by SIGKILL before answering a "hang" request/);
    await expect(victim!.request({ type: 'echo', value: 1 })).rejects.toThrow(/is not running \(it was killed by SIGKILL\)/);
    expect(await survivor!.request({ type: 'echo', value: 2 })).toMatchObject({ value: 2 });
  });

  it('a request times out with a clear error', async () => {
    replicas = await startReplicas(1, echoFixture, {}, { echoStderrOnFailure: false });
    await expect(replicas[0]!.request({ type: 'hang' }, { timeoutMs: 200 })).rejects.toThrow(/did not answer a "hang" request within 200 ms/);
  });

  it('stopAll() ends every replica', async () => {
    replicas = await startReplicas(2, echoFixture);
    await replicas.stopAll();
    for (const r of replicas) {
      expect(await r.exited).toEqual({ code: null, signal: 'SIGTERM' });
      expect(isAlive(r.pid)).toBe(false);
    }
  });

  it('a replica that crashes at start-up rejects startReplicas with its stderr', async () => {
    await expect(startReplicas(2, echoFixture, { ECHO_FAIL_AT_START: '1' }, { echoStderrOnFailure: false })).rejects.toThrow(/exited with code 1 before calling serve\(\)[\s\S]*failing at start on purpose/);
  });
});
