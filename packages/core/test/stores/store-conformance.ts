/**
 * The behaviour every Store must have. `storeConformance` registers the suite for one store factory; it is
 * run against MemoryStore, RedisStore on a single node and RedisStore on a 3-node Cluster.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Store, StoreScript } from '../../src/stores/store.js';
import { STORE_LUA_NOW } from '../../src/stores/store.js';
import type { ManualClock } from '../../src/clock.js';

export interface StoreFixture {
  store: Store;
  /** Present when expiry follows a ManualClock (MemoryStore): TTLs are checked exactly. */
  clock?: ManualClock;
  /** Present when scripts read their time from a ManualClock instead of the server's. */
  scriptClock?: ManualClock;
  close(): Promise<void>;
}

/** A two-key script: moves `amount` from one counter to another atomically; returns both new values. */
export const TRANSFER: StoreScript<[number, number]> = {
  name: 'test-transfer',
  lua: `${STORE_LUA_NOW}
local amount = tonumber(ARGV[1])
local from = tonumber(redis.call('GET', KEYS[1]) or '0')
if from < amount then return {-1, from} end
local a = redis.call('DECRBY', KEYS[1], amount)
local b = redis.call('INCRBY', KEYS[2], amount)
redis.call('SET', KEYS[3], now_ms(ARGV[#ARGV]))
return {a, b}
`,
  memory(space, keys, args, now) {
    const amount = Number(args[0]);
    const from = Number(space.get(keys[0]!) ?? '0');
    if (from < amount) return [-1, from];
    const a = from - amount;
    const b = Number(space.get(keys[1]!) ?? '0') + amount;
    space.set(keys[0]!, String(a));
    space.set(keys[1]!, String(b));
    space.set(keys[2]!, String(now));
    return [a, b];
  },
  decode: (raw) => raw as [number, number],
};

export function storeConformance(name: string, make: () => Promise<StoreFixture>): void {
  describe(`Store conformance: ${name}`, () => {
    let f: StoreFixture;
    let store: Store;
    const run = Math.random().toString(36).slice(2, 8);
    const k = (tag: string, ...rest: string[]) => store.key(`conf-${run}-${tag}`, ...rest);

    beforeAll(async () => {
      f = await make();
      store = f.store;
    });
    afterAll(async () => {
      await f?.close();
    });

    it('builds keys as <prefix>{tag}:rest', () => {
      expect(store.key('rl:api:u1')).toBe(`${store.prefix}{rl:api:u1}`);
      expect(store.key('df:abc', 'lease')).toBe(`${store.prefix}{df:abc}:lease`);
    });

    it('get / set / delete round-trip strings, including empty and unicode ones', async () => {
      const key = k('kv');
      expect(await store.get(key)).toBeUndefined();
      expect(await store.set(key, 'héllo ✓')).toBe(true);
      expect(await store.get(key)).toBe('héllo ✓');
      await store.set(key, '');
      expect(await store.get(key)).toBe('');
      expect(await store.delete(key)).toBe(true);
      expect(await store.delete(key)).toBe(false);
      expect(await store.get(key)).toBeUndefined();
    });

    it('set ifAbsent only writes a missing key', async () => {
      const key = k('nx');
      expect(await store.set(key, 'first', { ifAbsent: true })).toBe(true);
      expect(await store.set(key, 'second', { ifAbsent: true })).toBe(false);
      expect(await store.get(key)).toBe('first');
      await store.delete(key);
    });

    it('set with a TTL expires the key', async () => {
      const key = k('ttl');
      await store.set(key, 'v', { ttlMs: f.clock ? 1000 : 60 });
      expect(await store.get(key)).toBe('v');
      if (f.clock) {
        await f.clock.advance(999);
        expect(await store.get(key)).toBe('v');
        await f.clock.advance(1);
        expect(await store.get(key)).toBeUndefined();
      } else {
        await expect.poll(() => store.get(key), { timeout: 3000, interval: 20 }).toBeUndefined();
      }
    });

    it('increment counts atomically under concurrency and sets the TTL only on create', async () => {
      const key = k('ctr');
      const values = await Promise.all(Array.from({ length: 200 }, () => store.increment(key, 1, 60_000)));
      expect(new Set(values).size).toBe(200);
      expect(Math.max(...values)).toBe(200);
      expect(await store.increment(key, 2.5)).toBe(202.5);
      await store.delete(key);
    });

    it('runs a multi-key script atomically: concurrent transfers never overdraw', async () => {
      const from = k('acct', 'from');
      const to = k('acct', 'to');
      const stamp = k('acct', 'stamp');
      await store.set(from, '50');
      const results = await Promise.all(Array.from({ length: 80 }, () => store.run(TRANSFER, [from, to, stamp], [1])));
      expect(results.filter(([a]) => a >= 0)).toHaveLength(50);
      expect(results.filter(([a]) => a === -1)).toHaveLength(30);
      expect(await store.get(from)).toBe('0');
      expect(await store.get(to)).toBe('50');
      const stamped = Number(await store.get(stamp));
      const scriptClock = f.scriptClock ?? f.clock;
      if (scriptClock) expect(stamped).toBe(scriptClock.now());
      else expect(Math.abs(stamped - Date.now())).toBeLessThan(60_000); // server TIME, not a constant
      await Promise.all([store.delete(from), store.delete(to), store.delete(stamp)]);
    });

    it('publishes to subscribers of the channel only, until they unsubscribe', async () => {
      const channel = `conf-${run}-chan`;
      const got: string[] = [];
      const other: string[] = [];
      const sub = await store.subscribe(channel, (m) => got.push(m));
      const sub2 = await store.subscribe(`${channel}-other`, (m) => other.push(m));
      await store.publish(channel, 'one');
      await store.publish(channel, 'two');
      // Order is not part of the contract: on a Cluster two PUBLISHes may reach the subscriber's node over
      // different bus links.
      await expect.poll(() => [...got].sort(), { timeout: 3000, interval: 10 }).toEqual(['one', 'two']);
      await sub.unsubscribe();
      await store.publish(channel, 'three');
      await store.publish(`${channel}-other`, 'x');
      await expect.poll(() => other, { timeout: 3000, interval: 10 }).toEqual(['x']);
      expect([...got].sort()).toEqual(['one', 'two']);
      await sub2.unsubscribe();
    });

    it('reports health', () => {
      const h = store.health();
      expect(h.kind).toBe(store.kind);
      expect(h.status).toBe('ready');
      expect(h.breaker).toBe('closed');
      expect(h.commands).toBeGreaterThan(0);
      expect(store.available).toBe(true);
    });
  });
}
