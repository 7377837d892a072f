import { describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { createAmas } from '../src/amas.js';
import { silentLogger } from '../src/logger.js';
import { SlidingWindowLimiter } from '../src/policies/sliding-window.js';
import { TokenBucketLimiter } from '../src/policies/token-bucket.js';

describe('Limiter.refund', () => {
  it('sliding window: gives back units in every window, never more than the key holds', () => {
    const clock = new ManualClock();
    const limiter = new SlidingWindowLimiter({ windows: [{ name: 'min', limit: 3, window: '1m' }, { name: 'hour', limit: 5, window: '1h' }], clock });
    limiter.check('u', 2);
    limiter.refund('u', 1);
    expect(limiter.getUsage('u').map((w) => w.used)).toEqual([1, 1]);
    limiter.refund('u', 5);
    expect(limiter.getUsage('u').map((w) => w.used)).toEqual([0, 0]);
    limiter.refund('nobody', 1);
    expect(limiter.size).toBe(1);
    expect(() => limiter.refund('u', -1)).toThrow(RangeError);
    // After a refund the capacity is really there.
    for (let i = 0; i < 3; i++) expect(limiter.check('u').allowed).toBe(true);
    expect(limiter.check('u').allowed).toBe(false);
    limiter.close();
  });

  it('token bucket: puts tokens back up to capacity', () => {
    const clock = new ManualClock();
    const limiter = new TokenBucketLimiter({ capacity: 2, refillPerSecond: 1, clock });
    expect(limiter.check('u', 2).allowed).toBe(true);
    expect(limiter.check('u').allowed).toBe(false);
    limiter.refund('u', 1);
    expect(limiter.check('u').allowed).toBe(true);
    limiter.refund('u', 2);
    limiter.refund('u', 2);
    expect(limiter.getUsage('u')[0]!.remaining).toBe(2);
    limiter.close();
  });

  it('a request denied by a later limit is not charged by the earlier ones', async () => {
    const clock = new ManualClock();
    const amas = createAmas({ clock, logger: silentLogger, limits: { wide: { limit: 100, window: '1m' }, narrow: { limit: 1, window: '1m' } } });
    const route = amas.http.compile({ limit: ['wide', 'narrow'] }, '/x');
    const req = { method: 'GET', url: '/x', headers: {}, ip: '10.0.0.1' };
    const first = amas.http.admit(req, route);
    expect(first instanceof Promise ? 'promise' : first.action).toBe('pass');
    for (let i = 0; i < 5; i++) {
      const denied = amas.http.admit(req, route);
      expect(denied instanceof Promise ? 'promise' : denied.action).toBe('reject');
    }
    expect((await amas.limiter('wide').getUsage('ip:10.0.0.1'))[0]!.used).toBe(1);
    await amas.close();
  });
});
