/**
 * Checking several limits for one call, whether each decides at once (in-memory) or over the network
 * (a store-backed limiter): the pipeline and the adapters' method decorators share this, so "every limit
 * must allow, and a denied call is charged nowhere" is written once.
 */
import type { LimitDecision } from './limit-decision.js';

/** What checking needs from a limiter, sync (Limiter) or async (AsyncLimiter). */
export interface CheckableLimiter {
  readonly name: string;
  check(key: string, cost?: number): LimitDecision | Promise<LimitDecision>;
  refund(key: string, cost?: number): void | Promise<void>;
}

export interface LimitsOutcome {
  /** Every decision made, in order (the denying one last when denied). */
  decisions: LimitDecision[];
  /** The limiter that denied, if any. */
  denied: CheckableLimiter | undefined;
}

export type DecisionObserver = (limiter: CheckableLimiter, decision: LimitDecision) => void;

function isPromise<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

/** Gives back a charge; a store-backed refund that fails is dropped (the charge then ages out with its window). */
export function refundQuietly(limiter: CheckableLimiter, key: string, cost: number): void {
  const result = limiter.refund(key, cost);
  if (isPromise(result)) result.catch(() => undefined);
}

/**
 * Checks `limiters` in order for `key`; stops at the first denial and refunds what the earlier ones charged.
 * Returns synchronously while every limiter answers synchronously, so in-memory limits stay promise-free.
 */
export function checkLimits(
  limiters: readonly CheckableLimiter[],
  key: string,
  cost: number,
  observe?: DecisionObserver,
): LimitsOutcome | Promise<LimitsOutcome> {
  const decisions: LimitDecision[] = [];
  for (let i = 0; i < limiters.length; i++) {
    const limiter = limiters[i]!;
    const decision = limiter.check(key, cost);
    if (isPromise(decision)) return continueAsync(limiters, key, cost, observe, decisions, i, decision);
    if (observe) observe(limiter, decision);
    decisions.push(decision);
    if (!decision.allowed) return deny(limiters, key, cost, decisions, i);
  }
  return { decisions, denied: undefined };
}

async function continueAsync(
  limiters: readonly CheckableLimiter[],
  key: string,
  cost: number,
  observe: DecisionObserver | undefined,
  decisions: LimitDecision[],
  from: number,
  pending: Promise<LimitDecision>,
): Promise<LimitsOutcome> {
  for (let i = from; i < limiters.length; i++) {
    const limiter = limiters[i]!;
    let decision: LimitDecision;
    try {
      decision = await (i === from ? pending : limiter.check(key, cost));
    } catch (error) {
      // A limiter that throws (a bad cost, a store failing with no fallback) must not leave earlier charges.
      for (let j = 0; j < i; j++) refundQuietly(limiters[j]!, key, cost);
      throw error;
    }
    if (observe) observe(limiter, decision);
    decisions.push(decision);
    if (!decision.allowed) return deny(limiters, key, cost, decisions, i);
  }
  return { decisions, denied: undefined };
}

function deny(limiters: readonly CheckableLimiter[], key: string, cost: number, decisions: LimitDecision[], at: number): LimitsOutcome {
  // A denied call uses nothing: give back what the limits before this one charged for it.
  for (let j = 0; j < at; j++) refundQuietly(limiters[j]!, key, cost);
  return { decisions, denied: limiters[at] };
}
