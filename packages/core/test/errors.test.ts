import { describe, expect, it } from 'vitest';
import { inspect, types } from 'node:util';
import {
  AbortedError,
  AmasError,
  BreakerOpenError,
  BudgetExceededError,
  BulkheadFullError,
  InvalidFieldsError,
  InvalidOptionError,
  RateLimitedError,
  TimeoutError,
  isAmasError,
} from '../src/errors.js';

describe('error catalogue', () => {
  it('each error has a stable code, an HTTP status and retryAfterMs where it applies', () => {
    const cases: Array<[AmasError, string, number]> = [
      [new RateLimitedError('x', { retryAfterMs: 1200.4 }), 'AMAS_RATE_LIMITED', 429],
      [new BreakerOpenError('x', { retryAfterMs: 30_000 }), 'AMAS_BREAKER_OPEN', 503],
      [new BulkheadFullError('x'), 'AMAS_BULKHEAD_FULL', 503],
      [new TimeoutError('x'), 'AMAS_TIMEOUT', 504],
      [new BudgetExceededError('x', { status: 402 }), 'AMAS_BUDGET_EXCEEDED', 402],
      [new BudgetExceededError('x'), 'AMAS_BUDGET_EXCEEDED', 429],
      [new InvalidOptionError([{ path: 'a.b', received: '1', expected: 'a string' }]), 'AMAS_INVALID_OPTION', 500],
      [new AbortedError(), 'AMAS_ABORTED', 499],
      [new InvalidFieldsError('fields: empty name at position 0 in ","', 'empty-name', 0), 'AMAS_INVALID_FIELDS', 400],
    ];
    for (const [error, code, status] of cases) {
      expect(error.code).toBe(code);
      expect(error.status).toBe(status);
      expect(error.statusCode).toBe(status);
      expect(error).toBeInstanceOf(Error);
      expect(error).toBeInstanceOf(AmasError);
      expect(isAmasError(error)).toBe(true);
    }
    const limited = cases[0]![0];
    expect(limited.retryAfterMs).toBe(1201);
    expect(limited.headers).toEqual({ 'retry-after': '2' });
    expect(limited.toJSON()).toMatchObject({ error: 'AMAS_RATE_LIMITED', status: 429, retryAfterMs: 1201 });
    expect(new TimeoutError('x').headers).toEqual({});
  });

  it('instanceof distinguishes subclasses by code, not by class identity', () => {
    const error = new RateLimitedError('x', { retryAfterMs: 1 });
    expect(error instanceof RateLimitedError).toBe(true);
    expect(error instanceof BreakerOpenError).toBe(false);
    expect(new Error('plain') instanceof AmasError).toBe(false);
    expect(isAmasError({ code: 'AMAS_RATE_LIMITED' })).toBe(false);
    expect(isAmasError(null)).toBe(false);
  });

  it('is recognised across duplicate copies of the package (same global brand, different classes)', () => {
    // A second copy of the package defines its own classes; simulate one by branding a foreign object.
    const foreign = Object.create(Error.prototype, { code: { value: 'AMAS_BREAKER_OPEN' }, status: { value: 503 } });
    Object.defineProperty(foreign, Symbol.for('amas.error'), { value: true });
    expect(foreign instanceof BreakerOpenError).toBe(true);
    expect(foreign instanceof AmasError).toBe(true);
    expect(foreign instanceof RateLimitedError).toBe(false);
    expect(isAmasError(foreign)).toBe(true);
  });

  it('InvalidFieldsError carries the problem and position, in its fields and in details', () => {
    const error = new InvalidFieldsError('fields: too many fields at position 7 in "a(b,c),d"', 'too-many-fields', 7);
    expect([error.name, error.problem, error.position]).toEqual(['InvalidFieldsError', 'too-many-fields', 7]);
    expect(error).toBeInstanceOf(InvalidFieldsError);
    expect(error instanceof InvalidOptionError).toBe(false);
    expect(error.headers).toEqual({});
    expect(error.toJSON()).toEqual({
      error: 'AMAS_INVALID_FIELDS',
      message: 'fields: too many fields at position 7 in "a(b,c),d"',
      status: 400,
      details: { parameter: 'fields', problem: 'too-many-fields', position: 7 },
    });
  });

  it('InvalidOptionError names path, value and expectation in its message', () => {
    const error = new InvalidOptionError([{ path: 'breakers.openai.failureThreshold', received: '"five"', expected: 'number' }]);
    expect(error.message).toContain('breakers.openai.failureThreshold: expected number, received "five"');
    expect(error.issues).toHaveLength(1);
  });

  it("an open breaker's fast error is a full BreakerOpenError that tools print as an error", () => {
    const error = BreakerOpenError.fast('Circuit breaker "x" is open', 1500.2, { breaker: 'x', state: 'open' });
    expect(error).toBeInstanceOf(BreakerOpenError);
    expect(error).toBeInstanceOf(AmasError);
    expect(error).toBeInstanceOf(Error);
    expect(isAmasError(error)).toBe(true);
    expect([error.name, error.message, error.code, error.status, error.statusCode, error.retryAfterMs]).toEqual([
      'BreakerOpenError',
      'Circuit breaker "x" is open',
      'AMAS_BREAKER_OPEN',
      503,
      503,
      1501,
    ]);
    expect(error.headers).toEqual({ 'retry-after': '2' });
    expect(error.toJSON()).toMatchObject({ error: 'AMAS_BREAKER_OPEN', retryAfterMs: 1501, details: { breaker: 'x', state: 'open' } });
    expect(Object.prototype.toString.call(error)).toBe('[object Error]');
    expect(String(error)).toBe('BreakerOpenError: Circuit breaker "x" is open');
    expect(inspect(error)).toMatch(/^\[BreakerOpenError.*Circuit breaker "x" is open/);
    expect(types.isNativeError(new BreakerOpenError('y', { retryAfterMs: 1 }))).toBe(true);
  });
});
