import { describe, expect, it } from 'vitest';
import { RateLimitedError } from '../src/errors.js';
import { REJECTION_CONTENT_TYPE, defaultRejectionBody, rejectionJson, renderRejection } from '../src/http/rejection.js';

describe('rejection rendering', () => {
  const error = new RateLimitedError('slow down', { retryAfterMs: 1500 });

  it('carries the error status, Retry-After and extra headers, and the default JSON body', () => {
    const rejection = renderRejection(error, { ratelimit: '"x";r=0;t=2' });
    expect(rejection.status).toBe(429);
    expect(rejection.headers).toEqual({ ratelimit: '"x";r=0;t=2', 'retry-after': '2' });
    expect(JSON.parse(rejectionJson(rejection))).toEqual({ error: { code: 'AMAS_RATE_LIMITED', message: 'slow down', status: 429, retryAfterMs: 1500 } });
    expect(REJECTION_CONTENT_TYPE).toBe('application/json; charset=utf-8');
  });

  it('a custom body renderer that throws or returns something JSON cannot encode falls back to the default body', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const fallback = JSON.stringify(defaultRejectionBody(error));
    for (const renderer of [() => { throw new Error('broken'); }, () => cyclic, () => 10n, () => undefined]) {
      expect(rejectionJson(renderRejection(error, {}, renderer))).toBe(fallback);
    }
    expect(rejectionJson(renderRejection(error, {}, (e) => ({ oops: e.code })))).toBe('{"oops":"AMAS_RATE_LIMITED"}');
  });
});
