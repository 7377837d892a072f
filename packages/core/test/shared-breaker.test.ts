import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { BreakerOpenError, StoreUnavailableError } from '../src/errors.js';
import { Emitter } from '../src/events.js';
import type { Logger } from '../src/logger.js';
import { BreakerRegistry } from '../src/policies/breaker-registry.js';
import { BREAKER_PROBE, BREAKER_READ, BREAKER_TRANSITION, encodeMessage } from '../src/policies/breaker-scripts.js';
import {
  CircuitBreaker,
  circuitBreakerOptionsSchema,
  type BreakerEvents,
  type BreakerPermit,
  type CircuitBreakerOptions,
} from '../src/policies/circuit-breaker.js';
import { SharedBreaker } from '../src/policies/shared-breaker.js';
import { MemoryStore } from '../src/stores/memory-store.js';
import { RedisStore } from '../src/stores/redis-store.js';
import type { ScriptArg, Store, StoreEvents, StoreMessageListener, StoreScript, StoreSubscription } from '../src/stores/store.js';
import { invalidOption, deferred } from './helpers.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const run = Math.random().toString(36).slice(2, 8);
const uniquePrefix = () => `test:sb:${run}:${Math.random().toString(36).slice(2, 8)}:`;

/** Lets queued store work and Pub/Sub deliveries (microtasks, immediates) run. */
async function settle(rounds = 8): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** Polls `check` until it holds or `timeoutMs` passes (for Redis round trips; never asserts on elapsed time). */
async function until(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}


function recordingLogger() {
  const warnings: string[] = [];
  const logger: Logger = { warn: (m) => void warnings.push(m), error: (m) => void warnings.push(m) };
  return { logger, warnings };
}

function stateChanges(breaker: CircuitBreaker) {
  const events: BreakerEvents['stateChange'][] = [];
  breaker.on('stateChange', (e) => events.push(e));
  return events;
}

const boom = () => Promise.reject(new Error('upstream down'));

async function fail(breaker: CircuitBreaker, times: number) {
  for (let i = 0; i < times; i++) await breaker.execute(boom).catch(() => undefined);
}

interface Replica {
  id: string;
  breaker: CircuitBreaker;
  shared: SharedBreaker;
}

/** Replicas of one breaker on one store (or one store each), all on one ManualClock. */
function makeCluster(options: { breaker?: CircuitBreakerOptions; probeLeaseMs?: number; stores?: Store[]; clock?: ManualClock } = {}) {
  const clock = options.clock ?? new ManualClock();
  const defaultStore = options.stores ? undefined : new MemoryStore({ clock, prefix: uniquePrefix() });
  const replicas: Replica[] = [];
  const log = recordingLogger();
  const add = async (id: string, store: Store = defaultStore ?? options.stores![replicas.length]!) => {
    const breaker = new CircuitBreaker({ name: 'upstream', clock, failureThreshold: 2, recoveryTimeoutMs: 10_000, ...options.breaker });
    const shared = new SharedBreaker(breaker, { store, replicaId: id, clock, logger: log.logger, probeLeaseMs: options.probeLeaseMs ?? 5_000 });
    await shared.ready;
    const replica = { id, breaker, shared };
    replicas.push(replica);
    return replica;
  };
  const close = async () => {
    await Promise.all(replicas.map((r) => r.shared.close()));
    await defaultStore?.close();
  };
  return { clock, store: defaultStore, add, replicas, close, warnings: log.warnings };
}

let cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

describe('SharedBreaker on MemoryStore (one process, ManualClock)', () => {
  async function cluster(options: Parameters<typeof makeCluster>[0] = {}) {
    const c = makeCluster(options);
    cleanup.push(c.close);
    return c;
  }

  it('opens in every replica when one opens, with the same timing, once, and says where it came from', async () => {
    const c = await cluster();
    const a = await c.add('A');
    const b = await c.add('B');
    const messages: string[] = [];
    const sub = await c.store!.subscribe('breaker:upstream', (m) => messages.push(m));
    const bEvents = stateChanges(b.breaker);

    await fail(a.breaker, 2);
    expect(a.breaker.getState()).toBe('open');
    await settle();

    expect(b.breaker.getState()).toBe('open');
    expect(bEvents).toEqual([{ name: 'upstream', from: 'closed', to: 'open', reason: 'consecutiveFailures', origin: 'A' }]);
    expect(b.breaker.stats().nextAttemptAt).toBe(c.clock.now() + 10_000);
    let ran = false;
    const error = await b.breaker
      .execute(() => {
        ran = true;
        return 'x';
      })
      .catch((e: unknown) => e);
    expect(ran).toBe(false);
    expect(error).toBeInstanceOf(BreakerOpenError);
    expect((error as BreakerOpenError).retryAfterMs).toBe(10_000);

    // One transition, one message: B applied it without publishing it back.
    await settle();
    expect(messages).toHaveLength(1);
    expect(JSON.parse(messages[0]!)).toMatchObject({ v: 1, state: 'open', reason: 'consecutiveFailures', origin: 'A', reopen: 0 });
    expect(a.shared.currentEpoch).toBe(b.shared.currentEpoch);
    await sub.unsubscribe();
  });

  it('a replica started later reads the shared state: open cluster-wide starts open, with the time left', async () => {
    const c = await cluster();
    const a = await c.add('A');
    await fail(a.breaker, 2);
    await settle();
    await c.clock.advance(4_000);

    const late = await c.add('late');
    expect(late.breaker.getState()).toBe('open');
    expect(late.breaker.stats().nextAttemptAt).toBe(c.clock.now() + 6_000);
    expect(late.breaker.tryAcquire()).toBeInstanceOf(BreakerOpenError);
  });

  it('a replica started while nothing is shared starts closed and writes nothing', async () => {
    const c = await cluster();
    const before = c.store!.health().commands;
    const a = await c.add('A');
    expect(a.breaker.getState()).toBe('closed');
    // Subscribe is not a command; the one read is.
    expect(c.store!.health().commands - before).toBe(1);
    expect(await c.store!.run(BREAKER_READ, [c.store!.key('breaker:upstream', 'state')], [])).toMatchObject({ record: undefined });
  });

  it('shares manual transitions: open(reason), isolate, close, reset', async () => {
    const c = await cluster();
    const a = await c.add('A');
    const b = await c.add('B');
    const bEvents = stateChanges(b.breaker);

    a.breaker.open('maintenance');
    await settle();
    expect(b.breaker.getState()).toBe('open');
    b.breaker.isolate();
    await settle();
    expect(a.breaker.getState()).toBe('isolated');
    a.breaker.close();
    await settle();
    expect(b.breaker.getState()).toBe('closed');
    a.breaker.open();
    await settle();
    b.breaker.reset();
    await settle();
    expect(a.breaker.getState()).toBe('closed');

    expect(bEvents.map((e) => [e.to, e.reason, e.origin])).toEqual([
      ['open', 'maintenance', 'A'],
      ['isolated', 'isolate', undefined],
      ['closed', 'manual', 'A'],
      ['open', 'manual', 'A'],
      ['closed', 'reset', undefined],
    ]);
  });

  it('re-opening an open breaker by hand re-arms the recovery time everywhere', async () => {
    const c = await cluster();
    const a = await c.add('A');
    const b = await c.add('B');
    a.breaker.open();
    await settle();
    await c.clock.advance(8_000);
    a.breaker.open();
    await settle();
    expect(b.breaker.stats().nextAttemptAt).toBe(c.clock.now() + 10_000);
  });

  it('ignores stale, duplicated, own and malformed messages; applies a newer one', async () => {
    const c = await cluster();
    const a = await c.add('A');
    const b = await c.add('B');
    a.breaker.open();
    await settle();
    const epoch = b.shared.currentEpoch;
    const now = c.clock.now();
    const send = (m: string) => c.store!.publish('breaker:upstream', m);

    await send(encodeMessage({ state: 'closed', epoch: epoch - 1, reason: 'late', origin: 'X', reopen: 0 }, now));
    await send(encodeMessage({ state: 'closed', epoch, reason: 'duplicate', origin: 'X', reopen: 0 }, now));
    await send(encodeMessage({ state: 'closed', epoch: epoch + 5, reason: 'mine', origin: 'B', reopen: 0 }, now));
    await send('not json');
    await send(JSON.stringify({ v: 2, state: 'closed', epoch: epoch + 9 }));
    await send(JSON.stringify({ v: 1, state: 'sideways', epoch: epoch + 9, reason: '', origin: 'X', reopen: 0, at: now }));
    await send(JSON.stringify({ v: 1, state: 'open', epoch: epoch + 9, reason: '', origin: 'X', reopen: 0, at: now })); // open without until
    await settle();
    expect(b.breaker.getState()).toBe('open');
    expect(b.shared.currentEpoch).toBe(epoch);

    await send(encodeMessage({ state: 'closed', epoch: epoch + 1, reason: 'newer', origin: 'X', reopen: 0 }, now));
    await settle();
    expect(b.breaker.getState()).toBe('closed');
    expect(b.shared.currentEpoch).toBe(epoch + 1);
  });

  it('a transition based on an outdated state loses to the shared one (compare-and-set on the epoch)', async () => {
    const c = await cluster();
    const a = await c.add('A');
    const b = await c.add('B');
    const key = c.store!.key('breaker:upstream', 'state');
    // Someone else closed it after an open this replica never heard of (their message was lost).
    const base = a.shared.currentEpoch;
    const opened = await c.store!.run(BREAKER_TRANSITION, [key], ['open', 'elsewhere', 'X', String(base), 10_000, 0, 60_000]);
    await c.store!.run(BREAKER_TRANSITION, [key], ['closed', 'probeSuccess', 'X', String(opened.record!.epoch), 0, 0, 60_000]);
    const bEvents = stateChanges(b.breaker);

    // B opens from failures it counted while closed at the old epoch: the newer shared 'closed' wins.
    await fail(b.breaker, 2);
    await settle();
    expect(b.breaker.getState()).toBe('closed');
    expect(bEvents.map((e) => [e.from, e.to, e.origin])).toEqual([
      ['closed', 'open', undefined],
      ['open', 'closed', 'X'],
    ]);
    const read = await c.store!.run(BREAKER_READ, [key], []);
    expect(read.record).toMatchObject({ state: 'closed', origin: 'X' });
    expect(a.breaker.getState()).toBe('closed');
  });

  it('while closed, calls never touch the store; while open, rejections do not either', async () => {
    const c = await cluster({ breaker: { failureThreshold: 3 } });
    const a = await c.add('A');
    await c.add('B');
    const before = c.store!.health().commands;
    for (let i = 0; i < 500; i++) await a.breaker.execute(() => 'ok');
    for (let i = 0; i < 200; i++) {
      const permit = a.breaker.acquire();
      if (i % 3 === 0) permit.failure(new Error('x'));
      else permit.success();
    }
    await fail(a.breaker, 2);
    expect(a.breaker.getState()).toBe('closed');
    await settle();
    expect(c.store!.health().commands).toBe(before);

    await fail(a.breaker, 1); // opens: one write, one publish
    await settle();
    const afterOpen = c.store!.health().commands;
    expect(afterOpen - before).toBe(2);
    for (let i = 0; i < 100; i++) await a.breaker.execute(() => 'never').catch(() => undefined);
    await settle();
    expect(c.store!.health().commands).toBe(afterOpen);
  });

  describe('half-open: probes limited cluster-wide', () => {
    it('execute: K=1 across three replicas sends one probe; its success closes every replica', async () => {
      const c = await cluster();
      const replicas = [await c.add('A'), await c.add('B'), await c.add('C')];
      await fail(replicas[0]!.breaker, 2);
      await settle();
      await c.clock.advance(10_000);

      let upstreamCalls = 0;
      const probe = deferred();
      const work = () => {
        upstreamCalls++;
        return probe.promise;
      };
      const settled: unknown[] = [];
      const outcomes = replicas.flatMap((r) =>
        Array.from({ length: 5 }, () => r.breaker.execute(work).then(() => 'ok', (e: unknown) => e)),
      );
      for (const o of outcomes) void o.then((v) => settled.push(v));
      await settle();
      expect(upstreamCalls).toBe(1);
      // Every call but the probe was turned away, by its own replica's slot or by the cluster-wide lease.
      expect(settled).toHaveLength(14);
      for (const e of settled) {
        expect(e).toBeInstanceOf(BreakerOpenError);
        expect((e as BreakerOpenError).details).toEqual({ breaker: 'upstream', state: 'half-open' });
        expect((e as BreakerOpenError).retryAfterMs).toBeGreaterThan(0);
      }

      probe.resolve('recovered');
      await settle();
      expect(settled.filter((v) => v === 'ok')).toHaveLength(1);
      for (const r of replicas) expect(r.breaker.getState()).toBe('closed');
      // Closed again: calls go straight to the upstream everywhere.
      await replicas[2]!.breaker.execute(() => 'fine');
    });

    it('a failed probe reopens every replica, with the backoff grown everywhere', async () => {
      const c = await cluster({ breaker: { recoveryBackoff: { multiplier: 2, maxMs: 100_000 } } });
      const [a, b] = [await c.add('A'), await c.add('B')];
      await fail(a.breaker, 2);
      await settle();
      await c.clock.advance(10_000);
      await expect(b.breaker.execute(boom)).rejects.toThrow('upstream down');
      await settle();
      for (const r of [a, b]) {
        expect(r.breaker.getState()).toBe('open');
        expect(r.breaker.stats().nextAttemptAt).toBe(c.clock.now() + 20_000);
      }
      // The next recovery, probed from A this time, backs off from the same point.
      await c.clock.advance(20_000);
      await expect(a.breaker.execute(boom)).rejects.toThrow('upstream down');
      await settle();
      expect(b.breaker.stats().nextAttemptAt).toBe(c.clock.now() + 40_000);
    });

    it('halfOpenMaxProbes K=2 allows two probes in the whole cluster', async () => {
      const c = await cluster({ breaker: { halfOpenMaxProbes: 2 } });
      const replicas = [await c.add('A'), await c.add('B'), await c.add('C')];
      replicas[1]!.breaker.open();
      await settle();
      await c.clock.advance(10_000);
      let upstreamCalls = 0;
      const hang = deferred();
      for (const r of replicas) for (let i = 0; i < 4; i++) r.breaker.execute(() => (upstreamCalls++, hang.promise)).catch(() => undefined);
      await settle();
      expect(upstreamCalls).toBe(2);
      hang.resolve('ok');
      await settle();
      for (const r of replicas) expect(r.breaker.getState()).toBe('closed');
    });

    it('tryAcquire: the first half-open call fetches a lease and is rejected, the next one probes', async () => {
      const c = await cluster();
      const [a, b] = [await c.add('A'), await c.add('B')];
      a.breaker.open();
      await settle();
      await c.clock.advance(10_000);

      const first = a.breaker.tryAcquire();
      expect(first).toBeInstanceOf(BreakerOpenError);
      expect((first as BreakerOpenError).retryAfterMs).toBe(1000);
      await settle();
      const permit = a.breaker.tryAcquire();
      expect(permit).not.toBeInstanceOf(BreakerOpenError);
      expect(a.breaker.stats().halfOpenInFlight).toBe(1);

      // B has no lease and cannot get one while A's probe runs.
      expect(b.breaker.tryAcquire()).toBeInstanceOf(BreakerOpenError);
      await settle();
      const denied = b.breaker.tryAcquire();
      expect(denied).toBeInstanceOf(BreakerOpenError);
      expect((denied as BreakerOpenError).retryAfterMs).toBe(1000);

      (permit as BreakerPermit).success();
      await settle();
      expect(a.breaker.getState()).toBe('closed');
      expect(b.breaker.getState()).toBe('closed');
    });

    it('a lease fetched for a call that never comes goes back after a short hold', async () => {
      const c = await cluster();
      const [a, b] = [await c.add('A'), await c.add('B')];
      a.breaker.open();
      await settle();
      await c.clock.advance(10_000);
      expect(a.breaker.tryAcquire()).toBeInstanceOf(BreakerOpenError); // fetches a lease A then never uses
      await settle();
      expect(b.breaker.tryAcquire()).toBeInstanceOf(BreakerOpenError);
      await settle();
      expect(b.breaker.tryAcquire()).toBeInstanceOf(BreakerOpenError); // busy: A holds the only slot

      await c.clock.advance(1_000); // A's hold ends, the slot is free; B's retry time too
      await settle();
      let probed = 0;
      await b.breaker.execute(() => (probed++, 'ok'));
      expect(probed).toBe(1);
      await settle();
      expect(a.breaker.getState()).toBe('closed');
    });

    it('a prober that never settles frees its slot after probeLeaseMs', async () => {
      const c = await cluster({ probeLeaseMs: 5_000 });
      const [a, b] = [await c.add('A'), await c.add('B')];
      a.breaker.open();
      await settle();
      await c.clock.advance(10_000);
      let calls = 0;
      void a.breaker.execute(() => (calls++, new Promise(() => {}))); // a replica that hangs mid-probe
      await settle();
      await expect(b.breaker.execute(() => (calls++, 'ok'))).rejects.toBeInstanceOf(BreakerOpenError);
      await c.clock.advance(4_999);
      await expect(b.breaker.execute(() => (calls++, 'ok'))).rejects.toBeInstanceOf(BreakerOpenError);
      await c.clock.advance(1);
      await expect(b.breaker.execute(() => (calls++, 'ok'))).resolves.toBe('ok');
      expect(calls).toBe(2);
      await settle();
      expect(a.breaker.getState()).toBe('closed');
    });

    it('a call waiting for a lease while another replica closes the breaker runs as a normal call', async () => {
      const c = await cluster();
      const [a, b] = [await c.add('A'), await c.add('B')];
      a.breaker.open();
      await settle();
      await c.clock.advance(10_000);
      const probe = deferred();
      const aCall = a.breaker.execute(() => probe.promise);
      await settle();
      probe.resolve('ok');
      const bCall = b.breaker.execute(() => 'b ran'); // asks for a lease; by the answer, A's close has landed
      await expect(aCall).resolves.toBe('ok');
      await expect(bCall).resolves.toBe('b ran');
      expect(b.breaker.getState()).toBe('closed');
    });

    it('the lease script: K holders, busy with the wait, stale for another epoch, release frees a slot', async () => {
      const clock = new ManualClock();
      const store = new MemoryStore({ clock, prefix: uniquePrefix() });
      cleanup.push(() => store.close());
      const keys = [store.key('breaker:x', 'state'), store.key('breaker:x', 'probes')];
      const half = await store.run(BREAKER_TRANSITION, [keys[0]!], ['half-open', 'recoveryTimeout', 'A', '', 0, 0, 60_000]);
      const epoch = String(half.record!.epoch);
      const acquire = (holder: string) => store.run(BREAKER_PROBE, keys, ['acquire', epoch, holder, 2, 1_000]);
      expect((await acquire('h1')).code).toBe(1);
      await clock.advance(300);
      expect((await acquire('h2')).code).toBe(1);
      expect(await acquire('h3')).toMatchObject({ code: 0, waitMs: 700 });
      expect(await store.run(BREAKER_PROBE, keys, ['acquire', String(Number(epoch) - 1), 'h4', 2, 1_000])).toMatchObject({
        code: -1,
        record: { state: 'half-open', epoch: Number(epoch) },
      });
      await store.run(BREAKER_PROBE, keys, ['release', epoch, 'h1', 0, 0]);
      expect((await acquire('h3')).code).toBe(1);
    });
  });

  describe('when the store fails', () => {
    it('decides locally (logged once), then publishes what it decided when the store is back', async () => {
      const clock = new ManualClock();
      const memory = new MemoryStore({ clock, prefix: uniquePrefix() });
      const flaky = new FlakyStore(memory);
      const c = makeCluster({ clock, stores: [flaky, memory] });
      cleanup.push(async () => {
        await c.close();
        await memory.close();
      });
      const a = await c.add('A');
      const b = await c.add('B');

      flaky.goDown();
      await fail(a.breaker, 2);
      await settle();
      expect(a.breaker.getState()).toBe('open');
      expect(b.breaker.getState()).toBe('closed');
      // Half-open without the store: the local probe limit alone applies.
      await clock.advance(10_000);
      await expect(a.breaker.execute(boom)).rejects.toThrow('upstream down');
      await settle();
      expect(a.breaker.getState()).toBe('open');
      expect(c.warnings).toHaveLength(1);
      expect(c.warnings[0]).toContain('circuit breaker "upstream": shared store unavailable');

      flaky.comeBack();
      await settle();
      expect(b.breaker.getState()).toBe('open');
      expect(b.breaker.stats().nextAttemptAt).toBe(a.breaker.stats().nextAttemptAt);
      expect(c.warnings).toHaveLength(1);
    });

    it('adopts what the others decided while it was cut off', async () => {
      const clock = new ManualClock();
      const memory = new MemoryStore({ clock, prefix: uniquePrefix() });
      const flaky = new FlakyStore(memory);
      const c = makeCluster({ clock, stores: [flaky, memory] });
      cleanup.push(async () => {
        await c.close();
        await memory.close();
      });
      const a = await c.add('A');
      const b = await c.add('B');
      flaky.goDown();
      await fail(b.breaker, 2);
      await settle();
      expect(a.breaker.getState()).toBe('closed'); // the message was lost with the connection

      flaky.comeBack();
      await settle();
      expect(a.breaker.getState()).toBe('open');
      expect(a.shared.currentEpoch).toBe(b.shared.currentEpoch);
    });

    it('a replica that starts while the store is down works locally and syncs once it is up', async () => {
      const clock = new ManualClock();
      const memory = new MemoryStore({ clock, prefix: uniquePrefix() });
      const flaky = new FlakyStore(memory);
      const c = makeCluster({ clock, stores: [memory, flaky] });
      cleanup.push(async () => {
        await c.close();
        await memory.close();
      });
      const a = await c.add('A');
      a.breaker.open();
      await settle();
      flaky.goDown();
      const b = await c.add('B'); // ready resolves even though nothing could be read
      expect(b.breaker.getState()).toBe('closed');
      await b.breaker.execute(() => 'local');
      flaky.comeBack();
      await settle();
      expect(b.breaker.getState()).toBe('open');
      // And it now hears transitions: its subscription was made when the store came back.
      a.breaker.close();
      await settle();
      expect(b.breaker.getState()).toBe('closed');
    });
  });

  describe('through BreakerRegistry', () => {
    it('syncs the breakers marked shared, and only those', async () => {
      const clock = new ManualClock();
      const store = new MemoryStore({ clock, prefix: uniquePrefix() });
      const options = {
        clock,
        store,
        defaults: { failureThreshold: 1, recoveryTimeoutMs: 5_000 },
        breakers: { openai: { shared: true }, local: {}, tuned: { shared: { probeLeaseMs: 2_000 } } },
      };
      const one = new BreakerRegistry({ ...options, replicaId: 'one' });
      const two = new BreakerRegistry({ ...options, replicaId: 'two' });
      cleanup.push(async () => {
        await one.close();
        await two.close();
        await store.close();
      });
      for (const r of [one, two]) for (const name of ['openai', 'local', 'tuned']) r.get(name);
      await Promise.all([one.ready(), two.ready()]);
      expect(one.shared('openai')).toBeInstanceOf(SharedBreaker);
      expect(one.shared('local')).toBeUndefined();
      expect(one.shared('openai')!.replicaId).toBe('one');

      const events: BreakerEvents['stateChange'][] = [];
      two.on('stateChange', (e) => events.push(e));
      await fail(one.get('openai'), 1);
      await fail(one.get('local'), 1);
      await settle();
      expect(two.get('openai').getState()).toBe('open');
      expect(two.get('local').getState()).toBe('closed');
      expect(events).toEqual([{ name: 'openai', from: 'closed', to: 'open', reason: 'consecutiveFailures', origin: 'one' }]);

      // After close() a registry no longer hears the others.
      await two.close();
      one.get('openai').close();
      await settle();
      expect(two.get('openai').getState()).toBe('closed'); // a fresh breaker: the old one was disposed
    });

    it('an override can make a breaker shared when it is created', async () => {
      const clock = new ManualClock();
      const store = new MemoryStore({ clock, prefix: uniquePrefix() });
      const one = new BreakerRegistry({ clock, store });
      const two = new BreakerRegistry({ clock, store });
      cleanup.push(async () => {
        await one.close();
        await two.close();
        await store.close();
      });
      const a = one.get('x', { shared: true, failureThreshold: 1 });
      const b = two.get('x', { shared: true });
      await Promise.all([one.ready(), two.ready()]);
      await fail(a, 1);
      await settle();
      expect(b.getState()).toBe('open');
    });

    it('validates the shared options: path, value and what was expected', () => {
      const store = new MemoryStore();
      cleanup.push(() => store.close());
      const cases: Array<[unknown, string, string, string]> = [
        ['yes', 'breakers.openai.shared', '"yes"', 'true, false or { probeLeaseMs?, stateTtlMs? }'],
        [null, 'breakers.openai.shared', 'null', 'true, false or { probeLeaseMs?, stateTtlMs? }'],
        [{ probeLeaseMs: 0 }, 'breakers.openai.shared.probeLeaseMs', '0', 'a number > 0'],
        [{ probeLeaseMs: 1.5 }, 'breakers.openai.shared.probeLeaseMs', '1.5', 'int'],
        [{ stateTtlMs: 1e10 }, 'breakers.openai.shared.stateTtlMs', '10000000000', 'a number <= 2147483647'],
        [{ leaseMs: 1 }, 'breakers.openai.shared', '{"leaseMs":1}', 'no unknown keys (unknown: leaseMs)'],
      ];
      for (const [shared, path, received, expected] of cases) {
        const error = invalidOption(() => new BreakerRegistry({ store, breakers: { openai: { shared } as CircuitBreakerOptions } }));
        expect(error.issues).toEqual([{ path, received, expected }]);
      }
      expect(invalidOption(() => new BreakerRegistry({ store, defaults: { shared: -1 as never } })).issues[0]!.path).toBe('defaults.shared');
      expect(circuitBreakerOptionsSchema.safeParse({ shared: { probeLeaseMs: 100 } }).success).toBe(true);
    });

    it('refuses shared without a store, and a store that is not one', () => {
      const missing = invalidOption(() => new BreakerRegistry({ breakers: { openai: { shared: true } } }));
      expect(missing.issues).toEqual([
        { path: 'breakers.openai.shared', received: 'true', expected: 'a `store` in the registry options to share through (none was given)' },
      ]);
      expect(missing.message).toContain('circuit breaker registry options');
      expect(invalidOption(() => new BreakerRegistry({ defaults: { shared: { probeLeaseMs: 10 } } })).issues[0]!.path).toBe('defaults.shared');
      expect(invalidOption(() => new BreakerRegistry().get('x', { shared: true })).issues[0]!.path).toBe('breaker "x" overrides.shared');
      expect(invalidOption(() => new BreakerRegistry({ store: { kind: 'redis' } as never })).issues).toEqual([
        { path: 'store', received: '{"kind":"redis"}', expected: 'a Store (MemoryStore, RedisStore)' },
      ]);
      // shared: false needs nothing.
      new BreakerRegistry({ breakers: { openai: { shared: false } } }).get('openai');
    });

    it('SharedBreaker validates its own options', () => {
      const breaker = new CircuitBreaker({ name: 'v' });
      expect(invalidOption(() => new SharedBreaker(breaker, { store: undefined as never })).issues[0]).toMatchObject({ path: 'store' });
      const store = new MemoryStore();
      cleanup.push(() => store.close());
      const error = invalidOption(() => new SharedBreaker(breaker, { store, probeLeaseMs: -5, replicaId: '' }));
      expect(error.message).toContain('shared circuit breaker "v" options');
      expect(error.issues.map((i) => i.path).sort()).toEqual(['probeLeaseMs', 'replicaId']);
    });
  });
});

/**
 * A Store whose connection can be cut: while down, every call rejects StoreUnavailableError, `available` is
 * false and messages to its subscribers are lost (as on a dropped Redis connection). Emits down/up.
 */
class FlakyStore implements Store {
  readonly kind = 'memory' as const;
  private down = false;
  private readonly events = new Emitter<StoreEvents & Record<string, unknown>>();

  constructor(private readonly inner: MemoryStore) {}

  get prefix() {
    return this.inner.prefix;
  }
  get available() {
    return !this.down;
  }
  goDown() {
    this.down = true;
    this.events.emit('down', { error: new StoreUnavailableError('cut') });
  }
  comeBack() {
    this.down = false;
    this.events.emit('up', { downForMs: 0 });
  }
  private guard() {
    if (this.down) throw new StoreUnavailableError('FlakyStore is down');
  }
  key(tag: string, ...rest: string[]) {
    return this.inner.key(tag, ...rest);
  }
  async run<R>(script: StoreScript<R>, keys: string[], args: ScriptArg[]) {
    this.guard();
    return this.inner.run(script, keys, args);
  }
  async get(key: string) {
    this.guard();
    return this.inner.get(key);
  }
  async set(key: string, value: string, options?: { ttlMs?: number; ifAbsent?: boolean }) {
    this.guard();
    return this.inner.set(key, value, options);
  }
  async delete(key: string) {
    this.guard();
    return this.inner.delete(key);
  }
  async getBuffer(key: string) {
    this.guard();
    return this.inner.getBuffer(key);
  }
  async getMany(keys: readonly string[]) {
    this.guard();
    return this.inner.getMany(keys);
  }
  async setMany(entries: Parameters<Store['setMany']>[0]) {
    this.guard();
    return this.inner.setMany(entries);
  }
  async deleteMany(keys: readonly string[]) {
    this.guard();
    return this.inner.deleteMany(keys);
  }
  async deleteByPrefix(prefix: string) {
    this.guard();
    return this.inner.deleteByPrefix(prefix);
  }
  async increment(key: string, by?: number, ttlMs?: number) {
    this.guard();
    return this.inner.increment(key, by, ttlMs);
  }
  async publish(channel: string, message: string) {
    this.guard();
    return this.inner.publish(channel, message);
  }
  async subscribe(channel: string, listener: StoreMessageListener): Promise<StoreSubscription> {
    this.guard();
    return this.inner.subscribe(channel, (m, ch) => {
      if (!this.down) listener(m, ch);
    });
  }
  health() {
    return this.inner.health();
  }
  on<E extends keyof StoreEvents>(event: E, listener: (payload: StoreEvents[E]) => void) {
    return this.events.on(event, listener as never);
  }
  async close() {}
}

describe('SharedBreaker when only its own store call failed (the store reported no outage)', () => {
  it('retries by itself: a transition written but not announced (its PUBLISH failed) is announced again', async () => {
    const clock = new ManualClock();
    const inner = new MemoryStore({ clock, prefix: uniquePrefix() });
    // A's first PUBLISH fails (say, it timed out under load); the store never reports going down or up.
    let failPublish = true;
    const flaky = Object.create(inner) as MemoryStore;
    flaky.publish = async (channel, message) => {
      if (failPublish) {
        failPublish = false;
        throw new StoreUnavailableError('publish timed out');
      }
      return inner.publish(channel, message);
    };
    const c = makeCluster({ clock, stores: [flaky, inner] });
    cleanup.push(async () => {
      await c.close();
      await inner.close();
    });
    const a = await c.add('A');
    const b = await c.add('B');
    await fail(a.breaker, 2);
    expect(a.breaker.getState()).toBe('open');
    expect(failPublish).toBe(false); // the announcement was lost
    // B has no transition of its own to learn from: only A's retry (real time, about a second) tells it.
    await until(() => b.breaker.getState() === 'open', 'B to adopt the open breaker', 5000);
    expect(c.warnings.filter((w) => /shared store unavailable/.test(w))).toHaveLength(1);
  });
});

describe('SharedBreaker on Redis (two connections, real Pub/Sub)', () => {
  const stores: RedisStore[] = [];
  const redisStore = async (clock?: ManualClock, prefix?: string) => {
    const store = new RedisStore({ url: REDIS_URL, prefix, ...(clock ? { clock } : {}), logger: { warn() {}, error() {} } });
    await store.ready();
    stores.push(store);
    return store;
  };
  afterAll(async () => {
    // Leave nothing behind on the shared Redis (stores of the stopped private server just fail here).
    for (const s of stores) {
      for (const tag of ['breaker:upstream', 'breaker:x']) {
        for (const part of ['state', 'probes']) await s.delete(s.key(tag, part)).catch(() => undefined);
      }
    }
    await Promise.all(stores.map((s) => s.close()));
  });

  it('opens the other replica within one Pub/Sub hop; a late replica starts open; one probe for three replicas', async () => {
    const clock = new ManualClock();
    const prefix = uniquePrefix();
    // Scripts read Redis server time; the breakers' ManualClock only measures their own waits.
    const c = makeCluster({ clock, stores: [await redisStore(undefined, prefix), await redisStore(undefined, prefix), await redisStore(undefined, prefix)] });
    cleanup.push(c.close);
    const a = await c.add('A');
    const b = await c.add('B');
    const bEvents = stateChanges(b.breaker);

    await fail(a.breaker, 2);
    await until(() => b.breaker.getState() === 'open', 'B to open');
    expect(bEvents).toEqual([{ name: 'upstream', from: 'closed', to: 'open', reason: 'consecutiveFailures', origin: 'A' }]);
    // Times travel as "ms left" computed on Redis's clock, so B's wait is A's, whatever the hosts' clocks say.
    expect(b.breaker.stats().nextAttemptAt! - clock.now()).toBeLessThanOrEqual(10_000);
    expect(b.breaker.stats().nextAttemptAt! - clock.now()).toBeGreaterThan(9_000);

    const late = await c.add('C');
    expect(late.breaker.getState()).toBe('open');

    await clock.advance(10_000);
    let upstreamCalls = 0;
    const probe = deferred();
    const outcomes = [a, b, late].flatMap((r) =>
      Array.from({ length: 4 }, () => r.breaker.execute(() => (upstreamCalls++, probe.promise)).then(() => 'ok', (e: unknown) => e)),
    );
    let settled = 0;
    for (const o of outcomes) void o.then(() => settled++);
    await until(() => settled === outcomes.length - 1, 'every call but the probe to be rejected');
    expect(upstreamCalls).toBe(1);
    probe.resolve('ok');
    await until(() => [a, b, late].every((r) => r.breaker.getState() === 'closed'), 'every replica to close');
    expect((await Promise.all(outcomes)).filter((o) => o === 'ok')).toHaveLength(1);
  });

  it('the scripts behave the same on Redis with a test clock: CAS, leases, busy wait, expiry', async () => {
    const clock = new ManualClock();
    const store = await redisStore(clock, uniquePrefix());
    const keys = [store.key('breaker:x', 'state'), store.key('breaker:x', 'probes')];
    const opened = await store.run(BREAKER_TRANSITION, [keys[0]!], ['open', 'consecutiveFailures', 'A', '', 10_000, 1, 60_000]);
    expect(opened).toEqual({
      code: 1,
      now: clock.now(),
      record: { state: 'open', epoch: clock.now(), reason: 'consecutiveFailures', origin: 'A', openedAt: clock.now(), until: clock.now() + 10_000, reopen: 1 },
    });
    const stale = await store.run(BREAKER_TRANSITION, [keys[0]!], ['closed', 'probeSuccess', 'B', String(opened.record!.epoch - 1), 0, 0, 60_000]);
    expect(stale).toMatchObject({ code: 0, record: { state: 'open', origin: 'A' } });
    const half = await store.run(BREAKER_TRANSITION, [keys[0]!], ['half-open', 'recoveryTimeout', 'B', String(opened.record!.epoch), 0, 1, 60_000]);
    expect(half.record).toMatchObject({ state: 'half-open', epoch: opened.record!.epoch + 1, reopen: 1 });
    expect(half.record!.until).toBeUndefined();
    const epoch = String(half.record!.epoch);
    const acquire = (holder: string) => store.run(BREAKER_PROBE, keys, ['acquire', epoch, holder, 1, 1_000]);
    expect(await acquire('h1')).toEqual({ code: 1, now: clock.now(), record: undefined, waitMs: 0 });
    await clock.advance(400);
    expect(await acquire('h2')).toMatchObject({ code: 0, waitMs: 600 });
    await clock.advance(600);
    expect((await acquire('h2')).code).toBe(1); // h1's lease ran out
    await store.run(BREAKER_PROBE, keys, ['release', epoch, 'h2', 0, 0]);
    expect((await acquire('h3')).code).toBe(1);
    expect((await store.run(BREAKER_PROBE, keys, ['acquire', String(Number(epoch) + 1), 'h4', 1, 1_000])).code).toBe(-1);
  });

  it('a replica whose Redis restarts (data lost) decides locally, then re-publishes and is heard again', async () => {
    const { startRedisServer, stopAllRedis } = await import('../../../test/support/redis-servers.js');
    const server = await startRedisServer();
    cleanup.push(async () => {
      await server.stop();
      await stopAllRedis();
    });
    const clock = new ManualClock();
    const prefix = uniquePrefix();
    const sa = new RedisStore({ url: server.url, prefix, logger: { warn() {}, error() {} } });
    const sb = new RedisStore({ url: server.url, prefix, logger: { warn() {}, error() {} } });
    await Promise.all([sa.ready(), sb.ready()]);
    stores.push(sa, sb);
    const c = makeCluster({ clock, stores: [sa, sb] });
    cleanup.push(c.close);
    const a = await c.add('A');
    const b = await c.add('B');

    await server.kill();
    await until(() => !sa.available, 'A to see Redis down');
    await fail(a.breaker, 2);
    expect(a.breaker.getState()).toBe('open');
    await server.restart();
    await until(() => b.breaker.getState() === 'open', 'B to hear the open decided during the outage', 10_000);
    expect(c.warnings.length).toBeGreaterThanOrEqual(1);
    a.breaker.close();
    await until(() => b.breaker.getState() === 'closed', 'B to hear A again');
  });
});
