import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { MemoryLru, type L1Entry, type MemoryLruOptions } from '../../src/cache/memory-lru.js';
import { invalidOption, seededRandom } from '../helpers.js';

const T0 = 1_700_000_000_000;

/** An entry alive for `ttlMs` from T0 (fresh for the first half), `size` bytes. */
function entry(value: unknown, size = 1, ttlMs = 60_000): L1Entry {
  return { value, storedAt: T0, freshUntil: T0 + ttlMs / 2, staleUntil: T0 + ttlMs, size };
}

function lru(options: Partial<MemoryLruOptions> = {}): { cache: MemoryLru; clock: ManualClock } {
  const clock = new ManualClock(T0);
  return { cache: new MemoryLru({ maxEntries: 100, maxBytes: 1_000_000, clock, ...options }), clock };
}

/** Keys from least to most recently used, read without disturbing the order (peek). */
function keysHeld(cache: MemoryLru, candidates: string[]): string[] {
  return candidates.filter((k) => cache.peek(k) !== undefined);
}

describe('MemoryLru options', () => {
  it.each([
    [{ maxEntries: 0, maxBytes: 10 }, 'maxEntries', '0'],
    [{ maxEntries: 1.5, maxBytes: 10 }, 'maxEntries', '1.5'],
    [{ maxEntries: -3, maxBytes: 10 }, 'maxEntries', '-3'],
    [{ maxEntries: Infinity, maxBytes: 10 }, 'maxEntries', 'Infinity'],
    [{ maxEntries: '10', maxBytes: 10 }, 'maxEntries', '"10"'],
    [{ maxBytes: 10 }, 'maxEntries', 'undefined'],
    [{ maxEntries: 10, maxBytes: 0 }, 'maxBytes', '0'],
    [{ maxEntries: 10, maxBytes: Number.NaN }, 'maxBytes', 'NaN'],
    [{ maxEntries: 10, maxBytes: -1 }, 'maxBytes', '-1'],
    [{ maxEntries: 10 }, 'maxBytes', 'undefined'],
    [{ maxEntries: 10, maxBytes: 10, clock: { now: () => 1 } }, 'clock', '{}'],
  ])('rejects %j naming %s', (options, path, received) => {
    const error = invalidOption(() => new MemoryLru(options as unknown as MemoryLruOptions));
    expect(error.message).toContain('MemoryLru options');
    expect(error.issues.map((i) => i.path)).toEqual([path]);
    expect(error.issues[0]!.received).toBe(received);
  });

  it('rejects unknown options and a missing options object', () => {
    const unknown = invalidOption(() => new MemoryLru({ maxEntries: 1, maxBytes: 1, maxAge: 5 } as unknown as MemoryLruOptions));
    expect(unknown.issues[0]!.expected).toContain('maxAge');
    invalidOption(() => new MemoryLru(undefined as unknown as MemoryLruOptions));
  });

  it('accepts maxBytes: Infinity (bounded by maxEntries only)', () => {
    const { cache } = lru({ maxEntries: 2, maxBytes: Infinity });
    expect(cache.set('n:a', entry('a', 1e12))).toBe(true);
    expect(cache.set('n:b', entry('b', 1e12))).toBe(true);
    expect(cache.set('n:c', entry('c', 1e12))).toBe(true);
    expect(keysHeld(cache, ['n:a', 'n:b', 'n:c'])).toEqual(['n:b', 'n:c']);
    expect(cache.bytes).toBe(2e12);
  });

  it('throws a RangeError for an entry size that is not a finite number >= 0, storing nothing', () => {
    const { cache } = lru();
    for (const size of [Number.NaN, -1, Infinity, undefined]) {
      expect(() => cache.set('n:a', { ...entry('a'), size: size as number })).toThrow(RangeError);
    }
    expect(cache.size).toBe(0);
    expect(cache.bytes).toBe(0);
  });
});

describe('MemoryLru', () => {
  it('returns the very entry object stored (no copy, no parsing) and peek returns it too', () => {
    const { cache } = lru();
    const e = entry({ answer: 42 }, 10);
    cache.set('n:a', e);
    expect(cache.get('n:a')).toBe(e);
    expect(cache.peek('n:a')).toBe(e);
    expect(cache.get('n:missing')).toBeUndefined();
    expect(cache.peek('n:missing')).toBeUndefined();
  });

  it('evicts the least recently used entry; get refreshes recency, peek does not', () => {
    const { cache } = lru({ maxEntries: 3 });
    cache.set('n:a', entry('a'));
    cache.set('n:b', entry('b'));
    cache.set('n:c', entry('c'));
    expect(cache.get('n:a')?.value).toBe('a'); // order now b, c, a
    expect(cache.peek('n:b')?.value).toBe('b'); // still b, c, a
    cache.set('n:d', entry('d'));
    expect(keysHeld(cache, ['n:a', 'n:b', 'n:c', 'n:d'])).toEqual(['n:a', 'n:c', 'n:d']);
    expect(cache.evictions).toBe(1);
    cache.get('n:c'); // a, d, c
    cache.set('n:e', entry('e'));
    cache.set('n:f', entry('f'));
    expect(keysHeld(cache, ['n:a', 'n:b', 'n:c', 'n:d', 'n:e', 'n:f'])).toEqual(['n:c', 'n:e', 'n:f']);
    expect(cache.evictions).toBe(3);
    expect(cache.size).toBe(3);
  });

  it('re-setting a key replaces the entry, makes it most recent and keeps the byte count exact', () => {
    const { cache } = lru({ maxEntries: 2 });
    cache.set('n:a', entry('a1', 5));
    cache.set('n:b', entry('b', 7));
    cache.set('n:a', entry('a2', 11)); // b, a
    expect(cache.size).toBe(2);
    expect(cache.bytes).toBe(18);
    cache.set('n:c', entry('c', 1));
    expect(cache.peek('n:b')).toBeUndefined();
    expect(cache.peek('n:a')?.value).toBe('a2');
    expect(cache.bytes).toBe(12);
    expect(cache.evictions).toBe(1);
  });

  it('evicts as many least recently used entries as it takes to fit maxBytes', () => {
    const { cache } = lru({ maxEntries: 100, maxBytes: 100 });
    for (const k of ['a', 'b', 'c', 'd']) cache.set(`n:${k}`, entry(k, 25));
    expect(cache.bytes).toBe(100);
    cache.get('n:a'); // b, c, d, a
    expect(cache.set('n:big', entry('big', 60))).toBe(true);
    // 100 + 60 = 160: b and c (50) are not enough, d too (75) gets it to 85.
    expect(keysHeld(cache, ['n:a', 'n:b', 'n:c', 'n:d', 'n:big'])).toEqual(['n:a', 'n:big']);
    expect(cache.bytes).toBe(85);
    expect(cache.evictions).toBe(3);
  });

  it('holds both bounds at once, whichever binds', () => {
    const { cache } = lru({ maxEntries: 3, maxBytes: 10 });
    cache.set('n:a', entry('a', 2));
    cache.set('n:b', entry('b', 2));
    cache.set('n:c', entry('c', 2));
    cache.set('n:d', entry('d', 2)); // count binds
    expect(keysHeld(cache, ['n:a', 'n:b', 'n:c', 'n:d'])).toEqual(['n:b', 'n:c', 'n:d']);
    cache.set('n:e', entry('e', 8)); // bytes bind: 6 + 8 = 14 > 10, count would also (4 > 3)
    expect(keysHeld(cache, ['n:b', 'n:c', 'n:d', 'n:e'])).toEqual(['n:d', 'n:e']);
    expect(cache.bytes).toBe(10);
    expect(cache.size).toBe(2);
    expect(cache.evictions).toBe(3);
  });

  it('an entry exactly maxBytes is stored (evicting everything else); one byte more is not', () => {
    const { cache } = lru({ maxEntries: 10, maxBytes: 50 });
    cache.set('n:a', entry('a', 10));
    expect(cache.set('n:exact', entry('exact', 50))).toBe(true);
    expect(keysHeld(cache, ['n:a', 'n:exact'])).toEqual(['n:exact']);
    expect(cache.bytes).toBe(50);
  });

  it('does not store an entry larger than maxBytes and removes the older entry under its key', () => {
    const { cache } = lru({ maxEntries: 10, maxBytes: 50 });
    cache.set('n:a', entry('old', 10));
    cache.set('n:b', entry('b', 10));
    expect(cache.set('n:a', entry('huge', 51))).toBe(false);
    expect(cache.get('n:a')).toBeUndefined();
    expect(cache.peek('n:b')?.value).toBe('b'); // nothing else was evicted for it
    expect(cache.size).toBe(1);
    expect(cache.bytes).toBe(10);
    expect(cache.evictions).toBe(0);
  });

  it('serves an entry until staleUntil (stale ones too) and drops it from then on (ManualClock)', async () => {
    const { cache, clock } = lru();
    const e = entry('v', 4, 1_000); // fresh until T0+500, stale until T0+1000
    cache.set('n:k', e);
    await clock.advance(600); // stale but served: freshness is the tiered cache's call
    expect(cache.get('n:k')).toBe(e);
    clock.set(T0 + 999);
    expect(cache.get('n:k')).toBe(e);
    expect(cache.peek('n:k')).toBe(e);
    clock.set(T0 + 1_000);
    expect(cache.get('n:k')).toBeUndefined();
    expect(cache.size).toBe(0);
    expect(cache.bytes).toBe(0);
    expect(cache.expirations).toBe(1);
    expect(cache.evictions).toBe(0);
  });

  it('peek drops an expired entry too', () => {
    const { cache, clock } = lru();
    cache.set('n:k', entry('v', 3, 100));
    clock.set(T0 + 100);
    expect(cache.peek('n:k')).toBeUndefined();
    expect(cache.size).toBe(0);
    expect(cache.expirations).toBe(1);
  });

  it('does not store an entry already past staleUntil and removes the older one', () => {
    const { cache, clock } = lru();
    cache.set('n:k', entry('old', 3));
    clock.set(T0 + 5_000);
    expect(cache.set('n:k', { value: 'dead', storedAt: T0, freshUntil: T0 + 10, staleUntil: T0 + 5_000, size: 3 })).toBe(false);
    expect(cache.get('n:k')).toBeUndefined();
    expect(cache.size).toBe(0);
    expect(cache.bytes).toBe(0);
  });

  it('sweeps expired entries that are never read again as new entries are set', () => {
    const { cache, clock } = lru({ maxEntries: 1_000 });
    for (let i = 0; i < 100; i++) cache.set(`old:${i}`, entry(i, 2, 1_000));
    clock.set(T0 + 1_000);
    // Two entries looked at per set, one added: the cursor (somewhere in the middle after the first 100
    // sets) finishes its lap and comes back round to every old entry within 100 more sets.
    for (let i = 0; i < 100; i++) cache.set(`new:${i}`, { ...entry(i, 1), staleUntil: T0 + 60_000 });
    expect(cache.size).toBe(100);
    expect(cache.bytes).toBe(100);
    expect(cache.expirations).toBe(100);
    expect(cache.evictions).toBe(0);
  });

  it('the sweep keeps reaching expired entries while the same hot keys are re-set and read', () => {
    const { cache, clock } = lru({ maxEntries: 1_000 });
    for (let i = 0; i < 200; i++) cache.set(`cold:${i}`, entry(i, 1, 1_000));
    clock.set(T0 + 1_000);
    for (let round = 0; round < 150; round++) {
      const key = `hot:${round % 5}`;
      cache.set(key, { ...entry(round, 1), staleUntil: T0 + 60_000 });
      cache.get(`hot:${(round + 1) % 5}`);
    }
    expect(cache.size).toBe(5);
    expect(cache.expirations).toBe(200);
  });

  it('purgeExpired drops every expired entry at once', () => {
    const { cache, clock } = lru();
    for (let i = 0; i < 10; i++) cache.set(`n:short${i}`, entry(i, 1, 100));
    for (let i = 0; i < 5; i++) cache.set(`n:long${i}`, entry(i, 1, 10_000));
    clock.set(T0 + 100);
    expect(cache.purgeExpired()).toBe(10);
    expect(cache.size).toBe(5);
    expect(cache.bytes).toBe(5);
    expect(cache.expirations).toBe(10);
  });

  it('clearNamespace drops exactly <namespace>:... (not ab:..., not a keys that merely contain it)', () => {
    const { cache } = lru();
    cache.set('a:1', entry(1, 1));
    cache.set('a:x:y', entry(2, 2));
    cache.set('a:', entry(3, 4));
    cache.set('ab:1', entry(4, 8));
    cache.set('b:a:1', entry(5, 16));
    cache.set('a', entry(6, 32));
    cache.set('A:1', entry(7, 64));
    expect(cache.clearNamespace('a')).toBe(3);
    expect(keysHeld(cache, ['a:1', 'a:x:y', 'a:', 'ab:1', 'b:a:1', 'a', 'A:1'])).toEqual(['ab:1', 'b:a:1', 'a', 'A:1']);
    expect(cache.bytes).toBe(8 + 16 + 32 + 64);
    expect(cache.clearNamespace('a')).toBe(0);
    expect(cache.clearNamespace('ab')).toBe(1);
    expect(cache.evictions).toBe(0);
  });

  it('delete and clear keep the counts exact and are not evictions', () => {
    const { cache } = lru({ maxEntries: 3 });
    cache.set('n:a', entry('a', 3));
    cache.set('n:b', entry('b', 4));
    expect(cache.delete('n:a')).toBe(true);
    expect(cache.delete('n:a')).toBe(false);
    expect(cache.size).toBe(1);
    expect(cache.bytes).toBe(4);
    cache.clear();
    expect(cache.size).toBe(0);
    expect(cache.bytes).toBe(0);
    expect(cache.get('n:b')).toBeUndefined();
    // Usable after clear, with LRU order intact.
    for (const k of ['c', 'd', 'e', 'f']) cache.set(`n:${k}`, entry(k));
    expect(keysHeld(cache, ['n:c', 'n:d', 'n:e', 'n:f'])).toEqual(['n:d', 'n:e', 'n:f']);
    expect(cache.evictions).toBe(1);
  });

  it('matches a reference LRU model over 20 000 random gets, sets and deletes', () => {
    const random = seededRandom(7);
    const maxEntries = 40;
    const maxBytes = 300;
    const cache = new MemoryLru({ maxEntries, maxBytes, clock: new ManualClock(T0) });
    // The model: an array from least to most recently used.
    let model: Array<{ key: string; entry: L1Entry }> = [];
    let evictions = 0;
    const bytes = () => model.reduce((sum, m) => sum + m.entry.size, 0);
    for (let op = 0; op < 20_000; op++) {
      const key = `${random() < 0.5 ? 'a' : 'b'}:${Math.floor(random() * 80)}`;
      const r = random();
      const i = model.findIndex((m) => m.key === key);
      if (r < 0.45) {
        const hit = i >= 0 ? model.splice(i, 1)[0] : undefined;
        if (hit) model.push(hit);
        expect(cache.get(key)).toBe(hit?.entry);
      } else if (r < 0.92) {
        const e = entry(op, Math.floor(random() * 70));
        if (i >= 0) model.splice(i, 1);
        expect(cache.set(key, e)).toBe(e.size <= maxBytes);
        if (e.size <= maxBytes) model.push({ key, entry: e });
        while (model.length > maxEntries || bytes() > maxBytes) {
          model.shift();
          evictions++;
        }
      } else {
        expect(cache.delete(key)).toBe(i >= 0);
        if (i >= 0) model.splice(i, 1);
      }
      if (op % 250 === 0) {
        expect(cache.size).toBe(model.length);
        expect(cache.bytes).toBe(bytes());
        expect(keysHeld(cache, model.map((m) => m.key))).toEqual(model.map((m) => m.key));
      }
    }
    expect(cache.evictions).toBe(evictions);
    expect(evictions).toBeGreaterThan(1_000);
  });

  it('with the system clock, expires by wall time', async () => {
    const cache = new MemoryLru({ maxEntries: 10, maxBytes: Infinity });
    const now = Date.now();
    expect(cache.set('n:gone', { value: 1, storedAt: now, freshUntil: now - 1, staleUntil: now - 1, size: 1 })).toBe(false);
    cache.set('n:short', { value: 2, storedAt: now, freshUntil: now + 30, staleUntil: now + 60, size: 1 });
    cache.set('n:long', { value: 3, storedAt: now, freshUntil: now + 60_000, staleUntil: now + 60_000, size: 1 });
    await new Promise((resolve) => setTimeout(resolve, 120));
    expect(cache.get('n:short')).toBeUndefined();
    expect(cache.get('n:long')?.value).toBe(3);
  });
});
