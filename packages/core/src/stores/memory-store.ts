import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import { Emitter } from '../events.js';
import { MemoryKeyspace } from './memory-keyspace.js';
import { checkDeletePrefix } from './store.js';
import type {
  ScriptArg,
  SetOptions,
  Store,
  StoreEntry,
  StoreEvents,
  StoreHealth,
  StoreMessageListener,
  StoreScript,
  StoreSubscription,
} from './store.js';
import { storeKey, validatePrefix } from './store-key.js';

export interface MemoryStoreOptions {
  prefix?: string;
  clock?: Clock;
  /** How often expired keys nobody reads again are dropped (default 60s). */
  sweepIntervalMs?: number;
}

/**
 * The zero-set-up store: one process, state in a Map. Scripts run their `memory` half synchronously, so
 * each is atomic exactly as a Lua script is on Redis. Pub/Sub delivers within the process (asynchronously,
 * as Redis would).
 */
export class MemoryStore implements Store {
  readonly kind = 'memory' as const;
  readonly prefix: string;
  readonly available = true;
  readonly space: MemoryKeyspace;
  private readonly clock: Clock;
  private readonly channels = new Map<string, Set<StoreMessageListener>>();
  private readonly events = new Emitter<StoreEvents & Record<string, unknown>>();
  private sweepTimer: TimerHandle | undefined;
  private readonly sweepIntervalMs: number;
  private commands = 0;
  private closed = false;

  constructor(options: MemoryStoreOptions = {}) {
    this.prefix = validatePrefix(options.prefix, 'MemoryStore options');
    this.clock = options.clock ?? systemClock;
    this.space = new MemoryKeyspace(() => this.clock.now());
    this.sweepIntervalMs = options.sweepIntervalMs ?? 60_000;
    this.sweepTimer = this.scheduleSweep();
  }

  key(tag: string, ...rest: string[]): string {
    return storeKey(this.prefix, tag, rest);
  }

  async run<R>(script: StoreScript<R>, keys: string[], args: ScriptArg[]): Promise<R> {
    this.commands++;
    const strings = args.map(String);
    return script.decode(script.memory(this.space, keys, strings, this.clock.now()));
  }

  async get(key: string): Promise<string | undefined> {
    this.commands++;
    return this.space.getString(key);
  }

  async getBuffer(key: string): Promise<Buffer | undefined> {
    this.commands++;
    return this.space.getBytes(key);
  }

  async getMany(keys: readonly string[]): Promise<Array<Buffer | undefined>> {
    this.commands++;
    return keys.map((key) => this.space.getBytes(key));
  }

  async set(key: string, value: string | Buffer, options: SetOptions = {}): Promise<boolean> {
    this.commands++;
    if (options.ifAbsent && this.space.has(key)) return false;
    this.space.setString(key, value, options.ttlMs);
    return true;
  }

  async setMany(entries: ReadonlyArray<StoreEntry>): Promise<void> {
    this.commands++;
    for (const { key, value, ttlMs } of entries) this.space.setString(key, value, ttlMs);
  }

  async delete(key: string): Promise<boolean> {
    this.commands++;
    return this.space.delete(key);
  }

  async deleteMany(keys: readonly string[]): Promise<number> {
    this.commands++;
    let deleted = 0;
    for (const key of keys) if (this.space.delete(key)) deleted++;
    return deleted;
  }

  async deleteByPrefix(prefix: string): Promise<number> {
    checkDeletePrefix(prefix, this.prefix);
    this.commands++;
    return this.space.deleteByPrefix(prefix);
  }

  async increment(key: string, by = 1, ttlMs?: number): Promise<number> {
    this.commands++;
    const stored = this.space.get(key);
    // A value set as a Buffer is a Redis string too: INCRBYFLOAT reads its text.
    const current = Buffer.isBuffer(stored) ? stored.toString('utf8') : stored;
    const base = current === undefined ? 0 : Number(current);
    if (!Number.isFinite(base)) throw new TypeError(`MemoryStore: key ${key} does not hold a number`);
    const next = base + by;
    if (current === undefined) this.space.set(key, String(next), ttlMs);
    else {
      const ttl = this.space.ttl(key);
      this.space.set(key, String(next), ttl >= 0 ? ttl : undefined);
    }
    return next;
  }

  async publish(channel: string, message: string): Promise<void> {
    this.commands++;
    const full = this.prefix + channel;
    const listeners = this.channels.get(full);
    if (!listeners) return;
    // Delivered on a later turn, as a Redis message would be, so publishers never re-enter their listeners.
    for (const listener of [...listeners]) {
      queueMicrotask(() => {
        try {
          listener(message, channel);
        } catch {
          // A listener's failure stays with the listener.
        }
      });
    }
  }

  async subscribe(channel: string, listener: StoreMessageListener): Promise<StoreSubscription> {
    const full = this.prefix + channel;
    let set = this.channels.get(full);
    if (!set) this.channels.set(full, (set = new Set()));
    set.add(listener);
    return {
      unsubscribe: async () => {
        set!.delete(listener);
        if (set!.size === 0) this.channels.delete(full);
      },
    };
  }

  health(): StoreHealth {
    return { kind: 'memory', status: 'ready', breaker: 'closed', commands: this.commands, errors: 0, timeouts: 0, reconnects: 0, meanLatencyMs: 0 };
  }

  on<E extends keyof StoreEvents>(event: E, listener: (payload: StoreEvents[E]) => void): () => void {
    return this.events.on(event, listener as never);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.clock.clearTimeout(this.sweepTimer);
    this.channels.clear();
    this.space.clear();
    this.events.removeAll();
  }

  private scheduleSweep(): TimerHandle {
    return this.clock.setTimeout(() => {
      this.space.sweep();
      if (!this.closed) this.sweepTimer = this.scheduleSweep();
    }, this.sweepIntervalMs);
  }
}
