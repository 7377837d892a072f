import { z } from 'zod';
import { systemClock, type Clock } from '../clock.js';
import { clockSchema, parseOptions, positiveInt } from '../options/validate.js';

/**
 * One L1 entry: the decoded value plus the freshness the tiered cache decided. L1 only acts on `staleUntil`
 * (the entry is gone from then on); `freshUntil` is for the tiered cache's stale-while-revalidate.
 */
export interface L1Entry<V = unknown> {
  value: V;
  storedAt: number;
  /** Served as a plain hit before this time (ms, clock time). */
  freshUntil: number;
  /** Served as stale before this time; from this time on the entry is gone. */
  staleUntil: number;
  /** Bytes counted against `maxBytes` (an estimate the tiered cache computes once, at set). */
  size: number;
}

export interface MemoryLruOptions {
  /** Entries kept at most (a positive integer). */
  maxEntries: number;
  /**
   * Sum of entry sizes kept at most: a positive integer, or Infinity to bound by `maxEntries` only (when
   * sizes are not measured). An entry larger than this on its own is never stored.
   */
  maxBytes: number;
  /** Default systemClock (read at most once a millisecond, see `now`); a ManualClock is read on every call. */
  clock?: Clock;
}

export const memoryLruOptionsSchema = z.strictObject({
  maxEntries: positiveInt,
  maxBytes: z.union([positiveInt, z.literal(Infinity)]),
  clock: clockSchema.optional(),
});

/** A list node; the caller's entry object is kept as given (never extended), so it may be frozen or shared. */
interface Node {
  key: string;
  entry: L1Entry;
  prev: Node;
  next: Node;
}

/**
 * Entries the expiry sweep looks at per `set`. A set adds at most one entry, so visiting two per set lets the
 * cursor overtake growth and finish its lap: every entry is looked at within about `size` sets.
 */
const SWEEP_STEP = 2;

/**
 * The L1 cache level: in-process, bounded by entry count and by bytes, least-recently-used eviction.
 *
 * A Map from key to a node of a circular doubly linked list (a sentinel marks both ends: `sentinel.next` is
 * the least recently used node, `sentinel.prev` the most recent). `get` is a Map lookup, one comparison and
 * four pointer writes. (Moving keys inside the Map itself by delete + re-insert measured 10 to 20 times
 * slower on V8: every move leaves a hole that later inserts and rehashes pay for.)
 *
 * Expired entries are dropped when read, evicted like any other when a bound is hit, and swept a couple per
 * `set` by a cursor that walks the Map (so an entry that is never read again goes within about `size` sets,
 * with no timer and no full scan); `purgeExpired()` drops them all at once.
 */
export class MemoryLru {
  readonly maxEntries: number;
  readonly maxBytes: number;
  private readonly clock: Clock;
  /** systemClock is read through `cachedNow` (see `now`); any other clock on every call. */
  private readonly coarse: boolean;
  private cachedNow = -1;
  private readonly forgetNow = (): void => {
    this.cachedNow = -1;
  };
  private readonly map = new Map<string, Node>();
  private readonly sentinel: Node;
  private totalBytes = 0;
  private evicted = 0;
  private expired = 0;
  /** The expiry sweep's position; a Map iterator keeps working across deletes and inserts. */
  private cursor: IterableIterator<Node> | undefined;

  constructor(options: MemoryLruOptions) {
    const o = parseOptions(memoryLruOptionsSchema, options, 'MemoryLru options');
    this.maxEntries = o.maxEntries;
    this.maxBytes = o.maxBytes;
    this.clock = o.clock ?? systemClock;
    this.coarse = this.clock === systemClock;
    const sentinel = { key: '', entry: undefined as unknown as L1Entry } as Node;
    sentinel.prev = sentinel;
    sentinel.next = sentinel;
    this.sentinel = sentinel;
  }

  /** Entries held (expired ones not yet dropped included). */
  get size(): number {
    return this.map.size;
  }

  /** Sum of the held entries' sizes. */
  get bytes(): number {
    return this.totalBytes;
  }

  /** Entries dropped to keep within maxEntries / maxBytes (not expiries, not deletes). */
  get evictions(): number {
    return this.evicted;
  }

  /** Entries dropped because they were past `staleUntil` (on read, by the sweep or by purgeExpired). */
  get expirations(): number {
    return this.expired;
  }

  /** The entry, marked most recently used; undefined (and dropped) once now >= staleUntil. */
  get(key: string): L1Entry | undefined {
    const node = this.map.get(key);
    if (node === undefined) return undefined;
    const entry = node.entry;
    if (this.now() >= entry.staleUntil) {
      this.expire(node);
      return undefined;
    }
    const sentinel = this.sentinel;
    if (sentinel.prev !== node) {
      node.prev.next = node.next;
      node.next.prev = node.prev;
      node.prev = sentinel.prev;
      node.next = sentinel;
      sentinel.prev.next = node;
      sentinel.prev = node;
    }
    return entry;
  }

  /** Like get, without marking the entry used. */
  peek(key: string): L1Entry | undefined {
    const node = this.map.get(key);
    if (node === undefined) return undefined;
    if (this.now() >= node.entry.staleUntil) {
      this.expire(node);
      return undefined;
    }
    return node.entry;
  }

  /**
   * Stores `entry` as the most recently used one, then evicts least recently used entries until both bounds
   * hold. Returns false, storing nothing and removing any older entry under `key`, when the entry alone is
   * larger than maxBytes or is already past staleUntil.
   */
  set(key: string, entry: L1Entry): boolean {
    const size = entry.size;
    // A NaN or negative size would corrupt the byte count for good: that is a bug in the caller.
    if (!(size >= 0 && size < Infinity)) throw new RangeError(`MemoryLru: entry size must be a finite number >= 0, got ${String(size)}`);
    const now = this.now();
    const previous = this.map.get(key);
    if (previous !== undefined) this.remove(previous);
    if (size > this.maxBytes || now >= entry.staleUntil) return false;
    const sentinel = this.sentinel;
    const node: Node = { key, entry, prev: sentinel.prev, next: sentinel };
    sentinel.prev.next = node;
    sentinel.prev = node;
    this.map.set(key, node);
    this.totalBytes += size;
    this.sweepStep(now);
    // The new node is the most recent, and fits alone, so this stops before reaching it.
    while (this.map.size > this.maxEntries || this.totalBytes > this.maxBytes) {
      this.remove(sentinel.next);
      this.evicted++;
    }
    return true;
  }

  delete(key: string): boolean {
    const node = this.map.get(key);
    if (node === undefined) return false;
    this.remove(node);
    return true;
  }

  /** Drops exactly the keys `<namespace>:...`; returns how many. */
  clearNamespace(namespace: string): number {
    const prefix = `${namespace}:`;
    let dropped = 0;
    for (const node of this.map.values()) {
      if (node.key.startsWith(prefix)) {
        this.remove(node);
        dropped++;
      }
    }
    return dropped;
  }

  clear(): void {
    this.map.clear();
    this.sentinel.prev = this.sentinel;
    this.sentinel.next = this.sentinel;
    this.totalBytes = 0;
    this.cursor = undefined;
  }

  /** Drops every expired entry now (a full scan); returns how many. */
  purgeExpired(): number {
    const now = this.now();
    let dropped = 0;
    for (const node of this.map.values()) {
      if (now >= node.entry.staleUntil) {
        this.expire(node);
        dropped++;
      }
    }
    return dropped;
  }

  /**
   * The time expiry is compared with. Reading the system clock costs more than the rest of a hit (70 to
   * 100 ns on virtual machines), so, like lru-cache's ttlResolution, systemClock is read at most once per
   * millisecond: an entry may be served up to about 1 ms past staleUntil (longer only while one synchronous
   * run keeps the event loop from firing the reset timer). Injected clocks are read every time, so tests
   * stay exact. Public so the tiered cache compares `freshUntil` on an L1 hit with the same reading
   * instead of a clock read of its own per hit.
   */
  now(): number {
    if (!this.coarse) return this.clock.now();
    if (this.cachedNow < 0) {
      this.cachedNow = Date.now();
      setTimeout(this.forgetNow, 1).unref();
    }
    return this.cachedNow;
  }

  private remove(node: Node): void {
    node.prev.next = node.next;
    node.next.prev = node.prev;
    this.map.delete(node.key);
    this.totalBytes -= node.entry.size;
  }

  private expire(node: Node): void {
    this.remove(node);
    this.expired++;
  }

  /** Looks at the next SWEEP_STEP entries of the rolling cursor and drops the expired ones. */
  private sweepStep(now: number): void {
    for (let i = 0; i < SWEEP_STEP; i++) {
      this.cursor ??= this.map.values();
      const next = this.cursor.next();
      if (next.done) {
        // The next lap starts on the next set, so one set never walks the Map twice.
        this.cursor = undefined;
        return;
      }
      if (now >= next.value.entry.staleUntil) this.expire(next.value);
    }
  }
}
