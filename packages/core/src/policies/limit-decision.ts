/**
 * The rate-limiter contract shared by every algorithm and store: what a decision, a window and a usage report
 * look like. The in-memory key store lives in in-memory-limiter.ts.
 */

export interface WindowState {
  name: string;
  limit: number;
  windowMs: number;
  /** Whole units still admissible in this window after this decision. */
  remaining: number;
  /** ms until this window's current usage has fully aged out (token bucket: until full). */
  resetMs: number;
}

export interface LimitDecision {
  allowed: boolean;
  cost: number;
  /** 0 when allowed; else ms until the call would be allowed (max over denying windows). */
  retryAfterMs: number;
  windows: WindowState[];
  /**
   * Who decided, for limiters over a shared store: the store, the local fallback limiter, or the fail-open /
   * fail-closed rule while the store was unavailable. In-memory limiters leave it unset.
   */
  source?: 'store' | 'local' | 'fail-open' | 'fail-closed';
}

export interface WindowUsage {
  name: string;
  limit: number;
  windowMs: number;
  used: number;
  remaining: number;
  resetMs: number;
}

export interface TakeOptions {
  /** Longest acceptable wait; a call whose projected wait is longer is rejected at once. Default: no limit. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface Limiter {
  readonly name: string;
  /** Non-blocking: admits and charges `cost` (default 1) or denies and charges nothing. */
  check(key: string, cost?: number): LimitDecision;
  /**
   * The same decision as `check`, answered as a boolean (true: admitted and charged). Builds no report, so it
   * allocates nothing: for callers that only branch on the answer (no rate-limit headers, no retry time).
   */
  tryAcquire(key: string, cost?: number): boolean;
  getUsage(key: string): WindowUsage[];
  reset(key: string): void;
  /**
   * Gives back `cost` units an admitted `check` charged but the caller did not use (another limit denied the
   * same request). Never gives back more than the key holds.
   */
  refund(key: string, cost?: number): void;
  /** Waits in a FIFO queue per key until `cost` fits; rejects RateLimitedError / AbortedError. */
  take(key: string, cost?: number, options?: TakeOptions): Promise<LimitDecision>;
  close(): void;
  /** Keys currently held in memory. */
  readonly size: number;
}

/**
 * A limiter whose state lives in a shared store (StoreLimiter): the surface of `Limiter`, every call a
 * promise. `take` waits by retrying `check` after its retryAfterMs, so it is not FIFO across processes.
 */
export interface AsyncLimiter {
  readonly name: string;
  /** Non-blocking: admits and charges `cost` (default 1) or denies and charges nothing. */
  check(key: string, cost?: number): Promise<LimitDecision>;
  /** The same decision as `check`, answered as a boolean (true: admitted and charged). */
  tryAcquire(key: string, cost?: number): Promise<boolean>;
  getUsage(key: string): Promise<WindowUsage[]>;
  reset(key: string): Promise<void>;
  /** Gives back `cost` units an admitted `check` charged but the caller did not use. */
  refund(key: string, cost?: number): Promise<void>;
  /** Waits until `cost` fits; rejects RateLimitedError when the wait would pass `timeoutMs`, AbortedError on abort. */
  take(key: string, cost?: number, options?: TakeOptions): Promise<LimitDecision>;
  /** Rejects pending `take`s with AbortedError and frees local state (the store is the caller's to close). */
  close(): void;
}
