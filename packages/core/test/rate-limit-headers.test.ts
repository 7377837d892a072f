import { describe, expect, it } from 'vitest';
import { rateLimitHeaders } from '../src/http/rate-limit-headers.js';
import type { LimitDecision } from '../src/policies/limit-decision.js';

const decision: LimitDecision = {
  allowed: true,
  cost: 1,
  retryAfterMs: 0,
  windows: [
    { name: 'minute', limit: 100, windowMs: 60_000, remaining: 40, resetMs: 30_500 },
    { name: 'day', limit: 10_000, windowMs: 86_400_000, remaining: 20, resetMs: 3_600_000 },
  ],
};

describe('rate limit headers', () => {
  it('IETF draft: one list member per window', () => {
    expect(rateLimitHeaders(decision, 'draft')).toEqual({
      'ratelimit-policy': '"minute";q=100;w=60, "day";q=10000;w=86400',
      ratelimit: '"minute";r=40;t=31, "day";r=20;t=3600',
    });
  });

  it('a window name shared by different limits (two engines in one process) gets its own policy each time', () => {
    const one = (limit: number, windowMs: number): LimitDecision => ({ allowed: true, cost: 1, retryAfterMs: 0, windows: [{ name: 'shared', limit, windowMs, remaining: 1, resetMs: 1000 }] });
    expect(rateLimitHeaders(one(10, 60_000), 'draft')['ratelimit-policy']).toBe('"shared";q=10;w=60');
    expect(rateLimitHeaders(one(20, 60_000), 'draft')['ratelimit-policy']).toBe('"shared";q=20;w=60');
    expect(rateLimitHeaders(one(20, 3_600_000), 'draft')['ratelimit-policy']).toBe('"shared";q=20;w=3600');
    expect(rateLimitHeaders(one(10, 60_000), 'draft')['ratelimit-policy']).toBe('"shared";q=10;w=60');
  });

  it('legacy headers describe the tightest window; both modes combine', () => {
    expect(rateLimitHeaders(decision, 'legacy')).toEqual({ 'x-ratelimit-limit': '10000', 'x-ratelimit-remaining': '20', 'x-ratelimit-reset': '3600' });
    expect(Object.keys(rateLimitHeaders(decision, 'both')).sort()).toEqual(['ratelimit', 'ratelimit-policy', 'x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset']);
  });

  it('a denial carries Retry-After in whole seconds, at least 1; false sends only Retry-After', () => {
    const denied = { ...decision, allowed: false, retryAfterMs: 1001 };
    expect(rateLimitHeaders(denied, false)).toEqual({ 'retry-after': '2' });
    expect(rateLimitHeaders({ ...denied, retryAfterMs: 10 }, false)).toEqual({ 'retry-after': '1' });
  });

  it('quotes policy names safely', () => {
    const odd = { ...decision, windows: [{ ...decision.windows[0]!, name: 'a"b\\c\u0007' }] };
    expect(rateLimitHeaders(odd, 'draft')['ratelimit-policy']).toBe('"a\\"b\\\\c";q=100;w=60');
  });
});
