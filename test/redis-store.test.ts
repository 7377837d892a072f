/**
 * RedisStore against real Redis topologies the test starts itself: a 3-node Cluster (the conformance suite),
 * Sentinel, a server that is killed, restarted and hung, and nothing listening at all.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { RedisStore, StoreUnavailableError, createAmas, type StoreScript } from '@amas/core';
import { storeConformance, TRANSFER } from '../packages/core/test/stores/store-conformance.js';
import { invalidOption } from '../packages/core/test/helpers.js';
import { startRedisCluster, startRedisSentinel, startRedisServer, stopAllRedis, waitUntil, type RedisServerHandle } from './support/redis-servers.js';
import { freePort } from './support/free-port.js';

const prefix = () => `test:${Math.random().toString(36).slice(2, 8)}:`;

afterAll(async () => {
  await stopAllRedis();
});

storeConformance('RedisStore (3-node Cluster)', async () => {
  const cluster = await startRedisCluster();
  const store = new RedisStore({ cluster: { nodes: cluster.nodes }, prefix: prefix() });
  await store.ready(10_000);
  return {
    store,
    close: async () => {
      await store.close();
      await cluster.stop();
    },
  };
});

/** Counts the keys a script run touched on each cluster node, to prove one script stays in one slot. */
const COUNTED: StoreScript<number> = {
  name: 'test-counted',
  lua: `redis.call('INCR', KEYS[1]); redis.call('INCR', KEYS[2]); return redis.call('INCR', KEYS[3])`,
  memory: () => 0,
  decode: (raw) => Number(raw),
};

describe('RedisStore', () => {
  const stores: RedisStore[] = [];
  const track = (store: RedisStore) => (stores.push(store), store);
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
  });

  it('on a Cluster, keys built with one tag share a slot, so a three-key script never fails with CROSSSLOT', async () => {
    const cluster = await startRedisCluster();
    try {
      const store = track(new RedisStore({ cluster: { nodes: cluster.nodes }, prefix: prefix() }));
      await store.ready(10_000);
      // Many tags spread over all three masters; each script's keys share one tag.
      const results = await Promise.all(
        Array.from({ length: 60 }, (_, i) => store.run(COUNTED, [store.key(`user${i}`, 'a'), store.key(`user${i}`, 'b'), store.key(`user${i}`, 'c')], [])),
      );
      expect(results).toEqual(Array(60).fill(1));
      const transfer = await store.run(TRANSFER, [store.key('acct', 'from'), store.key('acct', 'to'), store.key('acct', 'stamp')], [1]);
      expect(transfer).toEqual([-1, 0]);
      // Without the shared tag the same script is refused by Redis Cluster: the tag is what makes it work.
      const raw = store.connection;
      await expect(raw.eval(COUNTED.lua, 3, 'plain-a', 'plain-b', 'plain-c')).rejects.toThrow(/CROSSSLOT|slot/i);
      const perNode = await Promise.all(
        cluster.nodes.map(async (n) => {
          const node = new Redis(n.port, n.host);
          try {
            return await node.dbsize();
          } finally {
            node.disconnect();
          }
        }),
      );
      expect(perNode.filter((n) => n > 0).length).toBeGreaterThan(1); // the tags really spread over masters
    } finally {
      await Promise.all(stores.splice(0).map((s) => s.close()));
      await cluster.stop();
    }
  });

  it('connects through Sentinel to the master it names', async () => {
    const master = await startRedisServer();
    const sentinel = await startRedisSentinel(master.port);
    try {
      const store = track(new RedisStore({ sentinel: { sentinels: [{ host: '127.0.0.1', port: sentinel.port }], name: sentinel.name }, prefix: prefix() }));
      await store.ready(10_000);
      await store.set(store.key('s'), 'via-sentinel');
      const direct = new Redis(master.port, '127.0.0.1');
      expect(await direct.get(store.key('s'))).toBe('via-sentinel');
      direct.disconnect();
    } finally {
      await Promise.all(stores.splice(0).map((s) => s.close()));
      await sentinel.stop();
      await master.stop();
    }
  });

  it('with nothing listening: commands fail at once with StoreUnavailableError and the store reports itself down', async () => {
    const port = await freePort();
    const store = track(new RedisStore({ url: `redis://127.0.0.1:${port}`, prefix: prefix(), logger: { warn() {}, error() {} } }));
    await expect(store.ready(300)).rejects.toBeInstanceOf(StoreUnavailableError);
    const error = await store.run(TRANSFER, [store.key('x', 'a'), store.key('x', 'b'), store.key('x', 'c')], [1]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect((error as StoreUnavailableError).status).toBe(503);
    expect(store.available).toBe(false);
    expect(store.health().status).not.toBe('ready');
  });

  describe('a Redis that dies, comes back, or hangs', () => {
    let server: RedisServerHandle;
    beforeAll(async () => {
      server = await startRedisServer();
    });
    afterAll(async () => {
      await server.stop();
    });

    it('SIGKILL: down event and fast failures; restart: up event, and scripts run again (NOSCRIPT recovered)', async () => {
      const store = track(new RedisStore({ url: server.url, prefix: prefix(), logger: { warn() {}, error() {} } }));
      await store.ready();
      const keys = [store.key('k', 'a'), store.key('k', 'b'), store.key('k', 'c')];
      await store.set(keys[0]!, '5');
      expect(await store.run(TRANSFER, keys, [1])).toEqual([4, 1]);
      const events: string[] = [];
      store.on('down', () => events.push('down'));
      store.on('up', () => events.push('up'));

      await server.kill('SIGKILL');
      await waitUntil('the store to notice', async () => events.includes('down'), { timeoutMs: 5000 });
      expect(store.available).toBe(false);
      await expect(store.run(TRANSFER, keys, [1])).rejects.toBeInstanceOf(StoreUnavailableError);

      await server.restart(); // a fresh process: no data, no script cache
      await waitUntil('the store to reconnect', async () => events.includes('up'), { timeoutMs: 5000 });
      expect(store.available).toBe(true);
      await store.set(keys[0]!, '3');
      expect(await store.run(TRANSFER, keys, [1])).toEqual([2, 1]); // EVALSHA got NOSCRIPT, EVAL reloaded it
      expect(store.health().reconnects).toBeGreaterThan(0);
    });

    it('a hung Redis: waiting commands time out together, the connection is reset, later calls fail fast, and it recovers', async () => {
      const store = track(new RedisStore({ url: server.url, prefix: prefix(), commandTimeoutMs: 100, logger: { warn() {}, error() {} } }));
      await store.ready();
      expect(await store.set(store.key('h'), 'x')).toBe(true);
      server.pause();
      try {
        const waiting = await Promise.all([store.get(store.key('h')), store.get(store.key('h')), store.get(store.key('h'))].map((p) => p.catch((e: unknown) => e)));
        for (const error of waiting) {
          expect(error).toBeInstanceOf(StoreUnavailableError);
          expect(String((error as Error).message)).toMatch(/timed out after 100ms/);
        }
        expect(store.health().timeouts).toBe(3);
        expect(store.available).toBe(false);
        const fast = await store.get(store.key('h')).catch((e: unknown) => e);
        expect(fast).toBeInstanceOf(StoreUnavailableError);
        expect(String((fast as Error).message)).toMatch(/not sent/);
        expect(store.health().timeouts).toBe(3); // never sent, so it could not time out
      } finally {
        server.resume();
      }
      await waitUntil('the store to reconnect', async () => store.available, { timeoutMs: 10_000 });
      expect(await store.get(store.key('h'))).toBe('x');
    });

    it('slow work has its own connection and deadline: a stalled read fails alone, the command connection is left alone', async () => {
      const store = track(new RedisStore({ url: server.url, prefix: prefix(), commandTimeoutMs: 100, logger: { warn() {}, error() {} } }));
      await store.ready();
      await store.set(store.key('big'), 'x'.repeat(100_000));
      expect((await store.getSlow(store.key('big')))?.length).toBe(100_000); // opens the slow connection
      const reconnects = store.health().reconnects;
      server.pause();
      try {
        const error = await store.getSlow(store.key('big')).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(StoreUnavailableError);
        expect(String((error as Error).message)).toMatch(/getBuffer timed out after 100ms/);
      } finally {
        server.resume();
      }
      // The command connection was never reset for it.
      expect(store.health().reconnects).toBe(reconnects);
      expect(await store.get(store.key('big'))).toHaveLength(100_000);
    });

    it('a client you pass in is never reset: its commands time out one by one and the breaker opens', async () => {
      const client = new Redis(server.port, '127.0.0.1', { enableOfflineQueue: false });
      await new Promise((r) => client.once('ready', r));
      const store = track(new RedisStore({ client, prefix: prefix(), commandTimeoutMs: 100, breaker: { failureThreshold: 2, recoveryTimeoutMs: 60_000 } }));
      server.pause();
      try {
        const first = await store.get(store.key('h')).catch((e: unknown) => e);
        expect(String((first as Error).message)).toMatch(/timed out after 100ms/);
        await store.get(store.key('h')).catch(() => undefined);
        expect(store.health().timeouts).toBe(2);
        expect(store.health().breaker).toBe('open');
        const fast = await store.get(store.key('h')).catch((e: unknown) => e);
        expect(String((fast as Error).message)).toMatch(/breaker is open/);
        expect(client.status).toBe('ready'); // the user's connection was left alone
      } finally {
        server.resume();
        client.disconnect();
      }
    });

    it('uses a client you pass in and leaves it open on close', async () => {
      const client = new Redis(server.port, '127.0.0.1');
      try {
        const store = new RedisStore({ client, prefix: prefix() });
        await store.ready();
        await store.set(store.key('mine'), 'yes');
        await store.close();
        expect(client.status).toBe('ready');
        expect(await client.get(store.key('mine'))).toBe('yes');
      } finally {
        client.disconnect();
      }
    });

    it('a wrong command is an error of the command, not an outage: the breaker stays closed', async () => {
      const store = track(new RedisStore({ url: server.url, prefix: prefix(), breaker: { failureThreshold: 1 } }));
      await store.ready();
      const bad: StoreScript<unknown> = { name: 'bad', lua: `return redis.call('NOSUCHCOMMAND')`, memory: () => null, decode: (r) => r };
      const error = await store.run(bad, [store.key('b')], []).catch((e: unknown) => e);
      expect(error).not.toBeInstanceOf(StoreUnavailableError);
      expect(String(error)).toMatch(/Unknown Redis command|unknown command/i);
      expect(store.health().breaker).toBe('closed');
      expect(store.available).toBe(true);
    });

    it('exports health as Prometheus metrics on the engine registry', async () => {
      const registry = new Registry();
      const amas = createAmas({ redis: { url: server.url, prefix: prefix() }, metrics: { registry }, limits: { api: { limit: 5, window: '1m' } } });
      try {
        await amas.ready();
        await amas.store!.set(amas.store!.key('m'), '1');
        const text = await registry.metrics();
        expect(text).toMatch(/^amas_store_up\{store="redis"\} 1$/m);
        expect(text).toMatch(/^amas_store_commands_total\{store="redis"\} [1-9]/m);
        expect(text).toMatch(/^amas_store_command_duration_seconds_count\{store="redis"\} [1-9]/m);
        expect(text).toMatch(/^amas_ratelimit_on_store\{limit="api"\} 1$/m);
      } finally {
        await amas.close();
      }
      expect(await registry.metrics()).not.toMatch(/amas_store_up/);
    });
  });

  it('rejects bad options with the option, the value and what was expected', () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ url: 'http://127.0.0.1:6379' }, /url: expected a redis:\/\/ or rediss:\/\/ URL, received "http:\/\/127.0.0.1:6379"/],
      [{ url: 'redis://127.0.0.1', cluster: { nodes: [{ host: '127.0.0.1', port: 7000 }] } }, /cluster: expected only one of url, client, cluster, sentinel/],
      [{ commandTimeoutMs: -1 }, /commandTimeoutMs/],
      [{ commandTimeoutMs: '100' }, /commandTimeoutMs/],
      [{ prefix: 'a{b}' }, /prefix: expected a string without braces/],
      [{ cluster: { nodes: [] } }, /cluster.nodes/],
      [{ cluster: { nodes: [{ host: '127.0.0.1', port: 70000 }] } }, /cluster.nodes.0.port/],
      [{ sentinel: { sentinels: [{ host: '127.0.0.1', port: 26379 }] } }, /sentinel.name/],
      [{ client: { get() {} } }, /client: expected an ioredis Redis or Cluster client/],
      [{ breaker: { failureThreshold: 0 } }, /breaker.failureThreshold/],
      [{ breaker: { recoveryTimeoutMs: 2000, maxRecoveryTimeoutMs: 1000 } }, /breaker.maxRecoveryTimeoutMs: expected at least breaker.recoveryTimeoutMs/],
      [{ urll: 'redis://127.0.0.1' }, /urll/],
    ];
    for (const [options, message] of cases) {
      const error = invalidOption(() => new RedisStore(options as never), JSON.stringify(options));
      expect(error.message, JSON.stringify(options)).toMatch(message);
    }
  });
});
