/**
 * A shared or persistent cache level (L2 Redis, L3 PostgreSQL or files). Levels store opaque bytes: the
 * tiered cache encodes each entry (value, encoding, freshness) into one Buffer (cache-record.ts), so a level
 * knows nothing about values, compression or stale-while-revalidate. L1 (in-process) is different: it keeps
 * decoded values, so an L1 hit costs no parsing (memory-lru.ts).
 *
 * Keys a level receives are `<namespace>:<key>`; namespaces match NAMESPACE_PATTERN (no ':' inside), so
 * `clear(namespace)` can drop exactly the keys that start with `<namespace>:`.
 *
 * Every method may reject (the level is down, slow, misconfigured); the tiered cache counts and logs that,
 * skips the level, and never fails the caller's call because of it.
 */
export interface CacheLevel {
  /** For stats, metrics and log lines: 'redis', 'postgres', 'file'. */
  readonly name: string;
  /** undefined when absent or expired. */
  get(key: string): Promise<Buffer | undefined>;
  /** Batched: one round trip (or one socket write) for all keys; results in the order of `keys`. */
  getMany(keys: readonly string[]): Promise<Array<Buffer | undefined>>;
  /** `ttlMs` > 0: the level drops the entry after it. */
  set(key: string, value: Buffer, ttlMs: number): Promise<void>;
  /** Batched like getMany. */
  setMany(entries: ReadonlyArray<{ key: string; value: Buffer; ttlMs: number }>): Promise<void>;
  delete(keys: readonly string[]): Promise<void>;
  /** Drops every key of one namespace, or every key this level holds for the cache when undefined. */
  clear(namespace?: string): Promise<void>;
  /** Releases connections, timers and file handles the level owns (a client passed in stays open). */
  close(): Promise<void>;
}

/** Namespaces: letters, digits, `_`, `-`, `.`; 1 to 100 characters. */
export const NAMESPACE_PATTERN = /^[A-Za-z0-9_.-]{1,100}$/;

/** The key a level receives for `key` in `namespace`. */
export function levelKey(namespace: string, key: string): string {
  return `${namespace}:${key}`;
}
