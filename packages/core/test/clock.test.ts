import { describe, expect, it } from 'vitest';
import { coarseNow, ManualClock, sleep } from '../src/clock.js';

describe('ManualClock', () => {
  it('fires due timers in order as time advances, and only then', async () => {
    const clock = new ManualClock(0);
    const fired: string[] = [];
    clock.setTimeout(() => fired.push('b@20'), 20);
    clock.setTimeout(() => fired.push('a@10'), 10);
    const c = clock.setTimeout(() => fired.push('c@15'), 15);
    clock.clearTimeout(c);
    await clock.advance(15);
    expect(fired).toEqual(['a@10']);
    expect(clock.now()).toBe(15);
    await clock.advance(5);
    expect(fired).toEqual(['a@10', 'b@20']);
    expect(clock.pendingTimers).toBe(0);
  });

  it('sleep resolves on advance and rejects on abort', async () => {
    const clock = new ManualClock(0);
    let done = false;
    const p = sleep(100, clock).then(() => (done = true));
    await clock.advance(99);
    expect(done).toBe(false);
    await clock.advance(1);
    await p;
    expect(done).toBe(true);
    const ac = new AbortController();
    const aborted = sleep(100, clock, ac.signal);
    ac.abort(new Error('stop'));
    await expect(aborted).rejects.toThrow('stop');
    expect(clock.pendingTimers).toBe(0);
  });
});

describe('coarseNow', () => {
  it('never runs ahead of Date.now(), and a new millisecond shows within 64 reads even while the loop is busy', async () => {
    const first = coarseNow();
    expect(first).toBeLessThanOrEqual(Date.now());
    // Once the loop turns, the 1 ms timer has let the reading go.
    await sleep(5);
    const later = coarseNow();
    expect(later).toBeGreaterThan(first);
    expect(later).toBeLessThanOrEqual(Date.now());
    // A synchronous run keeps the timer from firing: the read count still bounds how long a reading is reused.
    const t0 = coarseNow();
    while (Date.now() <= t0) {
      // busy: the time moves past t0 while no timer can fire
    }
    const readings: number[] = [];
    for (let i = 0; i < 64; i++) readings.push(coarseNow());
    expect(readings[63]).toBeGreaterThan(t0);
    for (let i = 1; i < readings.length; i++) expect(readings[i]).toBeGreaterThanOrEqual(readings[i - 1]!);
    expect(readings[63]).toBeLessThanOrEqual(Date.now());
  });
});
