import { z } from 'zod';
import { InvalidOptionError } from '../errors.js';
import { describe, parseOptions } from '../options/validate.js';
import { Bulkhead } from './bulkhead.js';
import { signalOrNever, type Policy, type Work } from './policy.js';
import { RetryPolicy } from './retry.js';
import type { SingleFlight } from './single-flight.js';
import type { SharedSingleFlight } from './shared-single-flight.js';
import { TimeoutPolicy } from './timeout.js';

/** What the dedup part needs: in-process (SingleFlight) or across replicas (SharedSingleFlight). */
export type DedupPart = Pick<SingleFlight | SharedSingleFlight, 'policy'>;

/** One layer of a chain: a Policy, or the dedup marker resolved per call from the call's key. */
type Layer = Policy | typeof DEDUP;
const DEDUP = Symbol('dedup');

/**
 * Runs `work` through `layers[i..]`. The work sees the innermost signal and the highest attempt number
 * any layer reported: policies other than retry always say 1, so the work learns retry's attempt even
 * when a timeout or bulkhead sits between them.
 */
function runChain<T>(
  layers: readonly Layer[],
  i: number,
  work: Work<T>,
  signal: AbortSignal | undefined,
  attempt: number,
  dedup: DedupPart | undefined,
  key: string | undefined,
): Promise<T> {
  if (i === layers.length) {
    try {
      return Promise.resolve(work({ signal: signalOrNever(signal), attempt }));
    } catch (error) {
      return Promise.reject(error);
    }
  }
  const layer = layers[i];
  if (layer === DEDUP) {
    if (key === undefined || dedup === undefined) return runChain(layers, i + 1, work, signal, attempt, dedup, key);
    return dedup
      .policy(key)
      .execute((ctx) => runChain(layers, i + 1, work, ctx.signal, Math.max(attempt, ctx.attempt), dedup, key), signal);
  }
  return layer.execute((ctx) => runChain(layers, i + 1, work, ctx.signal, Math.max(attempt, ctx.attempt), dedup, key), signal);
}

function isPolicy(value: unknown): value is Policy {
  return typeof value === 'object' && value !== null && typeof (value as Policy).execute === 'function';
}

/** Nests policies: the first argument is outermost; each passes its signal to the next. */
export function compose(...policies: Policy[]): Policy {
  const issues = policies.flatMap((p, i) =>
    isPolicy(p) ? [] : [{ path: String(i), received: describe(p), expected: 'a Policy ({ execute(work, signal) })' }],
  );
  if (issues.length) throw new InvalidOptionError(issues, 'compose() arguments');
  const layers: readonly Layer[] = policies.slice();
  return {
    execute: <T>(work: Work<T>, signal?: AbortSignal) => runChain(layers, 0, work, signal, 1, undefined, undefined),
  };
}

export type ResiliencePart = 'dedup' | 'retry' | 'breaker' | 'bulkhead' | 'timeout';

/**
 * Outermost first.
 * - dedup first: followers join the leader's whole execution, retries included, instead of each retrying.
 * - retry outside breaker: every attempt is counted by the breaker, and an open breaker's BreakerOpenError
 *   (not retryable) ends the retries at once.
 * - bulkhead inside breaker: a fast-failing open breaker never occupies a slot.
 * - timeout innermost: it bounds each attempt, not the whole retry sequence, and frees the slot on expiry.
 */
export const DEFAULT_ORDER: readonly ResiliencePart[] = Object.freeze([
  'dedup',
  'retry',
  'breaker',
  'bulkhead',
  'timeout',
] as const);

export interface ResilienceParts {
  dedup?: DedupPart;
  retry?: RetryPolicy;
  breaker?: Policy;
  bulkhead?: Bulkhead;
  timeout?: TimeoutPolicy;
}

export interface ResilienceOptions {
  /** Outermost first; each part at most once. Default DEFAULT_ORDER. */
  order?: ResiliencePart[];
}

export interface ResilienceExecuteOptions {
  /** Dedup key: identical keys share one execution. Without it dedup is skipped. */
  key?: string;
  signal?: AbortSignal;
}

const partNames = ['dedup', 'retry', 'breaker', 'bulkhead', 'timeout'] as const;
const instanceOf = <C>(cls: abstract new (...args: never[]) => C, what: string) =>
  z.custom<C>((v) => v instanceof cls, { message: what });

export const resiliencePartsSchema = z.strictObject({
  dedup: z
    .custom<DedupPart>((v) => typeof v === 'object' && v !== null && typeof (v as DedupPart).policy === 'function', {
      message: 'a SingleFlight or SharedSingleFlight',
    })
    .optional(),
  retry: instanceOf(RetryPolicy, 'a RetryPolicy').optional(),
  breaker: z.custom<Policy>(isPolicy, { message: 'a Policy ({ execute(work, signal) })' }).optional(),
  bulkhead: instanceOf(Bulkhead, 'a Bulkhead').optional(),
  timeout: instanceOf(TimeoutPolicy, 'a TimeoutPolicy').optional(),
});

export const resilienceOptionsSchema = z.strictObject({
  order: z
    .array(z.enum(partNames))
    .refine((order) => new Set(order).size === order.length, { message: 'each part at most once' })
    .optional(),
});

/** The engine's standard stack: dedup, retry, breaker, bulkhead and timeout, in a validated order. */
export class Resilience {
  readonly order: readonly ResiliencePart[];
  private readonly layers: readonly Layer[];
  private readonly dedup: DedupPart | undefined;

  constructor(parts: ResilienceParts, options: ResilienceOptions = {}) {
    const p = parseOptions(resiliencePartsSchema, parts, 'Resilience parts');
    const o = parseOptions(resilienceOptionsSchema, options ?? {}, 'Resilience options');
    const order = o.order ?? DEFAULT_ORDER;
    // A configured part left out of a custom order would be silently ignored: refuse instead.
    const missing = partNames.filter((name) => p[name] !== undefined && !order.includes(name));
    if (missing.length) {
      throw new InvalidOptionError(
        [{ path: 'order', received: describe(order), expected: `an order that includes ${missing.join(', ')}` }],
        'Resilience options',
      );
    }
    this.order = Object.freeze(order.slice());
    this.dedup = p.dedup;
    this.layers = order.flatMap((name): Layer[] => {
      if (name === 'dedup') return p.dedup ? [DEDUP] : [];
      const part = p[name];
      return part ? [part] : [];
    });
  }

  execute<T>(work: Work<T>, options?: ResilienceExecuteOptions): Promise<T> {
    return runChain(this.layers, 0, work, options?.signal, 1, this.dedup, options?.key);
  }
}
