import { z } from 'zod';
import { systemClock, type Clock } from '../clock.js';
import { clockSchema, nonNegativeInt, parseOptions, positiveInt } from '../options/validate.js';
import { InMemoryLimiter } from './in-memory-limiter.js';
import type { LimitDecision, WindowUsage } from './limit-decision.js';

/**
 * Token bucket: holds up to `capacity` tokens (the burst), refilled continuously at `refillPerSecond`.
 * A call of cost c is admitted when c tokens are available.
 *
 * The algorithm is a pure state transition over a plain object of numbers: given (state, config, now,
 * cost) it updates the state and returns the wait, with no clock, timers or I/O. The in-memory store
 * below runs it per key; a Redis store can run the same arithmetic inside a Lua script (HMGET state,
 * compute, HMSET + PEXPIRE) so concurrent processes share one bucket atomically.
 */
export interface TokenBucketState {
  tokens: number;
  /** Time (ms) `tokens` was last brought up to date. */
  updatedAt: number;
}

export interface TokenBucketConfig {
  capacity: number;
  refillPerMs: number;
}

/** Float slack so `refill * wait` that lands a hair under a whole token still counts as enough. */
function epsilon(config: TokenBucketConfig): number {
  return 1e-9 * Math.max(1, config.capacity);
}

export function tokenBucketInitial(config: TokenBucketConfig, now: number): TokenBucketState {
  return { tokens: config.capacity, updatedAt: now };
}

/** Adds the tokens earned since `updatedAt` (never beyond capacity; a clock moving back earns nothing). */
export function tokenBucketRefill(state: TokenBucketState, config: TokenBucketConfig, now: number): void {
  if (now > state.updatedAt) {
    const tokens = state.tokens + (now - state.updatedAt) * config.refillPerMs;
    state.tokens = tokens < config.capacity ? tokens : config.capacity;
    state.updatedAt = now;
  }
}

/** Takes `cost` tokens and returns 0, or takes nothing and returns whole ms (>= 1) until they are there. */
export function tokenBucketConsume(state: TokenBucketState, config: TokenBucketConfig, now: number, cost: number): number {
  tokenBucketRefill(state, config, now);
  const eps = epsilon(config);
  const missing = cost - state.tokens;
  if (missing <= eps) {
    const left = state.tokens - cost;
    state.tokens = left > 0 ? left : 0;
    return 0;
  }
  return Math.max(1, Math.ceil((missing - eps) / config.refillPerMs));
}

/** Puts back up to `cost` tokens (never above capacity). */
export function tokenBucketRefund(state: TokenBucketState, config: TokenBucketConfig, now: number, cost: number): void {
  tokenBucketRefill(state, config, now);
  state.tokens = Math.min(config.capacity, state.tokens + cost);
}

/** ms until the bucket is full again. */
export function tokenBucketResetMs(state: TokenBucketState, config: TokenBucketConfig): number {
  const missing = config.capacity - state.tokens - epsilon(config);
  return missing > 0 ? Math.ceil(missing / config.refillPerMs) : 0;
}

/** True when the bucket has refilled completely, so the state equals a fresh one. */
export function tokenBucketIdle(state: TokenBucketState, config: TokenBucketConfig, now: number): boolean {
  const elapsed = now > state.updatedAt ? now - state.updatedAt : 0;
  return state.tokens + elapsed * config.refillPerMs >= config.capacity - epsilon(config);
}

export const tokenBucketOptionsSchema = z.strictObject({
  name: z.string().min(1).optional(),
  capacity: z.number().finite().positive(),
  refillPerSecond: z.number().finite().positive(),
  maxQueue: nonNegativeInt.optional(),
  maxKeys: positiveInt.optional(),
  clock: clockSchema.optional(),
});

export interface TokenBucketOptions {
  /** Limiter name (errors, metrics). Default 'token-bucket'. */
  name?: string;
  /** Burst size: the most tokens the bucket holds, > 0. */
  capacity: number;
  /** Tokens added per second, > 0. */
  refillPerSecond: number;
  /** Waiters across all keys of this limiter for `take`. Default 1000. */
  maxQueue?: number;
  /** Keys held in memory; beyond it the least recently used key is dropped. Default 100000. */
  maxKeys?: number;
  clock?: Clock;
}

const WINDOW_NAME = 'bucket';

/**
 * In-memory token bucket per key. `check`/`tryTake` never wait; `take` waits in a FIFO queue per key.
 * A cost must be a finite number from 0 to `capacity` (a bigger one could never be admitted): anything
 * else throws a RangeError (`take` rejects with it).
 */
export class TokenBucketLimiter extends InMemoryLimiter<TokenBucketState> {
  readonly capacity: number;
  readonly refillPerSecond: number;
  private readonly config: TokenBucketConfig;
  /** Time for an empty bucket to fill: the bucket's equivalent of a window length. */
  private readonly windowMs: number;

  constructor(options: TokenBucketOptions) {
    const o = parseOptions(tokenBucketOptionsSchema, options, 'TokenBucketLimiter options');
    const windowMs = (o.capacity / o.refillPerSecond) * 1000;
    super({
      name: o.name ?? 'token-bucket',
      clock: o.clock ?? systemClock,
      maxCost: o.capacity,
      maxKeys: o.maxKeys ?? 100_000,
      maxQueue: o.maxQueue ?? 1000,
      sweepIntervalMs: Math.min(60_000, Math.max(1000, windowMs)),
    });
    this.capacity = o.capacity;
    this.refillPerSecond = o.refillPerSecond;
    this.config = { capacity: o.capacity, refillPerMs: o.refillPerSecond / 1000 };
    this.windowMs = windowMs;
  }

  /** Same as `check`: takes `cost` tokens if available, never waits; a denied call takes nothing. */
  tryTake(key: string, cost = 1): LimitDecision {
    return this.check(key, cost);
  }

  protected initial(now: number): TokenBucketState {
    return tokenBucketInitial(this.config, now);
  }

  protected advance(state: TokenBucketState, now: number): void {
    tokenBucketRefill(state, this.config, now);
  }

  protected consume(state: TokenBucketState, now: number, cost: number): number {
    return tokenBucketConsume(state, this.config, now, cost);
  }

  protected giveBack(state: TokenBucketState, now: number, cost: number): void {
    tokenBucketRefund(state, this.config, now, cost);
  }

  protected idle(state: TokenBucketState, now: number): boolean {
    return tokenBucketIdle(state, this.config, now);
  }

  protected clone(state: TokenBucketState): TokenBucketState {
    return { tokens: state.tokens, updatedAt: state.updatedAt };
  }

  protected decision(state: TokenBucketState, _now: number, cost: number, retryAfterMs: number): LimitDecision {
    return {
      allowed: retryAfterMs === 0,
      cost,
      retryAfterMs,
      windows: [
        {
          name: WINDOW_NAME,
          limit: this.capacity,
          windowMs: this.windowMs,
          remaining: Math.floor(state.tokens + epsilon(this.config)),
          resetMs: tokenBucketResetMs(state, this.config),
        },
      ],
    };
  }

  protected usage(state: TokenBucketState): WindowUsage[] {
    const remaining = Math.floor(state.tokens + epsilon(this.config));
    return [
      {
        name: WINDOW_NAME,
        limit: this.capacity,
        windowMs: this.windowMs,
        used: this.capacity - remaining,
        remaining,
        resetMs: tokenBucketResetMs(state, this.config),
      },
    ];
  }
}
