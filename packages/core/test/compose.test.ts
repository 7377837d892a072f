import { describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { BreakerOpenError, InvalidOptionError, TimeoutError } from '../src/errors.js';
import { Bulkhead } from '../src/policies/bulkhead.js';
import { CircuitBreaker } from '../src/policies/circuit-breaker.js';
import { compose, DEFAULT_ORDER, Resilience, type ResiliencePart, type ResilienceParts } from '../src/policies/compose.js';
import type { Policy, Work } from '../src/policies/policy.js';
import { RetryPolicy } from '../src/policies/retry.js';
import { SingleFlight } from '../src/policies/single-flight.js';
import { TimeoutPolicy } from '../src/policies/timeout.js';

function settle<T>(promise: Promise<T>): Promise<{ value?: T; error?: unknown }> {
  return promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
}

/** A policy that logs entry and exit and hands the work a fresh signal of its own. */
function recorder(name: string, log: string[], signals?: Map<string, AbortSignal>): Policy {
  return {
    async execute<T>(work: Work<T>, signal?: AbortSignal): Promise<T> {
      log.push(`${name}:enter`);
      const own = new AbortController().signal;
      signals?.set(`${name}:received`, signal as AbortSignal);
      signals?.set(`${name}:passed`, own);
      try {
        return await work({ signal: own, attempt: 1 });
      } finally {
        log.push(`${name}:exit`);
      }
    },
  };
}

/** Real parts whose execute also records entry and exit, so Resilience's nesting is observable. */
function recordingParts(log: string[], clock: ManualClock): Required<ResilienceParts> {
  const wrap = <P extends Policy>(name: string, part: P): P => {
    const inner = part.execute.bind(part);
    part.execute = (<T>(work: Work<T>, signal?: AbortSignal) => {
      log.push(`${name}:enter`);
      return inner(work, signal).finally(() => log.push(`${name}:exit`));
    }) as P['execute'];
    return part;
  };
  const dedup = new SingleFlight({ clock });
  const policyOf = dedup.policy.bind(dedup);
  dedup.policy = (key: string) => wrap('dedup', policyOf(key));
  return {
    dedup,
    retry: wrap('retry', new RetryPolicy({ clock })),
    breaker: wrap('breaker', recorder('breaker-inner', [])),
    bulkhead: wrap('bulkhead', new Bulkhead({ maxConcurrent: 5, clock })),
    timeout: wrap('timeout', new TimeoutPolicy({ timeoutMs: 1_000, clock })),
  };
}

const nesting = (order: readonly string[]) => [
  ...order.map((n) => `${n}:enter`),
  'work',
  ...order
    .slice()
    .reverse()
    .map((n) => `${n}:exit`),
];

describe('compose', () => {
  it('nests policies with the first argument outermost', async () => {
    const log: string[] = [];
    const policy = compose(recorder('a', log), recorder('b', log), recorder('c', log));
    await expect(policy.execute(() => (log.push('work'), 'ok'))).resolves.toBe('ok');
    expect(log).toEqual(nesting(['a', 'b', 'c']));
  });

  it('flows signals inward: each policy receives the signal of the one outside it', async () => {
    const signals = new Map<string, AbortSignal>();
    const caller = new AbortController().signal;
    const policy = compose(recorder('a', [], signals), recorder('b', [], signals));
    const seen = await policy.execute(({ signal }) => signal, caller);
    expect(signals.get('a:received')).toBe(caller);
    expect(signals.get('b:received')).toBe(signals.get('a:passed'));
    expect(seen).toBe(signals.get('b:passed'));
  });

  it('an empty compose just runs the work', async () => {
    const controller = new AbortController();
    await expect(compose().execute((ctx) => ctx, controller.signal)).resolves.toEqual({
      signal: controller.signal,
      attempt: 1,
    });
    const boom = new Error('sync');
    await expect(
      compose().execute(() => {
        throw boom;
      }),
    ).rejects.toBe(boom);
  });

  it("hands the work retry's attempt number through inner policies", async () => {
    const clock = new ManualClock();
    const attempts: number[] = [];
    const policy = compose(
      new RetryPolicy({ clock, baseDelayMs: 0 }),
      new TimeoutPolicy({ timeoutMs: 1_000, clock }),
      new Bulkhead({ maxConcurrent: 1 }),
    );
    const result = settle(
      policy.execute(({ attempt }) => {
        attempts.push(attempt);
        return attempt < 3 ? Promise.reject(Object.assign(new Error('x'), { status: 503 })) : 'ok';
      }),
    );
    await clock.advance(0);
    expect(await result).toEqual({ value: 'ok' });
    expect(attempts).toEqual([1, 2, 3]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('rejects arguments that are not policies', () => {
    expect(() => compose(recorder('a', []), {} as Policy)).toThrow(InvalidOptionError);
    expect(() => compose(null as unknown as Policy)).toThrow(InvalidOptionError);
  });
});

describe('Resilience', () => {
  it('documents the default order, outermost first', () => {
    expect(DEFAULT_ORDER).toEqual(['dedup', 'retry', 'breaker', 'bulkhead', 'timeout']);
    expect(Object.isFrozen(DEFAULT_ORDER)).toBe(true);
    expect(new Resilience({}).order).toEqual(DEFAULT_ORDER);
  });

  it('runs the parts in the default order when given a dedup key', async () => {
    const log: string[] = [];
    const resilience = new Resilience(recordingParts(log, new ManualClock()));
    await expect(resilience.execute(() => (log.push('work'), 1), { key: 'k' })).resolves.toBe(1);
    expect(log).toEqual(nesting(['dedup', 'retry', 'breaker', 'bulkhead', 'timeout']));
  });

  it('skips dedup without a key', async () => {
    const log: string[] = [];
    const resilience = new Resilience(recordingParts(log, new ManualClock()));
    await resilience.execute(() => void log.push('work'));
    expect(log).toEqual(nesting(['retry', 'breaker', 'bulkhead', 'timeout']));
  });

  it('follows a custom order', async () => {
    const log: string[] = [];
    const order: ResiliencePart[] = ['timeout', 'bulkhead', 'retry', 'dedup', 'breaker'];
    const resilience = new Resilience(recordingParts(log, new ManualClock()), { order });
    expect(resilience.order).toEqual(order);
    await resilience.execute(() => void log.push('work'), { key: 'k' });
    expect(log).toEqual(nesting(order));
  });

  it('only includes the parts that were given', async () => {
    const log: string[] = [];
    const { retry, timeout } = recordingParts(log, new ManualClock());
    await new Resilience({ timeout, retry }).execute(() => void log.push('work'), { key: 'ignored' });
    expect(log).toEqual(nesting(['retry', 'timeout']));
  });

  it('rejects invalid orders and parts', () => {
    const clock = new ManualClock();
    const retry = new RetryPolicy({ clock });
    const cases: Array<[ResilienceParts, unknown, string]> = [
      [{}, { order: ['retry', 'cache'] }, 'order.1'],
      [{}, { order: ['retry', 'timeout', 'retry'] }, 'order'],
      [{}, { order: 'retry' }, 'order'],
      [{}, { sequence: [] }, ''],
      [{ retry }, { order: ['timeout'] }, 'order'],
      [{ retry: {} as RetryPolicy }, undefined, 'retry'],
      [{ breaker: { run() {} } as unknown as Policy }, undefined, 'breaker'],
      [{ timeout: 100 as unknown as TimeoutPolicy }, undefined, 'timeout'],
      [{ bulkhead: new SingleFlight() as unknown as Bulkhead }, undefined, 'bulkhead'],
      [{ dedup: new Map() as unknown as SingleFlight }, undefined, 'dedup'],
      [{ cache: retry } as unknown as ResilienceParts, undefined, ''],
    ];
    for (const [parts, options, path] of cases) {
      let caught: unknown;
      try {
        new Resilience(parts, options as { order?: ResiliencePart[] });
      } catch (error) {
        caught = error;
      }
      expect(caught, JSON.stringify(options)).toBeInstanceOf(InvalidOptionError);
      expect((caught as InvalidOptionError).issues[0].path).toBe(path);
    }
  });

  it('retry + breaker + timeout: each attempt is timed out and counted, an open breaker ends the retries', async () => {
    const clock = new ManualClock();
    const breaker = new CircuitBreaker({ failureThreshold: 2, recoveryTimeoutMs: 60_000, clock });
    const retry = new RetryPolicy({ clock, maxAttempts: 5, jitter: 'none', baseDelayMs: 50 });
    const timeout = new TimeoutPolicy({ timeoutMs: 100, clock });
    const resilience = new Resilience({ retry, breaker, timeout });
    const retries: unknown[] = [];
    retry.on('retry', (e) => retries.push(e.error));
    const aborted: boolean[] = [];
    let calls = 0;
    const result = settle(
      resilience.execute(({ signal }) => {
        calls++;
        return new Promise<never>(() => {
          signal.addEventListener('abort', () => aborted.push(true));
        });
      }),
    );
    await clock.advance(100); // attempt 1 times out
    await clock.advance(50); // backoff
    await clock.advance(100); // attempt 2 times out: breaker opens
    await clock.advance(100); // backoff, then attempt 3 is refused by the breaker
    const { error } = await result;
    expect(error).toBeInstanceOf(BreakerOpenError);
    expect(calls).toBe(2);
    expect(aborted).toEqual([true, true]);
    expect(retries).toHaveLength(2);
    expect(retries.every((e) => e instanceof TimeoutError)).toBe(true);
    expect(breaker.getState()).toBe('open');
    expect(clock.pendingTimers).toBe(0);
  });

  it('dedup outermost: concurrent callers with one key share a single retried execution', async () => {
    const clock = new ManualClock();
    const resilience = new Resilience({
      dedup: new SingleFlight({ clock }),
      retry: new RetryPolicy({ clock, jitter: 'none', baseDelayMs: 10 }),
      timeout: new TimeoutPolicy({ timeoutMs: 1_000, clock }),
    });
    let calls = 0;
    const work = () => (++calls === 1 ? Promise.reject(Object.assign(new Error('reset'), { code: 'ECONNRESET' })) : 'ok');
    const results = Promise.all([1, 2, 3].map(() => resilience.execute(work, { key: 'same' })));
    await clock.advance(10);
    await expect(results).resolves.toEqual(['ok', 'ok', 'ok']);
    expect(calls).toBe(2);
  });

  it('an open breaker fails fast without taking a bulkhead slot', async () => {
    const clock = new ManualClock();
    const breaker = new CircuitBreaker({ failureThreshold: 1, recoveryTimeoutMs: 60_000, clock });
    const bulkhead = new Bulkhead({ maxConcurrent: 1, clock });
    const resilience = new Resilience({ breaker, bulkhead });
    await expect(resilience.execute(() => Promise.reject(new Error('down')))).rejects.toThrow('down');
    expect(breaker.getState()).toBe('open');
    // Occupy the only slot: if the bulkhead sat outside the breaker, the next call would get BulkheadFullError.
    const hold = bulkhead.execute(() => new Promise<never>(() => {}));
    void hold;
    await expect(resilience.execute(() => 'never')).rejects.toBeInstanceOf(BreakerOpenError);
    expect(bulkhead.stats()).toEqual({ running: 1, queued: 0, rejected: 0 });
  });
});
