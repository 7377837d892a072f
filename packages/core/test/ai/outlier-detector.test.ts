import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { TimeoutError } from '../../src/errors.js';
import { isOutlierError, OutlierDetector, type OutlierEvents } from '../../src/ai/outlier-detector.js';
import { UpstreamError } from '../../src/ai/provider-types.js';

function setup(ids: string[], options: ConstructorParameters<typeof OutlierDetector>[1] = {}) {
  const clock = new ManualClock(0);
  const detector = new OutlierDetector(ids, options, clock);
  const events: Array<{ type: keyof OutlierEvents; event: unknown }> = [];
  detector.on('ejected', (e) => events.push({ type: 'ejected', event: e }));
  detector.on('returned', (e) => events.push({ type: 'returned', event: e }));
  detector.on('ejectionSkipped', (e) => events.push({ type: 'ejectionSkipped', event: e }));
  return { clock, detector, events };
}

const fail = (d: OutlierDetector, id: string, n: number) => {
  for (let i = 0; i < n; i++) d.failure(id);
};

describe('OutlierDetector: consecutive errors', () => {
  it('ejects after N errors in a row; a success in between resets the count', () => {
    const { detector } = setup(['a', 'b', 'c'], { consecutiveErrors: 3 });
    fail(detector, 'a', 2);
    detector.success('a');
    fail(detector, 'a', 2);
    expect(detector.isEjected('a')).toBe(false);
    detector.failure('a');
    expect(detector.isEjected('a')).toBe(true);
    expect(detector.isEjected('b')).toBe(false);
  });

  it('returns after the ejection time (timer on the clock), with events and stats', async () => {
    const { clock, detector, events } = setup(['a', 'b'], { consecutiveErrors: 2, baseEjectionMs: 1000 });
    fail(detector, 'a', 2);
    expect(detector.stats('a')).toMatchObject({ ejected: true, ejectedUntil: 1000, ejections: 1 });
    expect(events).toEqual([{ type: 'ejected', event: { endpoint: 'a', reason: 'consecutive-errors', ejections: 1, durationMs: 1000, until: 1000 } }]);
    await clock.advance(999);
    expect(detector.isEjected('a')).toBe(true);
    await clock.advance(1);
    expect(events[1]).toEqual({ type: 'returned', event: { endpoint: 'a', ejectedForMs: 1000 } });
    expect(detector.isEjected('a')).toBe(false);
    expect(detector.stats('a')).toMatchObject({ ejected: false, ejections: 1, consecutiveErrors: 0 });
    expect(clock.pendingTimers).toBe(0);
  });

  it('ejection time grows with each ejection (base x count) up to the cap, and decays while the endpoint behaves', async () => {
    const { clock, detector, events } = setup(['a', 'b'], { consecutiveErrors: 1, baseEjectionMs: 1000, maxEjectionMs: 2500 });
    const durations: number[] = [];
    detector.on('ejected', (e) => durations.push(e.durationMs));
    for (let i = 0; i < 4; i++) {
      detector.failure('a');
      await clock.advance(durations[durations.length - 1]);
      expect(detector.isEjected('a')).toBe(false);
    }
    expect(durations).toEqual([1000, 2000, 2500, 2500]);
    // Back in service for 3 base periods: the multiplier (4) drops by 3, so the next ejection is 2 x base.
    await clock.advance(3000);
    detector.failure('a');
    expect(durations[4]).toBe(2000);
    expect(events.filter((e) => e.type === 'returned')).toHaveLength(4);
  });
});

describe('OutlierDetector: error rate', () => {
  it('ejects when the error rate over the window passes the threshold, only with enough volume', () => {
    const { detector } = setup(['a', 'b'], { consecutiveErrors: 0, errorRate: { threshold: 0.5, windowMs: 10_000, minimumRequests: 10 } });
    // 4 errors out of 8: 50%, but under the minimum volume.
    for (let i = 0; i < 4; i++) {
      detector.success('a');
      detector.failure('a');
    }
    expect(detector.isEjected('a')).toBe(false);
    detector.success('a');
    detector.failure('a'); // 5 / 10
    expect(detector.isEjected('a')).toBe(true);
    expect(detector.stats('b')!.window).toEqual({ calls: 0, errors: 0 });
  });

  it('forgets calls older than the window', async () => {
    const { clock, detector } = setup(['a', 'b'], { consecutiveErrors: 0, errorRate: { threshold: 0.5, windowMs: 1000, minimumRequests: 4 } });
    fail(detector, 'a', 3);
    await clock.advance(1500);
    expect(detector.stats('a')!.window).toEqual({ calls: 0, errors: 0 });
    detector.failure('a');
    expect(detector.isEjected('a')).toBe(false);
  });
});

describe('OutlierDetector: max ejection percent', () => {
  it('never ejects more than maxEjectionPercent of the group', () => {
    const { detector, events } = setup(['a', 'b', 'c', 'd'], { consecutiveErrors: 1, maxEjectionPercent: 50 });
    for (const id of ['a', 'b', 'c', 'd']) detector.failure(id);
    expect(['a', 'b', 'c', 'd'].filter((id) => detector.isEjected(id))).toEqual(['a', 'b']);
    expect(detector.maxEjected).toBe(2);
    expect(events.filter((e) => e.type === 'ejectionSkipped').map((e) => (e.event as { endpoint: string }).endpoint)).toEqual(['c', 'd']);
  });

  it('ejects at least one when the percentage rounds to zero, but never the whole group', () => {
    expect(setup(['a', 'b', 'c'], { maxEjectionPercent: 10 }).detector.maxEjected).toBe(1);
    expect(setup(['a', 'b'], { maxEjectionPercent: 100 }).detector.maxEjected).toBe(1);
    expect(setup(['a', 'b', 'c'], { maxEjectionPercent: 0 }).detector.maxEjected).toBe(0);
  });

  it('a group of one is never ejected (its breaker protects it)', () => {
    const { detector } = setup(['only'], { consecutiveErrors: 1, maxEjectionPercent: 100 });
    fail(detector, 'only', 50);
    expect(detector.isEjected('only')).toBe(false);
    expect(detector.eject('only')).toBe(false);
  });

  it('an endpoint kept in by the limit is ejected once another returns and it keeps failing', async () => {
    const { clock, detector } = setup(['a', 'b'], { consecutiveErrors: 1, baseEjectionMs: 100 });
    detector.failure('a');
    detector.failure('b');
    expect([detector.isEjected('a'), detector.isEjected('b')]).toEqual([true, false]);
    await clock.advance(100);
    detector.failure('b');
    expect([detector.isEjected('a'), detector.isEjected('b')]).toEqual([false, true]);
  });
});

describe('OutlierDetector: misc', () => {
  it('enabled: false never ejects', () => {
    const { detector } = setup(['a', 'b'], { enabled: false, consecutiveErrors: 1 });
    fail(detector, 'a', 10);
    expect(detector.isEjected('a')).toBe(false);
  });

  it('stop() releases the return timers; time still brings ejected endpoints back', async () => {
    const { clock, detector } = setup(['a', 'b'], { consecutiveErrors: 1, baseEjectionMs: 1000 });
    detector.failure('a');
    expect(clock.pendingTimers).toBe(1);
    detector.stop();
    expect(clock.pendingTimers).toBe(0);
    clock.set(1000);
    expect(detector.isEjected('a')).toBe(false);
  });

  it('isOutlierError: 5xx, network and timeouts count; 4xx never; 429 only when asked', () => {
    const up = (status: number, network = false) => new UpstreamError('x', { status, network });
    expect(isOutlierError(up(500))).toBe(true);
    expect(isOutlierError(up(503))).toBe(true);
    expect(isOutlierError(up(502, true))).toBe(true);
    expect(isOutlierError(up(504, true))).toBe(true);
    expect(isOutlierError(new TimeoutError('slow'))).toBe(true);
    expect(isOutlierError(up(400))).toBe(false);
    expect(isOutlierError(up(401))).toBe(false);
    expect(isOutlierError(up(429))).toBe(false);
    expect(isOutlierError(up(429), true)).toBe(true);
    expect(isOutlierError(new Error('boom'))).toBe(false);
  });
});
