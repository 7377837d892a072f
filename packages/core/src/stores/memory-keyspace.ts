/**
 * MemoryStore's data: keys with optional expiry, holding strings or Buffers (what `get`/`set` see: Redis
 * strings) or any JS value a script's memory half keeps (a parsed hash, a limiter state). Expired keys vanish
 * on read; a periodic sweep frees keys nobody reads again.
 */
export class MemoryKeyspace {
  private readonly values = new Map<string, unknown>();
  private readonly expiries = new Map<string, number>();

  constructor(private readonly now: () => number) {}

  get size(): number {
    return this.values.size;
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  get<T = unknown>(key: string): T | undefined {
    const at = this.expiries.get(key);
    if (at !== undefined && at <= this.now()) {
      this.values.delete(key);
      this.expiries.delete(key);
      return undefined;
    }
    return this.values.get(key) as T | undefined;
  }

  /** Stores `value`; `ttlMs` undefined keeps no expiry (like SET without PX it clears an old one). */
  set(key: string, value: unknown, ttlMs?: number): void {
    this.values.set(key, value);
    if (ttlMs === undefined) this.expiries.delete(key);
    else this.expiries.set(key, this.now() + ttlMs);
  }

  /** Stores a Redis-string value; a Buffer is copied, so the caller may reuse or change its own afterwards. */
  setString(key: string, value: string | Buffer, ttlMs?: number): void {
    this.set(key, typeof value === 'string' ? value : Buffer.from(value), ttlMs);
  }

  /** The value as a string (a Buffer read as utf8); undefined when missing or not a string value. */
  getString(key: string): string | undefined {
    const value = this.get(key);
    if (typeof value === 'string') return value;
    return Buffer.isBuffer(value) ? value.toString('utf8') : undefined;
  }

  /** The value's bytes in a fresh Buffer (the caller may change it); undefined when missing or not a string value. */
  getBytes(key: string): Buffer | undefined {
    const value = this.get(key);
    if (typeof value === 'string') return Buffer.from(value, 'utf8');
    return Buffer.isBuffer(value) ? Buffer.from(value) : undefined;
  }

  /** Like PEXPIRE: false when the key does not exist. */
  expire(key: string, ttlMs: number): boolean {
    if (!this.has(key)) return false;
    this.expiries.set(key, this.now() + ttlMs);
    return true;
  }

  /** Remaining time to live in ms; -1 without expiry, -2 when the key does not exist (as PTTL). */
  ttl(key: string): number {
    if (!this.has(key)) return -2;
    const at = this.expiries.get(key);
    return at === undefined ? -1 : at - this.now();
  }

  delete(key: string): boolean {
    const existed = this.has(key);
    this.values.delete(key);
    this.expiries.delete(key);
    return existed;
  }

  /** Deletes every key starting with `prefix`; returns how many were live (expired ones go uncounted). */
  deleteByPrefix(prefix: string): number {
    let deleted = 0;
    for (const key of this.values.keys()) {
      if (!key.startsWith(prefix)) continue;
      if (this.delete(key)) deleted++;
    }
    return deleted;
  }

  /** Drops every expired key; returns how many. */
  sweep(): number {
    const now = this.now();
    let dropped = 0;
    for (const [key, at] of this.expiries) {
      if (at <= now) {
        this.values.delete(key);
        this.expiries.delete(key);
        dropped++;
      }
    }
    return dropped;
  }

  clear(): void {
    this.values.clear();
    this.expiries.clear();
  }
}
