import { InvalidOptionError } from '../errors.js';
import type { Store } from '../stores/store.js';
import { NAMESPACE_PATTERN, type CacheLevel } from './cache-level.js';

export interface RedisLevelOptions {
  /** Where entries live: a RedisStore (shared L2) or a MemoryStore (one process, tests). Stays open on close(). */
  store: Store;
  /** The cache's name, part of every key, so two caches on one store never collide. Default 'amas'. */
  name?: string;
}

/**
 * L2 on a Store: the entry for level key K is the store key `store.key('cache:<name>:' + K)`. The whole name
 * is the hash tag, so each entry hashes to its own Cluster slot (entries spread over the masters; each
 * command touches one key) and every key of a cache, or of one namespace, shares a textual prefix that
 * `clear` deletes by.
 */
export class RedisLevel implements CacheLevel {
  readonly name = 'redis';
  /** The cache's name (the `name` option). */
  readonly cacheName: string;
  private readonly store: Store;
  /** `cache:<name>:`: the tag of every key starts with it. */
  private readonly tagPrefix: string;
  /** The full key names of this cache start with it: `<store prefix>{cache:<name>:` (the tag left open). */
  private readonly keyPrefix: string;

  constructor(options: RedisLevelOptions) {
    this.store = options.store;
    this.cacheName = options.name ?? 'amas';
    // ':' in a name would let cache "a:b" and cache "a", namespace "b" share keys.
    if (typeof this.cacheName !== 'string' || !NAMESPACE_PATTERN.test(this.cacheName)) {
      throw new InvalidOptionError([{ path: 'name', received: JSON.stringify(this.cacheName), expected: `a cache name matching ${NAMESPACE_PATTERN}` }], 'RedisLevel options');
    }
    this.tagPrefix = `cache:${this.cacheName}:`;
    this.keyPrefix = openTag(this.store, this.tagPrefix);
  }

  get(key: string): Promise<Buffer | undefined> {
    return this.store.getBuffer(this.storeKey(key));
  }

  async getMany(keys: readonly string[]): Promise<Array<Buffer | undefined>> {
    if (keys.length === 0) return [];
    return this.store.getMany(keys.map((key) => this.storeKey(key)));
  }

  async set(key: string, value: Buffer, ttlMs: number): Promise<void> {
    checkTtl(ttlMs);
    await this.store.set(this.storeKey(key), value, { ttlMs });
  }

  async setMany(entries: ReadonlyArray<{ key: string; value: Buffer; ttlMs: number }>): Promise<void> {
    // All checked before any is written: a bad entry writes nothing.
    for (const entry of entries) checkTtl(entry.ttlMs);
    if (entries.length === 0) return;
    await this.store.setMany(entries.map(({ key, value, ttlMs }) => ({ key: this.storeKey(key), value, ttlMs })));
  }

  async delete(keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return;
    await this.store.deleteMany(keys.map((key) => this.storeKey(key)));
  }

  async clear(namespace?: string): Promise<void> {
    if (namespace === undefined) {
      await this.store.deleteByPrefix(this.keyPrefix);
      return;
    }
    // A pattern-like namespace ('*', '') must not widen what is deleted.
    if (typeof namespace !== 'string' || !NAMESPACE_PATTERN.test(namespace)) {
      throw new TypeError(`RedisLevel.clear: namespace ${JSON.stringify(namespace)} does not match ${NAMESPACE_PATTERN}`);
    }
    // The ':' after the namespace keeps namespace 'a' from reaching 'ab'.
    await this.store.deleteByPrefix(`${this.keyPrefix}${namespace}:`);
  }

  /** The store belongs to whoever created it: nothing to release here. */
  async close(): Promise<void> {}

  private storeKey(key: string): string {
    return this.store.key(this.tagPrefix + key);
  }
}

/**
 * `store.key(tag)` is `<prefix>{<tag>}`: cutting the closing brace leaves the prefix every key whose tag
 * starts with `tag` shares. Checked, so a store that builds keys differently fails here, not in a clear().
 */
function openTag(store: Store, tag: string): string {
  const full = store.key(tag);
  if (!full.endsWith(`{${tag}}`)) throw new TypeError(`RedisLevel: store.key(${JSON.stringify(tag)}) gave ${JSON.stringify(full)}, expected it to end with {${tag}}`);
  return full.slice(0, -1);
}

/** The tiered cache always passes a positive TTL; anything else is a bug, not "keep forever". */
function checkTtl(ttlMs: number): void {
  if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs <= 0) {
    throw new TypeError(`RedisLevel: ttlMs must be a positive finite number of ms, got ${String(ttlMs)}`);
  }
}
