import { describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { AbortedError, AmasError, BreakerOpenError, InvalidOptionError } from '../src/errors.js';
import {
  CircuitBreaker,
  circuitBreakerOptionsSchema,
  type BreakerEvents,
  type BreakerSnapshot,
  type CircuitBreakerOptions,
  validateCircuitBreakerOptions,
} from '../src/policies/circuit-breaker.js';
import { errorOf as catchSync, deferred } from './helpers.js';

const boom = () => Promise.reject(new Error('upstream down'));
const ok = () => Promise.resolve('ok');

function make(options: CircuitBreakerOptions = {}) {
  const clock = new ManualClock();
  const breaker = new CircuitBreaker({ name: 'test', clock, ...options });
  return { clock, breaker };
}

async function fail(breaker: CircuitBreaker, times = 1) {
  for (let i = 0; i < times; i++) await expect(breaker.execute(boom)).rejects.toThrow('upstream down');
}

async function succeed(breaker: CircuitBreaker, times = 1) {
  for (let i = 0; i < times; i++) await expect(breaker.execute(ok)).resolves.toBe('ok');
}


/** Records every event of a breaker, in order. */
function record(breaker: CircuitBreaker) {
  const events: Array<{ type: keyof BreakerEvents; event: unknown }> = [];
  for (const type of ['stateChange', 'success', 'failure', 'rejected', 'ignored'] as const) {
    breaker.on(type, (event) => events.push({ type, event }));
  }
  return events;
}

// The closed state has a fast path (no listeners, no failure-rate window) and a tracked path; run the
// consecutive-failure behaviour through both.
describe.each([
  ['fast path', false],
  ['tracked path (listener attached)', true],
])('CircuitBreaker consecutive failures, %s', (_label, withListener) => {
  it('opens after failureThreshold consecutive failures and rejects without calling the work', async () => {
    const { clock, breaker } = make({ failureThreshold: 3, recoveryTimeoutMs: 10_000 });
    if (withListener) breaker.on('success', () => {});
    await fail(breaker, 2);
    expect(breaker.getState()).toBe('closed');
    await fail(breaker);
    expect(breaker.getState()).toBe('open');

    let ran = false;
    await clock.advance(4_000);
    const error = await breaker
      .execute(() => {
        ran = true;
        return 'x';
      })
      .catch((e: unknown) => e);
    expect(ran).toBe(false);
    expect(error).toBeInstanceOf(BreakerOpenError);
    expect((error as BreakerOpenError).retryAfterMs).toBe(6_000);
    expect((error as BreakerOpenError).message).toBe('Circuit breaker "test" is open');
    expect((error as BreakerOpenError).details).toEqual({ breaker: 'test', state: 'open' });
    expect(breaker.stats().totals).toEqual({ successes: 0, failures: 3, rejections: 1, ignored: 0 });
  });

  it('a success resets the consecutive count', async () => {
    const { breaker } = make({ failureThreshold: 3 });
    if (withListener) breaker.on('failure', () => {});
    await fail(breaker, 2);
    await succeed(breaker);
    expect(breaker.stats().consecutiveFailures).toBe(0);
    expect(breaker.stats().consecutiveSuccesses).toBe(1);
    await fail(breaker, 2);
    expect(breaker.getState()).toBe('closed');
    await fail(breaker);
    expect(breaker.getState()).toBe('open');
  });

  it('a synchronous throw is a failure and surfaces as a rejection', async () => {
    const { breaker } = make({ failureThreshold: 2 });
    if (withListener) breaker.on('success', () => {});
    const work = () => {
      throw new Error('sync');
    };
    const first = breaker.execute(work);
    expect(first).toBeInstanceOf(Promise);
    await expect(first).rejects.toThrow('sync');
    await expect(breaker.execute(work)).rejects.toThrow('sync');
    expect(breaker.getState()).toBe('open');
  });

  it('resolves with a result isResultFailure flags, yet counts it as a failure', async () => {
    const { breaker } = make({ failureThreshold: 2, isResultFailure: (r) => (r as { status: number }).status >= 500 });
    if (withListener) breaker.on('failure', () => {});
    await expect(breaker.execute(() => ({ status: 503 }))).resolves.toEqual({ status: 503 });
    await expect(breaker.execute(() => Promise.resolve({ status: 200 }))).resolves.toEqual({ status: 200 });
    expect(breaker.stats().consecutiveFailures).toBe(0);
    await breaker.execute(() => ({ status: 502 }));
    await breaker.execute(() => ({ status: 500 }));
    expect(breaker.getState()).toBe('open');
    expect(breaker.stats().totals.failures).toBe(3);
  });

  it('ignored errors are rethrown but neither count nor reset the consecutive count', async () => {
    const notMine = new Error('400 bad request');
    const { breaker } = make({ failureThreshold: 3, isFailure: (e) => e !== notMine });
    if (withListener) breaker.on('success', () => {});
    await fail(breaker, 2);
    await expect(breaker.execute(() => Promise.reject(notMine))).rejects.toBe(notMine);
    expect(breaker.stats().consecutiveFailures).toBe(2);
    expect(breaker.stats().totals.ignored).toBe(1);
    await fail(breaker);
    expect(breaker.getState()).toBe('open');
  });

  it('ignores AbortedError by default', async () => {
    const { breaker } = make({ failureThreshold: 1 });
    if (withListener) breaker.on('failure', () => {});
    await expect(breaker.execute(() => Promise.reject(new AbortedError()))).rejects.toBeInstanceOf(AbortedError);
    expect(breaker.getState()).toBe('closed');
    expect(breaker.stats().totals).toMatchObject({ ignored: 1, failures: 0 });
  });

  it('a failure of a call admitted before the breaker opened does not re-arm it', async () => {
    const { clock, breaker } = make({ failureThreshold: 1, recoveryTimeoutMs: 10_000 });
    if (withListener) breaker.on('success', () => {});
    const slow = deferred();
    const pending = breaker.execute(() => slow.promise);
    await fail(breaker);
    const nextAttemptAt = breaker.stats().nextAttemptAt;
    await clock.advance(5_000);
    slow.reject(new Error('late'));
    await expect(pending).rejects.toThrow('late');
    expect(breaker.stats().nextAttemptAt).toBe(nextAttemptAt);
    expect(breaker.stats().totals.failures).toBe(2);
  });
});

describe('CircuitBreaker defaults and context', () => {
  it('is closed, named "default", passes a never-aborted signal and attempt 1', async () => {
    const breaker = new CircuitBreaker();
    expect(breaker.name).toBe('default');
    expect(breaker.getState()).toBe('closed');
    const ctx = await breaker.execute((c) => c);
    expect(ctx.attempt).toBe(1);
    expect(ctx.signal.aborted).toBe(false);
    const controller = new AbortController();
    const seen = await breaker.execute((c) => c.signal, controller.signal);
    expect(seen).toBe(controller.signal);
  });

  it('opens after 5 consecutive failures by default and stays open 30 s', async () => {
    const clock = new ManualClock();
    const breaker = new CircuitBreaker({ clock });
    await fail(breaker, 4);
    expect(breaker.getState()).toBe('closed');
    await fail(breaker);
    expect(breaker.getState()).toBe('open');
    await clock.advance(29_999);
    expect(breaker.getState()).toBe('open');
    await clock.advance(1);
    expect(breaker.getState()).toBe('half-open');
  });

  it('failureThreshold 0 disables the consecutive trigger', async () => {
    const { breaker } = make({ failureThreshold: 0 });
    await fail(breaker, 50);
    expect(breaker.getState()).toBe('closed');
  });
});

describe('CircuitBreaker recovery', () => {
  it('moves open -> half-open lazily once the clock passes nextAttemptAt, with no timers', async () => {
    const { clock, breaker } = make({ failureThreshold: 1, recoveryTimeoutMs: 1_000 });
    const events = record(breaker);
    await fail(breaker);
    expect(clock.pendingTimers).toBe(0);
    const opened = breaker.stats();
    expect(opened).toMatchObject({ state: 'open', openedAt: clock.now(), nextAttemptAt: clock.now() + 1_000 });
    await clock.advance(1_000);
    // Nothing happened on its own: the transition is emitted by the next inspection.
    expect(events.filter((e) => e.type === 'stateChange')).toHaveLength(1);
    expect(breaker.stats().state).toBe('half-open');
    expect(events.filter((e) => e.type === 'stateChange').map((e) => e.event)).toEqual([
      { name: 'test', from: 'closed', to: 'open', reason: 'consecutiveFailures' },
      { name: 'test', from: 'open', to: 'half-open', reason: 'recoveryTimeout' },
    ]);
  });

  it('execute itself triggers the half-open move and runs as the probe; a success closes', async () => {
    const { clock, breaker } = make({ failureThreshold: 1, recoveryTimeoutMs: 1_000 });
    const events = record(breaker);
    await fail(breaker);
    await clock.advance(1_000);
    await succeed(breaker);
    expect(breaker.getState()).toBe('closed');
    expect(breaker.stats()).toMatchObject({ consecutiveFailures: 0, halfOpenInFlight: 0 });
    expect(breaker.stats().openedAt).toBeUndefined();
    expect(events.map((e) => e.type)).toEqual(['failure', 'stateChange', 'stateChange', 'success', 'stateChange']);
    expect(events[4].event).toEqual({ name: 'test', from: 'half-open', to: 'closed', reason: 'probeSuccess' });
  });

  it('one probe failure reopens', async () => {
    const { clock, breaker } = make({ failureThreshold: 3, recoveryTimeoutMs: 1_000 });
    const events = record(breaker);
    await fail(breaker, 3);
    await clock.advance(1_000);
    await fail(breaker);
    expect(breaker.getState()).toBe('open');
    expect(breaker.stats().nextAttemptAt).toBe(clock.now() + 1_000);
    expect(events.filter((e) => e.type === 'stateChange').at(-1)!.event).toEqual({
      name: 'test',
      from: 'half-open',
      to: 'open',
      reason: 'probeFailure',
    });
  });

  it('successThreshold probe successes are needed to close', async () => {
    const { clock, breaker } = make({ failureThreshold: 1, recoveryTimeoutMs: 1_000, successThreshold: 3 });
    await fail(breaker);
    await clock.advance(1_000);
    await succeed(breaker, 2);
    expect(breaker.getState()).toBe('half-open');
    expect(breaker.stats().consecutiveSuccesses).toBe(2);
    await succeed(breaker);
    expect(breaker.getState()).toBe('closed');
  });

  it('a failure after some probe successes still reopens', async () => {
    const { clock, breaker } = make({ failureThreshold: 1, recoveryTimeoutMs: 1_000, successThreshold: 3 });
    await fail(breaker);
    await clock.advance(1_000);
    await succeed(breaker, 2);
    await fail(breaker);
    expect(breaker.getState()).toBe('open');
    await clock.advance(1_000);
    await succeed(breaker, 2);
    expect(breaker.getState()).toBe('half-open');
  });

  it('allows at most halfOpenMaxProbes concurrent probes and rejects the rest with retryAfterMs 1000', async () => {
    const { clock, breaker } = make({ failureThreshold: 1, recoveryTimeoutMs: 1_000, halfOpenMaxProbes: 2, successThreshold: 2 });
    const events = record(breaker);
    await fail(breaker);
    await clock.advance(1_000);
    const a = deferred();
    const b = deferred();
    const pa = breaker.execute(() => a.promise);
    const pb = breaker.execute(() => b.promise);
    expect(breaker.stats().halfOpenInFlight).toBe(2);
    let ran = false;
    const third = await breaker
      .execute(() => {
        ran = true;
        return 'x';
      })
      .catch((e: unknown) => e);
    expect(ran).toBe(false);
    expect(third).toBeInstanceOf(BreakerOpenError);
    expect((third as BreakerOpenError).retryAfterMs).toBe(1_000);
    expect((third as BreakerOpenError).details).toEqual({ breaker: 'test', state: 'half-open' });
    expect(events.find((e) => e.type === 'rejected')!.event).toEqual({ name: 'test', state: 'half-open', retryAfterMs: 1_000 });

    a.resolve('a');
    await expect(pa).resolves.toBe('a');
    expect(breaker.getState()).toBe('half-open');
    expect(breaker.stats().halfOpenInFlight).toBe(1);
    b.resolve('b');
    await expect(pb).resolves.toBe('b');
    expect(breaker.getState()).toBe('closed');
  });

  it('a probe that fails while another is in flight reopens; the late success is not counted as a probe', async () => {
    const { clock, breaker } = make({ failureThreshold: 1, recoveryTimeoutMs: 1_000, halfOpenMaxProbes: 2 });
    await fail(breaker);
    await clock.advance(1_000);
    const slow = deferred();
    const pending = breaker.execute(() => slow.promise);
    await fail(breaker);
    expect(breaker.getState()).toBe('open');
    slow.resolve('late');
    await expect(pending).resolves.toBe('late');
    expect(breaker.getState()).toBe('open');
    expect(breaker.stats().totals.successes).toBe(1);
  });

  it('an ignored error from a probe frees its slot without closing or reopening', async () => {
    const { clock, breaker } = make({ failureThreshold: 1, recoveryTimeoutMs: 1_000 });
    await fail(breaker);
    await clock.advance(1_000);
    await expect(breaker.execute(() => Promise.reject(new AbortedError()))).rejects.toBeInstanceOf(AbortedError);
    expect(breaker.stats()).toMatchObject({ state: 'half-open', halfOpenInFlight: 0 });
    await succeed(breaker);
    expect(breaker.getState()).toBe('closed');
  });
});

describe('CircuitBreaker recovery backoff', () => {
  it('multiplies the open time on each reopen from half-open, caps it at maxMs, resets on close', async () => {
    const { clock, breaker } = make({
      failureThreshold: 1,
      recoveryTimeoutMs: 1_000,
      recoveryBackoff: { multiplier: 2, maxMs: 5_000 },
    });
    await fail(breaker);
    const waits: number[] = [];
    for (let i = 0; i < 5; i++) {
      const { nextAttemptAt } = breaker.stats();
      waits.push(nextAttemptAt! - clock.now());
      clock.set(nextAttemptAt!);
      await fail(breaker); // the probe fails
    }
    waits.push(breaker.stats().nextAttemptAt! - clock.now());
    expect(waits).toEqual([1_000, 2_000, 4_000, 5_000, 5_000, 5_000]);
    expect(breaker.snapshot().reopenCount).toBe(5);

    clock.set(breaker.stats().nextAttemptAt!);
    await succeed(breaker);
    expect(breaker.getState()).toBe('closed');
    await fail(breaker);
    expect(breaker.stats().nextAttemptAt! - clock.now()).toBe(1_000);
  });

  it('uses multiplier 2 by default', async () => {
    const { clock, breaker } = make({ failureThreshold: 1, recoveryTimeoutMs: 100, recoveryBackoff: { maxMs: 10_000 } });
    await fail(breaker);
    await clock.advance(100);
    await fail(breaker);
    expect(breaker.stats().nextAttemptAt! - clock.now()).toBe(200);
    await clock.advance(200);
    await fail(breaker);
    expect(breaker.stats().nextAttemptAt! - clock.now()).toBe(400);
  });

  it('without recoveryBackoff every reopen waits recoveryTimeoutMs', async () => {
    const { clock, breaker } = make({ failureThreshold: 1, recoveryTimeoutMs: 100 });
    await fail(breaker);
    for (let i = 0; i < 3; i++) {
      await clock.advance(100);
      await fail(breaker);
      expect(breaker.stats().nextAttemptAt! - clock.now()).toBe(100);
    }
  });
});

describe('CircuitBreaker failure rate', () => {
  const rate = { threshold: 0.5, windowMs: 1_000, minimumCalls: 4, buckets: 10 };

  it('opens when the failure rate reaches the threshold once minimumCalls calls are in the window', async () => {
    const { breaker } = make({ failureThreshold: 0, failureRate: rate });
    const events = record(breaker);
    await fail(breaker, 3); // 100% but only 3 calls
    expect(breaker.getState()).toBe('closed');
    expect(breaker.stats().window).toEqual({ calls: 3, failures: 3, failureRate: 1 });
    await succeed(breaker, 3); // 3/6
    expect(breaker.getState()).toBe('closed'); // evaluated when a failure is recorded
    await fail(breaker); // 4/7 >= 0.5
    expect(breaker.getState()).toBe('open');
    expect(events.find((e) => e.type === 'stateChange')!.event).toMatchObject({ to: 'open', reason: 'failureRate' });
  });

  it('stays closed while the rate is under the threshold', async () => {
    const { breaker } = make({ failureThreshold: 0, failureRate: rate });
    for (let i = 0; i < 10; i++) {
      await succeed(breaker, 2);
      await fail(breaker); // 1 in 3
    }
    expect(breaker.getState()).toBe('closed');
    expect(breaker.stats().window.calls).toBe(30);
    expect(breaker.stats().window.failureRate).toBeCloseTo(1 / 3);
  });

  it('forgets calls older than windowMs, bucket by bucket', async () => {
    const { clock, breaker } = make({ failureThreshold: 0, failureRate: rate });
    clock.set(10_000); // a bucket boundary (buckets are 100 ms)
    await fail(breaker, 3);
    clock.set(10_500);
    await succeed(breaker, 2);
    expect(breaker.stats().window).toMatchObject({ calls: 5, failures: 3 });
    clock.set(10_999);
    expect(breaker.stats().window).toMatchObject({ calls: 5, failures: 3 });
    clock.set(11_000); // the bucket holding the 3 failures leaves the window
    expect(breaker.stats().window).toEqual({ calls: 2, failures: 0, failureRate: 0 });
    await fail(breaker); // 1/3, and the old failures no longer count
    expect(breaker.getState()).toBe('closed');
    clock.set(20_000);
    expect(breaker.stats().window).toEqual({ calls: 0, failures: 0, failureRate: 0 });
    await fail(breaker, 3);
    expect(breaker.getState()).toBe('closed'); // 3 < minimumCalls after the rollover
    await fail(breaker);
    expect(breaker.getState()).toBe('open');
  });

  it('combines with the consecutive trigger (whichever comes first)', async () => {
    const { breaker } = make({ failureThreshold: 2, failureRate: { threshold: 0.9, minimumCalls: 100 } });
    await fail(breaker, 2);
    expect(breaker.getState()).toBe('open');
  });

  it('clears the window when the breaker closes', async () => {
    const { clock, breaker } = make({ failureThreshold: 0, failureRate: rate, recoveryTimeoutMs: 10 });
    await fail(breaker, 4);
    expect(breaker.getState()).toBe('open');
    await clock.advance(10);
    await succeed(breaker);
    expect(breaker.getState()).toBe('closed');
    expect(breaker.stats().window.calls).toBe(0);
    await fail(breaker, 3);
    expect(breaker.getState()).toBe('closed');
  });

  it('does not track a window when failureRate is not set', async () => {
    const { breaker } = make();
    await succeed(breaker, 3);
    expect(breaker.stats().window).toEqual({ calls: 0, failures: 0, failureRate: 0 });
  });
});

describe('CircuitBreaker permits (acquire / tryAcquire)', () => {
  it('records outcomes reported through permits', async () => {
    const { breaker } = make({ failureThreshold: 2 });
    breaker.acquire().success();
    breaker.acquire().failure(new Error('500'));
    expect(breaker.stats()).toMatchObject({ consecutiveFailures: 1, totals: { successes: 1, failures: 1 } });
    breaker.acquire().failure(); // no error given: still a failure
    expect(breaker.getState()).toBe('open');
  });

  it('acquire throws and tryAcquire returns the BreakerOpenError when open', async () => {
    const { clock, breaker } = make({ failureThreshold: 1, recoveryTimeoutMs: 1_000 });
    breaker.acquire().failure(new Error('x'));
    await clock.advance(250);
    const thrown = catchSync<unknown>(() => breaker.acquire());
    expect(thrown).toBeInstanceOf(BreakerOpenError);
    expect((thrown as BreakerOpenError).retryAfterMs).toBe(750);
    const returned = breaker.tryAcquire();
    expect(returned).toBeInstanceOf(BreakerOpenError);
    expect(breaker.stats().totals.rejections).toBe(2);
  });

  it('settles each permit once: later calls are ignored', async () => {
    const { breaker } = make({ failureThreshold: 2 });
    const permit = breaker.acquire();
    permit.failure(new Error('x'));
    permit.failure(new Error('x'));
    permit.success();
    expect(breaker.stats()).toMatchObject({ consecutiveFailures: 1, totals: { successes: 0, failures: 1 } });
  });

  it('release() frees a probe slot and records nothing', async () => {
    const { clock, breaker } = make({ failureThreshold: 1, recoveryTimeoutMs: 1_000 });
    breaker.acquire().failure();
    await clock.advance(1_000);
    const probe = breaker.acquire();
    expect(breaker.stats().halfOpenInFlight).toBe(1);
    expect(breaker.tryAcquire()).toBeInstanceOf(BreakerOpenError);
    probe.release();
    probe.success(); // already settled: ignored
    expect(breaker.stats()).toMatchObject({ state: 'half-open', halfOpenInFlight: 0, totals: { successes: 0, failures: 1 } });
    const next = breaker.acquire();
    next.success();
    expect(breaker.getState()).toBe('closed');
  });

  it('release() while closed records nothing', () => {
    const { breaker } = make({ failureThreshold: 1 });
    breaker.acquire().release();
    expect(breaker.stats()).toMatchObject({ state: 'closed', consecutiveFailures: 0, totals: { successes: 0, failures: 0, ignored: 0 } });
  });

  it('permit.failure with an error isFailure rejects is ignored', () => {
    const { breaker } = make({ failureThreshold: 1 });
    const events = record(breaker);
    const aborted = new AbortedError();
    breaker.acquire().failure(aborted);
    expect(breaker.getState()).toBe('closed');
    expect(events).toEqual([{ type: 'ignored', event: { name: 'test', error: aborted } }]);
  });
});

describe('CircuitBreaker manual control', () => {
  it('open(reason) rejects until the recovery timeout, emitting the reason', async () => {
    const { clock, breaker } = make({ recoveryTimeoutMs: 1_000 });
    const events = record(breaker);
    breaker.open('deploy in progress');
    expect(events[0].event).toEqual({ name: 'test', from: 'closed', to: 'open', reason: 'deploy in progress' });
    await expect(breaker.execute(ok)).rejects.toBeInstanceOf(BreakerOpenError);
    await clock.advance(1_000);
    expect(breaker.getState()).toBe('half-open');
  });

  it('isolate() rejects until close(), with retryAfterMs = recoveryTimeoutMs', async () => {
    const { clock, breaker } = make({ recoveryTimeoutMs: 5_000 });
    const events = record(breaker);
    breaker.isolate();
    await clock.advance(1_000_000);
    expect(breaker.getState()).toBe('isolated');
    const error = (await breaker.execute(ok).catch((e: unknown) => e)) as BreakerOpenError;
    expect(error).toBeInstanceOf(BreakerOpenError);
    expect(error.retryAfterMs).toBe(5_000);
    expect(error.message).toBe('Circuit breaker "test" is isolated');
    expect(error.details).toEqual({ breaker: 'test', state: 'isolated' });
    expect(breaker.tryAcquire()).toBeInstanceOf(BreakerOpenError);
    breaker.close();
    await succeed(breaker);
    expect(events.filter((e) => e.type === 'stateChange').map((e) => e.event)).toEqual([
      { name: 'test', from: 'closed', to: 'isolated', reason: 'isolate' },
      { name: 'test', from: 'isolated', to: 'closed', reason: 'manual' },
    ]);
  });

  it('reset() closes and clears every counter; close() keeps totals', async () => {
    const { breaker } = make({ failureThreshold: 2 });
    await fail(breaker, 2);
    await expect(breaker.execute(ok)).rejects.toBeInstanceOf(BreakerOpenError);
    breaker.close();
    expect(breaker.stats()).toMatchObject({ state: 'closed', consecutiveFailures: 0, totals: { failures: 2, rejections: 1 } });
    await fail(breaker, 2);
    const events = record(breaker);
    breaker.reset();
    expect(events[0].event).toEqual({ name: 'test', from: 'open', to: 'closed', reason: 'reset' });
    expect(breaker.stats()).toEqual({
      state: 'closed',
      consecutiveFailures: 0,
      consecutiveSuccesses: 0,
      window: { calls: 0, failures: 0, failureRate: 0 },
      halfOpenInFlight: 0,
      totals: { successes: 0, failures: 0, rejections: 0, ignored: 0 },
    });
  });

  it('close() while closed changes nothing and emits nothing', async () => {
    const { breaker } = make({ failureThreshold: 3 });
    await fail(breaker, 2);
    const events = record(breaker);
    breaker.close();
    expect(events).toEqual([]);
    expect(breaker.stats().consecutiveFailures).toBe(2);
  });

  it('close() during half-open makes in-flight probes stale', async () => {
    const { clock, breaker } = make({ failureThreshold: 1, recoveryTimeoutMs: 10 });
    await fail(breaker);
    await clock.advance(10);
    const probe = breaker.acquire();
    breaker.close();
    probe.failure(new Error('late'));
    expect(breaker.getState()).toBe('closed');
  });
});

describe('CircuitBreaker events', () => {
  it('emits success and failure with durations measured on the clock', async () => {
    const { clock, breaker } = make({ failureThreshold: 10 });
    const events = record(breaker);
    const a = deferred();
    const pa = breaker.execute(() => a.promise);
    await clock.advance(120);
    a.resolve('done');
    await pa;
    const error = new Error('nope');
    const b = deferred();
    const pb = breaker.execute(() => b.promise);
    await clock.advance(30);
    b.reject(error);
    await pb.catch(() => {});
    expect(events).toEqual([
      { type: 'success', event: { name: 'test', durationMs: 120 } },
      { type: 'failure', event: { name: 'test', error, durationMs: 30 } },
    ]);
  });

  it('a result failure is reported with the result as the error', async () => {
    const { breaker } = make({ isResultFailure: () => true });
    const events = record(breaker);
    await breaker.execute(() => 'bad result');
    expect(events).toEqual([{ type: 'failure', event: { name: 'test', error: 'bad result', durationMs: 0 } }]);
  });

  it('emits rejected with the state and retryAfterMs, and ignored with the error', async () => {
    const { clock, breaker } = make({ failureThreshold: 1, recoveryTimeoutMs: 1_000 });
    const events = record(breaker);
    const aborted = new AbortedError();
    await breaker.execute(() => Promise.reject(aborted)).catch(() => {});
    await fail(breaker);
    await clock.advance(400);
    await breaker.execute(ok).catch(() => {});
    expect(events.map((e) => e.type)).toEqual(['ignored', 'failure', 'stateChange', 'rejected']);
    expect(events[0].event).toEqual({ name: 'test', error: aborted });
    expect(events[3].event).toEqual({ name: 'test', state: 'open', retryAfterMs: 600 });
  });

  it('unsubscribing stops delivery; dispose() removes every listener and the breaker keeps working', async () => {
    const { clock, breaker } = make({ failureThreshold: 1, recoveryTimeoutMs: 10 });
    const seen: string[] = [];
    const off = breaker.on('failure', () => seen.push('failure'));
    breaker.on('stateChange', (e) => seen.push(e.to));
    off();
    await fail(breaker);
    expect(seen).toEqual(['open']);
    breaker.dispose();
    await clock.advance(10);
    await fail(breaker);
    expect(breaker.getState()).toBe('open');
    expect(seen).toEqual(['open']);
    expect(clock.pendingTimers).toBe(0);
  });

  it('a throwing listener never breaks a call', async () => {
    const { breaker } = make({ failureThreshold: 1 });
    breaker.on('success', () => {
      throw new Error('listener bug');
    });
    breaker.on('stateChange', () => {
      throw new Error('listener bug');
    });
    await succeed(breaker);
    await fail(breaker);
    expect(breaker.getState()).toBe('open');
  });

  it('a throwing isFailure or isResultFailure counts the outcome as a failure', async () => {
    const { breaker } = make({
      failureThreshold: 2,
      isFailure: () => {
        throw new Error('predicate bug');
      },
      isResultFailure: () => {
        throw new Error('predicate bug');
      },
    });
    await expect(breaker.execute(() => 'r')).resolves.toBe('r');
    await fail(breaker);
    expect(breaker.getState()).toBe('open');
  });
});

describe('BreakerOpenError', () => {
  it('is a BreakerOpenError and an AmasError with status 503, retryAfterMs and Retry-After', async () => {
    const { clock, breaker } = make({ failureThreshold: 1, recoveryTimeoutMs: 2_500 });
    await fail(breaker);
    await clock.advance(100);
    const error = (await breaker.execute(ok).catch((e: unknown) => e)) as BreakerOpenError;
    expect(error).toBeInstanceOf(BreakerOpenError);
    expect(error).toBeInstanceOf(AmasError);
    expect(error).toBeInstanceOf(Error);
    expect(error.code).toBe('AMAS_BREAKER_OPEN');
    expect(error.status).toBe(503);
    expect(error.retryAfterMs).toBe(2_400);
    expect(error.headers).toEqual({ 'retry-after': '3' });
    expect(error.toJSON()).toMatchObject({ error: 'AMAS_BREAKER_OPEN', status: 503, retryAfterMs: 2_400 });
  });

  it('is built without a stack trace and leaves Error.stackTraceLimit as it was', async () => {
    const { breaker } = make();
    breaker.open();
    const before = Error.stackTraceLimit;
    const error = breaker.tryAcquire() as BreakerOpenError;
    expect(Error.stackTraceLimit).toBe(before);
    expect(error.stack ?? '').not.toMatch(/\n\s+at /);
  });
});

describe('CircuitBreaker snapshot / restore', () => {
  it('round-trips an open breaker through JSON into a new instance that keeps rejecting until its time', async () => {
    const clock = new ManualClock();
    const first = new CircuitBreaker({ name: 'openai', clock, failureThreshold: 2, recoveryTimeoutMs: 10_000 });
    await fail(first, 2);
    await clock.advance(3_000);
    const json = JSON.stringify(first.snapshot());
    const snapshot = JSON.parse(json) as BreakerSnapshot;
    expect(snapshot).toMatchObject({ version: 1, state: 'open', nextAttemptAt: clock.now() + 7_000, reopenCount: 0, consecutiveFailures: 2 });

    const second = new CircuitBreaker({ name: 'openai', clock, failureThreshold: 2, recoveryTimeoutMs: 10_000 });
    const events = record(second);
    second.restore(snapshot);
    expect(events[0].event).toEqual({ name: 'openai', from: 'closed', to: 'open', reason: 'restore' });
    const error = (await second.execute(ok).catch((e: unknown) => e)) as BreakerOpenError;
    expect(error).toBeInstanceOf(BreakerOpenError);
    expect(error.retryAfterMs).toBe(7_000);
    expect(second.stats()).toMatchObject({ totals: { failures: 2, rejections: 1 }, openedAt: first.stats().openedAt });
    await clock.advance(6_999);
    expect(second.getState()).toBe('open');
    await clock.advance(1);
    await succeed(second);
    expect(second.getState()).toBe('closed');
  });

  it('keeps the backoff step and the failure-rate window', async () => {
    const clock = new ManualClock(1_000_000);
    const options: CircuitBreakerOptions = {
      clock,
      failureThreshold: 0,
      failureRate: { threshold: 0.5, windowMs: 1_000, minimumCalls: 4 },
      recoveryTimeoutMs: 100,
      recoveryBackoff: { maxMs: 10_000 },
    };
    const first = new CircuitBreaker(options);
    await fail(first, 2);
    clock.set(1_000_300);
    await succeed(first, 1);
    const snap = JSON.parse(JSON.stringify(first.snapshot())) as BreakerSnapshot;
    expect(snap.window.buckets).toEqual([
      { start: 1_000_000, calls: 2, failures: 2 },
      { start: 1_000_300, calls: 1, failures: 0 },
    ]);
    const second = new CircuitBreaker(options);
    second.restore(snap);
    expect(second.stats().window).toMatchObject({ calls: 3, failures: 2 });
    await fail(second); // 3/4 over the restored window
    expect(second.getState()).toBe('open');
    clock.set(1_000_300 + 100);
    await fail(second); // probe fails: the backoff grows
    const reopened = JSON.parse(JSON.stringify(second.snapshot())) as BreakerSnapshot;
    const third = new CircuitBreaker(options);
    third.restore(reopened);
    clock.set(reopened.nextAttemptAt!);
    await fail(third);
    expect(third.stats().nextAttemptAt! - clock.now()).toBe(400);
  });

  it('restores isolated and half-open states (probe slots start free)', async () => {
    const { clock, breaker } = make({ failureThreshold: 1, recoveryTimeoutMs: 10 });
    breaker.isolate();
    const isolated = make();
    isolated.breaker.restore(JSON.parse(JSON.stringify(breaker.snapshot())));
    expect(isolated.breaker.getState()).toBe('isolated');

    breaker.reset();
    await fail(breaker);
    await clock.advance(10);
    breaker.acquire(); // a probe in flight, not carried over
    const halfOpen = make({ failureThreshold: 1 });
    halfOpen.breaker.restore(JSON.parse(JSON.stringify(breaker.snapshot())));
    expect(halfOpen.breaker.stats()).toMatchObject({ state: 'half-open', halfOpenInFlight: 0 });
    await succeed(halfOpen.breaker);
    expect(halfOpen.breaker.getState()).toBe('closed');
  });

  it('rejects a malformed snapshot with InvalidOptionError naming the field', () => {
    const { breaker } = make();
    const good = breaker.snapshot();
    const cases: Array<[unknown, string]> = [
      [null, ''],
      [{ ...good, version: 2 }, 'version'],
      [{ ...good, state: 'ajar' }, 'state'],
      [{ ...good, state: 'open', nextAttemptAt: null }, 'nextAttemptAt'],
      [{ ...good, consecutiveFailures: -1 }, 'consecutiveFailures'],
      [{ ...good, window: { bucketMs: 100, buckets: [{ start: 0, calls: 1, failures: 2 }] } }, 'window.buckets.0.failures'],
      [{ ...good, totals: { ...good.totals, successes: 'many' } }, 'totals.successes'],
    ];
    for (const [snapshot, path] of cases) {
      const error = catchSync<unknown>(() => breaker.restore(snapshot as BreakerSnapshot));
      expect(error).toBeInstanceOf(InvalidOptionError);
      expect((error as InvalidOptionError).message).toContain('circuit breaker "test" snapshot');
      expect((error as InvalidOptionError).issues.map((i) => i.path)).toContain(path);
    }
    expect(breaker.getState()).toBe('closed');
  });
});

describe('CircuitBreaker options validation', () => {
  const cases: Array<[string, Record<string, unknown>, string, string, string]> = [
    // [label, options, path, received, expected (substring)]
    ['name', { name: '' }, 'name', '""', 'length >= 1'],
    ['failureThreshold negative', { failureThreshold: -1 }, 'failureThreshold', '-1', '>= 0'],
    ['failureThreshold fractional', { failureThreshold: 1.5 }, 'failureThreshold', '1.5', 'int'],
    ['failureRate.threshold 0', { failureRate: { threshold: 0 } }, 'failureRate.threshold', '0', '> 0'],
    ['failureRate.threshold > 1', { failureRate: { threshold: 1.5 } }, 'failureRate.threshold', '1.5', '<= 1'],
    ['failureRate.threshold missing', { failureRate: {} }, 'failureRate.threshold', 'undefined', 'number'],
    ['failureRate.windowMs', { failureRate: { threshold: 0.5, windowMs: 0 } }, 'failureRate.windowMs', '0', '> 0'],
    ['failureRate.minimumCalls', { failureRate: { threshold: 0.5, minimumCalls: 0 } }, 'failureRate.minimumCalls', '0', '> 0'],
    ['failureRate.buckets', { failureRate: { threshold: 0.5, buckets: 2.5 } }, 'failureRate.buckets', '2.5', 'int'],
    ['recoveryTimeoutMs', { recoveryTimeoutMs: -5 }, 'recoveryTimeoutMs', '-5', '>= 0'],
    ['recoveryTimeoutMs type', { recoveryTimeoutMs: '30s' }, 'recoveryTimeoutMs', '"30s"', 'number'],
    ['recoveryBackoff.multiplier', { recoveryBackoff: { multiplier: 0.5, maxMs: 60_000 } }, 'recoveryBackoff.multiplier', '0.5', '>= 1'],
    ['recoveryBackoff.maxMs missing', { recoveryBackoff: {} }, 'recoveryBackoff.maxMs', 'undefined', 'number'],
    ['recoveryBackoff.maxMs below recovery', { recoveryTimeoutMs: 5_000, recoveryBackoff: { maxMs: 1_000 } }, 'recoveryBackoff.maxMs', '1000', '>= recoveryTimeoutMs (5000)'],
    ['halfOpenMaxProbes', { halfOpenMaxProbes: 0 }, 'halfOpenMaxProbes', '0', '> 0'],
    ['successThreshold', { successThreshold: 0 }, 'successThreshold', '0', '> 0'],
    ['isFailure', { isFailure: true }, 'isFailure', 'true', 'a function'],
    ['isResultFailure', { isResultFailure: 'yes' }, 'isResultFailure', '"yes"', 'a function'],
    ['clock', { clock: { now: () => 0 } }, 'clock', '{}', 'a Clock'],
    ['unknown key', { failureTreshold: 3 }, '', '', 'unknown: failureTreshold'],
  ];

  it.each(cases)('%s', (_label, options, path, received, expected) => {
    const error = catchSync<unknown>(() => new CircuitBreaker({ name: 'openai', ...options } as CircuitBreakerOptions));
    expect(error).toBeInstanceOf(InvalidOptionError);
    const message = (error as InvalidOptionError).message;
    expect(message).toContain(`circuit breaker "${String(options.name ?? 'openai')}" options`);
    if (path) expect(message).toContain(`${path}:`);
    expect(message).toContain(expected);
    if (received) expect(message).toContain(`received ${received}`);
  });

  it('rejects a non-object', () => {
    expect(() => new CircuitBreaker(42 as unknown as CircuitBreakerOptions)).toThrow(InvalidOptionError);
  });

  it('exports a schema the engine can embed', () => {
    expect(circuitBreakerOptionsSchema.safeParse({ failureThreshold: 3, failureRate: { threshold: 0.5 } }).success).toBe(true);
    expect(circuitBreakerOptionsSchema.safeParse({ failureThreshold: -3 }).success).toBe(false);
    // A piece (e.g. engine-level defaults) is checked alone; cross-option rules apply to the merged result.
    expect(circuitBreakerOptionsSchema.safeParse({ recoveryBackoff: { maxMs: 1_000 } }).success).toBe(true);
    expect(() => validateCircuitBreakerOptions({ recoveryBackoff: { maxMs: 1_000 } }, 'x')).toThrow(InvalidOptionError);
  });
});
