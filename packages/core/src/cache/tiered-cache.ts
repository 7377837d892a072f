/**
 * The tiered cache: L1 in-process (decoded values, LRU by entries and bytes), L2 on the shared store (Redis),
 * optional L3 persistent (PostgreSQL or files). `get` walks down and promotes a hit upward; `set` writes
 * through every level with its TTL cap; `getOrSet` runs one factory per key in the process and, with a
 * store, across replicas (a lease in the store; the others read the leader's value from L2).
 *
 * Freshness travels with each entry (cache-record.ts): fresh until `ttl`, then stale for `grace`, during
 * which getOrSet answers the stale value and refreshes it once in the background (stale-while-revalidate),
 * and answers it when the factory fails or runs past its soft timeout (stale-if-error).
 *
 * A level that fails is skipped for a while, counted and logged once per outage; no call ever fails because
 * a level did. With a store, `set`/`delete`/`clear` publish what changed, and the other replicas drop it
 * from their L1.
 */
import { createHash, randomUUID } from 'node:crypto';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import { AbortedError, InvalidOptionError, TimeoutError } from '../errors.js';
import { consoleLogger, type Logger } from '../logger.js';
import { parseOptions } from '../options/validate.js';
import { SharedSingleFlight } from '../policies/shared-single-flight.js';
import { SingleFlight } from '../policies/single-flight.js';
import type { Store, StoreSubscription } from '../stores/store.js';
import { levelKey, NAMESPACE_PATTERN, type CacheLevel } from './cache-level.js';
import { decodeRecord, encodeRecord, type CacheRecord } from './cache-record.js';
import { validateWith, type CacheSchema } from './cache-schema.js';
import { FileLevel } from './file-level.js';
import { MemoryLru, type L1Entry } from './memory-lru.js';
import { PostgresLevel } from './postgres-level.js';
import { RedisLevel } from './redis-level.js';
import {
  callOptionsSchema,
  getOrSetOptionsSchema,
  setOptionsSchema,
  tieredCacheOptionsSchema,
  type CacheCallOptions,
  type CacheSetOptions,
  type GetOrSetOptions,
  type TieredCacheOptions,
} from './tiered-cache-options.js';
import { jsonSerializer, ValueCodec } from './value-codec.js';
import { warmUp, type WarmUpItem, type WarmUpOptions, type WarmUpReport } from './warm-up.js';

export interface FactoryContext<T> {
  /** Aborted when the hard timeout passes or the cache closes. */
  signal: AbortSignal;
  /** The stale value being refreshed, when there is one. */
  stale: T | undefined;
}

export type CacheFactory<T> = (context: FactoryContext<T>) => T | Promise<T>;

export interface LevelStats {
  hits: number;
  misses: number;
  errors: number;
  /** Operations sent to the level (get, set, delete, clear; batched calls count once). */
  operations: number;
  /** Mean latency of those operations (ms). */
  meanLatencyMs: number;
  /** True while the level is skipped after a failure. */
  down: boolean;
}

export interface TieredCacheStats {
  levels: Record<string, LevelStats>;
  /** Factory runs in this process (refreshes included). */
  factoryRuns: number;
  factoryErrors: number;
  /** getOrSet calls that joined a factory run already in flight (here or on another replica). */
  coalesced: number;
  /** Stale values answered: while refreshing, after a factory error, after a soft timeout. */
  staleServed: { revalidating: number; error: number; softTimeout: number };
  hardTimeouts: number;
  /** Values a typed view read that did not fit its schema (treated as misses). */
  schemaMisses: number;
  invalidations: { sent: number; received: number };
  l1: { entries: number; bytes: number; evictions: number } | undefined;
}

interface LevelSlot {
  level: CacheLevel;
  name: string;
  ttlCapMs: number | undefined;
  owned: boolean;
  stats: { hits: number; misses: number; errors: number; operations: number; latencyMs: number };
  downUntil: number;
  backoffMs: number;
  down: boolean;
}

interface Found {
  value: unknown;
  freshUntil: number;
  staleUntil: number;
}

type Resolved = { ns: string; ttlMs: number; graceMs: number };

const DEFAULTS = { ttlMs: 5 * 60_000, maxEntries: 10_000, maxBytes: 64 * 1024 * 1024, thresholdBytes: 1024, minSavings: 0.1, levelRetryMs: 1000 };
const MAX_LEVEL_BACKOFF_MS = 30_000;
/** What a cross-replica leader hands its followers: "read it from L2" (values travel through the cache, not Pub/Sub). */
const WRITTEN = '\u0000amas-cache:written';
const MAX_KEY_LENGTH = 4096;
const HASHED_KEY_ABOVE = 512;
const SHARE_WINDOW_MS = 2000;

export class TieredCache {
  readonly name: string;
  private readonly defaultNamespace: string;
  private readonly ttlMs: number;
  private readonly graceMs: number;
  private readonly swr: boolean;
  private readonly softTimeoutMs: number | undefined;
  private readonly hardTimeoutMs: number | undefined;
  private readonly l1: MemoryLru | undefined;
  private readonly l1TtlCapMs: number | undefined;
  private readonly l1Stats = { hits: 0, misses: 0 };
  private readonly levels: LevelSlot[] = [];
  private readonly codec: ValueCodec;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly store: Store | undefined;
  private readonly localFlight: SingleFlight;
  private readonly sharedFlight: SharedSingleFlight | undefined;
  /** The same leases for forced refreshes, without the share window: a forced run never takes a recent outcome. */
  private readonly forcedFlight: SharedSingleFlight | undefined;
  private readonly levelRetryMs: number;
  private readonly instanceId = randomUUID();
  private readonly channel: string;
  private subscription: Promise<StoreSubscription | undefined> | undefined;
  /**
   * Invalidations received, numbered: an L2/L3 read that overlapped an invalidation of its key (or of its
   * namespace, or of everything) does not promote what it read into L1 (it may be the old value).
   */
  private invalidationEpoch = 0;
  private readonly invalidatedKeys = new Map<string, number>();
  private readonly invalidatedNamespaces = new Map<string, number>();
  private invalidatedAll = 0;
  /** Concurrent lookups of one key share one walk down the levels (one L2 read, not one per caller). */
  private readonly lookups = new Map<string, Promise<Found | undefined>>();
  private subscribed = false;
  /** L2/L3 reads in flight (the invalidation records above only matter while one is). */
  private readsInFlight = 0;
  private subscribeWaiters: Array<() => void> = [];
  private readonly refreshing = new Set<string>();
  private readonly controllers = new Set<AbortController>();
  private readonly timers = new Set<TimerHandle>();
  private counts = {
    factoryRuns: 0,
    factoryErrors: 0,
    coalesced: 0,
    staleRevalidating: 0,
    staleError: 0,
    staleSoftTimeout: 0,
    hardTimeouts: 0,
    schemaMisses: 0,
    sent: 0,
    received: 0,
  };
  private closed = false;

  constructor(options: TieredCacheOptions = {}) {
    const o = parseOptions(tieredCacheOptionsSchema, options ?? {}, 'TieredCache options');
    this.name = o.name ?? 'amas';
    this.defaultNamespace = o.namespace ?? 'default';
    this.ttlMs = o.ttl ?? DEFAULTS.ttlMs;
    this.graceMs = o.grace ?? 0;
    this.swr = o.staleWhileRevalidate ?? true;
    this.softTimeoutMs = o.timeouts?.soft;
    this.hardTimeoutMs = o.timeouts?.hard;
    this.clock = o.clock ?? systemClock;
    this.logger = o.logger ?? consoleLogger;
    this.levelRetryMs = o.levelRetryMs ?? DEFAULTS.levelRetryMs;
    this.store = o.store;
    this.channel = `cache:${this.name}:invalidate`;
    if (this.softTimeoutMs !== undefined && this.hardTimeoutMs !== undefined && this.softTimeoutMs >= this.hardTimeoutMs) {
      throw new InvalidOptionError([{ path: 'timeouts.soft', received: String(this.softTimeoutMs), expected: `less than timeouts.hard (${this.hardTimeoutMs})` }], 'TieredCache options');
    }
    if (o.l1 !== false) {
      this.l1 = new MemoryLru({ maxEntries: o.l1?.maxEntries ?? DEFAULTS.maxEntries, maxBytes: o.l1?.maxBytes ?? DEFAULTS.maxBytes, clock: this.clock });
      this.l1TtlCapMs = o.l1?.ttl;
    }
    if (o.l2 !== false && this.store !== undefined) {
      this.addLevel(new RedisLevel({ store: this.store, name: this.name }), 'l2', o.l2?.ttl, true);
    } else if (o.l2 !== undefined && o.l2 !== false) {
      throw new InvalidOptionError([{ path: 'l2', received: 'an L2 configuration', expected: 'a store (the `store` option, or `redis` on createAmas) for L2 to live in' }], 'TieredCache options');
    }
    if (o.l3 !== undefined && o.l3 !== false) {
      if ('postgres' in o.l3) {
        const pg = o.l3.postgres;
        this.addLevel(new PostgresLevel({ ...pg, pool: pg.pool as never, name: this.name, clock: this.clock }), 'l3', o.l3.ttl, true);
      } else if ('file' in o.l3) {
        this.addLevel(new FileLevel({ directory: o.l3.file.directory, name: this.name, clock: this.clock }), 'l3', o.l3.ttl, true);
      } else {
        this.addLevel(o.l3 as CacheLevel, 'l3', undefined, false);
      }
    }
    const compression =
      o.compression === false
        ? undefined
        : { algorithm: o.compression?.algorithm ?? 'gzip', thresholdBytes: o.compression?.thresholdBytes ?? DEFAULTS.thresholdBytes, minSavings: o.compression?.minSavings ?? DEFAULTS.minSavings };
    this.codec = new ValueCodec(o.serializer ?? jsonSerializer, compression);
    this.localFlight = new SingleFlight({ clock: this.clock, maxKeys: 100_000 });
    if (this.store !== undefined && o.lock !== false && this.levels.some((l) => l.name === 'l2')) {
      const lock = o.lock;
      const flight = (shareWindowMs: number) =>
        new SharedSingleFlight({ store: this.store!, leaseMs: lock?.leaseMs, waitTimeoutMs: lock?.waitTimeoutMs, shareWindowMs, clock: this.clock, logger: this.logger });
      // A replica that missed just as another one finished gets that run's outcome from its claim (and reads
      // the value from L2) instead of running the factory again: no re-check read before the factory.
      this.sharedFlight = flight(SHARE_WINDOW_MS);
      this.forcedFlight = flight(0);
    }
    if (this.store !== undefined && o.invalidation !== false && this.l1 !== undefined) this.subscribe(this.store);
  }

  /**
   * Resolves once the invalidation subscription is active (a replica that must not miss one waits for it);
   * rejects after `timeoutMs` (the subscription keeps being retried in the background).
   */
  ready(timeoutMs = 5000): Promise<void> {
    if (this.subscription === undefined || this.subscribed) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = this.track(
        this.clock.setTimeout(() => {
          this.subscribeWaiters = this.subscribeWaiters.filter((w) => w !== done);
          reject(new TimeoutError(`cache "${this.name}": the invalidation subscription is not active after ${timeoutMs}ms`));
        }, timeoutMs),
      );
      const done = () => {
        this.untrack(timer);
        resolve();
      };
      this.subscribeWaiters.push(done);
    });
  }

  // ---------------------------------------------------------------------------------------------------------
  // Reads

  /** The fresh value of `key`, or undefined. Walks L1 -> L2 -> L3 and promotes a hit to the levels above. */
  get<T = unknown>(key: string, options?: CacheCallOptions): Promise<T | undefined> {
    const ns = options === undefined ? this.defaultNamespace : this.resolveCall(options);
    const part = this.keyPart(key);
    const l1 = this.l1;
    if (l1 !== undefined) {
      // By namespace and key: no `ns:key` string is built on a hit.
      const hit = l1.getIn(ns, part);
      // l1.now(): the L1's own reading (systemClock read at most once a millisecond; injected clocks exactly),
      // not a clock read per hit (a Date.now() cost about as much as the rest of the hit, see bench/README.md).
      if (hit !== undefined && hit.freshUntil > l1.now()) {
        this.l1Stats.hits++;
        return Promise.resolve(hit.value as T);
      }
      this.l1Stats.misses++;
    }
    return this.lookup(levelKey(ns, part), false).then((found) => found?.value as T | undefined);
  }

  /**
   * The entry of `key` with its freshness: fresh, or stale but within its grace (`fresh: false`). For callers
   * that decide themselves what to do with a stale value (the HTTP cache serves it while one request refreshes).
   */
  async getEntry<T = unknown>(key: string, options?: CacheCallOptions): Promise<{ value: T; fresh: boolean; freshUntil: number; staleUntil: number } | undefined> {
    const ns = options === undefined ? this.defaultNamespace : this.resolveCall(options);
    const part = this.keyPart(key);
    const k = levelKey(ns, part);
    const hit = this.l1?.getIn(ns, part);
    if (hit !== undefined && hit.freshUntil > this.l1!.now()) {
      this.l1Stats.hits++;
      return { value: hit.value as T, fresh: true, freshUntil: hit.freshUntil, staleUntil: hit.staleUntil };
    }
    if (this.l1) this.l1Stats.misses++;
    const found = (await this.lookup(k, true)) ?? (hit !== undefined ? l1Found(hit) : undefined);
    if (found === undefined) return undefined;
    return { value: found.value as T, fresh: found.freshUntil > this.clock.now(), freshUntil: found.freshUntil, staleUntil: found.staleUntil };
  }

  /** Like get for many keys: L2/L3 are asked once for all the keys L1 did not have. */
  async mget<T = unknown>(keys: readonly string[], options?: CacheCallOptions): Promise<Array<T | undefined>> {
    const ns = options === undefined ? this.defaultNamespace : this.resolveCall(options);
    const full = keys.map((key) => this.fullKey(ns, key));
    const out: Array<T | undefined> = new Array(keys.length).fill(undefined);
    let missing: number[] = [];
    const now = this.clock.now();
    full.forEach((k, i) => {
      const hit = this.l1?.get(k);
      if (hit !== undefined && hit.freshUntil > now) {
        this.l1Stats.hits++;
        out[i] = hit.value as T;
      } else {
        if (this.l1) this.l1Stats.misses++;
        missing.push(i);
      }
    });
    for (let depth = 0; depth < this.levels.length && missing.length > 0; depth++) {
      const slot = this.levels[depth]!;
      const epoch = this.invalidationEpoch;
      this.readsInFlight++;
      const got = await this.levelCall(slot, () => slot.level.getMany(missing.map((i) => full[i]!))).finally(() => this.readsInFlight--);
      if (got === undefined) continue;
      const still: number[] = [];
      for (let j = 0; j < missing.length; j++) {
        const i = missing[j]!;
        const found = await this.decodeFound(got[j]);
        if (found === undefined || found.freshUntil <= this.clock.now()) {
          slot.stats.misses++;
          still.push(i);
          continue;
        }
        slot.stats.hits++;
        out[i] = found.value as T;
        this.promote(full[i]!, found, got[j]!, depth, epoch);
      }
      missing = still;
    }
    return out;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Writes

  /** Writes through every level. `undefined` cannot be cached (use null); it deletes the key instead. */
  async set(key: string, value: unknown, options?: CacheSetOptions): Promise<void> {
    const r = this.resolveSet(options);
    const k = this.fullKey(r.ns, key);
    if (value === undefined) return this.delete(key, { namespace: r.ns });
    await this.write([{ k, value, ttlMs: r.ttlMs, graceMs: r.graceMs }]);
    this.announce({ k: [k] });
  }

  /** Batched set: each level gets one setMany, the other replicas one invalidation message. */
  async mset(entries: ReadonlyArray<{ key: string; value: unknown } & CacheSetOptions>, options?: CacheSetOptions): Promise<void> {
    const base = this.resolveSet(options);
    const items = entries.map((e) => {
      const { key, value, ...own } = e;
      const r = Object.keys(own).length === 0 ? base : this.resolveSet({ namespace: base.ns, ...own });
      if (value === undefined) throw new TypeError(`TieredCache.mset: the value of "${key}" is undefined (cache null, or delete the key)`);
      return { k: this.fullKey(r.ns, key), value, ttlMs: r.ttlMs, graceMs: r.graceMs };
    });
    if (items.length === 0) return;
    await this.write(items);
    this.announce({ k: items.map((i) => i.k) });
  }

  async delete(key: string, options?: CacheCallOptions): Promise<void> {
    const ns = options === undefined ? this.defaultNamespace : this.resolveCall(options);
    const k = this.fullKey(ns, key);
    this.l1?.delete(k);
    await Promise.all(this.levels.map((slot) => this.levelCall(slot, () => slot.level.delete([k]))));
    this.announce({ k: [k] });
  }

  /** Clears one namespace (every level, every replica's L1), or with no namespace the whole cache. */
  async clear(options?: CacheCallOptions & { all?: boolean }): Promise<void> {
    const all = options?.all === true || options?.namespace === undefined;
    const ns = all ? undefined : this.resolveCall({ namespace: options!.namespace });
    if (ns === undefined) this.l1?.clear();
    else this.l1?.clearNamespace(ns);
    await Promise.all(this.levels.map((slot) => this.levelCall(slot, () => slot.level.clear(ns))));
    this.announce(ns === undefined ? { all: 1 } : { ns });
  }

  // ---------------------------------------------------------------------------------------------------------
  // getOrSet

  /**
   * The cached value of `key`, or the factory's (stored, then returned). One factory run per key at a time in
   * this process and, with a store, across replicas. A factory that returns undefined caches nothing.
   */
  async getOrSet<T>(key: string, factory: CacheFactory<T>, options?: GetOrSetOptions): Promise<T> {
    if (typeof factory !== 'function') throw new TypeError('TieredCache.getOrSet: factory must be a function');
    const o = options === undefined ? undefined : parseOptions(getOrSetOptionsSchema, options, 'TieredCache.getOrSet options');
    const r = o === undefined ? this.defaults() : this.resolved(o);
    const part = this.keyPart(key);
    const k = levelKey(r.ns, part);
    let stale: Found | undefined;
    if (o?.forceRefresh !== true) {
      const hit = this.l1?.getIn(r.ns, part);
      if (hit !== undefined && hit.freshUntil > this.l1!.now()) {
        this.l1Stats.hits++;
        return hit.value as T;
      }
      if (this.l1) this.l1Stats.misses++;
      // A stale L1 copy: another replica may hold a fresh one in L2.
      const found = (await this.lookup(k, true)) ?? (hit !== undefined ? l1Found(hit) : undefined);
      if (found !== undefined && found.freshUntil > this.clock.now()) return found.value as T;
      stale = found;
    }
    const swr = o?.staleWhileRevalidate ?? this.swr;
    if (stale !== undefined && swr) {
      this.counts.staleRevalidating++;
      this.refreshInBackground(k, factory, r, stale);
      return stale.value as T;
    }
    const soft = o?.timeouts?.soft ?? this.softTimeoutMs;
    const hard = o?.timeouts?.hard ?? this.hardTimeoutMs;
    const run = this.produce(k, factory, r, stale, hard, o?.forceRefresh === true);
    if (stale === undefined) return run as Promise<T>;
    // Stale-if-error, and a soft timeout: with a stale value in hand, a slow or failing factory never shows.
    return new Promise<T>((resolve, reject) => {
      let done = false;
      let timer: TimerHandle | undefined;
      if (soft !== undefined) {
        timer = this.track(
          this.clock.setTimeout(() => {
            if (done) return;
            done = true;
            this.counts.staleSoftTimeout++;
            resolve(stale!.value as T);
          }, soft),
        );
      }
      run.then(
        (value) => {
          this.untrack(timer);
          if (!done) ((done = true), resolve(value as T));
        },
        (error: unknown) => {
          this.untrack(timer);
          if (done) return;
          done = true;
          if (this.closed) return reject(error);
          this.counts.staleError++;
          resolve(stale!.value as T);
        },
      );
    });
  }

  /** The factory run for `k`, shared by every concurrent caller here and (with a store) on other replicas. */
  private produce<T>(k: string, factory: CacheFactory<T>, r: Resolved, stale: Found | undefined, hardMs: number | undefined, force: boolean): Promise<T | undefined> {
    let leader = false;
    // Callers in this process get the leader's value as soon as it exists (and sits in L1); the L2 write and
    // the cross-replica flight's completion (two more round trips) finish behind them.
    const run = () =>
      new Promise<unknown>((resolve, reject) => {
        let answered = false;
        const lead = async (): Promise<unknown> => {
          leader = true;
          const value = await this.runFactory(k, factory, stale?.value as T | undefined, hardMs);
          if (value === undefined) return undefined;
          const written = this.write([{ k, value, ttlMs: r.ttlMs, graceMs: r.graceMs }]);
          answered = true;
          resolve(value);
          await written;
          this.announce({ k: [k] });
          return this.sharedFlight !== undefined && this.levels.some((l) => l.name === 'l2' && !l.down) ? WRITTEN : value;
        };
        const shared = force ? this.forcedFlight : this.sharedFlight;
        const flight = shared !== undefined ? shared.do(k, lead) : lead();
        flight.then(
          (result) => {
            if (!answered) resolve(result);
          },
          (error: unknown) => {
            if (!answered) reject(error);
          },
        );
      });
    // Forced runs collapse only with each other (a forced caller must not get a normal run's older value).
    return this.localFlight.do(force ? `\u0000force:${k}` : k, run).then(async (result) => {
      if (!leader) this.counts.coalesced++;
      if (result !== WRITTEN) return result as T | undefined;
      // The leader (here or elsewhere) wrote the value through the levels: read it from there.
      const hit = this.l1?.peek(k);
      if (hit !== undefined) return hit.value as T;
      const found = await this.lookup(k, true);
      if (found !== undefined) return found.value as T;
      // Evicted already (or L2 lost it): run it here rather than answer nothing.
      return (await this.runFactory(k, factory, stale?.value as T | undefined, hardMs)) as T;
    });
  }

  private async runFactory<T>(k: string, factory: CacheFactory<T>, stale: T | undefined, hardMs: number | undefined): Promise<T> {
    if (this.closed) throw new AbortedError('TieredCache is closed');
    this.counts.factoryRuns++;
    const controller = new AbortController();
    this.controllers.add(controller);
    let timer: TimerHandle | undefined;
    try {
      const work = Promise.resolve().then(() => factory({ signal: controller.signal, stale }));
      if (hardMs === undefined) return await work;
      return await new Promise<T>((resolve, reject) => {
        timer = this.track(
          this.clock.setTimeout(() => {
            this.counts.hardTimeouts++;
            const error = new TimeoutError(`Cache factory for "${displayKey(k)}" timed out after ${hardMs}ms`, { retryAfterMs: 0 });
            controller.abort(error);
            reject(error);
          }, hardMs),
        );
        work.then(resolve, reject);
      });
    } catch (error) {
      this.counts.factoryErrors++;
      throw error;
    } finally {
      this.untrack(timer);
      this.controllers.delete(controller);
    }
  }

  private refreshInBackground<T>(k: string, factory: CacheFactory<T>, r: Resolved, stale: Found): void {
    if (this.refreshing.has(k)) return;
    this.refreshing.add(k);
    this.produce(k, factory, r, stale, this.hardTimeoutMs, true)
      .catch((error: unknown) => {
        if (!this.closed) this.logger.warn(`cache "${this.name}": background refresh of "${displayKey(k)}" failed; the stale value stays until its grace ends`, error);
      })
      .finally(() => this.refreshing.delete(k));
  }

  /** Stores known values ahead of demand (one batched write). */
  warm(entries: ReadonlyArray<{ key: string; value: unknown } & CacheSetOptions>, options?: CacheSetOptions): Promise<void> {
    return this.mset(entries, options);
  }

  /** Loads keys ahead of demand with at most `concurrency` loaders at a time; failures are reported, not thrown. */
  warmUp(items: readonly WarmUpItem[], options?: WarmUpOptions): Promise<WarmUpReport> {
    return warmUp(this, items, options);
  }

  // ---------------------------------------------------------------------------------------------------------
  // Views

  /** The same cache, with every call in `namespace` (and, given a schema, validated on read). */
  namespace<T = unknown>(namespace: string, options: { schema?: CacheSchema<T> } = {}): CacheView<T> {
    this.resolveCall({ namespace });
    return new CacheView<T>(this, namespace, options.schema);
  }

  /** A typed view: values read back are validated by `schema`; one that does not fit is a miss. */
  typed<T>(schema: CacheSchema<T>, options: CacheCallOptions = {}): CacheView<T> {
    return new CacheView<T>(this, options.namespace === undefined ? this.defaultNamespace : this.resolveCall(options), schema);
  }

  /** @internal Counts a value a typed view refused. */
  noteSchemaMiss(): void {
    this.counts.schemaMisses++;
  }

  stats(): TieredCacheStats {
    const levels: Record<string, LevelStats> = {};
    if (this.l1) {
      levels.l1 = { hits: this.l1Stats.hits, misses: this.l1Stats.misses, errors: 0, operations: this.l1Stats.hits + this.l1Stats.misses, meanLatencyMs: 0, down: false };
    }
    for (const slot of this.levels) {
      const s = slot.stats;
      levels[slot.name] = { hits: s.hits, misses: s.misses, errors: s.errors, operations: s.operations, meanLatencyMs: s.operations ? s.latencyMs / s.operations : 0, down: slot.down };
    }
    const c = this.counts;
    return {
      levels,
      factoryRuns: c.factoryRuns,
      factoryErrors: c.factoryErrors,
      coalesced: c.coalesced,
      staleServed: { revalidating: c.staleRevalidating, error: c.staleError, softTimeout: c.staleSoftTimeout },
      hardTimeouts: c.hardTimeouts,
      schemaMisses: c.schemaMisses,
      invalidations: { sent: c.sent, received: c.received },
      l1: this.l1 ? { entries: this.l1.size, bytes: this.l1.bytes, evictions: this.l1.evictions } : undefined,
    };
  }

  /** Level names in lookup order, e.g. ['l1', 'l2', 'l3']. */
  get levelNames(): string[] {
    return [...(this.l1 ? ['l1'] : []), ...this.levels.map((l) => l.name)];
  }

  /** Aborts running factories, stops timers, drops the subscription and closes the levels it created. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.controllers) c.abort(new AbortedError('TieredCache closed'));
    for (const t of this.timers) this.clock.clearTimeout(t);
    this.timers.clear();
    const sub = await this.subscription?.catch(() => undefined);
    await sub?.unsubscribe().catch(() => undefined);
    await this.sharedFlight?.close();
    await this.forcedFlight?.close();
    this.localFlight.close();
    await Promise.all(this.levels.filter((l) => l.owned).map((l) => l.level.close().catch(() => undefined)));
    this.l1?.clear();
  }

  // ---------------------------------------------------------------------------------------------------------
  // Internals

  /** L2, then L3: the first entry that is fresh (or, with allowStale, still within grace). Promotes what it finds. */
  private lookup(k: string, allowStale: boolean): Promise<Found | undefined> {
    if (this.levels.length === 0) return Promise.resolve(undefined);
    const id = allowStale ? `s${k}` : `f${k}`;
    let pending = this.lookups.get(id);
    if (pending === undefined) {
      pending = this.walk(k, allowStale).finally(() => this.lookups.delete(id));
      this.lookups.set(id, pending);
    }
    return pending;
  }

  private async walk(k: string, allowStale: boolean): Promise<Found | undefined> {
    this.readsInFlight++;
    try {
      return await this.walkLevels(k, allowStale);
    } finally {
      this.readsInFlight--;
    }
  }

  private async walkLevels(k: string, allowStale: boolean): Promise<Found | undefined> {
    let stale: { found: Found; bytes: Buffer; depth: number } | undefined;
    for (let depth = 0; depth < this.levels.length; depth++) {
      const slot = this.levels[depth]!;
      const epoch = this.invalidationEpoch;
      const bytes = await this.levelCall(slot, () => slot.level.get(k));
      const found = bytes === undefined ? undefined : await this.decodeFound(bytes);
      const now = this.clock.now();
      if (found === undefined || found.staleUntil <= now) {
        slot.stats.misses++;
        continue;
      }
      if (found.freshUntil > now) {
        slot.stats.hits++;
        this.promote(k, found, bytes!, depth, epoch);
        return found;
      }
      slot.stats.misses++;
      if (stale === undefined) stale = { found, bytes: bytes!, depth };
    }
    if (stale !== undefined && allowStale) {
      this.promote(k, stale.found, stale.bytes, stale.depth, this.invalidationEpoch);
      return stale.found;
    }
    return undefined;
  }

  private async decodeFound(bytes: Buffer | undefined): Promise<Found | undefined> {
    if (bytes === undefined) return undefined;
    const record = decodeRecord(bytes);
    if (record === undefined) return undefined;
    try {
      const value = await this.codec.decode(record.payload, record.encoding);
      return { value, freshUntil: record.freshUntil, staleUntil: record.staleUntil };
    } catch {
      return undefined; // unreadable bytes (another serializer, corruption): a miss
    }
  }

  /** A hit at `depth` goes to L1 and to the levels above it, for what is left of its life. */
  private promote(k: string, found: Found, bytes: Buffer, depth: number, epoch: number): void {
    const remaining = found.staleUntil - this.clock.now();
    if (remaining <= 0) return;
    // An invalidation of this key arrived while we read: what we read may be the old value, keep it out of L1.
    if (this.l1 !== undefined && !this.invalidatedSince(k, epoch)) this.l1.set(k, this.l1Entry(found.value, found.freshUntil, found.staleUntil, bytes.length));
    for (let i = 0; i < depth; i++) {
      const slot = this.levels[i]!;
      const ttl = slot.ttlCapMs === undefined ? remaining : Math.min(remaining, slot.ttlCapMs);
      void this.levelCall(slot, () => slot.level.set(k, bytes, Math.ceil(ttl)));
    }
  }

  private async write(items: Array<{ k: string; value: unknown; ttlMs: number; graceMs: number }>): Promise<void> {
    const now = this.clock.now();
    // Serialized now, synchronously: L1 holds the value before anything is awaited (a caller answered
    // right after this call starts finds it there), and its byte bound counts the serialized size.
    const serialized = items.map((i) => this.codec.serialize(i.value));
    items.forEach((item, i) => {
      const freshUntil = now + item.ttlMs;
      const staleUntil = freshUntil + item.graceMs;
      this.l1?.set(item.k, this.l1Entry(item.value, freshUntil, staleUntil, serialized[i]!.length));
    });
    if (this.levels.length === 0) return;
    const encoded = await Promise.all(serialized.map((raw) => this.codec.encodeSerialized(raw)));
    const records = items.map((item, i) => {
      const record: CacheRecord = { payload: encoded[i]!.payload, encoding: encoded[i]!.encoding, storedAt: now, freshUntil: now + item.ttlMs, staleUntil: now + item.ttlMs + item.graceMs };
      return { key: item.k, value: encodeRecord(record), life: item.ttlMs + item.graceMs };
    });
    await Promise.all(
      this.levels.map((slot) => {
        const entries = records.map((r) => ({ key: r.key, value: r.value, ttlMs: slot.ttlCapMs === undefined ? r.life : Math.min(r.life, slot.ttlCapMs) }));
        return this.levelCall(slot, () => (entries.length === 1 ? slot.level.set(entries[0]!.key, entries[0]!.value, entries[0]!.ttlMs) : slot.level.setMany(entries)));
      }),
    );
  }

  private l1Entry(value: unknown, freshUntil: number, staleUntil: number, size: number): L1Entry {
    const now = this.clock.now();
    const cap = this.l1TtlCapMs;
    if (cap !== undefined && staleUntil > now + cap) {
      staleUntil = now + cap;
      freshUntil = Math.min(freshUntil, staleUntil);
    }
    return { value, storedAt: now, freshUntil, staleUntil, size };
  }

  /**
   * Runs one call on a level: skipped while the level is down, timed, counted. A failure marks the level
   * down (logged once) for a growing while; the caller gets undefined, as for a miss.
   */
  private async levelCall<R>(slot: LevelSlot, call: () => Promise<R>): Promise<R | undefined> {
    const now = this.clock.now();
    if (slot.down && now < slot.downUntil) return undefined;
    const started = performance.now();
    slot.stats.operations++;
    try {
      const result = await call();
      slot.stats.latencyMs += performance.now() - started;
      if (slot.down) {
        slot.down = false;
        slot.backoffMs = this.levelRetryMs;
        this.logger.warn(`cache "${this.name}": level ${slot.name} (${slot.level.name}) answers again`);
      }
      return result;
    } catch (error) {
      slot.stats.latencyMs += performance.now() - started;
      slot.stats.errors++;
      if (!slot.down) {
        slot.down = true;
        this.logger.warn(`cache "${this.name}": level ${slot.name} (${slot.level.name}) failed; skipping it and retrying in ${slot.backoffMs}ms`, error);
      } else {
        slot.backoffMs = Math.min(slot.backoffMs * 2, MAX_LEVEL_BACKOFF_MS);
      }
      slot.downUntil = this.clock.now() + slot.backoffMs;
      return undefined;
    }
  }

  private addLevel(level: CacheLevel, name: string, ttlCapMs: number | undefined, owned: boolean): void {
    this.levels.push({ level, name, ttlCapMs, owned, stats: { hits: 0, misses: 0, errors: 0, operations: 0, latencyMs: 0 }, downUntil: 0, backoffMs: this.levelRetryMs ?? DEFAULTS.levelRetryMs, down: false });
  }

  private invalidatedSince(k: string, epoch: number): boolean {
    if (this.invalidationEpoch === epoch) return false;
    if (this.invalidatedAll > epoch) return true;
    if ((this.invalidatedKeys.get(k) ?? 0) > epoch) return true;
    const ns = k.slice(0, k.indexOf(':'));
    return (this.invalidatedNamespaces.get(ns) ?? 0) > epoch;
  }

  /**
   * Subscribes to the invalidation channel, retrying on its own (growing delays, up to 5s) until it works:
   * a replica that missed its subscription would serve stale L1 entries until their TTL.
   */
  private subscribe(store: Store): void {
    let delay = 100;
    let warned = false;
    const attempt = (): Promise<StoreSubscription | undefined> =>
      store.subscribe(this.channel, this.onInvalidation).then(
        (sub) => {
          this.subscribed = true;
          if (warned) this.logger.warn(`cache "${this.name}": subscribed to invalidations`);
          for (const waiter of this.subscribeWaiters.splice(0)) waiter();
          return sub;
        },
        (error: unknown) => {
          if (this.closed) return undefined;
          if (!warned) {
            warned = true;
            this.logger.warn(`cache "${this.name}": could not subscribe to invalidations yet (L1 entries may stay stale up to their TTL); retrying`, error);
          }
          return new Promise<StoreSubscription | undefined>((resolve) => {
            const timer = this.track(
              this.clock.setTimeout(() => {
                this.untrack(timer);
                resolve(this.closed ? undefined : attempt());
              }, delay),
            );
            delay = Math.min(delay * 2, 5000);
          });
        },
      );
    this.subscription = attempt();
  }

  private readonly onInvalidation = (message: string): void => {
    let parsed: { o?: string; k?: unknown; ns?: unknown; all?: unknown };
    try {
      parsed = JSON.parse(message);
    } catch {
      return;
    }
    if (parsed.o === this.instanceId || this.l1 === undefined) return;
    this.counts.received++;
    const epoch = ++this.invalidationEpoch;
    // Only reads in flight can promote an old value: with none, nothing needs remembering. Past 10 000
    // remembered keys, everything counts as invalidated once (bounded memory under a write storm).
    if (this.readsInFlight === 0 || this.invalidatedKeys.size > 10_000) {
      this.invalidatedNamespaces.clear();
      this.invalidatedKeys.clear();
      this.invalidatedAll = epoch;
    }
    if (Array.isArray(parsed.k)) {
      for (const k of parsed.k) {
        if (typeof k !== 'string') continue;
        this.l1.delete(k);
        this.invalidatedKeys.set(k, epoch);
      }
    }
    if (typeof parsed.ns === 'string') {
      this.l1.clearNamespace(parsed.ns);
      this.invalidatedNamespaces.set(parsed.ns, epoch);
    }
    if (parsed.all) {
      this.l1.clear();
      this.invalidatedAll = epoch;
    }
  };

  private announce(change: { k?: string[]; ns?: string; all?: 1 }): void {
    if (this.store === undefined || this.l1 === undefined || this.closed) return;
    this.counts.sent++;
    this.store.publish(this.channel, JSON.stringify({ o: this.instanceId, ...change })).catch((error: unknown) => {
      this.logger.warn(`cache "${this.name}": could not publish an invalidation; other replicas keep their L1 copy until its TTL`, error);
    });
  }

  private fullKey(ns: string, key: string): string {
    return levelKey(ns, this.keyPart(key));
  }

  /** The key as stored: validated, and hashed when long (PostgreSQL's key index refuses ~2.7 KB and more). */
  private keyPart(key: string): string {
    if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) {
      throw new TypeError(`TieredCache: a key must be a non-empty string of at most ${MAX_KEY_LENGTH} characters, received ${typeof key === 'string' ? `${key.length} characters` : typeof key}`);
    }
    return key.length > HASHED_KEY_ABOVE ? `~sha256:${createHash('sha256').update(key).digest('base64url')}` : key;
  }

  private resolveCall(options: CacheCallOptions): string {
    const ns = options.namespace;
    if (ns === undefined) return this.defaultNamespace;
    if (typeof ns !== 'string' || !NAMESPACE_PATTERN.test(ns)) parseOptions(callOptionsSchema, options, 'TieredCache call options');
    return ns;
  }

  private resolveSet(options: CacheSetOptions | undefined): Resolved {
    if (options === undefined) return this.defaults();
    return this.resolved(parseOptions(setOptionsSchema, options, 'TieredCache.set options'));
  }

  private resolved(o: { namespace?: string; ttl?: number; grace?: number }): Resolved {
    return { ns: o.namespace ?? this.defaultNamespace, ttlMs: o.ttl ?? this.ttlMs, graceMs: o.grace ?? this.graceMs };
  }

  private defaults(): Resolved {
    return { ns: this.defaultNamespace, ttlMs: this.ttlMs, graceMs: this.graceMs };
  }

  private track(timer: TimerHandle): TimerHandle {
    this.timers.add(timer);
    return timer;
  }

  private untrack(timer: TimerHandle | undefined): void {
    if (timer === undefined) return;
    this.clock.clearTimeout(timer);
    this.timers.delete(timer);
  }
}

/** A namespace of a TieredCache, optionally typed: reads through a schema treat a value that does not fit as a miss. */
export class CacheView<T = unknown> {
  constructor(
    readonly cache: TieredCache,
    readonly namespace: string,
    private readonly schema: CacheSchema<T> | undefined,
  ) {}

  async get(key: string): Promise<T | undefined> {
    const value = await this.cache.get(key, { namespace: this.namespace });
    return value === undefined ? undefined : this.check(value);
  }

  async mget(keys: readonly string[]): Promise<Array<T | undefined>> {
    const values = await this.cache.mget(keys, { namespace: this.namespace });
    return Promise.all(values.map((v) => (v === undefined ? undefined : this.check(v))));
  }

  set(key: string, value: T, options: Omit<CacheSetOptions, 'namespace'> = {}): Promise<void> {
    return this.cache.set(key, value, { ...options, namespace: this.namespace });
  }

  mset(entries: ReadonlyArray<{ key: string; value: T } & Omit<CacheSetOptions, 'namespace'>>): Promise<void> {
    return this.cache.mset(entries, { namespace: this.namespace });
  }

  async getOrSet(key: string, factory: CacheFactory<T>, options: Omit<GetOrSetOptions, 'namespace'> = {}): Promise<T> {
    if (this.schema === undefined) return this.cache.getOrSet(key, factory, { ...options, namespace: this.namespace });
    const value = await this.cache.getOrSet<T>(key, factory, { ...options, namespace: this.namespace });
    const checked = await this.check(value);
    if (checked !== undefined || value === undefined) return checked as T;
    // The cached value no longer fits the schema: a miss. Produce a fresh one.
    return this.cache.getOrSet(key, factory, { ...options, namespace: this.namespace, forceRefresh: true });
  }

  delete(key: string): Promise<void> {
    return this.cache.delete(key, { namespace: this.namespace });
  }

  clear(): Promise<void> {
    return this.cache.clear({ namespace: this.namespace });
  }

  private async check(value: unknown): Promise<T | undefined> {
    if (this.schema === undefined) return value as T;
    const result = await validateWith(this.schema, value);
    if (result.ok) return result.value;
    this.cache.noteSchemaMiss();
    return undefined;
  }
}

function l1Found(hit: L1Entry): Found {
  return { value: hit.value, freshUntil: hit.freshUntil, staleUntil: hit.staleUntil };
}

/** Keys in messages without the namespace separator noise, cut to a readable length. */
function displayKey(k: string): string {
  return k.length > 120 ? `${k.slice(0, 117)}...` : k;
}
