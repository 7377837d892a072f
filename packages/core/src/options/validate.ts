import { z } from 'zod';
import { InvalidOptionError, type OptionIssue } from '../errors.js';

/**
 * Validates `input` against `schema` once, at construction. On failure throws InvalidOptionError whose
 * issues name the option's dotted path (prefixed with `prefix`), the value given and what was expected.
 */
export function parseOptions<S extends z.ZodType>(
  schema: S,
  input: unknown,
  where = 'AMAS options',
  prefix = '',
): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  throw new InvalidOptionError(toOptionIssues(result.error.issues, input, prefix), where);
}

export function toOptionIssues(issues: readonly z.core.$ZodIssue[], input: unknown, prefix = ''): OptionIssue[] {
  const out: OptionIssue[] = [];
  for (const issue of issues) {
    // A union failure: report the branch the user most likely meant (the one that got furthest).
    if (issue.code === 'invalid_union' && Array.isArray((issue as { errors?: unknown }).errors)) {
      const branches = (issue as unknown as { errors: z.core.$ZodIssue[][] }).errors;
      const best = branches.slice().sort((a, b) => depth(b) - depth(a))[0];
      if (best && best.length && depth(best) > 0) {
        out.push(
          ...toOptionIssues(
            best.map((b) => ({ ...b, path: [...issue.path, ...b.path] })),
            input,
            prefix,
          ),
        );
        continue;
      }
    }
    const path = [prefix, ...issue.path.map(String)].filter(Boolean).join('.');
    out.push({ path, received: describe(valueAt(input, issue.path)), expected: expectedOf(issue) });
  }
  return out;
}

/**
 * How far into the value a branch got before failing: deeper paths mean the user meant that branch. A type
 * mismatch at a path counts less than a wrong value there; nested unions count by their best branch.
 */
function depth(issues: readonly z.core.$ZodIssue[]): number {
  return Math.max(
    0,
    ...issues.map((i) => {
      if (i.code === 'invalid_union' && Array.isArray((i as { errors?: unknown }).errors)) {
        const branches = (i as unknown as { errors: z.core.$ZodIssue[][] }).errors;
        return i.path.length + Math.max(0, ...branches.map(depth));
      }
      return i.path.length + (i.code === 'invalid_type' || i.code === 'invalid_value' ? 0 : 0.5);
    }),
  );
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value: unknown = input;
  for (const key of path) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

function expectedOf(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_type':
      return issue.expected;
    case 'too_small':
      return `${issue.origin === 'array' ? 'an array with length' : issue.origin === 'string' ? 'a string of length' : 'a number'} ${issue.inclusive ? '>=' : '>'} ${String(issue.minimum)}`;
    case 'too_big':
      return `${issue.origin === 'array' ? 'an array with length' : issue.origin === 'string' ? 'a string of length' : 'a number'} ${issue.inclusive ? '<=' : '<'} ${String(issue.maximum)}`;
    case 'invalid_value':
      return `one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'unrecognized_keys':
      return `no unknown keys (unknown: ${issue.keys.join(', ')})`;
    default:
      return issue.message;
  }
}

/** A short, safe description of a received value for error messages. */
export function describe(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (value === null) return 'null';
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (Array.isArray(value)) return `an array of ${value.length}`;
  try {
    const json = JSON.stringify(value);
    return json.length > 80 ? `${json.slice(0, 77)}...` : json;
  } catch {
    return 'an object';
  }
}

/** Shared schema pieces so every policy spells durations and counts the same way. */
export const durationMs = z.number().finite().nonnegative();
/**
 * Largest delay a Node timer honours: anything above 2^31-1 ms fires immediately. Every option that becomes
 * a timer delay is validated with `timerMs` so a typo like `1e10` fails at construction.
 */
export const MAX_TIMER_MS = 2_147_483_647;
export const timerMs = durationMs.max(MAX_TIMER_MS);
export const positiveInt = z.number().int().positive();
export const nonNegativeInt = z.number().int().nonnegative();
export const fn = z.custom<(...args: never[]) => unknown>((v) => typeof v === 'function', { message: 'a function' });
/** Any logger with warn() and error(): console, pino, winston, or AMAS's own. */
export const loggerSchema = z.custom<import('../logger.js').Logger>(
  (v) => typeof v === 'object' && v !== null && typeof (v as { warn?: unknown }).warn === 'function' && typeof (v as { error?: unknown }).error === 'function',
  { message: 'a logger with warn() and error()' },
);
export const clockSchema = z.custom<import('../clock.js').Clock>(
  (v) =>
    typeof v === 'object' &&
    v !== null &&
    typeof (v as { now?: unknown }).now === 'function' &&
    typeof (v as { setTimeout?: unknown }).setTimeout === 'function' &&
    typeof (v as { clearTimeout?: unknown }).clearTimeout === 'function',
  { message: 'a Clock ({ now, setTimeout, clearTimeout })' },
);
