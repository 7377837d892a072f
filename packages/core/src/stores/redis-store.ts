import { createHash, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import calculateSlot from 'cluster-key-slot';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import { StoreUnavailableError } from '../errors.js';
import { Emitter } from '../events.js';
import { consoleLogger, type Logger } from '../logger.js';
import { parseOptions } from '../options/validate.js';
import { CircuitBreaker } from '../policies/circuit-breaker.js';
import { redisStoreOptionsSchema, type RedisStoreOptions } from './redis-store-options.js';
import { checkDeletePrefix } from './store.js';
import type {
  ScriptArg,
  SetOptions,
  Store,
  StoreEntry,
  StoreEvents,
  StoreHealth,
  StoreMessageListener,
  StoreRunOptions,
  StoreScript,
  StoreStatus,
  StoreSubscription,
} from './store.js';
import { storeKey, validatePrefix } from './store-key.js';
import { CommandDeadlines } from './command-deadlines.js';
import { StallWatchdog } from './stall-watchdog.js';
import { STORE_LATENCY_BUCKETS_MS } from './store-latency.js';

export type { RedisStoreOptions } from './redis-store-options.js';

type RedisClient = Redis | Cluster;
/** EVAL/EVALSHA as ioredis runs them: it flattens one level of array arguments (its typings do not say so). */
type ScriptCommand = (script: string, numKeys: number, keys: readonly string[], args: readonly ScriptArg[], now: ScriptArg) => Promise<unknown>;

/**
 * Commands per socket write at most while corked (see corkForThisIteration): small enough that Redis starts
 * on a burst while the client still makes the rest of it (bench/: 8-16 keep client and Redis both busy; one
 * write per iteration made them take turns), large enough to save most write syscalls.
 */
const CORK_FLUSH_EVERY = 16;

/** Keys per SCAN page in deleteByPrefix: big enough for few round trips, small enough to keep each call short. */
const SCAN_COUNT = 1000;

/** Replies that mean "this Redis cannot serve now" (count against availability), not "your command is wrong". */
const UNAVAILABLE_REPLY = /^(LOADING|BUSY|CLUSTERDOWN|TRYAGAIN|MASTERDOWN|READONLY|NOREPLICAS|NOTREADY)\b/;


/**
 * The shared store on Redis (ioredis): a single node, Sentinel or Cluster, from a URL, connection options or
 * a client the user already has.
 *
 * Connections by workload: `commands` (scripts and small reads; auto-pipelined when enabled), `slow` (large
 * values, blocking commands; created on first use so a slow reply never holds up limiter decisions) and
 * `subscriber` (Pub/Sub needs a connection of its own). Every command has a deadline; timeouts, lost
 * connections and "cannot serve" replies count against a circuit breaker around Redis, so an outage turns
 * into fast `StoreUnavailableError`s that features catch to degrade, instead of requests piling up. The
 * offline queue is off: a command sent while disconnected fails at once rather than running late, after the
 * features have already decided without it.
 */
export class RedisStore implements Store {
  readonly kind = 'redis' as const;
  readonly prefix: string;
  /** Distinguishes this process's messages from other replicas' (e.g. not to apply one's own broadcast). */
  readonly instanceId = randomUUID();
  private readonly client: RedisClient;
  private readonly ownsClient: boolean;
  /** For slow work (large values), so a slow reply never holds up limiter decisions. */
  private readonly slowConnection: DedicatedConnection;
  /** Pub/Sub needs a connection of its own. */
  private readonly subscriberConnection: DedicatedConnection;
  /** Per channel: the SUBSCRIBE in progress or done, so a second listener also waits for it. */
  private readonly subscribed = new Map<string, Promise<unknown>>();
  private readonly channels = new Map<string, Set<StoreMessageListener>>();
  private readonly breaker: CircuitBreaker;
  /** Deadlines for a client the user passed in (it cannot be reset): a wrapper per command. */
  private readonly deadlines: CommandDeadlines;
  /** Deadlines for the command connection AMAS owns: no per-command cost; a stall resets the connection. */
  private watchdog: StallWatchdog | undefined;
  /** Coalesce the writes of one event-loop iteration on the command socket (see corkForThisIteration). */
  private coalesce = false;
  private readonly clock: Clock | undefined;
  private readonly logger: Logger;
  private readonly events = new Emitter<StoreEvents & Record<string, unknown>>();
  private readonly shas = new WeakMap<StoreScript<unknown>, string>();
  private readonly commandTimeoutMs: number;
  private status: StoreStatus = 'connecting';
  private downSince: number | undefined;
  private closed = false;
  private commands = 0;
  private errors = 0;
  private timeouts = 0;
  private reconnects = 0;
  private latencySumMs = 0;
  /** Non-cumulative counts per STORE_LATENCY_BUCKETS_MS bucket; the last slot is +Inf. */
  readonly latencyCounts = new Float64Array(STORE_LATENCY_BUCKETS_MS.length + 1);
  private lastError: string | undefined;
  private readyWaiters: Array<{ resolve: () => void; reject: (e: unknown) => void; timer: TimerHandle }> = [];

  constructor(options: RedisStoreOptions = {}) {
    const o = parseOptions(redisStoreOptionsSchema, options ?? {}, 'RedisStore options');
    this.prefix = validatePrefix(o.prefix, 'RedisStore options');
    this.clock = o.clock;
    this.logger = o.logger ?? consoleLogger;
    this.commandTimeoutMs = o.commandTimeoutMs ?? 500;
    this.deadlines = new CommandDeadlines(this.commandTimeoutMs);
    this.watchdog = undefined;
    const recovery = o.breaker?.recoveryTimeoutMs ?? 500;
    this.breaker = new CircuitBreaker({
      name: 'redis-store',
      failureThreshold: o.breaker?.failureThreshold ?? 3,
      recoveryTimeoutMs: recovery,
      recoveryBackoff: { multiplier: 2, maxMs: Math.max(recovery, o.breaker?.maxRecoveryTimeoutMs ?? 2000) },
    });
    this.breaker.on('stateChange', ({ to }) => {
      if (to === 'open') this.markDown(new StoreUnavailableError(`Redis store: ${this.lastError ?? 'failing'}`));
      else if (to === 'closed' && this.status === 'ready') this.markUp();
    });

    if (o.client) {
      this.client = o.client as RedisClient;
      this.ownsClient = false;
    } else {
      this.client = createClient(o);
      this.ownsClient = true;
      // One command socket to cork (a Cluster has one per node, written by ioredis as it routes).
      this.coalesce = !(this.client instanceof Cluster) && o.autoPipelining !== true;
      this.watchdog = new StallWatchdog(this.commandTimeoutMs, (inFlight) => {
        this.lastError = `no reply for ${this.commandTimeoutMs}ms with ${inFlight} command(s) waiting`;
        this.markDown(new StoreUnavailableError(`Redis store: ${this.lastError}`));
        // Fails every command in flight now (they count as timeouts) and reconnects.
        this.client.disconnect(true);
      });
    }
    this.watch(this.client, true);
    // A client made with `lazyConnect` would wait for a first command, which this store holds back until
    // the client is ready: connect it now (failures arrive as 'error' events, watched above).
    connectIfLazy(this.client);
    this.slowConnection = this.dedicated('slow-work');
    this.subscriberConnection = this.dedicated('subscriber', (sub) => sub.on('message', this.deliver));
    if (this.client.status === 'ready') this.status = 'ready';
  }

  key(tag: string, ...rest: string[]): string {
    return storeKey(this.prefix, tag, rest);
  }

  get available(): boolean {
    return this.status === 'ready' && this.breaker.getState() !== 'open';
  }

  /**
   * Resolves once the command connection is ready. Rejects StoreUnavailableError after `timeoutMs`, or as
   * soon as a connection attempt has failed (an unreachable Redis should not hold up an app's start: the
   * features run on their fallbacks and switch over by themselves once it answers).
   */
  ready(timeoutMs = 5000): Promise<void> {
    if (this.status === 'ready') return Promise.resolve();
    if (this.status === 'down') return Promise.reject(this.notReady());
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve,
        reject,
        timer: systemClock.setTimeout(() => {
          this.readyWaiters = this.readyWaiters.filter((w) => w !== waiter);
          reject(new StoreUnavailableError(`Redis store: not ready after ${timeoutMs}ms (${this.lastError ?? this.client.status})`));
        }, timeoutMs),
      };
      this.readyWaiters.push(waiter);
    });
  }

  run<R>(script: StoreScript<R>, keys: string[], args: ScriptArg[], options?: StoreRunOptions): Promise<R> {
    if (options?.slow) return this.slowConnection.get().then((client) => this.runOn(client, script, keys, args, options.timeoutMs));
    return this.runOn(this.client, script, keys, args, options?.timeoutMs);
  }

  /** EVALSHA; on NOSCRIPT (a restart, failover or SCRIPT FLUSH emptied the cache) EVAL sends and caches it again. */
  private runOn<R>(client: RedisClient, script: StoreScript<R>, keys: string[], args: ScriptArg[], timeoutMs: number | undefined): Promise<R> {
    const now = this.clock ? this.clock.now() : '';
    // ioredis flattens array arguments itself: no argv copy per call.
    const sent = this.command(script.name, timeoutMs, () => (client.evalsha as unknown as ScriptCommand).call(client, this.sha(script), keys.length, keys, args, now), client);
    return sent.then(script.decode, (error: unknown) => {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return this.command(script.name, timeoutMs, () => (client.eval as unknown as ScriptCommand).call(client, script.lua, keys.length, keys, args, now), client).then(script.decode);
    });
  }

  get(key: string): Promise<string | undefined> {
    return this.command('get', undefined, () => this.client.get(key)).then((v) => v ?? undefined);
  }

  /** Like `get` but on the slow connection, for large values. */
  async getSlow(key: string): Promise<Buffer | undefined> {
    const client = await this.slowConnection.get();
    return this.command('getBuffer', undefined, () => client.getBuffer(key), client).then((v) => v ?? undefined);
  }

  getBuffer(key: string): Promise<Buffer | undefined> {
    return this.command('getBuffer', undefined, () => this.client.getBuffer(key)).then((v) => v ?? undefined);
  }

  /** One MGET on a single node; on a Cluster one MGET per slot, sent together (a MGET may not span slots). */
  async getMany(keys: readonly string[]): Promise<Array<Buffer | undefined>> {
    if (keys.length === 0) return [];
    const client = this.client;
    if (!client.isCluster) {
      const values = await this.command('mget', undefined, () => client.mgetBuffer(keys as string[]));
      return values.map((v) => v ?? undefined);
    }
    const results = new Array<Buffer | undefined>(keys.length);
    await Promise.all(
      groupBySlot(keys, keyPrefixOf(client)).map(async ({ keys: slotKeys, indexes }) => {
        const values = await this.command('mget', undefined, () => client.mgetBuffer(slotKeys));
        for (let i = 0; i < indexes.length; i++) results[indexes[i]!] = values[i] ?? undefined;
      }),
    );
    return results;
  }

  async set(key: string, value: string | Buffer, options: SetOptions = {}): Promise<boolean> {
    const { ttlMs, ifAbsent } = options;
    const reply = await this.command('set', undefined, () => {
      if (ttlMs !== undefined && ifAbsent) return this.client.set(key, value, 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX');
      if (ttlMs !== undefined) return this.client.set(key, value, 'PX', Math.max(1, Math.ceil(ttlMs)));
      if (ifAbsent) return this.client.set(key, value, 'NX');
      return this.client.set(key, value);
    });
    return reply === 'OK';
  }

  /** One pipeline (one socket write) on a single node; on a Cluster one SET per entry, sent together. */
  async setMany(entries: ReadonlyArray<StoreEntry>): Promise<void> {
    if (entries.length === 0) return;
    const client = this.client;
    if (client.isCluster) {
      await Promise.all(entries.map(({ key, value, ttlMs }) => this.set(key, value, ttlMs === undefined ? {} : { ttlMs })));
      return;
    }
    await this.command('setMany', undefined, () => {
      const pipeline = client.pipeline();
      for (const { key, value, ttlMs } of entries) {
        if (ttlMs === undefined) pipeline.set(key, value);
        else pipeline.set(key, value, 'PX', Math.max(1, Math.ceil(ttlMs)));
      }
      // exec resolves with one [error, reply] per command: the first error fails the batch.
      return pipeline.exec().then((replies) => {
        for (const [error] of replies ?? []) if (error) throw error;
      });
    });
  }

  async delete(key: string): Promise<boolean> {
    return (await this.command('del', undefined, () => this.client.del(key))) > 0;
  }

  /** One UNLINK on a single node; on a Cluster one per slot, sent together. */
  async deleteMany(keys: readonly string[]): Promise<number> {
    if (keys.length === 0) return 0;
    const client = this.client;
    if (!client.isCluster) return this.command('unlink', undefined, () => client.unlink(keys as string[]));
    const counts = await Promise.all(groupBySlot(keys, keyPrefixOf(client)).map((group) => this.command('unlink', undefined, () => client.unlink(group.keys))));
    return counts.reduce((sum, n) => sum + n, 0);
  }

  /**
   * SCAN MATCH + UNLINK page by page on the slow connection (a long scan never delays limiter decisions), on
   * every master of a Cluster. Keys are handled as bytes, so a key that is not valid utf8 is deleted too.
   */
  async deleteByPrefix(prefix: string): Promise<number> {
    checkDeletePrefix(prefix, this.prefix);
    const slow = await this.slowConnection.get();
    // SCAN patterns are not keys: ioredis does not add its keyPrefix to them, so it is added here.
    const keyPrefix = keyPrefixOf(slow);
    const pattern = `${escapeGlob(keyPrefix + prefix)}*`;
    const nodes = slow.isCluster ? (slow as Cluster).nodes('master') : [slow as Redis];
    const counts = await Promise.all(nodes.map((node) => this.deleteMatching(node, pattern, slow, Buffer.byteLength(keyPrefix))));
    return counts.reduce((sum, n) => sum + n, 0);
  }

  /** Scans one node for `pattern`; unlinks each page's keys through `router` (it follows Cluster redirects). */
  private async deleteMatching(node: Redis, pattern: string, router: RedisClient, keyPrefixBytes: number): Promise<number> {
    let cursor = '0';
    let deleted = 0;
    do {
      const [next, found] = await this.command('scan', undefined, () => node.scanBuffer(cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT), node);
      cursor = next.toString();
      if (found.length === 0) continue;
      // SCAN returns full names; the client adds its keyPrefix again, so it is cut off here.
      const keys = keyPrefixBytes === 0 ? found : found.map((key) => key.subarray(keyPrefixBytes));
      if (!router.isCluster) {
        deleted += await this.command('unlink', undefined, () => router.unlink(keys), router);
        continue;
      }
      const counts = await Promise.all(groupBySlot(found, '').map((group) => this.command('unlink', undefined, () => router.unlink(group.indexes.map((i) => keys[i]!)), router)));
      deleted += counts.reduce((sum, n) => sum + n, 0);
    } while (cursor !== '0');
    return deleted;
  }

  async increment(key: string, by = 1, ttlMs?: number): Promise<number> {
    if (ttlMs === undefined) return this.command('incrbyfloat', undefined, () => this.client.incrbyfloat(key, by)).then(Number);
    return this.run(INCREMENT_WITH_TTL, [key], [by, Math.max(1, Math.ceil(ttlMs))]);
  }

  async publish(channel: string, message: string): Promise<void> {
    await this.command('publish', undefined, () => this.client.publish(this.prefix + channel, message));
  }

  async subscribe(channel: string, listener: StoreMessageListener): Promise<StoreSubscription> {
    const full = this.prefix + channel;
    let set = this.channels.get(full);
    const first = !set;
    if (!set) this.channels.set(full, (set = new Set()));
    set.add(listener);
    let confirmed = this.subscribed.get(full);
    if (first || !confirmed) {
      confirmed = this.subscriberConnection.get().then((sub) => this.command('subscribe', undefined, () => sub.subscribe(full), sub));
      this.subscribed.set(full, confirmed);
      confirmed.catch(() => {
        if (this.subscribed.get(full) === confirmed) this.subscribed.delete(full);
      });
    }
    try {
      await confirmed;
    } catch (error) {
      set.delete(listener);
      if (set.size === 0) this.channels.delete(full);
      throw error;
    }
    return {
      unsubscribe: async () => {
        const current = this.channels.get(full);
        if (!current?.delete(listener) || current.size > 0) return;
        this.channels.delete(full);
        this.subscribed.delete(full);
        const sub = this.subscriberConnection.current;
        if (sub && sub.status === 'ready') await sub.unsubscribe(full).catch(() => undefined);
      },
    };
  }

  health(): StoreHealth {
    const state = this.breaker.getState();
    return {
      kind: 'redis',
      status: this.status,
      breaker: state === 'open' || state === 'isolated' ? 'open' : state === 'half-open' ? 'half-open' : 'closed',
      commands: this.commands,
      errors: this.errors,
      timeouts: this.timeouts,
      reconnects: this.reconnects,
      meanLatencyMs: this.commands === 0 ? 0 : this.latencySumMs / this.commands,
      lastError: this.lastError,
    };
  }

  /** Sum of command latencies in ms (for the Prometheus histogram). */
  get latencySum(): number {
    return this.latencySumMs;
  }

  on<E extends keyof StoreEvents>(event: E, listener: (payload: StoreEvents[E]) => void): () => void {
    return this.events.on(event, listener as never);
  }

  /** The ioredis client running commands (for code that needs a command the contract lacks). */
  get connection(): RedisClient {
    return this.client;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.deadlines.close(new StoreUnavailableError('Redis store closed'));
    this.watchdog?.close();
    for (const w of this.readyWaiters) {
      systemClock.clearTimeout(w.timer);
      w.reject(new StoreUnavailableError('Redis store closed'));
    }
    this.readyWaiters = [];
    this.channels.clear();
    this.subscribed.clear();
    const owned = [this.slowConnection.current, this.subscriberConnection.current, this.ownsClient ? this.client : undefined];
    await Promise.all(owned.map((c) => (c ? quit(c) : undefined)));
    if (!this.ownsClient) this.unwatch?.();
    this.breaker.dispose();
    this.events.removeAll();
  }

  private notReady(): StoreUnavailableError {
    return new StoreUnavailableError(`Redis store: not ready (${this.lastError ?? this.client.status})`);
  }

  /** Runs one command with the deadline, breaker, latency and error accounting every command gets. */
  private command<T>(name: string, timeoutMs: number | undefined, send: () => Promise<T>, via: RedisClient = this.client): Promise<T> {
    if (this.closed) return Promise.reject(new StoreUnavailableError('Redis store closed'));
    // While the store first connects, a dedicated connection that is ready already (Pub/Sub, slow work) may
    // be used: only an outage stops every connection's commands.
    if (this.status !== 'ready' && !(this.status === 'connecting' && via !== this.client && via.status === 'ready')) {
      return Promise.reject(new StoreUnavailableError(`Redis store is ${this.status} (${this.lastError ?? 'connecting'}); ${name} not sent`));
    }
    const permit = this.breaker.tryAcquire();
    if (permit instanceof Error) return Promise.reject(new StoreUnavailableError(`Redis store breaker is open; ${name} not sent`, { retryAfterMs: permit.retryAfterMs }));
    const started = performance.now();
    this.commands++;
    // The watchdog watches the command connection only; other connections' commands get a deadline each.
    const watchdog = via === this.client && timeoutMs === undefined ? this.watchdog : undefined;
    let reply: Promise<T>;
    if (watchdog !== undefined) {
      watchdog.sent();
      if (this.coalesce) this.corkForThisIteration();
      reply = send();
    } else {
      reply = this.deadlines.track(send(), timeoutMs);
    }
    return reply.then(
      (value) => {
        const now = performance.now();
        if (watchdog !== undefined) watchdog.settled(now);
        this.observe(now - started);
        permit.success();
        return value;
      },
      (error: unknown) => {
        const now = performance.now();
        const watched = watchdog !== undefined;
        if (watched) watchdog.settled(now);
        this.observe(now - started);
        this.errors++;
        const message = error instanceof Error ? error.message : String(error);
        this.lastError = message;
        if (error === CommandDeadlines.TIMEOUT || (watched && watchdog!.stalled)) {
          this.timeouts++;
          permit.failure();
          throw new StoreUnavailableError(`Redis store: ${name} timed out after ${timeoutMs ?? this.commandTimeoutMs}ms`);
        }
        const isReply = error instanceof Error && error.name === 'ReplyError';
        if (isReply && !UNAVAILABLE_REPLY.test(message)) {
          permit.success(); // Redis answered: the command is wrong, Redis is fine.
          throw error;
        }
        permit.failure();
        throw new StoreUnavailableError(`Redis store: ${name} failed: ${message}`, { cause: error });
      },
    );
  }

  /**
   * Commands sent in one iteration of the event loop leave in one socket write: the command socket is corked
   * on the first and uncorked by setImmediate, after the poll phase that read (say) every request that had
   * arrived, and flushed every CORK_FLUSH_EVERY commands. Each command still resolves on its own reply (ioredis
   * auto-pipelining instead waits for a whole batch), and a command waits at most until the end of the
   * iteration. Measured in bench/: without it a
   * write syscall per command was most of the client's CPU, and Redis spent more on reading commands one by
   * one than on running them.
   */
  private corkForThisIteration(): void {
    if (this.corked !== undefined) {
      // A long burst goes out in slices, so Redis starts on the first while the rest are still being made.
      if (++this.corkedCommands >= CORK_FLUSH_EVERY) {
        this.corked.uncork();
        this.corked.cork();
        this.corkedCommands = 0;
      }
      return;
    }
    this.corkedCommands = 0;
    const stream = (this.client as Redis).stream as import('node:net').Socket | undefined;
    if (stream === undefined || typeof stream.cork !== 'function') return;
    stream.cork();
    this.corked = stream;
    setImmediate(this.uncork);
  }

  private corked: import('node:net').Socket | undefined;
  private corkedCommands = 0;
  private readonly uncork = (): void => {
    const stream = this.corked;
    this.corked = undefined;
    stream?.uncork();
  };

  private observe(ms: number): void {
    this.latencySumMs += ms;
    let i = 0;
    while (i < STORE_LATENCY_BUCKETS_MS.length && ms > STORE_LATENCY_BUCKETS_MS[i]!) i++;
    this.latencyCounts[i]!++;
  }

  private sha(script: StoreScript<unknown>): string {
    let sha = this.shas.get(script);
    if (sha === undefined) {
      sha = createHash('sha1').update(script.lua).digest('hex');
      this.shas.set(script, sha);
    }
    return sha;
  }

  /** A dedicated connection made from the command connection (same options), watched for errors. */
  private dedicated(what: string, setUp: (client: RedisClient) => void = () => undefined): DedicatedConnection {
    return new DedicatedConnection(
      () => {
        const client = this.client.duplicate();
        this.watch(client, false);
        setUp(client);
        connectIfLazy(client);
        return client;
      },
      Math.max(2000, this.commandTimeoutMs),
      what,
    );
  }

  /** Delivers a Pub/Sub message to this store's listeners of its channel. */
  private readonly deliver = (channel: string, message: string): void => {
    const listeners = this.channels.get(channel);
    if (!listeners) return;
    const short = channel.slice(this.prefix.length);
    for (const listener of listeners) {
      try {
        listener(message, short);
      } catch {
        // A listener's failure stays with the listener.
      }
    }
  };

  private unwatch: (() => void) | undefined;

  /** Tracks connection state of the main connection (`primary`) and errors on every connection. */
  private watch(client: RedisClient, primary: boolean): void {
    const onError = (error: Error) => {
      this.lastError = error.message;
    };
    client.on('error', onError);
    if (!primary) return;
    const onReady = () => {
      this.status = 'ready';
      if (this.watchdog) this.watchdog.stalled = false;
      for (const w of this.readyWaiters) {
        systemClock.clearTimeout(w.timer);
        w.resolve();
      }
      this.readyWaiters = [];
      // Redis answers again: trust it at once rather than waiting out the breaker's recovery time.
      if (this.breaker.getState() !== 'closed') this.breaker.reset();
      this.markUp();
    };
    const onClose = () => {
      if (this.closed) return;
      this.status = 'down';
      const waiters = this.readyWaiters;
      this.readyWaiters = [];
      for (const w of waiters) {
        systemClock.clearTimeout(w.timer);
        w.reject(this.notReady());
      }
      this.markDown(new StoreUnavailableError(`Redis store: connection lost (${this.lastError ?? 'closed'})`));
    };
    const onReconnecting = () => {
      this.reconnects++;
      this.status = 'connecting';
    };
    client.on('ready', onReady);
    client.on('close', onClose);
    client.on('end', onClose);
    client.on('reconnecting', onReconnecting);
    this.unwatch = () => {
      client.off('error', onError);
      client.off('ready', onReady);
      client.off('close', onClose);
      client.off('end', onClose);
      client.off('reconnecting', onReconnecting);
    };
  }

  private markDown(error: unknown): void {
    if (this.downSince !== undefined || this.closed) return;
    this.downSince = Date.now();
    this.events.emit('down', { error });
  }

  private markUp(): void {
    if (this.downSince === undefined) return;
    const downForMs = Date.now() - this.downSince;
    this.downSince = undefined;
    this.events.emit('up', { downForMs });
  }
}

/** INCRBYFLOAT that sets the TTL only when it creates the key (a plain INCR + PEXPIRE pair is not atomic). */
const INCREMENT_WITH_TTL: StoreScript<number> = {
  name: 'increment',
  lua: `
local v = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) == -1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return tostring(v)
`,
  memory(space, keys, args) {
    const current = space.get(keys[0]!);
    const next = (current === undefined ? 0 : Number(current)) + Number(args[0]);
    const ttl = space.ttl(keys[0]!);
    space.set(keys[0]!, String(next), ttl >= 0 ? ttl : Number(args[1]));
    return String(next);
  },
  decode: (raw) => Number(raw),
};

function createClient(o: ReturnType<typeof redisStoreOptionsSchema.parse>): RedisClient {
  const common: RedisOptions = {
    enableOfflineQueue: false,
    enableAutoPipelining: o.autoPipelining ?? false,
    connectTimeout: o.connectTimeoutMs ?? 2000,
    maxRetriesPerRequest: 0,
    // Reconnect quickly and keep trying: the features run on local fallbacks meanwhile.
    retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 10), o.maxReconnectDelayMs ?? 500),
    lazyConnect: false,
    ...(o.redisOptions as RedisOptions | undefined),
  };
  if (o.cluster) {
    const clusterOptions: ClusterOptions = {
      enableOfflineQueue: false,
      enableAutoPipelining: o.autoPipelining ?? false,
      // ioredis groups auto-pipelined commands by the slot of their first argument, which for EVAL/EVALSHA is
      // the script, not a key: scripts on different slots would share a pipeline and fail. Send them alone.
      autoPipeliningIgnoredCommands: ['eval', 'evalsha'],
      redisOptions: common,
      clusterRetryStrategy: (times: number) => Math.min(100 * times, o.maxReconnectDelayMs ?? 500),
      ...(o.cluster.options as ClusterOptions | undefined),
    };
    return new Cluster(o.cluster.nodes, clusterOptions);
  }
  if (o.sentinel) {
    return new Redis({ ...common, sentinels: o.sentinel.sentinels, name: o.sentinel.name });
  }
  return o.url ? new Redis(o.url, common) : new Redis(common);
}

/**
 * A second connection made on first use; `get` resolves once it can take commands. One that never gets ready
 * is dropped, so the next `get` tries a fresh one instead of failing forever.
 */
class DedicatedConnection {
  private client: RedisClient | undefined;
  private ready: Promise<RedisClient> | undefined;

  constructor(
    private readonly make: () => RedisClient,
    private readonly timeoutMs: number,
    private readonly what: string,
  ) {}

  /** The connection, if one was made (for closing and unsubscribing). */
  get current(): RedisClient | undefined {
    return this.client;
  }

  get(): Promise<RedisClient> {
    if (!this.ready) {
      const client = this.make();
      const ready = whenReady(client, this.timeoutMs, this.what);
      this.client = client;
      this.ready = ready;
      ready.catch(() => {
        if (this.client !== client) return;
        this.client = undefined;
        this.ready = undefined;
        client.disconnect();
      });
    }
    return this.ready;
  }
}

/** The keyPrefix ioredis adds to every key a client sends ('' when none). */
function keyPrefixOf(client: RedisClient): string {
  return (client.options as { keyPrefix?: string }).keyPrefix ?? '';
}

/** Keys grouped by Cluster hash slot (of the name Redis sees: `keyPrefix` + key), with their positions in `keys`. */
function groupBySlot<K extends string | Buffer>(keys: readonly K[], keyPrefix: string): Array<{ keys: K[]; indexes: number[] }> {
  const groups = new Map<number, { keys: K[]; indexes: number[] }>();
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    const slot = calculateSlot(keyPrefix === '' ? key : Buffer.concat([Buffer.from(keyPrefix), Buffer.from(key)]));
    let group = groups.get(slot);
    if (!group) groups.set(slot, (group = { keys: [], indexes: [] }));
    group.keys.push(key);
    group.indexes.push(i);
  }
  return [...groups.values()];
}

/** Escapes the glob characters of a SCAN MATCH pattern, so `prefix` matches only itself. */
function escapeGlob(prefix: string): string {
  return prefix.replace(/[*?[\]\\]/g, '\\$&');
}

/** Starts connecting a client that waits for its first command (`lazyConnect`); errors surface as its 'error' events. */
function connectIfLazy(client: RedisClient): void {
  if (client.status === 'wait') client.connect().catch(() => undefined);
}

/** Resolves with `client` once it is ready (at once if it is); rejects StoreUnavailableError after `timeoutMs`. */
function whenReady(client: RedisClient, timeoutMs: number, what: string): Promise<RedisClient> {
  return new Promise((resolve, reject) => {
    if (client.status === 'ready') return resolve(client);
    const timer = systemClock.setTimeout(() => {
      client.off('ready', onReady);
      reject(new StoreUnavailableError(`Redis store: ${what} connection not ready after ${timeoutMs}ms`));
    }, timeoutMs);
    const onReady = () => {
      systemClock.clearTimeout(timer);
      resolve(client);
    };
    client.once('ready', onReady);
  });
}

async function quit(client: RedisClient): Promise<void> {
  try {
    if (client.status === 'ready') await client.quit();
    else client.disconnect();
  } catch {
    client.disconnect();
  }
}
