import { z } from 'zod';
import type { Clock } from '../clock.js';
import { durationSchema } from '../options/duration.js';
import { nonNegativeInt, parseOptions, positiveInt } from '../options/validate.js';
import type { Limiter } from './limit-decision.js';
import { SLIDING_WINDOW_MAX_BUCKETS, SlidingWindowLimiter, slidingWindowsSchema } from './sliding-window.js';
import { TokenBucketLimiter } from './token-bucket.js';

/** Options every limiter spec accepts. */
type LimiterSpecCommon = {
  name?: string;
  maxQueue?: number;
  maxKeys?: number;
};

type SlidingWindowSpecWindows<D> = LimiterSpecCommon & {
  algorithm?: 'sliding-window';
  windows: Array<{ name?: string; limit: number; window: D }>;
  buckets?: number;
};

type TokenBucketSpec = LimiterSpecCommon & {
  algorithm: 'token-bucket';
  capacity: number;
  refillPerSecond: number;
};

/** A limiter described as data (config files, the engine's `limits` option). */
export type LimiterSpec =
  | (LimiterSpecCommon & { algorithm?: 'sliding-window'; limit: number; window: number | string; buckets?: number })
  | SlidingWindowSpecWindows<number | string>
  | TokenBucketSpec;

/** A validated spec: the shorthand folded into `windows`, durations in ms. */
export type ParsedLimiterSpec = (SlidingWindowSpecWindows<number> & { algorithm: 'sliding-window' }) | TokenBucketSpec;

const common = {
  name: z.string().min(1).optional(),
  maxQueue: nonNegativeInt.optional(),
  maxKeys: positiveInt.optional(),
};
const buckets = z.number().int().min(1).max(SLIDING_WINDOW_MAX_BUCKETS).optional();
const slidingAlgorithm = z.literal('sliding-window').optional();

const shorthandSpec = z.strictObject({
  algorithm: slidingAlgorithm,
  limit: positiveInt,
  window: durationSchema.refine((ms) => ms >= 1, 'a duration of at least 1ms'),
  buckets,
  ...common,
});
const windowsSpec = z.strictObject({ algorithm: slidingAlgorithm, windows: slidingWindowsSchema, buckets, ...common });
const tokenBucketSpec = z.strictObject({
  algorithm: z.literal('token-bucket'),
  capacity: z.number().finite().positive(),
  refillPerSecond: z.number().finite().positive(),
  ...common,
});

const ALGORITHMS = ['sliding-window', 'token-bucket'] as const;

/** The branch the user meant, judged by `algorithm` and the keys present (not by which branch fails least). */
function branchOf(input: Record<string, unknown>): z.ZodType | undefined {
  const algorithm = input.algorithm;
  if (algorithm === 'token-bucket') return tokenBucketSpec;
  if (algorithm === undefined && ('capacity' in input || 'refillPerSecond' in input)) return tokenBucketSpec;
  if (algorithm === undefined || algorithm === 'sliding-window') return 'windows' in input ? windowsSpec : shorthandSpec;
  return undefined;
}

/**
 * Validates a LimiterSpec and outputs a ParsedLimiterSpec. Errors come from the one branch the spec is
 * meant to be (e.g. a token-bucket spec reports `refillPerSecond`, not the sliding-window fields).
 */
export const limiterSpecSchema = z.custom<LimiterSpec>().transform((input, ctx): ParsedLimiterSpec => {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    ctx.issues.push({ code: 'custom', message: 'a limiter spec object', input, path: [] });
    return z.NEVER;
  }
  const branch = branchOf(input as Record<string, unknown>);
  if (branch === undefined) {
    ctx.issues.push({
      code: 'invalid_value',
      values: [...ALGORITHMS],
      message: 'one of "sliding-window", "token-bucket"',
      input: (input as Record<string, unknown>).algorithm,
      path: ['algorithm'],
    });
    return z.NEVER;
  }
  const result = branch.safeParse(input);
  if (!result.success) {
    ctx.issues.push(...(result.error.issues as typeof ctx.issues));
    return z.NEVER;
  }
  const spec = result.data as Record<string, unknown> & { algorithm?: string };
  if (branch === tokenBucketSpec) return { ...spec, algorithm: 'token-bucket' } as ParsedLimiterSpec;
  if (branch === shorthandSpec) {
    const { limit, window, algorithm: _a, ...rest } = spec as { limit: number; window: number; algorithm?: string };
    return { ...rest, algorithm: 'sliding-window', windows: [{ limit, window }] } as ParsedLimiterSpec;
  }
  return { ...spec, algorithm: 'sliding-window' } as ParsedLimiterSpec;
});

export interface CreateLimiterOptions {
  clock?: Clock;
  /** Name used when the spec has none (e.g. the key of the spec in a config object). */
  name?: string;
}

/** Builds an in-memory limiter from a spec; throws InvalidOptionError naming the bad field and value. */
export function createLimiter(spec: LimiterSpec, options: CreateLimiterOptions = {}): Limiter {
  const where = options.name ? `limiter "${options.name}"` : 'limiter spec';
  const parsed = parseOptions(limiterSpecSchema, spec, where);
  const name = parsed.name ?? options.name;
  const { maxQueue, maxKeys } = parsed;
  if (parsed.algorithm === 'token-bucket') {
    const { capacity, refillPerSecond } = parsed;
    return new TokenBucketLimiter({ name, capacity, refillPerSecond, maxQueue, maxKeys, clock: options.clock });
  }
  return new SlidingWindowLimiter({
    name,
    windows: parsed.windows,
    buckets: parsed.buckets,
    maxQueue,
    maxKeys,
    clock: options.clock,
  });
}
