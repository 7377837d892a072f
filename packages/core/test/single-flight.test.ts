import { describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { AbortedError, InvalidOptionError } from '../src/errors.js';
import { SingleFlight, type SingleFlightOptions } from '../src/policies/single-flight.js';
import { deferred, settle, invalidOption } from './helpers.js';



describe('SingleFlight', () => {
  it('runs 50 concurrent identical calls once and gives all the same result', async () => {
    const flight = new SingleFlight();
    const shared: string[] = [];
    flight.on('shared', (e) => shared.push(e.key));
    const d = deferred<{ answer: number }>();
    let runs = 0;
    const calls = Array.from({ length: 50 }, () => flight.do('k', () => (runs++, d.promise)));
    expect(flight.has('k')).toBe(true);
    expect(flight.size).toBe(1);
    d.resolve({ answer: 42 });
    const results = await Promise.all(calls);
    expect(runs).toBe(1);
    expect(new Set(results).size).toBe(1);
    expect(results[0]).toEqual({ answer: 42 });
    expect(flight.stats()).toEqual({ leaders: 1, followers: 49, windowHits: 0 });
    expect(shared).toHaveLength(49);
    expect(shared.every((k) => k === 'k')).toBe(true);
    expect(flight.has('k')).toBe(false);
  });

  it('shares an error with every follower and does not keep it', async () => {
    const flight = new SingleFlight({ shareWindowMs: 1_000, clock: new ManualClock() });
    const d = deferred<string>();
    const boom = new Error('boom');
    const a = settle(flight.do('k', () => d.promise));
    const b = settle(flight.do('k', () => 'never'));
    d.reject(boom);
    expect((await a).error).toBe(boom);
    expect((await b).error).toBe(boom);
    expect(flight.has('k')).toBe(false);
    await expect(flight.do('k', () => 'fresh')).resolves.toBe('fresh');
  });

  it('turns a synchronous throw into a shared rejection', async () => {
    const flight = new SingleFlight();
    const boom = new Error('sync');
    await expect(
      flight.do('k', () => {
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect(flight.size).toBe(0);
  });

  it('keeps different keys apart and starts a new run once the call settled (window 0)', async () => {
    const flight = new SingleFlight();
    let runs = 0;
    const [a, b] = await Promise.all([flight.do('a', () => (runs++, 'A')), flight.do('b', () => (runs++, 'B'))]);
    expect([a, b]).toEqual(['A', 'B']);
    await flight.do('a', () => runs++);
    expect(runs).toBe(3);
    expect(flight.stats()).toEqual({ leaders: 3, followers: 0, windowHits: 0 });
  });

  it('serves a successful result for shareWindowMs after it settles', async () => {
    const clock = new ManualClock();
    const flight = new SingleFlight({ shareWindowMs: 500, clock });
    let runs = 0;
    await flight.do('k', () => ++runs);
    expect(clock.pendingTimers).toBe(1);
    await clock.advance(499);
    await expect(flight.do('k', () => ++runs)).resolves.toBe(1);
    expect(flight.stats().windowHits).toBe(1);
    await clock.advance(1);
    expect(flight.has('k')).toBe(false);
    await expect(flight.do('k', () => ++runs)).resolves.toBe(2);
    expect(flight.stats()).toEqual({ leaders: 2, followers: 0, windowHits: 1 });
  });

  it('join returns the in-flight or kept promise without starting a run', async () => {
    const clock = new ManualClock();
    const flight = new SingleFlight({ shareWindowMs: 100, clock });
    expect(flight.join('k')).toBeUndefined();
    const d = deferred<string>();
    const leader = flight.do('k', () => d.promise);
    expect(flight.join('k')).toBe(leader);
    d.resolve('v');
    await leader;
    await expect(flight.join<string>('k')).resolves.toBe('v');
    await clock.advance(100);
    expect(flight.join('k')).toBeUndefined();
    expect(flight.stats().leaders).toBe(1);
  });

  it('runs calls unshared beyond maxKeys', async () => {
    const flight = new SingleFlight({ maxKeys: 2 });
    const d = deferred<string>();
    let runs = 0;
    const p1 = flight.do('a', () => (runs++, d.promise));
    const p2 = flight.do('b', () => (runs++, d.promise));
    const p3 = flight.do('c', () => (runs++, 'c1'));
    const p4 = flight.do('c', () => (runs++, 'c2'));
    expect(flight.size).toBe(2);
    expect(flight.has('c')).toBe(false);
    await expect(Promise.all([p3, p4])).resolves.toEqual(['c1', 'c2']);
    expect(runs).toBe(4);
    // existing keys still share
    const p5 = flight.do('a', () => (runs++, 'other'));
    d.resolve('ab');
    await expect(Promise.all([p1, p2, p5])).resolves.toEqual(['ab', 'ab', 'ab']);
    expect(runs).toBe(4);
  });

  it('clear forgets entries; close clears window timers and stops keeping results', async () => {
    const clock = new ManualClock();
    const flight = new SingleFlight({ shareWindowMs: 10_000, clock });
    await flight.do('a', () => 1);
    await flight.do('b', () => 2);
    expect(clock.pendingTimers).toBe(2);
    flight.clear();
    expect(flight.size).toBe(0);
    expect(clock.pendingTimers).toBe(0);
    await flight.do('a', () => 1);
    flight.close();
    expect(clock.pendingTimers).toBe(0);
    await flight.do('c', () => 3);
    expect(clock.pendingTimers).toBe(0);
    expect(flight.size).toBe(0);
  });

  describe('policy(key)', () => {
    it('shares one execution between callers of the same key', async () => {
      const flight = new SingleFlight();
      const d = deferred<string>();
      let runs = 0;
      const policy = flight.policy('k');
      const a = policy.execute(() => (runs++, d.promise));
      const b = flight.policy('k').execute(() => (runs++, 'other'));
      d.resolve('shared');
      await expect(Promise.all([a, b])).resolves.toEqual(['shared', 'shared']);
      expect(runs).toBe(1);
    });

    it("one caller's abort rejects only that caller; the run goes on for the others", async () => {
      const flight = new SingleFlight();
      const d = deferred<string>();
      let runSignal: AbortSignal | undefined;
      const leaderAbort = new AbortController();
      const leader = settle(
        flight.policy('k').execute(({ signal }) => ((runSignal = signal), d.promise), leaderAbort.signal),
      );
      const follower = flight.policy('k').execute(() => 'unused', new AbortController().signal);
      leaderAbort.abort('leader gone');
      const { error } = await leader;
      expect(error).toBeInstanceOf(AbortedError);
      expect((error as Error).cause).toBe('leader gone');
      expect(runSignal?.aborted).toBe(false);
      d.resolve('still useful');
      await expect(follower).resolves.toBe('still useful');
    });

    it('aborts the shared run once every caller aborted, and the next call starts afresh', async () => {
      const flight = new SingleFlight();
      let runSignal: AbortSignal | undefined;
      const a = new AbortController();
      const b = new AbortController();
      const first = settle(
        flight.policy('k').execute(({ signal }) => ((runSignal = signal), new Promise<never>(() => {})), a.signal),
      );
      const second = settle(flight.policy('k').execute(() => 'unused', b.signal));
      a.abort();
      expect(runSignal?.aborted).toBe(false);
      b.abort('all gone');
      expect((await first).error).toBeInstanceOf(AbortedError);
      expect((await second).error).toBeInstanceOf(AbortedError);
      expect(runSignal?.aborted).toBe(true);
      expect(runSignal?.reason).toBe('all gone');
      expect(flight.has('k')).toBe(false);
      await expect(flight.policy('k').execute(() => 'new run')).resolves.toBe('new run');
    });

    it('a caller without a signal keeps the run alive', async () => {
      const flight = new SingleFlight();
      const d = deferred<string>();
      let runSignal: AbortSignal | undefined;
      const a = new AbortController();
      const first = settle(flight.policy('k').execute(({ signal }) => ((runSignal = signal), d.promise), a.signal));
      const plain = flight.do('k', () => 'unused');
      a.abort();
      expect((await first).error).toBeInstanceOf(AbortedError);
      expect(runSignal?.aborted).toBe(false);
      d.resolve('done');
      await expect(plain).resolves.toBe('done');
    });

    it('rejects an already-aborted caller without running', async () => {
      const flight = new SingleFlight();
      let runs = 0;
      await expect(flight.policy('k').execute(() => ++runs, AbortSignal.abort())).rejects.toBeInstanceOf(AbortedError);
      expect(runs).toBe(0);
    });
  });

  it('rejects bad options naming the option', () => {
    const bad: Array<[unknown, string]> = [
      [{ shareWindowMs: -1 }, 'shareWindowMs'],
      [{ shareWindowMs: 1e12 }, 'shareWindowMs'],
      [{ maxKeys: 0 }, 'maxKeys'],
      [{ maxKeys: 1.5 }, 'maxKeys'],
      [{ clock: 'now' }, 'clock'],
      [{ window: 5 }, ''],
      ['x', ''],
    ];
    for (const [options, path] of bad) {
      const error = invalidOption(() => new SingleFlight(options as SingleFlightOptions), JSON.stringify(options));
      expect(error.issues[0]!.path, JSON.stringify(options)).toBe(path);
    }
  });
});
