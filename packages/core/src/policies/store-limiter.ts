/**
 * A rate limiter whose state lives in a Store (Redis across replicas, or MemoryStore in one process): every
 * decision is one atomic script on one key per limiter and user, so replicas share one window exactly.
 *
 * When the store fails, the limiter degrades instead of failing requests (DESIGN: fall back, count it,
 * log it once, recover by itself): by default each replica then enforces its share of every limit
 * (limit / replicas) in memory; `onStoreFailure: 'open' | 'closed'` allows or denies everything instead.
 */
import { z } from 'zod';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import { AbortedError, RateLimitedError, StoreUnavailableError } from '../errors.js';
import { consoleLogger, type Logger } from '../logger.js';
import { clockSchema, describe, MAX_TIMER_MS, parseOptions, positiveInt, loggerSchema } from '../options/validate.js';
import {
  LIMITER_RESET,
  slidingWindowScriptArgs,
  slidingWindowPackBase,
  slidingWindowScripts,
  TOKEN_BUCKET_PACK_BASE,
  TOKEN_BUCKET_SCRIPTS,
  tokenBucketScriptArgs,
  type LimiterReply,
} from '../stores/limiter-scripts.js';
import { isStore, type ScriptArg, type Store, type StoreScript } from '../stores/store.js';
import type { AsyncLimiter, LimitDecision, Limiter, TakeOptions, WindowState, WindowUsage } from './limit-decision.js';
import { createLimiter, limiterSpecSchema, type LimiterSpec, type ParsedLimiterSpec } from './limiters.js';
import { defaultWindowName } from './sliding-window.js';

export type StoreFailureMode = 'local' | 'open' | 'closed';

export interface StoreLimiterOptions {
  store: Store;
  /** Used when the spec has no name; names the store keys (`rl:<name>:<key>`), so replicas must agree on it. */
  name?: string;
  /** Waits of `take` and the local fallback's windows. Decisions on the store use the store's time. */
  clock?: Clock;
  logger?: Logger;
  /** Replicas sharing the store: while it is down each enforces limit / replicas (never below 1). Default 1. */
  replicas?: number;
  /** While the store is down: 'local' (default) decides in memory, 'open' allows, 'closed' denies. */
  onStoreFailure?: StoreFailureMode;
}

/** Counters for metrics (amas_ratelimit_store_decisions_total, amas_ratelimit_on_store). */
export interface StoreLimiterStats {
  storeDecisions: number;
  localDecisions: number;
  failOpen: number;
  failClosed: number;
  /** Times this limiter lost the store and switched to its fallback. */
  fallbacks: number;
  /** False while deciding on the fallback. */
  onStore: boolean;
}

/** What a fail-closed decision asks the caller to wait before trying again. */
export const FAIL_CLOSED_RETRY_MS = 1000;

const storeLimiterOptionsSchema = z.strictObject({
  store: z.custom<Store>((v) => isStore(v), { message: 'a Store (MemoryStore or RedisStore)' }),
  name: z.string().min(1).optional(),
  clock: clockSchema.optional(),
  logger: loggerSchema
    .optional(),
  replicas: positiveInt.optional(),
  onStoreFailure: z.enum(['local', 'open', 'closed']).optional(),
});

interface WindowInfo {
  name: string;
  limit: number;
  windowMs: number;
}

interface Scripts {
  check: StoreScript<LimiterReply>;
  refund: StoreScript<boolean>;
  usage: StoreScript<LimiterReply>;
}


interface Sleeper {
  timer: TimerHandle | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * Store-backed limiter (sliding window or token bucket, as `createLimiter` specs). Every method is async;
 * `check` costs one store round trip while the store answers, and none while it is known to be down.
 *
 * `take` waits on the injected clock for the decision's retryAfterMs and checks again. Waiters on different
 * replicas (or on different calls here) race for freed capacity: it is not FIFO across processes, and a
 * steady stream of `check`s can keep a waiter waiting until its timeout.
 */
export class StoreLimiter implements AsyncLimiter {
  readonly name: string;
  readonly algorithm: 'sliding-window' | 'token-bucket';
  readonly windows: readonly Readonly<WindowInfo>[];
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly mode: StoreFailureMode;
  private readonly replicas: number;
  private readonly scripts: Scripts;
  private readonly keyTag: string;
  /** `store.key(keyTag + key)` is keyStart + key + '}' when the store builds keys the standard way. */
  private readonly keyStart: string | undefined;
  /** [cost, ...config]: copied per call with the cost put in slot 0. */
  private readonly argsTemplate: ScriptArg[];
  private readonly maxCost: number;
  /** Base of the packed reply of an allowed sliding-window check. */
  private readonly packBase: number;
  private readonly maxQueue: number;
  private readonly local: Limiter | undefined;
  /** Largest cost the local share admits (a bigger one is charged as this much while on the fallback). */
  private readonly localMaxCost: number;
  private storeDecisions = 0;
  private localDecisions = 0;
  private failOpen = 0;
  private failClosed = 0;
  private fallbacks = 0;
  private onStore = true;
  private waiting = 0;
  private readonly sleepers = new Set<Sleeper>();
  private closed = false;

  constructor(spec: LimiterSpec, options: StoreLimiterOptions) {
    const where = options?.name ? `store limiter "${options.name}"` : 'store limiter';
    const o = parseOptions(storeLimiterOptionsSchema, options, `${where} options`);
    const parsed = parseOptions(limiterSpecSchema, spec, where);
    const specName = parsed.name ?? o.name;
    this.store = o.store;
    this.clock = o.clock ?? systemClock;
    this.logger = o.logger ?? consoleLogger;
    this.mode = o.onStoreFailure ?? 'local';
    this.replicas = o.replicas ?? 1;
    this.maxQueue = parsed.maxQueue ?? 1000;
    this.algorithm = parsed.algorithm;

    let config: ScriptArg[];
    if (parsed.algorithm === 'token-bucket') {
      this.name = specName ?? 'token-bucket';
      this.scripts = TOKEN_BUCKET_SCRIPTS;
      this.windows = [{ name: 'bucket', limit: parsed.capacity, windowMs: (parsed.capacity / parsed.refillPerSecond) * 1000 }];
      this.maxCost = parsed.capacity;
      this.packBase = 0;
      config = tokenBucketScriptArgs(parsed.capacity, parsed.refillPerSecond);
    } else {
      this.name = specName ?? 'sliding-window';
      this.scripts = slidingWindowScripts(parsed.windows.length);
      // Named as SlidingWindowLimiter names them: a lone unnamed window takes the limiter's name if given.
      this.windows = parsed.windows.map((w) => ({
        name: w.name ?? (parsed.windows.length === 1 && specName !== undefined ? specName : defaultWindowName(w.limit, w.window)),
        limit: w.limit,
        windowMs: w.window,
      }));
      this.maxCost = Math.min(...parsed.windows.map((w) => w.limit));
      this.packBase = slidingWindowPackBase(parsed.windows.length);
      const buckets = parsed.buckets ?? 60;
      config = slidingWindowScriptArgs({
        limits: parsed.windows.map((w) => w.limit),
        windowMs: parsed.windows.map((w) => w.window),
        buckets: parsed.windows.map((w) => Math.max(1, Math.min(buckets, Math.floor(w.window)))),
      });
    }
    this.keyTag = `rl:${this.name}:`;
    // Hot path: a plain concatenation instead of store.key's rest-parameter call, when they agree.
    const start = `${this.store.prefix}{${this.keyTag}`;
    this.keyStart = this.store.key(`${this.keyTag}x`) === `${start}x}` ? start : undefined;
    this.argsTemplate = [0, ...config];
    this.local = this.mode === 'local' ? this.localLimiter(parsed) : undefined;
    this.localMaxCost = this.local === undefined ? 0 : this.localShareOfMaxCost(parsed);
  }

  async check(key: string, cost = 1): Promise<LimitDecision> {
    if (typeof cost !== 'number' || !(cost >= 0 && cost <= this.maxCost)) throw this.costError(cost);
    if (!this.store.available) {
      this.lostStore(undefined);
      return this.fallbackCheck(key, cost);
    }
    let raw: LimiterReply;
    try {
      raw = await this.store.run(this.scripts.check, [this.storeKey(key)], this.args(cost));
    } catch (error) {
      if (!isStoreFailure(error)) throw error;
      this.lostStore(error);
      return this.fallbackCheck(key, cost);
    }
    this.storeDecisions++;
    if (!this.onStore) this.backOnStore();
    return this.decision(raw, cost);
  }

  async getUsage(key: string): Promise<WindowUsage[]> {
    if (this.store.available) {
      let raw: LimiterReply | undefined;
      try {
        raw = await this.store.run(this.scripts.usage, [this.storeKey(key)], this.argsTemplate);
      } catch (error) {
        if (!isStoreFailure(error)) throw error;
        this.lostStore(error);
      }
      if (raw !== undefined) {
        if (!this.onStore) this.backOnStore();
        return this.usage(raw);
      }
    } else this.lostStore(undefined);
    if (this.local !== undefined) return this.local.getUsage(key);
    const closed = this.mode === 'closed';
    return this.windows.map((w) => ({ ...w, used: closed ? w.limit : 0, remaining: closed ? 0 : Math.floor(w.limit), resetMs: 0 }));
  }

  /**
   * Gives back units a `check` charged. Goes to the store while it answers, else to the local fallback; a
   * refund that reaches neither is dropped (the charge then ages out with its window).
   */
  async refund(key: string, cost = 1): Promise<void> {
    if (typeof cost !== 'number' || !(cost >= 0 && Number.isFinite(cost))) {
      throw new RangeError(`${this.label()}: refund must be a finite number >= 0, received ${describe(cost)}`);
    }
    if (cost === 0) return;
    if (this.store.available) {
      try {
        await this.store.run(this.scripts.refund, [this.storeKey(key)], this.args(cost));
        return;
      } catch (error) {
        if (!isStoreFailure(error)) throw error;
        this.lostStore(error);
      }
    }
    this.local?.refund(key, cost);
  }

  async tryAcquire(key: string, cost = 1): Promise<boolean> {
    return (await this.check(key, cost)).allowed;
  }

  /** Forgets the key on the store and in the local fallback; rejects StoreUnavailableError if the store could not be reached. */
  async reset(key: string): Promise<void> {
    this.local?.reset(key);
    if (!this.store.available) throw new StoreUnavailableError(`${this.label()}: the store is unavailable; ${key} was reset locally only`);
    await this.store.run(LIMITER_RESET, [this.storeKey(key)], []);
  }

  async take(key: string, cost = 1, options?: TakeOptions): Promise<LimitDecision> {
    if (typeof cost !== 'number' || !(cost >= 0 && cost <= this.maxCost)) throw this.costError(cost);
    const timeoutMs = options?.timeoutMs ?? Infinity;
    if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0)) {
      throw new RangeError(`${this.label()}: take() timeoutMs must be a number >= 0, received ${describe(timeoutMs)}`);
    }
    const signal = options?.signal;
    const deadline = this.clock.now() + timeoutMs;
    for (;;) {
      if (signal?.aborted) throw abortedError(signal);
      if (this.closed) throw new AbortedError(`${this.label()} is closed`);
      const decision = await this.check(key, cost);
      if (decision.allowed) return decision;
      const wait = decision.retryAfterMs;
      if (this.clock.now() + wait > deadline) {
        throw new RateLimitedError(`${this.label()}: waiting ${Math.ceil(wait)}ms would exceed timeoutMs ${timeoutMs}`, {
          retryAfterMs: wait,
          details: { limiter: this.name, reason: 'timeout', cost },
        });
      }
      if (this.waiting >= this.maxQueue) {
        throw new RateLimitedError(`${this.label()}: wait queue is full (${this.maxQueue} waiters)`, {
          retryAfterMs: wait,
          details: { limiter: this.name, reason: 'queue_full', cost },
        });
      }
      if (signal?.aborted) throw abortedError(signal);
      await this.sleep(wait, signal);
    }
  }

  stats(): StoreLimiterStats {
    return {
      storeDecisions: this.storeDecisions,
      localDecisions: this.localDecisions,
      failOpen: this.failOpen,
      failClosed: this.failClosed,
      fallbacks: this.fallbacks,
      onStore: this.onStore,
    };
  }

  /** Rejects waiting `take`s with AbortedError and drops the local fallback's state. The store stays open. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const sleeper of [...this.sleepers]) this.wake(sleeper, new AbortedError(`${this.label()} was closed while waiting`));
    this.local?.close();
  }

  private label(): string {
    return `StoreLimiter "${this.name}"`;
  }

  private storeKey(key: string): string {
    return this.keyStart !== undefined ? this.keyStart + key + '}' : this.store.key(this.keyTag + key);
  }

  private args(cost: number): ScriptArg[] {
    const args = this.argsTemplate.slice();
    args[0] = cost;
    return args;
  }

  /** Finishes what the script left to JavaScript (see the reply formats in limiter-scripts.ts). */
  private decision(raw: LimiterReply, cost: number): LimitDecision {
    const infos = this.windows;
    const windows: WindowState[] = [];
    if (typeof raw === 'number' && this.algorithm === 'token-bucket') {
      // Allowed: remaining and resetMs, packed.
      const info = infos[0]!;
      const resetMs = raw % TOKEN_BUCKET_PACK_BASE;
      const remaining = (raw - resetMs) / TOKEN_BUCKET_PACK_BASE;
      windows.push({ name: info.name, limit: info.limit, windowMs: info.windowMs, remaining, resetMs });
      return { allowed: true, cost, retryAfterMs: 0, windows, source: 'store' };
    }
    if (typeof raw === 'number') {
      // Allowed, every window's newest charge is this one: the used counts, packed.
      let rest = raw;
      for (let w = 0; w < infos.length; w++) {
        const info = infos[w]!;
        const used = rest % this.packBase;
        rest = (rest - used) / this.packBase;
        windows.push({ name: info.name, limit: info.limit, windowMs: info.windowMs, remaining: info.limit - used, resetMs: Math.ceil(info.windowMs) });
      }
      return { allowed: true, cost, retryAfterMs: 0, windows, source: 'store' };
    }
    const retryAfterMs = raw[0] as number;
    if (this.algorithm === 'token-bucket') {
      const info = infos[0]!;
      windows.push({ name: info.name, limit: info.limit, windowMs: info.windowMs, remaining: raw[1] as number, resetMs: raw[2] as number });
    } else {
      const n = infos.length;
      for (let w = 0; w < n; w++) {
        const info = infos[w]!;
        const left = raw[1 + w] as number;
        windows.push({
          name: info.name,
          limit: info.limit,
          windowMs: info.windowMs,
          remaining: left > 0 ? left : 0,
          resetMs: resetMs(raw[1 + n + w] as number, info.windowMs),
        });
      }
    }
    return { allowed: retryAfterMs === 0, cost, retryAfterMs, windows, source: 'store' };
  }

  private usage(reply: LimiterReply): WindowUsage[] {
    const raw = reply as Array<number | string>;
    if (this.algorithm === 'token-bucket') {
      const info = this.windows[0]!;
      const remaining = raw[0] as number;
      return [{ ...info, used: info.limit - remaining, remaining, resetMs: raw[1] as number }];
    }
    return this.windows.map((info, w) => {
      const used = Number(raw[2 * w]);
      const left = info.limit - used;
      return { ...info, used, remaining: left > 0 ? Math.floor(left) : 0, resetMs: resetMs(raw[2 * w + 1] as number, info.windowMs) };
    });
  }

  private fallbackCheck(key: string, cost: number): LimitDecision {
    if (this.local !== undefined) {
      this.localDecisions++;
      // A cost above this replica's share could never pass locally: it takes the whole share instead.
      const decision = this.local.check(key, cost < this.localMaxCost ? cost : this.localMaxCost);
      decision.cost = cost;
      decision.source = 'local';
      return decision;
    }
    if (this.mode === 'open') {
      this.failOpen++;
      const windows = this.windows.map((w) => ({ ...w, remaining: Math.floor(w.limit), resetMs: 0 }));
      return { allowed: true, cost, retryAfterMs: 0, windows, source: 'fail-open' };
    }
    this.failClosed++;
    const windows = this.windows.map((w) => ({ ...w, remaining: 0, resetMs: FAIL_CLOSED_RETRY_MS }));
    return { allowed: false, cost, retryAfterMs: FAIL_CLOSED_RETRY_MS, windows, source: 'fail-closed' };
  }

  private lostStore(error: unknown): void {
    if (!this.onStore) return;
    this.onStore = false;
    this.fallbacks++;
    const reason = error === undefined ? 'it reports itself down' : error instanceof Error ? error.message : String(error);
    const fallback =
      this.mode === 'local'
        ? `locally with each limit divided by ${this.replicas} replica${this.replicas === 1 ? '' : 's'}`
        : this.mode === 'open'
          ? 'fail-open (allowing every call)'
          : 'fail-closed (denying every call)';
    this.logger.warn(`${this.label()}: the store is unavailable (${reason}); deciding ${fallback} until it answers again`);
  }

  private backOnStore(): void {
    if (this.onStore) return; // the 'up' event and the first store decision may both report it
    this.onStore = true;
    this.logger.warn(`${this.label()}: the store answers again; deciding on it`);
  }

  /** The in-memory fallback: this replica's share of every limit. */
  private localLimiter(parsed: ParsedLimiterSpec): Limiter {
    const replicas = this.replicas;
    const common = { name: this.name, maxKeys: parsed.maxKeys, maxQueue: parsed.maxQueue };
    if (parsed.algorithm === 'token-bucket') {
      return createLimiter(
        { ...common, algorithm: 'token-bucket', capacity: share(parsed.capacity, replicas), refillPerSecond: share(parsed.refillPerSecond, replicas) },
        { clock: this.clock },
      );
    }
    return createLimiter(
      {
        ...common,
        algorithm: 'sliding-window',
        buckets: parsed.buckets,
        // Explicit names keep the windows' names (headers, metrics) the same as on the store.
        windows: this.windows.map((w) => ({ name: w.name, limit: Math.max(1, Math.floor(w.limit / replicas)), window: w.windowMs })),
      },
      { clock: this.clock },
    );
  }

  private localShareOfMaxCost(parsed: ParsedLimiterSpec): number {
    if (parsed.algorithm === 'token-bucket') return share(parsed.capacity, this.replicas);
    return Math.min(...this.windows.map((w) => Math.max(1, Math.floor(w.limit / this.replicas))));
  }

  private costError(cost: unknown): RangeError {
    return new RangeError(`${this.label()}: cost must be a finite number from 0 to ${this.maxCost}, received ${describe(cost)}`);
  }

  private sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const sleeper: Sleeper = { timer: undefined, signal, onAbort: undefined, resolve, reject };
      this.sleepers.add(sleeper);
      this.waiting++;
      sleeper.timer = this.clock.setTimeout(() => this.wake(sleeper, undefined), Math.min(ms, MAX_TIMER_MS));
      if (signal !== undefined) {
        sleeper.onAbort = () => this.wake(sleeper, abortedError(signal));
        signal.addEventListener('abort', sleeper.onAbort, { once: true });
      }
    });
  }

  /** Ends a `take` wait: resolves it (time to check again) or rejects it with `error`. */
  private wake(sleeper: Sleeper, error: unknown): void {
    if (!this.sleepers.delete(sleeper)) return;
    this.waiting--;
    this.clock.clearTimeout(sleeper.timer);
    if (sleeper.onAbort !== undefined) sleeper.signal!.removeEventListener('abort', sleeper.onAbort);
    if (error === undefined) sleeper.resolve();
    else sleeper.reject(error);
  }
}

/** Builds a store-backed limiter from a LimiterSpec; throws InvalidOptionError naming the bad field and value. */
export function createStoreLimiter(spec: LimiterSpec, options: StoreLimiterOptions): StoreLimiter {
  return new StoreLimiter(spec, options);
}

/** A window's resetMs from a reply's `t - now` (NO_CHARGE when empty): until that charge is W old. */
function resetMs(sinceNow: number, windowMs: number): number {
  const left = sinceNow + windowMs;
  return left > 0 ? Math.ceil(left) : 0;
}

/** A replica's share of a capacity or rate: never below 1 (nor above the whole when the whole is below 1). */
function share(value: number, replicas: number): number {
  return Math.max(Math.min(value, 1), value / replicas);
}

/** Redis answered with an error (a wrong command, a bug): not an outage, so it is not hidden by a fallback. */
function isStoreFailure(error: unknown): boolean {
  if (error instanceof StoreUnavailableError) return true;
  return !(error instanceof Error && error.name === 'ReplyError');
}

function abortedError(signal: AbortSignal): AbortedError {
  return new AbortedError('Waiting for the rate limiter was aborted', { cause: signal.reason });
}
