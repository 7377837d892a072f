import { describe, expect, it } from 'vitest';
import { RateLimitedError } from '../src/errors.js';
import { parseRetryAfter, retryAfterFromError } from '../src/policies/retry-after.js';

const NOW = Date.parse('2025-01-01T00:00:00Z');

describe('parseRetryAfter', () => {
  it('reads delay-seconds from strings and numbers', () => {
    expect(parseRetryAfter('120', NOW)).toBe(120_000);
    expect(parseRetryAfter(' 3 ', NOW)).toBe(3_000);
    expect(parseRetryAfter('1.5', NOW)).toBe(1_500);
    expect(parseRetryAfter('0', NOW)).toBe(0);
    expect(parseRetryAfter(2, NOW)).toBe(2_000);
  });

  it('reads the three HTTP-date forms relative to now', () => {
    expect(parseRetryAfter('Wed, 01 Jan 2025 00:00:30 GMT', NOW)).toBe(30_000);
    expect(parseRetryAfter('Wednesday, 01-Jan-25 00:00:10 GMT', NOW)).toBe(10_000);
    expect(parseRetryAfter('Wed Jan  1 00:00:05 2025', NOW)).toBe(5_000);
  });

  it('clamps a date in the past to 0', () => {
    expect(parseRetryAfter('Tue, 31 Dec 2024 23:59:00 GMT', NOW)).toBe(0);
  });

  it('returns undefined for garbage', () => {
    for (const bad of ['', '   ', 'soon', '-5', '1e3', 'Jan 2025 soon-ish', 'NaN', null, undefined, -1, Number.NaN, Infinity]) {
      expect(parseRetryAfter(bad as string | number | null | undefined, NOW)).toBeUndefined();
    }
  });
});

describe('retryAfterFromError', () => {
  it('prefers error.retryAfterMs', () => {
    expect(retryAfterFromError({ retryAfterMs: 750, headers: { 'retry-after': '9' } }, NOW)).toBe(750);
    expect(retryAfterFromError(new RateLimitedError('slow down', { retryAfterMs: 1_200 }), NOW)).toBe(1_200);
  });

  it('reads retry-after-ms before retry-after, from a Headers instance', () => {
    const headers = new Headers({ 'Retry-After': '9', 'Retry-After-Ms': '250.5' });
    expect(retryAfterFromError({ headers }, NOW)).toBe(250.5);
    expect(retryAfterFromError({ headers: new Headers({ 'retry-after': '4' }) }, NOW)).toBe(4_000);
  });

  it('reads plain objects with any header-name case and array values', () => {
    expect(retryAfterFromError({ headers: { 'RETRY-AFTER': '7' } }, NOW)).toBe(7_000);
    expect(retryAfterFromError({ headers: { 'Retry-After-Ms': 40 } }, NOW)).toBe(40);
    expect(retryAfterFromError({ headers: { 'retry-after': ['2', '9'] } }, NOW)).toBe(2_000);
  });

  it('reads Maps case-insensitively', () => {
    expect(retryAfterFromError({ headers: new Map([['retry-after-ms', '90']]) }, NOW)).toBe(90);
    expect(retryAfterFromError({ headers: new Map([['Retry-After', 'Wed, 01 Jan 2025 00:01:00 GMT']]) }, NOW)).toBe(
      60_000,
    );
  });

  it('falls back to error.response.headers', () => {
    expect(retryAfterFromError({ response: { headers: new Headers({ 'retry-after': '3' }) } }, NOW)).toBe(3_000);
    expect(retryAfterFromError({ response: { status: 429, headers: { 'retry-after': '1' } } }, NOW)).toBe(1_000);
  });

  it('skips a malformed retry-after-ms and uses retry-after', () => {
    expect(retryAfterFromError({ headers: { 'retry-after-ms': 'abc', 'retry-after': '2' } }, NOW)).toBe(2_000);
    expect(retryAfterFromError({ headers: { 'retry-after-ms': '-3' } }, NOW)).toBeUndefined();
  });

  it('returns undefined when there is no hint', () => {
    expect(retryAfterFromError(undefined, NOW)).toBeUndefined();
    expect(retryAfterFromError('boom', NOW)).toBeUndefined();
    expect(retryAfterFromError(new Error('x'), NOW)).toBeUndefined();
    expect(retryAfterFromError({ headers: { 'retry-after': 'later' } }, NOW)).toBeUndefined();
    expect(retryAfterFromError({ response: null }, NOW)).toBeUndefined();
    expect(retryAfterFromError({ retryAfterMs: -1 }, NOW)).toBeUndefined();
  });
});
