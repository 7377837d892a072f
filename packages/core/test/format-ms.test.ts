import { describe, expect, it } from 'vitest';
import { formatMs } from '../src/util/format-ms.js';

describe('formatMs', () => {
  it('writes what toFixed(3) writes for timing values', () => {
    for (const ms of [0, 0.0004, 0.001, 0.365, 1, 9.9999, 12.345, 999.9996, 1234.5678, 86_400_000]) expect(formatMs(ms)).toBe(ms.toFixed(3));
    // A seeded sweep over six orders of magnitude (exact half-microsecond values aside, which never occur here).
    let seed = 7;
    const next = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    for (let i = 0; i < 20_000; i++) {
      const ms = next() * 10 ** (next() * 6 - 2);
      expect(formatMs(ms)).toBe(ms.toFixed(3));
    }
  });

  it('leaves values outside its range to toFixed', () => {
    expect(formatMs(-1.5)).toBe('-1.500');
    expect(formatMs(2 ** 31 + 0.25)).toBe((2 ** 31 + 0.25).toFixed(3));
    expect(formatMs(Number.NaN)).toBe('NaN');
  });
});
