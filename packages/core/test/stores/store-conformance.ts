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

    it('getBuffer / set with a Buffer are binary-safe and interchangeable with strings', async () => {
      const bytes = Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 7 + 3) % 256));
      const key = k('bin');
      expect(await store.getBuffer(key)).toBeUndefined();
      expect(await store.set(key, bytes)).toBe(true);
      expect((await store.getBuffer(key))?.equals(bytes)).toBe(true);
      // A Buffer value is a Redis string: `get` reads its utf8, `getBuffer` reads a string's bytes.
      const text = k('bin', 'text');
      await store.set(text, Buffer.from('héllo ✓', 'utf8'));
      expect(await store.get(text)).toBe('héllo ✓');
      await store.set(text, 'ünïcode');
      expect(await store.getBuffer(text)).toEqual(Buffer.from('ünïcode', 'utf8'));
      await store.set(text, Buffer.alloc(0));
      expect(await store.getBuffer(text)).toEqual(Buffer.alloc(0));
      expect(await store.get(text)).toBe('');
      expect(await store.set(text, Buffer.from('x'), { ifAbsent: true })).toBe(false);
      await store.deleteMany([key, text]);
    });

    it('keeps its own copy of a Buffer: changing the one passed in or the one read back changes nothing stored', async () => {
      const key = k('alias');
      const input = Buffer.from('original');
      await store.set(key, input);
      input.fill(0);
      const out = await store.getBuffer(key);
      expect(out?.toString()).toBe('original');
      out!.fill(0);
      const [many] = await store.getMany([key]);
      expect(many?.toString()).toBe('original');
      many!.fill(0);
      const batch = Buffer.from('batched');
      await store.setMany([{ key, value: batch }]);
      batch.fill(0);
      expect((await store.getBuffer(key))?.toString()).toBe('batched');
      await store.delete(key);
    });

    it('getMany returns values in the order asked, undefined for missing keys, across tags (and Cluster slots)', async () => {
      // 60 tags spread over the slots; three keys share one tag (one MGET on a Cluster).
      const keys = Array.from({ length: 60 }, (_, i) => k(`many-${i}`));
      keys.push(k('many-shared', 'a'), k('many-shared', 'b'), k('many-shared', 'c'));
      const present = keys.filter((_, i) => i % 3 !== 1);
      await store.setMany(present.map((key) => ({ key, value: Buffer.from(`v:${key}`) })));
      const asked = [...keys].reverse();
      asked.push(keys[0]!, keys[1]!); // duplicates get an answer each
      const values = await store.getMany(asked);
      expect(values).toHaveLength(asked.length);
      expect(values.map((v) => v?.toString())).toEqual(asked.map((key) => (present.includes(key) ? `v:${key}` : undefined)));
      expect(await store.getMany([])).toEqual([]);
      expect(await store.getMany([k('many-nothing-here')])).toEqual([undefined]);
      await store.deleteMany(keys);
    });

    it('setMany writes strings and Buffers, each with its own TTL; a later entry for the same key wins', async () => {
      const lasting = k('setmany', 'lasting');
      const text = k('setmany-text');
      const brief = k('setmany-brief');
      const ttlMs = f.clock ? 1000 : 80;
      await store.setMany([
        { key: lasting, value: Buffer.from([0, 255, 1]) },
        { key: text, value: 'first', ttlMs: 60_000 },
        { key: brief, value: 'gone soon', ttlMs },
        { key: text, value: 'second', ttlMs: 60_000 },
      ]);
      await store.setMany([]);
      expect(await store.getBuffer(lasting)).toEqual(Buffer.from([0, 255, 1]));
      expect(await store.get(text)).toBe('second');
      expect(await store.get(brief)).toBe('gone soon');
      if (f.clock) {
        await f.clock.advance(999);
        expect(await store.get(brief)).toBe('gone soon');
        await f.clock.advance(1);
        expect(await store.get(brief)).toBeUndefined();
      } else {
        await expect.poll(() => store.get(brief), { timeout: 3000, interval: 20 }).toBeUndefined();
      }
      expect(await store.get(text)).toBe('second');
      expect(await store.getBuffer(lasting)).toEqual(Buffer.from([0, 255, 1]));
      await store.deleteMany([lasting, text]);
    });

    it('deleteMany deletes across tags and counts only the keys that existed', async () => {
      const keys = Array.from({ length: 30 }, (_, i) => k(`del-${i}`));
      const shared = [k('del-shared', 'a'), k('del-shared', 'b')];
      await store.setMany([...keys, ...shared].map((key) => ({ key, value: 'x' })));
      const keep = k('del-keep');
      await store.set(keep, 'kept');
      expect(await store.deleteMany([...keys, ...shared, k('del-missing'), keys[0]!])).toBe(32);
      expect(await store.deleteMany(keys)).toBe(0);
      expect(await store.deleteMany([])).toBe(0);
      expect((await store.getMany([...keys, ...shared])).every((v) => v === undefined)).toBe(true);
      expect(await store.get(keep)).toBe('kept');
      await store.delete(keep);
    });

    it('deleteByPrefix deletes every key under the prefix (over several SCAN pages), and nothing else', async () => {
      // Keys `<prefix>{conf-<run>-dp:<i>}`: one tag each, so on a Cluster they live on every master.
      const tag = (rest: string) => `conf-${run}-dp${rest}`;
      const under = Array.from({ length: 1500 }, (_, i) => store.key(tag(`:${i}`)));
      under.push(store.key(tag(':shared'), 'a'), store.key(tag(':shared'), 'b'));
      const outside = [store.key(tag('x:1')), store.key(tag('')), store.key(`conf-${run}-d`), store.key(`conf-${run}-other`, 'dp:1')];
      await store.setMany([...under, ...outside].map((key) => ({ key, value: Buffer.from([1, 2, 3]) })));
      const prefix = store.key(tag(':')).slice(0, -1); // `<prefix>{conf-<run>-dp:`
      expect(await store.deleteByPrefix(prefix)).toBe(under.length);
      expect((await store.getMany(under)).filter((v) => v !== undefined)).toHaveLength(0);
      expect((await store.getMany(outside)).map((v) => v?.length)).toEqual([3, 3, 3, 3]);
      expect(await store.deleteByPrefix(prefix)).toBe(0);
      await store.deleteMany(outside);
    });

    it('deleteByPrefix takes the prefix literally: glob characters * ? [ ] \\ match only themselves', async () => {
      const literal = `conf-${run}-g*?[ab]\\:`;
      const target = store.key(`${literal}1`);
      // Each would be deleted if the prefix went into MATCH unescaped, or with one of * ? [ ] \ unescaped.
      const lookalikes = [`gXYa:1`, `g*?[ab]:1`, `g*?a\\:1`, `gZZ?[ab]\\:1`, `g*Z[ab]\\:1`].map((rest) => store.key(`conf-${run}-${rest}`));
      await store.setMany([target, ...lookalikes].map((key) => ({ key, value: 'v' })));
      expect(await store.deleteByPrefix(store.key(literal).slice(0, -1))).toBe(1);
      expect(await store.get(target)).toBeUndefined();
      expect(await store.getMany(lookalikes)).toEqual(lookalikes.map(() => Buffer.from('v')));
      await store.deleteMany(lookalikes);
    });

    it('deleteByPrefix refuses a prefix outside the store prefix, or an empty one', async () => {
      await expect(store.deleteByPrefix('')).rejects.toThrow(TypeError);
      await expect(store.deleteByPrefix(`not-${store.prefix}`)).rejects.toThrow(/store prefix/);
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
