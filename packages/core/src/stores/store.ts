/**
 * The Store contract: where state lives that more than one replica must agree on (limiter windows, breaker
 * state, dedup leases). `MemoryStore` is the zero-set-up default for one process; `RedisStore` shares state
 * between replicas.
 *
 * Every multi-step update is a `StoreScript`: one Lua script for Redis (run with EVALSHA, so it is atomic
 * and costs one round trip) and the same update written in JS for MemoryStore (atomic because it runs
 * synchronously). Writing both side by side keeps the two stores' behaviour identical, and the conformance
 * suite (packages/core/test/stores/) checks it.
 */
import type { MemoryKeyspace } from './memory-keyspace.js';

export type ScriptArg = string | number;

/**
 * One atomic update. Conventions for `lua`:
 * - every key it touches is passed in KEYS and built with `store.key()`, so all of them share one hash tag
 *   (a script never spans Redis Cluster slots);
 * - the store appends one more ARGV after the caller's: the time in ms when the store was given a clock
 *   (tests), else '' and the script reads Redis server time (`now_ms(ARGV[#ARGV])` from `STORE_LUA_NOW`),
 *   so replicas with skewed clocks still agree; the memory half gets that time as `now`;
 * - it returns what `decode` turns into the result (Lua numbers are integers; return floats as strings).
 */
export interface StoreScript<R> {
  /** For metrics and errors. */
  readonly name: string;
  readonly lua: string;
  /**
   * The same update against MemoryStore's keyspace. Must return exactly what the Lua script returns for the
   * same inputs (integers as numbers, strings as strings, nested arrays), so `decode` serves both.
   */
  memory(space: MemoryKeyspace, keys: string[], args: string[], now: number): unknown;

  decode(raw: unknown): R;
}

/** Lua prelude: `now_ms(ARGV[#ARGV])` is the caller's time when given, else Redis server time in ms. */
export const STORE_LUA_NOW = `
local function now_ms(given)
  if given ~= nil and given ~= '' then return tonumber(given) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`;

export interface SetOptions {
  /** Time to live in ms; the key disappears after it. Default: no expiry. */
  ttlMs?: number;
  /** Only set when the key does not exist (SET NX); the result says whether it was set. */
  ifAbsent?: boolean;
}

/** One write of a batch (`setMany`). */
export interface StoreEntry {
  key: string;
  value: string | Buffer;
  /** Time to live in ms; default: no expiry. */
  ttlMs?: number;
}

export interface StoreRunOptions {
  /** Run on the connection for slow work (large values), so it never delays limiter decisions. */
  slow?: boolean;
  /** This call's deadline instead of the store's `commandTimeoutMs`. */
  timeoutMs?: number;
}

export type StoreMessageListener = (message: string, channel: string) => void;

export interface StoreSubscription {
  unsubscribe(): Promise<void>;
}

export type StoreStatus = 'ready' | 'connecting' | 'down';

export interface StoreHealth {
  kind: 'memory' | 'redis';
  status: StoreStatus;
  /** The breaker around the store: open means calls fail fast without reaching it. */
  breaker: 'closed' | 'open' | 'half-open';
  commands: number;
  errors: number;
  timeouts: number;
  reconnects: number;
  /** Mean command latency over the commands so far (ms). */
  meanLatencyMs: number;
  lastError?: string;
}

export interface StoreEvents {
  /** The store stopped answering (errors, timeouts or a lost connection). Emitted once per outage. */
  down: { error: unknown };
  /** The store answers again after an outage. */
  up: { downForMs: number };
}

export interface Store {
  readonly kind: 'memory' | 'redis';
  /** Prepended to every key (`amas:` by default). */
  readonly prefix: string;
  /**
   * Builds a key: `<prefix>{<tag>}<rest...>`. Keys one script touches must share `tag`, which Redis Cluster
   * hashes alone, so they land in one slot.
   */
  key(tag: string, ...rest: string[]): string;
  /** Runs a script atomically; rejects StoreUnavailableError when the store cannot answer in time. */
  run<R>(script: StoreScript<R>, keys: string[], args: ScriptArg[], options?: StoreRunOptions): Promise<R>;
  /** A value set as a Buffer reads back as its utf8 string. */
  get(key: string): Promise<string | undefined>;
  /** The value's bytes (binary-safe); a value set as a string reads back as its utf8 bytes. */
  getBuffer(key: string): Promise<Buffer | undefined>;
  /**
   * Results in the order of `keys`, undefined for a missing key. One round trip on a single node; on a
   * Cluster one command per hash slot (keys sharing a tag travel together).
   */
  getMany(keys: readonly string[]): Promise<Array<Buffer | undefined>>;
  /** Returns false only when `ifAbsent` was set and the key existed. The store keeps its own copy of a Buffer. */
  set(key: string, value: string | Buffer, options?: SetOptions): Promise<boolean>;
  /** Writes every entry (pipelined: the commands leave together); not atomic across entries. */
  setMany(entries: ReadonlyArray<StoreEntry>): Promise<void>;
  delete(key: string): Promise<boolean>;
  /** Deletes the keys (UNLINK on Redis); returns how many existed. */
  deleteMany(keys: readonly string[]): Promise<number>;
  /**
   * Deletes every key whose full name starts with `prefix` (which must start with the store's own `prefix`,
   * so no call can reach another application's keys); returns how many. Not atomic: on Redis it scans the
   * keyspace (on every Cluster master), so keys written meanwhile may survive.
   */
  deleteByPrefix(prefix: string): Promise<number>;
  /** Adds `by` (default 1) and returns the new value; `ttlMs` applies when the increment creates the key. */
  increment(key: string, by?: number, ttlMs?: number): Promise<number>;
  publish(channel: string, message: string): Promise<void>;
  /**
   * Channels are prefixed like keys. Resolves once the subscription is active. Delivery is at most once and,
   * on a Redis Cluster, not ordered across publishes (they may travel over different bus links): messages
   * carry what receivers need to order them (shared breakers use an epoch).
   */
  subscribe(channel: string, listener: StoreMessageListener): Promise<StoreSubscription>;
  /** True while the store answers (for fallbacks that must decide without waiting). */
  readonly available: boolean;
  /**
   * Resolves once the store can take commands (at once for a store with nothing to connect); rejects
   * StoreUnavailableError after `timeoutMs` or once a connection attempt failed. Work that must read the
   * store at start-up (an index rebuilt from it) waits for this instead of failing on a store still connecting.
   */
  ready?(timeoutMs?: number): Promise<void>;
  health(): StoreHealth;
  on<E extends keyof StoreEvents>(event: E, listener: (payload: StoreEvents[E]) => void): () => void;
  close(): Promise<void>;
}

/** Refuses a `deleteByPrefix` prefix outside the store's own keys (an empty one would wipe a shared Redis). */
export function checkDeletePrefix(prefix: string, storePrefix: string): void {
  if (typeof prefix !== 'string' || prefix.length === 0 || !prefix.startsWith(storePrefix)) {
    throw new TypeError(`deleteByPrefix: prefix ${JSON.stringify(prefix)} must be non-empty and start with the store prefix ${JSON.stringify(storePrefix)}`);
  }
}

/** True for any object that looks like a Store (an instance from another copy of this package included). */
export function isStore(value: unknown): value is Store {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (v.kind === 'memory' || v.kind === 'redis') && typeof v.run === 'function' && typeof v.key === 'function';
}
