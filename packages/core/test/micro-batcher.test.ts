import { describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { AbortedError } from '../src/errors.js';
import { batchItemError, isBatchItemError, MicroBatcher, type BatchItemError, type MicroBatcherOptions } from '../src/policies/micro-batcher.js';
import { deferred, invalidOption, settle } from './helpers.js';

/** Lets queued microtasks and setImmediate callbacks run without moving the ManualClock. */
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A batch function that records its batches and answers `item * 10` (or what `answer` says). */
function recorder<I = number, O = number>(answer?: (items: I[]) => ReadonlyArray<O | BatchItemError> | Promise<ReadonlyArray<O | BatchItemError>>) {
  const calls: I[][] = [];
  const signals: AbortSignal[] = [];
  const run = (items: I[], ctx: { signal: AbortSignal }) => {
    calls.push([...items]);
    signals.push(ctx.signal);
    return answer ? answer(items) : (items.map((i) => (i as unknown as number) * 10) as unknown as O[]);
  };
  return { calls, signals, run };
}

/** A batch function whose batches stay running until the test settles them. */
function gated<I = number>() {
  const calls: I[][] = [];
  const signals: AbortSignal[] = [];
  const pending: Array<ReturnType<typeof deferred<ReadonlyArray<number>>>> = [];
  const run = (items: I[], ctx: { signal: AbortSignal }) => {
    calls.push([...items]);
    signals.push(ctx.signal);
    const d = deferred<ReadonlyArray<number>>();
    pending.push(d);
    return d.promise;
  };
  return { calls, signals, pending, run };
}

function batcher<I = number, O = number>(run: MicroBatcherOptions<I, O>['run'], options: Partial<MicroBatcherOptions<I, O>> = {}) {
  const clock = new ManualClock();
  return { clock, b: new MicroBatcher<I, O>({ run, clock, ...options }) };
}

describe('MicroBatcher: batching', () => {
  it('calls made in the same turn go as one batch; each caller gets its own result', async () => {
    const r = recorder();
    const { b } = batcher(r.run);
    const results = Promise.all([b.add(1), b.add(2), b.add(3)]);
    await expect(results).resolves.toEqual([10, 20, 30]);
    expect(r.calls).toEqual([[1, 2, 3]]);
    expect(b.stats()).toMatchObject({ batches: 1, items: 3, largestBatch: 3, queued: 0, running: 0 });
  });

  it('a lone call is not delayed: it leaves on the next microtask, with no timer', async () => {
    const r = recorder();
    const { b, clock } = batcher(r.run, { maxWaitMs: 50 });
    const p = b.add(7);
    expect(b.windowMs()).toBe(0);
    expect(clock.pendingTimers).toBe(0);
    await tick(); // the clock has not moved
    expect(r.calls).toEqual([[7]]);
    await expect(p).resolves.toBe(70);
  });

  it('the window grows towards maxWaitMs under load and shrinks back to 0 after a quiet gap', async () => {
    const r = recorder();
    const { b, clock } = batcher(r.run, { maxWaitMs: 10, maxBatchSize: 100 });
    // Rare calls (1 s apart): each leaves alone, at once.
    for (let i = 0; i < 4; i++) {
      void b.add(i);
      await tick();
      expect(r.calls.length).toBe(i + 1);
      expect(clock.pendingTimers).toBe(0);
      await clock.advance(1000);
    }
    expect(b.windowMs()).toBe(0);
    // Busy: a call every millisecond. The window opens up and calls share batches.
    const windows: number[] = [];
    for (let i = 0; i < 60; i++) {
      void b.add(100 + i);
      windows.push(b.windowMs());
      await clock.advance(1);
    }
    await clock.advance(20);
    expect(windows[0]).toBe(0);
    expect(windows.at(-1)).toBe(10);
    // Non-decreasing while the load lasts.
    for (let i = 1; i < windows.length; i++) expect(windows[i]).toBeGreaterThanOrEqual(windows[i - 1]!);
    expect(b.stats().largestBatch).toBeGreaterThanOrEqual(8);
    expect(r.calls.flat()).toEqual([0, 1, 2, 3, ...Array.from({ length: 60 }, (_, i) => 100 + i)]);
    // One quiet second later, a lone call is not delayed again.
    await clock.advance(1000);
    const before = r.calls.length;
    void b.add(999);
    expect(b.windowMs()).toBe(0);
    await tick();
    expect(r.calls.length).toBe(before + 1);
    expect(r.calls.at(-1)).toEqual([999]);
  });

  it('fixed window (adaptive: false): everything within maxWaitMs of the first item shares its batch', async () => {
    const r = recorder();
    const { b, clock } = batcher(r.run, { maxWaitMs: 10, adaptive: false });
    const a = b.add(1);
    await clock.advance(9);
    const c = b.add(2);
    await clock.advance(0);
    expect(r.calls).toEqual([]);
    await clock.advance(1);
    expect(r.calls).toEqual([[1, 2]]);
    await expect(Promise.all([a, c])).resolves.toEqual([10, 20]);
    // The next item opens a new window.
    const d = b.add(3);
    await clock.advance(10);
    await expect(d).resolves.toBe(30);
    expect(r.calls).toEqual([[1, 2], [3]]);
  });

  it('a full batch leaves at once; the rest waits for its window', async () => {
    const r = recorder();
    const { b, clock } = batcher(r.run, { maxBatchSize: 2, maxWaitMs: 10, adaptive: false });
    const all = Promise.all([1, 2, 3, 4, 5].map((i) => b.add(i)));
    expect(r.calls).toEqual([
      [1, 2],
      [3, 4],
    ]);
    await clock.advance(10);
    expect(r.calls).toEqual([[1, 2], [3, 4], [5]]);
    await expect(all).resolves.toEqual([10, 20, 30, 40, 50]);
  });

  it('latencyBudgetMs caps the wait at the budget minus the recent batch duration', async () => {
    const g = gated();
    const { b, clock } = batcher(g.run, { maxWaitMs: 20, latencyBudgetMs: 25, adaptive: false });
    expect(b.windowMs()).toBe(20);
    const p = b.add(1);
    await clock.advance(20);
    expect(g.calls).toEqual([[1]]);
    await clock.advance(15); // the batch takes 15 ms
    g.pending[0]!.resolve([10]);
    await expect(p).resolves.toBe(10);
    expect(b.stats().batchMs).toBe(15);
    expect(b.windowMs()).toBe(10);
  });

  it('maxConcurrentBatches: later batches wait for a slot and grow meanwhile', async () => {
    const g = gated();
    const { b, clock } = batcher(g.run, { maxConcurrentBatches: 1 });
    const first = b.add(1);
    await tick();
    expect(g.calls).toEqual([[1]]);
    const rest = [b.add(2), b.add(3)];
    await tick();
    rest.push(b.add(4));
    await clock.advance(10); // their window has passed, but no slot is free
    expect(g.calls).toEqual([[1]]);
    expect(b.stats()).toMatchObject({ queued: 3, running: 1 });
    g.pending[0]!.resolve([10]);
    await expect(first).resolves.toBe(10);
    await tick();
    expect(g.calls).toEqual([[1], [2, 3, 4]]);
    g.pending[1]!.resolve([20, 30, 40]);
    await expect(Promise.all(rest)).resolves.toEqual([20, 30, 40]);
  });

  it('weights: a batch stays within maxBatchWeight; an overweight item goes alone', async () => {
    const r = recorder<string, number>((items) => items.map((s) => s.length));
    const { b } = batcher<string, number>(r.run, { maxBatchWeight: 10, weight: (s) => s.length });
    const all = Promise.all(['aaaa', 'bbbb', 'cccc', 'x'.repeat(20), 'dd'].map((s) => b.add(s)));
    await expect(all).resolves.toEqual([4, 4, 4, 20, 2]);
    expect(r.calls).toEqual([['aaaa', 'bbbb'], ['cccc'], ['x'.repeat(20)], ['dd']]);
    // A bad weight rejects that call only.
    const bad = new MicroBatcher<string, number>({ run: r.run, weight: () => Number.NaN, clock: new ManualClock() });
    await expect(bad.add('a')).rejects.toThrow(TypeError);
  });

  it('addMany: one caller, several items, possibly several batches, results in order', async () => {
    const r = recorder();
    const { b } = batcher(r.run, { maxBatchSize: 2 });
    const many = b.addMany([1, 2, 3]);
    const one = b.add(4);
    await expect(many).resolves.toEqual([10, 20, 30]);
    await expect(one).resolves.toBe(40);
    expect(r.calls).toEqual([
      [1, 2],
      [3, 4],
    ]);
    await expect(b.addMany([])).resolves.toEqual([]);
  });

  it('embeddings-style use: several callers share one request and each gets its rows', async () => {
    // What EndpointEmbedder does by hand: texts in, one row per text out.
    const r = recorder<string, Float32Array>((texts) => texts.map((t) => Float32Array.of(t.length)));
    const { b } = batcher<string, Float32Array>(r.run, { maxBatchSize: 64 });
    const [x, y] = await Promise.all([b.addMany(['a', 'bb']), b.addMany(['ccc', 'dddd', 'eeeee'])]);
    expect(r.calls).toEqual([['a', 'bb', 'ccc', 'dddd', 'eeeee']]);
    expect(x.map((row) => row[0])).toEqual([1, 2]);
    expect(y.map((row) => row[0])).toEqual([3, 4, 5]);
  });
});

describe('MicroBatcher: errors are per caller', () => {
  it('batchItemError fails only that item', async () => {
    const boom = new Error('item 2 is bad');
    const r = recorder((items) => items.map((i) => (i === 2 ? batchItemError(boom) : i * 10)));
    const { b } = batcher(r.run);
    const [a, c, d] = await Promise.all([settle(b.add(1)), settle(b.add(2)), settle(b.add(3))]);
    expect(r.calls).toEqual([[1, 2, 3]]);
    expect(a).toEqual({ value: 10 });
    expect(c).toEqual({ error: boom });
    expect(d).toEqual({ value: 30 });
    expect(isBatchItemError(batchItemError(boom))).toBe(true);
    expect(isBatchItemError(boom)).toBe(false);
  });

  it('a thrown batch error fails every item of that batch, and only that batch', async () => {
    const boom = new Error('upstream 500');
    const r = recorder((items) => {
      if (items.includes(1)) throw boom;
      return Promise.resolve(items.map((i) => i * 10));
    });
    const { b } = batcher(r.run, { maxBatchSize: 2 });
    const results = await Promise.all([1, 2, 3, 4].map((i) => settle(b.add(i))));
    expect(r.calls).toEqual([
      [1, 2],
      [3, 4],
    ]);
    expect(results).toEqual([{ error: boom }, { error: boom }, { value: 30 }, { value: 40 }]);
    expect(b.stats()).toMatchObject({ batches: 2, failedBatches: 1 });
  });

  it('a rejected batch fails its callers; an addMany caller spanning it fails too', async () => {
    const boom = new Error('timeout');
    const r = recorder((items) => (items.includes(3) ? Promise.reject(boom) : items.map((i) => i * 10)));
    const { b } = batcher(r.run, { maxBatchSize: 2 });
    const many = settle(b.addMany([1, 2, 3]));
    const other = settle(b.add(4));
    const alone = settle(b.add(5));
    expect(await many).toEqual({ error: boom });
    expect(await other).toEqual({ error: boom });
    expect(await alone).toEqual({ value: 50 });
  });

  it('a result array of the wrong length fails that batch with a TypeError', async () => {
    const r = recorder(() => [1]);
    const { b } = batcher(r.run);
    const results = await Promise.all([settle(b.add(1)), settle(b.add(2))]);
    for (const { error } of results) {
      expect(error).toBeInstanceOf(TypeError);
      expect((error as Error).message).toContain('returned 1 results for 2 items');
    }
    const notArray = new MicroBatcher<number, number>({ run: () => ({}) as never, clock: new ManualClock() });
    await expect(notArray.add(1)).rejects.toThrow('a non-array object');
  });
});

describe('MicroBatcher: abort and close', () => {
  it('an aborted queued caller leaves at once and its item is not sent', async () => {
    const r = recorder();
    const { b, clock } = batcher(r.run, { maxWaitMs: 10, adaptive: false });
    const controller = new AbortController();
    const gone = settle(b.add(1, { signal: controller.signal }));
    const stays = b.add(2);
    controller.abort(new Error('client hung up'));
    const { error } = await gone;
    expect(error).toBeInstanceOf(AbortedError);
    expect((error as AbortedError).cause).toEqual(new Error('client hung up'));
    await clock.advance(10);
    await expect(stays).resolves.toBe(20);
    expect(r.calls).toEqual([[2]]);
    // Already aborted: rejected without queueing.
    await expect(b.add(3, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortedError);
    expect(b.stats().queued).toBe(0);
  });

  it('a running batch is aborted only when every caller in it has left', async () => {
    const g = gated();
    const { b } = batcher(g.run);
    const c1 = new AbortController();
    const c2 = new AbortController();
    const p1 = settle(b.add(1, { signal: c1.signal }));
    const p2 = settle(b.add(2, { signal: c2.signal }));
    await tick();
    expect(g.calls).toEqual([[1, 2]]);
    c1.abort();
    expect((await p1).error).toBeInstanceOf(AbortedError);
    expect(g.signals[0]!.aborted).toBe(false);
    c2.abort();
    expect((await p2).error).toBeInstanceOf(AbortedError);
    expect(g.signals[0]!.aborted).toBe(true);
    // A late answer is ignored.
    g.pending[0]!.resolve([10, 20]);
    await tick();
    expect(b.stats()).toMatchObject({ running: 0, queued: 0 });
  });

  it('close() rejects queued and running callers, aborts running batches and refuses new calls', async () => {
    const g = gated();
    const { b, clock } = batcher(g.run, { maxBatchSize: 1, maxWaitMs: 10, adaptive: false });
    const running = settle(b.add(1));
    const queued = settle(b.add(2));
    expect(g.calls).toEqual([[1], [2]]);
    const waiting = settle(b.add(3));
    b.close();
    b.close();
    for (const p of [running, queued, waiting]) {
      const { error } = await p;
      expect(error).toBeInstanceOf(AbortedError);
      expect((error as AbortedError).details).toEqual({ reason: 'closed' });
    }
    expect(g.signals.every((s) => s.aborted)).toBe(true);
    expect(clock.pendingTimers).toBe(0);
    await expect(b.add(4)).rejects.toBeInstanceOf(AbortedError);
    const custom = new MicroBatcher<number, number>({ run: g.run, clock, closedError: () => new Error('embedder closed') });
    const p = custom.add(5);
    custom.close();
    await expect(p).rejects.toThrow('embedder closed');
  });

  it('flush() sends what is queued without waiting; onIdle() resolves when all is done', async () => {
    const r = recorder();
    const { b } = batcher(r.run, { maxWaitMs: 1000, adaptive: false });
    const all = Promise.all([b.add(1), b.add(2)]);
    expect(r.calls).toEqual([]);
    b.flush();
    expect(r.calls).toEqual([[1, 2]]);
    await b.onIdle();
    await expect(all).resolves.toEqual([10, 20]);
    await expect(b.onIdle()).resolves.toBeUndefined();
  });
});

describe('MicroBatcher: options', () => {
  const run = () => [];
  it('validates options at construction, naming the option', () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ maxBatchSize: 0 }, 'maxBatchSize'],
      [{ maxBatchSize: 1.5 }, 'maxBatchSize'],
      [{ maxWaitMs: -1 }, 'maxWaitMs'],
      [{ maxWaitMs: 1e10 }, 'maxWaitMs'],
      [{ latencyBudgetMs: 'fast' }, 'latencyBudgetMs'],
      [{ maxConcurrentBatches: 0 }, 'maxConcurrentBatches'],
      [{ maxBatchWeight: 0 }, 'maxBatchWeight'],
      [{ weight: 3 }, 'weight'],
      [{ clock: {} }, 'clock'],
      [{ adaptive: 'yes' }, 'adaptive'],
      [{ maxBatch: 10 }, ''],
    ];
    for (const [extra, path] of cases) {
      const error = invalidOption(() => new MicroBatcher({ run, ...extra } as never), JSON.stringify(extra));
      expect(error.issues.map((i) => i.path)).toContain(path);
      expect(error.message).toContain('MicroBatcher options');
    }
    expect(invalidOption(() => new MicroBatcher({} as never)).issues[0]!.path).toBe('run');
  });

  it('defaults', () => {
    const b = new MicroBatcher({ run });
    expect(b.maxBatchSize).toBe(64);
    expect(b.maxWaitMs).toBe(10);
    expect(b.name).toBe('micro-batcher');
    b.close();
  });
});

describe('MicroBatcher: a timer that fires early', () => {
  it('re-arms for what is left instead of stranding the queue (Node timers may run 1 ms early by Date.now())', async () => {
    const inner = new ManualClock();
    // A clock whose first timer fires 1 ms before its time, as Node's sometimes do by the wall clock.
    let timers = 0;
    const early = { now: () => inner.now(), setTimeout: (fn: () => void, ms: number) => inner.setTimeout(fn, timers++ === 0 ? Math.max(0, ms - 1) : ms), clearTimeout: (h: unknown) => inner.clearTimeout(h as never) };
    const r = recorder();
    const b = new MicroBatcher<number, number>({ run: r.run, clock: early, maxWaitMs: 10, adaptive: false });
    const first = b.add(1);
    await inner.advance(9); // the early timer fires: the window's deadline has not passed yet
    await tick();
    expect(r.calls).toEqual([]);
    await inner.advance(1); // the re-armed timer
    await tick();
    expect(r.calls).toEqual([[1]]);
    expect(await first).toBe(10);
    await b.close();
  });
});
