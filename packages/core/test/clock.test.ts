import { describe, expect, it } from 'vitest';
import { ManualClock, sleep } from '../src/clock.js';

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
