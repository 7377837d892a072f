import { describe, it, expect } from 'vitest';
import { z } from 'zod';
import { InvalidOptionError } from '../src/errors.js';
import { durationSchema, formatDuration, parseDuration } from '../src/options/duration.js';
import { parseOptions } from '../src/options/validate.js';

describe('parseDuration', () => {
  it('takes numbers as milliseconds', () => {
    expect(parseDuration(0)).toBe(0);
    expect(parseDuration(250)).toBe(250);
    expect(parseDuration(1.5)).toBe(1.5);
  });

  it.each([
    ['250ms', 250],
    ['30s', 30_000],
    ['1m', 60_000],
    ['2h', 7_200_000],
    ['1d', 86_400_000],
    ['1.5s', 1500],
    ['.5s', 500],
    [' 5 minutes ', 300_000],
    ['10 SEC', 10_000],
    ['3hours', 10_800_000],
    ['2 days', 172_800_000],
    ['500', 500],
    ['second', 1000],
    ['minute', 60_000],
    ['hour', 3_600_000],
    ['day', 86_400_000],
    ['Minute', 60_000],
  ])('parses %j as %d ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  it.each(['', '   ', 'soon', '5 parsecs', '-1s', '1h30m', 'm', 'minutes', '1e3ms', '1,5s', '5 s s', 'Infinity'])(
    'rejects %j with InvalidOptionError naming the path and value',
    (input) => {
      let error: unknown;
      try {
        parseDuration(input, 'limits.openai.window');
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(InvalidOptionError);
      const issue = (error as InvalidOptionError).issues[0]!;
      expect(issue.path).toBe('limits.openai.window');
      expect(issue.received).toBe(JSON.stringify(input));
      expect(issue.expected).toMatch(/duration/);
      expect((error as Error).message).toContain('limits.openai.window');
    },
  );

  it('rejects negative, non-finite and non-number values', () => {
    for (const bad of [-1, NaN, Infinity, null, undefined, {}, true]) {
      expect(() => parseDuration(bad as never, 'timeout')).toThrow(InvalidOptionError);
    }
    expect(() => parseDuration(-5)).toThrow(/duration: expected a duration.*received -5/);
  });
});

describe('durationSchema', () => {
  it('outputs milliseconds for numbers and strings', () => {
    expect(durationSchema.parse(1500)).toBe(1500);
    expect(durationSchema.parse('1m')).toBe(60_000);
  });

  it('reports the option path, the value and what a duration looks like', () => {
    const schema = z.object({ limits: z.object({ window: durationSchema }) });
    let error: InvalidOptionError | undefined;
    try {
      parseOptions(schema, { limits: { window: 'soon' } }, 'test options');
    } catch (e) {
      error = e as InvalidOptionError;
    }
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect(error!.issues).toEqual([
      { path: 'limits.window', received: '"soon"', expected: expect.stringContaining("'30s'") as unknown as string },
    ]);
  });

  it('explains the expected form for values of the wrong type', () => {
    expect(() => parseOptions(z.object({ window: durationSchema }), { window: true })).toThrow(
      /window: expected a duration: milliseconds .* received true/,
    );
    expect(() => parseOptions(z.object({ window: durationSchema }), { window: -1 })).toThrow(
      /window: expected a duration.*received -1/,
    );
  });
});

describe('formatDuration', () => {
  it('uses the largest whole unit', () => {
    expect(formatDuration(60_000)).toBe('1m');
    expect(formatDuration(86_400_000)).toBe('1d');
    expect(formatDuration(7_200_000)).toBe('2h');
    expect(formatDuration(30_000)).toBe('30s');
    expect(formatDuration(90_000)).toBe('90s');
    expect(formatDuration(1500)).toBe('1500ms');
  });
});
