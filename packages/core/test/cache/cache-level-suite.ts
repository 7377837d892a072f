/**
 * The behaviour every CacheLevel must have. `cacheLevelSuite` registers the cases for one level factory;
 * it runs against PostgresLevel and FileLevel, and needs nothing of a level beyond the CacheLevel interface,
 * so a Redis level (or any other) can run it too.
 *
 * Namespaces carry a random run id, so the suite can share a backend with other data (a Redis database, a
 * table): it only asserts on keys it wrote. `clear()` without a namespace wipes the level's keys, so give the
 * suite a level of its own (its own prefix, cache name, table or directory).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ManualClock } from '../../src/clock.js';
import { NAMESPACE_PATTERN, levelKey, type CacheLevel } from '../../src/cache/cache-level.js';

export interface CacheLevelFixture {
  level: CacheLevel;
  /** When the level's expiry follows this ManualClock, TTL cases are exact; without it they wait real time. */
  clock?: ManualClock;
  /**
   * Another cache on the same backend (same Redis, table or directory, another cache name or prefix), if the
   * level has such a thing: it must never see, change or clear this level's keys, nor this level its keys.
   */
  sibling?: CacheLevel;
  /** Closes the level (and sibling) and removes what the fixture created. */
  close(): Promise<void>;
}

export function cacheLevelSuite(title: string, make: () => Promise<CacheLevelFixture>): void {
  describe(`CacheLevel behaviour: ${title}`, () => {
    let f: CacheLevelFixture;
    let level: CacheLevel;
    const run = Math.random().toString(36).slice(2, 8);
    /** A namespace of this run: `t<run>-<tag>`. */
    const ns = (tag: string) => {
      const name = `t${run}-${tag}`;
      expect(name).toMatch(NAMESPACE_PATTERN);
      return name;
    };
    const buf = (text: string) => Buffer.from(text, 'utf8');
    const text = (value: Buffer | undefined) => value?.toString('utf8');

    /** Moves past `ms`: the ManualClock when the level follows one, real time otherwise. */
    const pass = async (ms: number) => {
      if (f.clock) await f.clock.advance(ms);
      else await new Promise((resolve) => setTimeout(resolve, ms));
    };
    /** TTLs for real time are long enough that a slow machine still reads the entry before it expires. */
    const shortTtl = () => (f.clock ? 1_000 : 400);

    beforeAll(async () => {
      f = await make();
      level = f.level;
    });
    afterAll(async () => {
      await f?.close();
    });

    it('has a name for stats and logs', () => {
      expect(typeof level.name).toBe('string');
      expect(level.name.length).toBeGreaterThan(0);
    });

    it('get of a missing key is undefined; set then get round-trips; set again overwrites', async () => {
      const key = levelKey(ns('rt'), 'k');
      expect(await level.get(key)).toBeUndefined();
      await level.set(key, buf('first'), 60_000);
      const got = await level.get(key);
      expect(Buffer.isBuffer(got)).toBe(true);
      expect(text(got)).toBe('first');
      await level.set(key, buf('second, longer than the first'), 60_000);
      expect(text(await level.get(key))).toBe('second, longer than the first');
      await level.set(key, buf('3'), 60_000);
      expect(text(await level.get(key))).toBe('3');
    });

    it('an empty value is a hit (a zero-length Buffer), not a miss', async () => {
      const key = levelKey(ns('empty'), 'k');
      await level.set(key, Buffer.alloc(0), 60_000);
      const got = await level.get(key);
      expect(Buffer.isBuffer(got)).toBe(true);
      expect(got!.length).toBe(0);
      expect((await level.getMany([key]))[0]?.length).toBe(0);
    });

    it('round-trips all 256 byte values and a 1 MiB random value exactly', async () => {
      const all = Buffer.from(Array.from({ length: 512 }, (_, i) => i % 256));
      const big = randomBytes(1024 * 1024);
      const n = ns('bytes');
      await level.set(levelKey(n, 'all'), all, 60_000);
      await level.set(levelKey(n, 'big'), big, 60_000);
      expect((await level.get(levelKey(n, 'all')))!.equals(all)).toBe(true);
      expect((await level.get(levelKey(n, 'big')))!.equals(big)).toBe(true);
      const [a, b] = await level.getMany([levelKey(n, 'big'), levelKey(n, 'all')]);
      expect(a!.equals(big) && b!.equals(all)).toBe(true);
    });

    it('keeps keys apart that differ only in characters SQL, globs, paths or shells treat specially', async () => {
      const n = ns('chars');
      const keys = [
        'plain', 'a%b', 'aXb', 'a_b', 'a\\b', 'a\\\\b', "it's", 'say "hi"', 'a*b', 'a?b', '[ab]', 'a/b', '../up', '..', '.', '',
        'space here', 'tab\there', 'new\nline', 'colon:inside:key', 'ünïcødé ✓ 日本語 🚀', 'UPPER', 'upper', '%', '_', '\\', '%%', 'a'.repeat(1000),
      ];
      await level.setMany(keys.map((k, i) => ({ key: levelKey(n, k), value: buf(`value ${i}`), ttlMs: 60_000 })));
      const got = await level.getMany(keys.map((k) => levelKey(n, k)));
      expect(got.map(text)).toEqual(keys.map((_, i) => `value ${i}`));
      for (const [i, k] of keys.entries()) expect(text(await level.get(levelKey(n, k))), k).toBe(`value ${i}`);
      await level.delete([levelKey(n, 'a%b'), levelKey(n, 'a_b'), levelKey(n, '\\')]);
      const after = await level.getMany(keys.map((k) => levelKey(n, k)));
      expect(after.filter((v) => v === undefined)).toHaveLength(3);
      expect(text(after[keys.indexOf('aXb')])).toBe(`value ${keys.indexOf('aXb')}`);
      expect(text(after[keys.indexOf('a\\\\b')])).toBe(`value ${keys.indexOf('a\\\\b')}`);
      expect(text(after[keys.indexOf('%%')])).toBe(`value ${keys.indexOf('%%')}`);
    });

    it('the same key in two namespaces is two entries', async () => {
      await level.set(levelKey(ns('n1'), 'same'), buf('one'), 60_000);
      await level.set(levelKey(ns('n2'), 'same'), buf('two'), 60_000);
      expect(text(await level.get(levelKey(ns('n1'), 'same')))).toBe('one');
      expect(text(await level.get(levelKey(ns('n2'), 'same')))).toBe('two');
    });

    it('an entry is served until its TTL passes and not after (get and getMany)', async () => {
      const key = levelKey(ns('ttl'), 'k');
      const ttl = shortTtl();
      await level.set(key, buf('v'), ttl);
      if (f.clock) {
        await pass(ttl - 1);
        expect(text(await level.get(key))).toBe('v');
        expect(text((await level.getMany([key]))[0])).toBe('v');
        await pass(1);
      } else {
        expect(text(await level.get(key))).toBe('v');
        await pass(ttl + 300);
      }
      expect(await level.get(key)).toBeUndefined();
      expect(await level.getMany([key])).toEqual([undefined]);
    });

    it('setting a key again replaces its TTL too', async () => {
      const key = levelKey(ns('ttl2'), 'k');
      const ttl = shortTtl();
      await level.set(key, buf('short'), ttl);
      await level.set(key, buf('long'), 600_000);
      await pass(ttl + (f.clock ? 0 : 300));
      expect(text(await level.get(key))).toBe('long');
      // And shortening it works as well.
      await level.set(key, buf('short again'), ttl);
      await pass(ttl + (f.clock ? 0 : 300));
      expect(await level.get(key)).toBeUndefined();
    });

    it('setMany gives each entry its own TTL', async () => {
      const n = ns('ttl3');
      const ttl = shortTtl();
      await level.setMany([
        { key: levelKey(n, 'short'), value: buf('s'), ttlMs: ttl },
        { key: levelKey(n, 'long'), value: buf('l'), ttlMs: 600_000 },
      ]);
      await pass(ttl + (f.clock ? 0 : 300));
      expect((await level.getMany([levelKey(n, 'short'), levelKey(n, 'long')])).map(text)).toEqual([undefined, 'l']);
    });

    it('getMany returns 200 keys in the order asked, undefined for the missing ones and duplicates answered twice', async () => {
      const n = ns('many');
      const keys = Array.from({ length: 200 }, (_, i) => levelKey(n, `key-${i}`));
      await level.setMany(keys.filter((_, i) => i % 3 !== 0).map((key) => ({ key, value: buf(`v:${key}`), ttlMs: 60_000 })));
      // Odd indexes ascending, then even ones descending; two duplicates and a key never written.
      const asked = [...keys.filter((_, i) => i % 2 === 1), ...keys.filter((_, i) => i % 2 === 0).reverse()];
      asked.push(keys[1]!, keys[1]!, levelKey(n, 'never'));
      const got = await level.getMany(asked);
      expect(got).toHaveLength(asked.length);
      for (const [i, key] of asked.entries()) {
        const written = keys.indexOf(key) >= 0 && keys.indexOf(key) % 3 !== 0;
        expect(text(got[i]), key).toBe(written ? `v:${key}` : undefined);
      }
      expect(got.filter((v) => v !== undefined)).toHaveLength(133 + 2);
    });

    it('setMany writes 200 entries; a key given twice keeps its last value; empty batches are no-ops', async () => {
      const n = ns('setmany');
      const entries = Array.from({ length: 200 }, (_, i) => ({ key: levelKey(n, `k${i}`), value: buf(`value ${i}`), ttlMs: 60_000 }));
      entries.push({ key: levelKey(n, 'k5'), value: buf('last wins'), ttlMs: 60_000 });
      await level.setMany(entries);
      const got = await level.getMany(entries.slice(0, 200).map((e) => e.key));
      expect(got.map(text)).toEqual(entries.slice(0, 200).map((e, i) => (i === 5 ? 'last wins' : `value ${i}`)));
      await level.setMany([]);
      expect(await level.getMany([])).toEqual([]);
      await level.delete([]);
    });

    it('delete removes exactly the keys given; missing keys are fine', async () => {
      const n = ns('del');
      await level.setMany(['a', 'b', 'c', 'ab'].map((k) => ({ key: levelKey(n, k), value: buf(k), ttlMs: 60_000 })));
      await level.delete([levelKey(n, 'a'), levelKey(n, 'c'), levelKey(n, 'missing')]);
      expect((await level.getMany(['a', 'b', 'c', 'ab'].map((k) => levelKey(n, k)))).map(text)).toEqual([undefined, 'b', undefined, 'ab']);
      await level.delete([levelKey(n, 'b')]);
      expect(await level.get(levelKey(n, 'b'))).toBeUndefined();
    });

    it('clear(namespace) drops exactly that namespace: not a longer one, not one a LIKE or glob would match', async () => {
      // `_` and `.` are allowed in namespaces; as LIKE or regex wildcards they would match `X`.
      const names = ['a', 'ab', 'a_b', 'aXb', 'a.b', 'a-b', 'b'].map((s) => ns(`clr-${s}`));
      const [a, ab, aUnderB, aXb, aDotB, aDashB, b] = names as [string, string, string, string, string, string, string];
      const write = async () => {
        for (const name of names) {
          await level.setMany([
            { key: levelKey(name, 'k'), value: buf(name), ttlMs: 60_000 },
            { key: levelKey(name, `${a}:nested`), value: buf(name), ttlMs: 60_000 },
          ]);
        }
      };
      const present = async () => {
        const got = await level.getMany(names.map((name) => levelKey(name, 'k')));
        return names.filter((_, i) => got[i] !== undefined);
      };
      await write();
      await level.clear(a);
      expect(await present()).toEqual([ab, aUnderB, aXb, aDotB, aDashB, b]);
      expect(text(await level.get(levelKey(ab, `${a}:nested`)))).toBe(ab);
      expect(await level.get(levelKey(a, `${a}:nested`))).toBeUndefined();
      await level.clear(aUnderB);
      expect(await present()).toEqual([ab, aXb, aDotB, aDashB, b]);
      await level.clear(aDotB);
      expect(await present()).toEqual([ab, aXb, aDashB, b]);
      // Clearing an empty or unknown namespace is fine.
      await level.clear(a);
      await level.clear(ns('clr-never-written'));
      // The namespace is usable after a clear.
      await level.set(levelKey(a, 'k'), buf('again'), 60_000);
      expect(text(await level.get(levelKey(a, 'k')))).toBe('again');
    });

    it('100 concurrent sets and gets of different keys all land', async () => {
      const n = ns('conc');
      await Promise.all(Array.from({ length: 100 }, (_, i) => level.set(levelKey(n, `k${i}`), buf(`v${i}`), 60_000)));
      const got = await Promise.all(Array.from({ length: 100 }, (_, i) => level.get(levelKey(n, `k${i}`))));
      expect(got.map(text)).toEqual(Array.from({ length: 100 }, (_, i) => `v${i}`));
    });

    it('another cache on the same backend is isolated: same keys, deletes and clears do not cross', async () => {
      const sibling = f.sibling;
      if (!sibling) return;
      const n = ns('iso');
      const key = levelKey(n, 'shared-name');
      await level.set(key, buf('mine'), 60_000);
      expect(await sibling.get(key)).toBeUndefined();
      await sibling.set(key, buf('theirs'), 60_000);
      expect(text(await level.get(key))).toBe('mine');
      expect(text(await sibling.get(key))).toBe('theirs');
      await sibling.delete([key]);
      expect(text(await level.get(key))).toBe('mine');
      await sibling.set(key, buf('theirs'), 60_000);
      await sibling.clear(n);
      await sibling.clear();
      expect(text(await level.get(key))).toBe('mine');
      await sibling.set(key, buf('theirs again'), 60_000);
      await level.clear();
      expect(await level.get(key)).toBeUndefined();
      expect(text(await sibling.get(key))).toBe('theirs again');
    });

    it('clear() drops every key of this level, in every namespace', async () => {
      const keys = ['x1', 'x2', 'x3'].map((s) => levelKey(ns(s), 'k'));
      await level.setMany(keys.map((key) => ({ key, value: buf(key), ttlMs: 60_000 })));
      expect((await level.getMany(keys)).every((v) => v !== undefined)).toBe(true);
      await level.clear();
      expect(await level.getMany(keys)).toEqual([undefined, undefined, undefined]);
      await level.set(keys[0]!, buf('after'), 60_000);
      expect(text(await level.get(keys[0]!))).toBe('after');
    });
  });
}
