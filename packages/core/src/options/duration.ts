import { z } from 'zod';
import { InvalidOptionError } from '../errors.js';
import { describe } from './validate.js';

/**
 * Durations in options: a number is milliseconds; a string is `<amount><unit>` such as '250ms', '30s',
 * '1.5m', '2h', '1d' (spaces and long unit names allowed: '5 minutes'), or a bare unit ('minute' = 1m).
 * A string of digits alone is milliseconds, like a number.
 */
const UNIT_MS: Record<string, number> = {
  ms: 1,
  msec: 1,
  msecs: 1,
  millisecond: 1,
  milliseconds: 1,
  s: 1000,
  sec: 1000,
  secs: 1000,
  second: 1000,
  seconds: 1000,
  m: 60_000,
  min: 60_000,
  mins: 60_000,
  minute: 60_000,
  minutes: 60_000,
  h: 3_600_000,
  hr: 3_600_000,
  hrs: 3_600_000,
  hour: 3_600_000,
  hours: 3_600_000,
  d: 86_400_000,
  day: 86_400_000,
  days: 86_400_000,
};

const PATTERN = /^\s*(\d+(?:\.\d+)?|\.\d+)?\s*([a-z]*)\s*$/i;

export const DURATION_EXPECTED = "a duration: milliseconds (number >= 0) or a string like '250ms', '30s', '5m', '2h', '1d'";

/** The duration in ms, or undefined when `value` is not a valid duration. */
function toMs(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const match = PATTERN.exec(value);
  if (!match) return undefined;
  const [, amount, unitRaw] = match;
  const unit = unitRaw!.toLowerCase();
  if (amount === undefined) return unit && unit.length > 1 ? singleUnit(unit) : undefined; // 'minute', not 'm'
  const factor = unit === '' ? 1 : UNIT_MS[unit];
  if (factor === undefined) return undefined;
  const ms = Number(amount) * factor;
  return Number.isFinite(ms) ? ms : undefined;
}

function singleUnit(unit: string): number | undefined {
  return unit.endsWith('s') && unit !== 'ms' ? undefined : UNIT_MS[unit];
}

/** Parses a duration to milliseconds; throws InvalidOptionError naming `path` and the value on garbage. */
export function parseDuration(value: number | string, path = 'duration'): number {
  const ms = toMs(value);
  if (ms === undefined) {
    throw new InvalidOptionError([{ path, received: describe(value), expected: DURATION_EXPECTED }]);
  }
  return ms;
}

/** Zod schema for a duration option: accepts a number (ms) or a duration string, outputs ms. */
export const durationSchema = z
  .union([z.number(), z.string()], { error: DURATION_EXPECTED })
  .transform((value, ctx) => {
    const ms = toMs(value);
    if (ms === undefined) {
      ctx.issues.push({ code: 'custom', message: DURATION_EXPECTED, input: value });
      return z.NEVER;
    }
    return ms;
  });

/** Short human form used in derived names: 60000 -> '1m', 1500 -> '1500ms'. */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
