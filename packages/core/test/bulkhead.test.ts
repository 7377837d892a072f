import { describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { AbortedError, BulkheadFullError, InvalidOptionError } from '../src/errors.js';
import { Bulkhead, type BulkheadOptions } from '../src/policies/bulkhead.js';
import { invalidOption } from './helpers.js';

function settle<T>(promise: Promise<T>): Promise<{ value?: T; error?: unknown }> {
  return promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
}

/** Work that stays running until released by the test. */
function gate<T = string>() {
  const releases: Array<(v: T) => void> = [];
  const started: number[] = [];
  const work = (id: number, value: T) => () => {
    started.push(id);
    return new Promise<T>((resolve) => releases.push(() => resolve(value)));
  };
  return { releases, started, work };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('Bulkhead', () => {
  it('runs at most maxConcurrent at once and rejects when there is no queue room', async () => {
    const bulkhead = new Bulkhead({ maxConcurrent: 2, name: 'llm' });
    const reasons: string[] = [];
    bulkhead.on('rejected', (e) => reasons.push(e.reason));
    const g = gate();
    const a = bulkhead.execute(g.work(1, 'a'));
    const b = bulkhead.execute(g.work(2, 'b'));
    const c = settle(bulkhead.execute(g.work(3, 'c')));
    const { error } = await c;
    expect(error).toBeInstanceOf(BulkheadFullError);
    expect((error as BulkheadFullError).details).toEqual({ bulkhead: 'llm', reason: 'full' });
    expect((error as BulkheadFullError).status).toBe(503);
    expect(g.started).toEqual([1, 2]);
    expect(bulkhead.stats()).toEqual({ running: 2, queued: 0, rejected: 1 });
    expect(reasons).toEqual(['full']);
    g.releases.forEach((r) => r('x'));
    await expect(Promise.all([a, b])).resolves.toEqual(['a', 'b']);
    expect(bulkhead.stats()).toEqual({ running: 0, queued: 0, rejected: 1 });
  });

  it('queues up to maxQueue and starts waiters in FIFO order as slots free', async () => {
    const bulkhead = new Bulkhead({ maxConcurrent: 1, maxQueue: 3 });
    const g = gate();
    const results = [1, 2, 3, 4].map((id) => bulkhead.execute(g.work(id, `r${id}`)));
    const overflow = settle(bulkhead.execute(g.work(5, 'r5')));
    expect((await overflow).error).toBeInstanceOf(BulkheadFullError);
    expect(bulkhead.stats()).toEqual({ running: 1, queued: 3, rejected: 1 });
    for (let i = 0; i < 4; i++) {
      await tick();
      expect(g.started).toEqual([1, 2, 3, 4].slice(0, i + 1));
      expect(bulkhead.stats().running).toBe(1);
      g.releases[i]('');
    }
    await expect(Promise.all(results)).resolves.toEqual(['r1', 'r2', 'r3', 'r4']);
    expect(bulkhead.stats()).toEqual({ running: 0, queued: 0, rejected: 1 });
  });

  it('rejects a waiter with reason queue-timeout when no slot frees in time', async () => {
    const clock = new ManualClock();
    const bulkhead = new Bulkhead({ maxConcurrent: 1, maxQueue: 5, queueTimeoutMs: 200, clock, name: 'db' });
    const reasons: string[] = [];
    bulkhead.on('rejected', (e) => reasons.push(e.reason));
    const g = gate();
    const first = bulkhead.execute(g.work(1, 'one'));
    const waiting = settle(bulkhead.execute(g.work(2, 'two')));
    await clock.advance(199);
    expect(bulkhead.stats().queued).toBe(1);
    await clock.advance(1);
    const { error } = await waiting;
    expect(error).toBeInstanceOf(BulkheadFullError);
    expect((error as BulkheadFullError).details).toEqual({ bulkhead: 'db', reason: 'queue-timeout' });
    expect(reasons).toEqual(['queue-timeout']);
    expect(bulkhead.stats()).toEqual({ running: 1, queued: 0, rejected: 1 });
    g.releases[0]('');
    await first;
    expect(g.started).toEqual([1]);
  });

  it('clears the queue timer when a waiter gets a slot', async () => {
    const clock = new ManualClock();
    const bulkhead = new Bulkhead({ maxConcurrent: 1, maxQueue: 1, queueTimeoutMs: 1_000, clock });
    const g = gate();
    const first = bulkhead.execute(g.work(1, 'one'));
    const second = bulkhead.execute(g.work(2, 'two'));
    expect(clock.pendingTimers).toBe(1);
    g.releases[0]('');
    await first;
    await tick();
    expect(clock.pendingTimers).toBe(0);
    expect(g.started).toEqual([1, 2]);
    g.releases[1]('');
    await expect(second).resolves.toBe('two');
  });

  it('removes an aborted waiter from the queue with AbortedError, keeping the others in order', async () => {
    const clock = new ManualClock();
    const bulkhead = new Bulkhead({ maxConcurrent: 1, maxQueue: 3, queueTimeoutMs: 5_000, clock });
    const g = gate();
    const controller = new AbortController();
    const first = bulkhead.execute(g.work(1, 'one'));
    const second = settle(bulkhead.execute(g.work(2, 'two'), controller.signal));
    const third = bulkhead.execute(g.work(3, 'three'));
    controller.abort('cancelled');
    const { error } = await second;
    expect(error).toBeInstanceOf(AbortedError);
    expect((error as Error).cause).toBe('cancelled');
    expect(bulkhead.stats()).toEqual({ running: 1, queued: 1, rejected: 0 });
    expect(clock.pendingTimers).toBe(1); // only the third waiter's timer remains
    g.releases[0]('');
    await first;
    await tick();
    expect(g.started).toEqual([1, 3]);
    g.releases[1]('');
    await expect(third).resolves.toBe('three');
    expect(clock.pendingTimers).toBe(0);
  });

  it('rejects an already-aborted caller without taking a slot', async () => {
    const bulkhead = new Bulkhead({ maxConcurrent: 1 });
    let calls = 0;
    await expect(bulkhead.execute(() => ++calls, AbortSignal.abort())).rejects.toBeInstanceOf(AbortedError);
    expect(calls).toBe(0);
    expect(bulkhead.stats().running).toBe(0);
  });

  it('passes the caller signal to the work', async () => {
    const bulkhead = new Bulkhead({ maxConcurrent: 1 });
    const controller = new AbortController();
    await expect(bulkhead.execute(({ signal }) => signal, controller.signal)).resolves.toBe(controller.signal);
  });

  it('always releases the slot: rejection and synchronous throw', async () => {
    const bulkhead = new Bulkhead({ maxConcurrent: 1, maxQueue: 1 });
    const boom = new Error('boom');
    await expect(bulkhead.execute(() => Promise.reject(boom))).rejects.toBe(boom);
    await expect(
      bulkhead.execute(() => {
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect(bulkhead.stats().running).toBe(0);
    // a queued waiter behind a throwing work still runs
    const g = gate();
    const failing = settle(bulkhead.execute(() => Promise.reject(boom)));
    const next = bulkhead.execute(g.work(1, 'after'));
    expect((await failing).error).toBe(boom);
    await tick();
    g.releases[0]('');
    await expect(next).resolves.toBe('after');
    expect(bulkhead.stats()).toEqual({ running: 0, queued: 0, rejected: 0 });
  });

  it('rejects bad options naming the option', () => {
    const bad: Array<[unknown, string]> = [
      [{}, 'maxConcurrent'],
      [{ maxConcurrent: 0 }, 'maxConcurrent'],
      [{ maxConcurrent: 2.5 }, 'maxConcurrent'],
      [{ maxConcurrent: 1, maxQueue: -1 }, 'maxQueue'],
      [{ maxConcurrent: 1, maxQueue: Infinity }, 'maxQueue'],
      [{ maxConcurrent: 1, queueTimeoutMs: -1 }, 'queueTimeoutMs'],
      [{ maxConcurrent: 1, clock: 1 }, 'clock'],
      [{ maxConcurrent: 1, name: '' }, 'name'],
      [{ maxConcurrent: 1, maxQueued: 1 }, ''],
    ];
    for (const [options, path] of bad) {
      const error = invalidOption(() => new Bulkhead(options as BulkheadOptions), JSON.stringify(options));
      expect(error.issues[0]!.path, JSON.stringify(options)).toBe(path);
    }
    expect(() => new Bulkhead(undefined as unknown as BulkheadOptions)).toThrow(InvalidOptionError);
  });
});
