import { z } from 'zod';
import type { Clock } from '../clock.js';
import { InvalidOptionError } from '../errors.js';
import { Emitter } from '../events.js';
import type { Logger } from '../logger.js';
import { clockSchema, parseOptions, loggerSchema } from '../options/validate.js';
import { isStore, type Store } from '../stores/store.js';
import { newReplicaId, SharedBreaker } from './shared-breaker.js';
import {
  breakerSnapshotSchema,
  circuitBreakerOptionsSchema,
  CircuitBreaker,
  type BreakerEvents,
  type BreakerSnapshot,
  type CircuitBreakerOptions,
  validateCircuitBreakerOptions,
} from './circuit-breaker.js';

/**
 * Named circuit breakers shared across an application: `get('openai')` returns the same breaker
 * everywhere, created on first use from `defaults` <- `breakers[name]` <- overrides.
 */
export interface BreakerRegistryOptions {
  defaults?: CircuitBreakerOptions;
  breakers?: Record<string, CircuitBreakerOptions>;
  clock?: Clock;
  /** Where breakers with `shared` set keep and announce their state (a RedisStore to share across replicas). */
  store?: Store;
  /** Names this process in shared breaker records. Default `<host>:<pid>:<random>`. */
  replicaId?: string;
  /** For "shared store unavailable" warnings. Default console. */
  logger?: Logger;
}

export const breakerRegistryOptionsSchema = z.strictObject({
  defaults: circuitBreakerOptionsSchema.optional(),
  breakers: z.record(z.string(), circuitBreakerOptionsSchema).optional(),
  clock: clockSchema.optional(),
  store: z.custom<Store>(isStore, { message: 'a Store (MemoryStore, RedisStore)' }).optional(),
  replicaId: z.string().min(1).max(200).optional(),
  logger: loggerSchema
    .optional(),
});

const WHERE = 'circuit breaker registry options';
const EVENTS = ['stateChange', 'success', 'failure', 'rejected', 'ignored'] as const satisfies readonly (keyof BreakerEvents)[];
type EventName = (typeof EVENTS)[number];

export class BreakerRegistry {
  private readonly defaults: CircuitBreakerOptions;
  private readonly configured: Record<string, CircuitBreakerOptions>;
  private readonly clock: Clock | undefined;
  private readonly breakers = new Map<string, CircuitBreaker>();
  private readonly emitter = new Emitter<BreakerEvents>();
  /** Registry listeners per event. Breakers get a forwarder only for events someone listens to, so an
   * unobserved breaker keeps its no-listener fast path. */
  private readonly listenerCounts = new Map<EventName, number>();
  private readonly forwarders = new Map<EventName, (event: BreakerEvents[EventName]) => void>();
  private readonly detach = new Map<CircuitBreaker, Map<EventName, () => void>>();
  private readonly store: Store | undefined;
  private readonly replicaId: string;
  private readonly logger: Logger | undefined;
  private readonly syncs = new Map<string, SharedBreaker>();

  constructor(options: BreakerRegistryOptions = {}) {
    const o = parseOptions(breakerRegistryOptionsSchema, options ?? {}, WHERE);
    this.defaults = (o.defaults ?? {}) as CircuitBreakerOptions;
    this.configured = (o.breakers ?? {}) as Record<string, CircuitBreakerOptions>;
    this.clock = o.clock;
    this.store = o.store;
    this.replicaId = o.replicaId ?? newReplicaId();
    this.logger = o.logger;
    // Each piece is valid alone; also check the merged result (e.g. recoveryBackoff.maxMs from the
    // defaults against a per-name recoveryTimeoutMs) now rather than on first use.
    validateCircuitBreakerOptions(this.defaults, WHERE, 'defaults');
    this.checkShared(this.defaults, 'defaults');
    for (const [name, own] of Object.entries(this.configured)) {
      validateCircuitBreakerOptions(mergeOptions(this.defaults, own), WHERE, `breakers.${name}`);
      this.checkShared(own, `breakers.${name}`);
    }
    for (const event of EVENTS) {
      this.forwarders.set(event, (e) => this.emitter.emit(event, e as never));
    }
  }

  /** The breaker called `name`, created on first use; `overrides` only apply when it is created here. */
  get(name: string, overrides?: CircuitBreakerOptions): CircuitBreaker {
    const existing = this.breakers.get(name);
    if (existing) return existing;
    const merged = mergeOptions(mergeOptions(this.defaults, this.configured[name]), overrides);
    merged.name = name;
    if (merged.clock === undefined && this.clock !== undefined) merged.clock = this.clock;
    if (overrides) this.checkShared(overrides, `breaker "${name}" overrides`);
    const breaker = new CircuitBreaker(merged);
    this.breakers.set(name, breaker);
    if (merged.shared && this.store) {
      const settings = merged.shared === true ? {} : merged.shared;
      this.syncs.set(
        name,
        new SharedBreaker(breaker, { ...settings, store: this.store, replicaId: this.replicaId, clock: merged.clock, logger: this.logger }),
      );
    }
    const detach = new Map<EventName, () => void>();
    this.detach.set(breaker, detach);
    for (const event of EVENTS) {
      if ((this.listenerCounts.get(event) ?? 0) > 0) detach.set(event, breaker.on(event, this.forwarders.get(event)!));
    }
    return breaker;
  }

  /** The sync of a breaker created with `shared` (its `ready` resolves once the shared state was read). */
  shared(name: string): SharedBreaker | undefined {
    return this.syncs.get(name);
  }

  /** Resolves once every shared breaker created so far has read the shared state. */
  async ready(): Promise<void> {
    await Promise.all([...this.syncs.values()].map((s) => s.ready));
  }

  has(name: string): boolean {
    return this.breakers.has(name);
  }

  names(): string[] {
    return [...this.breakers.keys()];
  }

  all(): CircuitBreaker[] {
    return [...this.breakers.values()];
  }

  /** Events of every breaker, including breakers created later. Returns an unsubscribe function. */
  on<K extends keyof BreakerEvents>(event: K, listener: (event: BreakerEvents[K]) => void): () => void {
    const name = event as EventName;
    const off = this.emitter.on(event, listener);
    const count = this.listenerCounts.get(name) ?? 0;
    this.listenerCounts.set(name, count + 1);
    if (count === 0) {
      for (const [breaker, detach] of this.detach) detach.set(name, breaker.on(name, this.forwarders.get(name)!));
    }
    let subscribed = true;
    return () => {
      if (!subscribed) return;
      subscribed = false;
      off();
      const left = (this.listenerCounts.get(name) ?? 1) - 1;
      this.listenerCounts.set(name, left);
      if (left === 0) {
        for (const detach of this.detach.values()) {
          detach.get(name)?.();
          detach.delete(name);
        }
      }
    };
  }

  snapshot(): Record<string, BreakerSnapshot> {
    const out: Record<string, BreakerSnapshot> = {};
    for (const [name, breaker] of this.breakers) out[name] = breaker.snapshot();
    return out;
  }

  /** Restores every named snapshot, creating breakers as needed. Validates all before applying any. */
  restore(all: Record<string, BreakerSnapshot>): void {
    const parsed = parseOptions(z.record(z.string(), breakerSnapshotSchema), all, 'circuit breaker registry snapshot');
    for (const [name, snapshot] of Object.entries(parsed)) this.get(name).restore(snapshot);
  }

  /**
   * Disposes every breaker and forgets them; registry listeners are removed too. The returned promise
   * settles once shared breakers have unsubscribed and returned their leases (the store stays open: the
   * registry does not own it).
   */
  close(): Promise<void> {
    const syncs = [...this.syncs.values()];
    this.syncs.clear();
    for (const breaker of this.breakers.values()) breaker.dispose();
    this.breakers.clear();
    this.detach.clear();
    this.listenerCounts.clear();
    this.emitter.removeAll();
    return Promise.all(syncs.map((s) => s.close())).then(() => undefined);
  }

  /** `shared` needs a store to share through: without one it is a configuration mistake, not a silent no-op. */
  private checkShared(options: CircuitBreakerOptions, path: string): void {
    if (options.shared && this.store === undefined) {
      throw new InvalidOptionError(
        [{ path: `${path}.shared`, received: JSON.stringify(options.shared), expected: 'a `store` in the registry options to share through (none was given)' }],
        WHERE,
      );
    }
  }
}

/** `base` <- `over`, one level deep for the nested option objects; undefined values never erase. */
function mergeOptions(base: CircuitBreakerOptions, over: CircuitBreakerOptions | undefined): CircuitBreakerOptions {
  const out: Record<string, unknown> = { ...base };
  if (!over) return out as CircuitBreakerOptions;
  for (const [key, value] of Object.entries(over)) {
    if (value === undefined) continue;
    const prev = out[key];
    out[key] =
      (key === 'failureRate' || key === 'recoveryBackoff' || key === 'shared') && isPlainObject(prev) && isPlainObject(value)
        ? { ...prev, ...value }
        : key === 'shared' && value === true && isPlainObject(prev)
          ? prev // `shared: true` over `{ probeLeaseMs }` keeps the settings
          : value;
  }
  return out as CircuitBreakerOptions;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
