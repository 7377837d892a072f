import { createHash, randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock, systemClock } from '../src/clock.js';
import { AbortedError, InvalidOptionError, RateLimitedError, StoreUnavailableError, TimeoutError } from '../src/errors.js';
import type { Logger } from '../src/logger.js';
import { compose } from '../src/policies/compose.js';
import {
  deserializeWithBuffers,
  serializeWithBuffers,
  RemoteCallError,
  SharedSingleFlight,
  type SharedSingleFlightOptions,
} from '../src/policies/shared-single-flight.js';
import { Lease, LEASE_ACQUIRE } from '../src/stores/lease-scripts.js';
import { MemoryStore } from '../src/stores/memory-store.js';
import { RedisStore } from '../src/stores/redis-store.js';
import type { Store } from '../src/stores/store.js';
import { invalidOption, deferred, settle } from './helpers.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const uniquePrefix = () => `test:ssf:${randomBytes(4).toString('hex')}:`;



/** Collects warnings so tests can assert an outage is logged once. */
function recordingLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return { warnings, warn: (m: string) => warnings.push(m), error: (m: string) => warnings.push(m) };
}

/** A store that forwards to `inner`, with hooks to lose messages or break it. */
function wrapStore(inner: Store, hooks: { dropPublish?: boolean; available?: () => boolean; failRuns?: () => boolean; subscribeGate?: Promise<void> } = {}): Store {
  return {
    kind: inner.kind,
    prefix: inner.prefix,
    key: (tag, ...rest) => inner.key(tag, ...rest),
    run: (script, keys, args, options) =>
      hooks.failRuns?.() ? Promise.reject(new StoreUnavailableError('test: store down')) : inner.run(script, keys, args, options),
    get: (key) => inner.get(key),
    getBuffer: (key) => inner.getBuffer(key),
    getMany: (keys) => inner.getMany(keys),
    set: (key, value, options) => inner.set(key, value, options),
    setMany: (entries) => inner.setMany(entries),
    delete: (key) => inner.delete(key),
    deleteMany: (keys) => inner.deleteMany(keys),
    deleteByPrefix: (prefix) => inner.deleteByPrefix(prefix),
    increment: (key, by, ttl) => inner.increment(key, by, ttl),
    publish: (channel, message) => (hooks.dropPublish ? Promise.resolve() : inner.publish(channel, message)),
    subscribe: async (channel, listener) => {
      await hooks.subscribeGate;
      return inner.subscribe(channel, listener);
    },
    get available() {
      return hooks.available ? hooks.available() : inner.available;
    },
    health: () => inner.health(),
    on: (event, listener) => inner.on(event, listener),
    close: () => inner.close(),
  };
}

const tag = (key: string) => `df:${createHash('sha1').update(key).digest('hex')}`;

// ---------------------------------------------------------------------------------------------------------

describe('SharedSingleFlight on a MemoryStore (replicas = instances sharing one store)', () => {
  const cleanups: Array<() => unknown> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  function setup(options: Partial<SharedSingleFlightOptions> = {}, storeFor?: (store: MemoryStore, i: number) => Store) {
    const clock = new ManualClock();
    const store = new MemoryStore({ clock, prefix: uniquePrefix() });
    const logger = recordingLogger();
    const make = (i: number) => {
      const flight = new SharedSingleFlight({ store: storeFor ? storeFor(store, i) : store, clock, logger, leaseMs: 300, pollIntervalMs: 1_000, ...options });
      cleanups.push(() => flight.close());
      return flight;
    };
    cleanups.push(() => store.close());
    /** Lets every store round trip and message settle without moving time. */
    const flush = async () => {
      for (let i = 0; i < 5; i++) await clock.advance(0);
    };
    return { clock, store, logger, make, flush };
  }

  it('runs concurrent identical calls on two replicas once; both get the value', async () => {
    const { make, flush, store } = setup();
    const [a, b] = [make(0), make(1)];
    const d = deferred<{ answer: number }>();
    let runs = 0;
    const pa = a.do('prompt', () => (runs++, d.promise));
    await flush();
    expect(store.space.get(store.key(tag('prompt'), 'lease'))).toBeTypeOf('string');
    const pb = b.do('prompt', () => (runs++, { answer: -1 }));
    await flush();
    d.resolve({ answer: 42 });
    expect(await pa).toEqual({ answer: 42 });
    expect(await pb).toEqual({ answer: 42 });
    expect(runs).toBe(1);
    expect(a.stats()).toMatchObject({ leaders: 1, remoteFollowers: 0, takeovers: 0 });
    expect(b.stats()).toMatchObject({ leaders: 0, remoteFollowers: 1, takeovers: 0, fallbacks: 0 });
    // The lease is released and the outcome kept for late waiters, under the hashed key.
    expect(store.space.has(store.key(tag('prompt'), 'lease'))).toBe(false);
    expect(store.space.get<string>(store.key(tag('prompt'), 'result'))).toMatch(/^v:\d+:[0-9a-f]{24}:\{"answer":42\}$/);
  });

  it('collapses local callers first: N calls on each replica make one cross-process attempt each', async () => {
    const { make, flush } = setup();
    const [a, b] = [make(0), make(1)];
    const d = deferred<string>();
    let runs = 0;
    const fn = () => (runs++, d.promise);
    const calls = Array.from({ length: 5 }, () => a.do('k', fn));
    await flush();
    calls.push(...Array.from({ length: 5 }, () => b.do('k', fn)));
    await flush();
    d.resolve('one');
    expect(await Promise.all(calls)).toEqual(Array(10).fill('one'));
    expect(runs).toBe(1);
    expect(a.stats()).toMatchObject({ leaders: 1, localFollowers: 4 });
    expect(b.stats()).toMatchObject({ remoteFollowers: 1, localFollowers: 4 });
  });

  it('keeps different keys apart, and a call after the outcome runs again (no share window by default)', async () => {
    const { make, flush, clock } = setup();
    const [a, b] = [make(0), make(1)];
    let runs = 0;
    const [x, y] = await Promise.all([a.do('x', () => (runs++, 'X')), b.do('y', () => (runs++, 'Y'))]);
    expect([x, y, runs]).toEqual(['X', 'Y', 2]);
    // The outcome of 'x' is still readable (for late waiters) but a new caller does not take it.
    await clock.advance(10);
    expect(await b.do('x', () => (runs++, 'X2'))).toBe('X2');
    expect(runs).toBe(3);
    await flush();
  });

  it('serves a value completed within shareWindowMs to new callers on other replicas', async () => {
    const { make, clock } = setup({ shareWindowMs: 1_000 });
    const [a, b] = [make(0), make(1)];
    let runs = 0;
    expect(await a.do('k', () => (runs++, 'fresh'))).toBe('fresh');
    await clock.advance(999);
    expect(await b.do('k', () => (runs++, 'again'))).toBe('fresh');
    await clock.advance(1);
    expect(await b.do('k', () => (runs++, 'again'))).toBe('again');
    expect(runs).toBe(2);
  });

  it('shares the holder error: same name, message, code and status; AMAS errors keep their class and retryAfterMs', async () => {
    const { make, flush } = setup();
    const [a, b] = [make(0), make(1)];
    const d = deferred<string>();
    const pa = settle(a.do('k', () => d.promise));
    await flush();
    const pb = settle(b.do('k', () => 'never'));
    await flush();
    const upstream = Object.assign(new TypeError('upstream reset'), { code: 'ECONNRESET', status: 502 });
    d.reject(upstream);
    expect((await pa).error).toBe(upstream);
    const shared = (await pb).error as RemoteCallError;
    expect(shared).toBeInstanceOf(RemoteCallError);
    expect(shared).toMatchObject({ name: 'TypeError', message: 'upstream reset', code: 'ECONNRESET', status: 502, statusCode: 502, remote: true });
    expect(b.stats().remoteFollowers).toBe(1);

    // Errors are not kept: the next call runs.
    expect(await b.do('k', () => 'ok')).toBe('ok');

    const limited = deferred<string>();
    const pc = settle(a.do('rl', () => limited.promise));
    await flush();
    const pd = settle(b.do('rl', () => 'never'));
    await flush();
    limited.reject(new RateLimitedError('provider says slow down', { retryAfterMs: 1_500, details: { provider: 'p1' } }));
    await pc;
    const rl = (await pd).error as RateLimitedError;
    expect(rl).toBeInstanceOf(RateLimitedError);
    expect(rl).toMatchObject({ code: 'AMAS_RATE_LIMITED', status: 429, retryAfterMs: 1_500, message: 'provider says slow down', details: { provider: 'p1' } });
  });

  it('does not share results above maxResultBytes: the waiter runs the call itself', async () => {
    const { make, flush, store } = setup({ maxResultBytes: 100 });
    const [a, b] = [make(0), make(1)];
    const notShared: unknown[] = [];
    a.on('notShared', (e) => notShared.push(e));
    const d = deferred<string>();
    let runs = 0;
    const pa = a.do('big', () => (runs++, d.promise));
    await flush();
    const pb = b.do('big', () => (runs++, 'b ran it'));
    await flush();
    d.resolve('é'.repeat(60)); // 60 characters, 122 bytes as UTF-8 JSON
    expect(await pa).toBe('é'.repeat(60));
    expect(await pb).toBe('b ran it');
    expect(runs).toBe(2);
    expect(a.stats().tooLarge).toBe(1);
    expect(b.stats()).toMatchObject({ unshared: 1, remoteFollowers: 0 });
    expect(notShared).toEqual([{ key: 'big', reason: 'too-large', bytes: 122 }]);
    expect(store.space.get<string>(store.key(tag('big'), 'result'))).toMatch(/^n:\d+:[0-9a-f]{24}:too-large$/);
  });

  it('keeps the lease of a long call alive by renewing it, so nobody takes over', async () => {
    const { make, flush, clock } = setup({ leaseMs: 300, pollIntervalMs: 50 });
    const [a, b] = [make(0), make(1)];
    const d = deferred<string>();
    let runs = 0;
    const pa = a.do('slow', () => (runs++, d.promise));
    await flush();
    const pb = b.do('slow', () => (runs++, 'b'));
    await flush();
    await clock.advance(3_000); // ten leases long
    expect(runs).toBe(1);
    d.resolve('done');
    expect([await pa, await pb]).toEqual(['done', 'done']);
    expect(b.stats().takeovers).toBe(0);
  });

  it('lets exactly one waiter take over when the holder dies (stops renewing); the others get its result', async () => {
    const { make, flush, clock, store } = setup({ leaseMs: 300, pollIntervalMs: 10_000 });
    const [a, b, c] = [make(0), make(1), make(2)];
    const takeovers: string[] = [];
    let runs = 0;
    const upstream = deferred<string>();
    void a.do('k', () => (runs++, new Promise<string>(() => {}))); // hangs forever
    await flush();
    const pb = b.do('k', () => (runs++, upstream.promise));
    const pc = c.do('k', () => (runs++, upstream.promise));
    b.on('takeover', () => takeovers.push('b'));
    c.on('takeover', () => takeovers.push('c'));
    await flush();
    await a.close(); // "kill" the holder: its renewals stop, its lease lapses within leaseMs
    await clock.advance(299);
    expect(runs).toBe(1);
    await clock.advance(2); // past the lease: the waiters re-claim at its expiry, not at the 10 s poll
    expect(runs).toBe(2);
    expect(takeovers).toHaveLength(1);
    upstream.resolve('from the taker');
    expect([await pb, await pc]).toEqual(['from the taker', 'from the taker']);
    expect(runs).toBe(2);
    expect(b.stats().takeovers + c.stats().takeovers).toBe(1);
    expect(b.stats().remoteFollowers + c.stats().remoteFollowers).toBe(1);
    expect(store.space.has(store.key(tag('k'), 'lease'))).toBe(false);
    await flush();
  });

  it('hands the call to a waiter at once when the holder run is aborted (no error shared)', async () => {
    const { make, flush } = setup({ leaseMs: 10_000, pollIntervalMs: 10_000 });
    const [a, b] = [make(0), make(1)];
    const chain = compose(a.policy('k'));
    const controller = new AbortController();
    let runs = 0;
    const pa = settle(
      chain.execute(
        ({ signal }) =>
          new Promise<string>((_, reject) => {
            runs++;
            signal.addEventListener('abort', () => reject(new AbortedError('run aborted')));
          }),
        controller.signal,
      ),
    );
    await flush();
    const pb = b.do('k', () => (runs++, 'b ran it'));
    await flush();
    controller.abort();
    expect((await pa).error).toBeInstanceOf(AbortedError);
    await flush(); // no time passes: the release message wakes the waiter
    expect(await pb).toBe('b ran it');
    expect(runs).toBe(2);
    expect(b.stats().takeovers).toBe(1);
  });

  it('falls back to polling when the Pub/Sub message is lost', async () => {
    const { make, flush, clock } = setup({ pollIntervalMs: 100, leaseMs: 10_000 }, (store, i) => (i === 0 ? wrapStore(store, { dropPublish: true }) : store));
    const [a, b] = [make(0), make(1)];
    const d = deferred<string>();
    const pa = a.do('k', () => d.promise);
    await flush();
    let got: string | undefined;
    void b.do('k', () => 'b').then((v) => (got = v));
    await flush();
    d.resolve('polled');
    await pa;
    await flush();
    expect(got).toBeUndefined(); // no message arrives
    await clock.advance(100);
    await flush();
    expect(got).toBe('polled');
    expect(b.stats().remoteFollowers).toBe(1);
  });

  it('reads an outcome published before its subscription was active (no lost wake-up)', async () => {
    const gate = deferred<void>();
    const { make, flush } = setup({ pollIntervalMs: 10_000_000, leaseMs: 10_000 }, (store, i) => (i === 1 ? wrapStore(store, { subscribeGate: gate.promise }) : store));
    const [a, b] = [make(0), make(1)];
    const d = deferred<string>();
    const pa = a.do('k', () => d.promise);
    await flush();
    const pb = b.do('k', () => 'b'); // claims, then hangs in subscribe
    await flush();
    d.resolve('early');
    await pa; // published while b was not yet subscribed
    gate.resolve();
    expect(await pb).toBe('early');
  });

  it('round-trips Buffers and undefined through the default serializer, and uses a custom one when given', async () => {
    expect(deserializeWithBuffers(serializeWithBuffers({ body: Buffer.from([0, 1, 254, 255]), n: [1, 'two'] }))).toEqual({ body: Buffer.from([0, 1, 254, 255]), n: [1, 'two'] });
    expect(Buffer.isBuffer(deserializeWithBuffers(serializeWithBuffers(Buffer.from('hi'))))).toBe(true);
    expect(deserializeWithBuffers(serializeWithBuffers(new Uint8Array([7, 8])))).toEqual(Buffer.from([7, 8]));
    expect(deserializeWithBuffers(serializeWithBuffers(undefined))).toBeUndefined();

    const { make, flush } = setup();
    const [a, b] = [make(0), make(1)];
    for (const value of [{ audio: Buffer.from('RIFF....WAVE') }, undefined, null, 0, '']) {
      const d = deferred<unknown>();
      const pa = a.do('v', () => d.promise);
      await flush();
      const pb = b.do('v', () => 'not this');
      await flush();
      d.resolve(value);
      expect(await pa).toBe(value);
      expect(await pb).toEqual(value);
    }
    expect(b.stats().remoteFollowers).toBe(5);

    const custom = setup({ serialize: (v) => `<${String(v)}>`, deserialize: (t) => t.slice(1, -1).toUpperCase() });
    const [c, e] = [custom.make(0), custom.make(1)];
    const d = deferred<string>();
    const pc = c.do('v', () => d.promise);
    await custom.flush();
    const pe = e.do('v', () => 'x');
    await custom.flush();
    d.resolve('abc');
    expect([await pc, await pe]).toEqual(['abc', 'ABC']);
  });

  it('does not share a result that cannot be serialized (logged once); the waiter runs the call', async () => {
    const { make, flush, logger } = setup();
    const [a, b] = [make(0), make(1)];
    const d = deferred<unknown>();
    const pa = a.do('k', () => d.promise);
    await flush();
    const pb = b.do('k', () => 'b ran it');
    await flush();
    d.resolve({ n: 10n });
    expect(await pa).toEqual({ n: 10n });
    expect(await pb).toBe('b ran it');
    expect(logger.warnings.filter((w) => w.includes('could not be serialized'))).toHaveLength(1);
  });

  it('degrades to in-process dedup while the store is unavailable, logs once, and recovers by itself', async () => {
    let up = false;
    const { make, flush, logger } = setup({}, (store) => wrapStore(store, { available: () => up }));
    const a = make(0);
    const d = deferred<string>();
    let runs = 0;
    const calls = [a.do('k', () => (runs++, d.promise)), a.do('k', () => (runs++, d.promise))];
    d.resolve('local');
    expect(await Promise.all(calls)).toEqual(['local', 'local']);
    expect(await a.do('k2', () => (runs++, 'x'))).toBe('x');
    expect(runs).toBe(2);
    expect(a.stats()).toMatchObject({ fallbacks: 2, localFollowers: 1, leaders: 0 });
    expect(logger.warnings).toHaveLength(1);
    up = true;
    expect(await a.do('k3', () => 'shared again')).toBe('shared again');
    expect(a.stats()).toMatchObject({ fallbacks: 2, leaders: 1 });
    await flush();
  });

  it('runs the call itself when a store command fails (StoreUnavailableError)', async () => {
    let failing = true;
    const { make, logger } = setup({}, (store) => wrapStore(store, { failRuns: () => failing }));
    const a = make(0);
    expect(await a.do('k', () => 'ran')).toBe('ran');
    expect(await a.do('k', () => 'ran again')).toBe('ran again');
    expect(a.stats().fallbacks).toBe(2);
    expect(logger.warnings).toHaveLength(1);
    expect(logger.warnings[0]).toContain('test: store down');
    failing = false;
    expect(await a.do('k', () => 'normal')).toBe('normal');
    expect(a.stats().leaders).toBe(1);
  });

  it('rejects a waiter with TimeoutError after waitTimeoutMs while the holder still runs', async () => {
    const { make, flush, clock } = setup({ waitTimeoutMs: 500, leaseMs: 300, pollIntervalMs: 100 });
    const [a, b] = [make(0), make(1)];
    const d = deferred<string>();
    const pa = a.do('k', () => d.promise);
    await flush();
    const pb = settle(b.do('k', () => 'never'));
    await flush();
    await clock.advance(500);
    const { error } = await pb;
    expect(error).toBeInstanceOf(TimeoutError);
    expect(b.stats().waitTimeouts).toBe(1);
    d.resolve('late');
    expect(await pa).toBe('late');
  });

  it('close() rejects waiting callers with AbortedError and leaves no timer or subscription behind', async () => {
    const { make, flush, clock } = setup({ waitTimeoutMs: 60_000 });
    const [a, b] = [make(0), make(1)];
    const baseline = clock.pendingTimers; // the store's sweep timer
    const d = deferred<string>();
    const pa = a.do('k', () => d.promise);
    await flush();
    const pb = settle(b.do('k', () => 'never'));
    await flush();
    expect(clock.pendingTimers).toBeGreaterThan(baseline);
    await b.close();
    expect((await pb).error).toBeInstanceOf(AbortedError);
    await a.close();
    await flush();
    expect(clock.pendingTimers).toBe(baseline);
    // A closed instance still answers, with in-process dedup only.
    expect(await b.do('k', () => 'after close')).toBe('after close');
    d.resolve('x');
    expect(await pa).toBe('x');
  });

  it('rejects bad options with InvalidOptionError naming the option', () => {
    const store = new MemoryStore();
    cleanups.push(() => store.close());
    const make = (o: unknown) => () => new SharedSingleFlight(o as SharedSingleFlightOptions);
    expect(invalidOption(make(undefined)).issues[0]).toMatchObject({ path: 'store' });
    expect(invalidOption(make({ store: {} })).issues[0]).toMatchObject({ path: 'store', expected: 'a Store (MemoryStore or RedisStore)' });
    expect(invalidOption(make({ store, leaseMs: 5 })).issues[0]).toMatchObject({ path: 'leaseMs', received: '5' });
    expect(invalidOption(make({ store, leaseMs: 1e10 })).issues[0]).toMatchObject({ path: 'leaseMs' });
    expect(invalidOption(make({ store, resultTtlMs: 0 })).issues[0]).toMatchObject({ path: 'resultTtlMs' });
    expect(invalidOption(make({ store, pollIntervalMs: -1 })).issues[0]).toMatchObject({ path: 'pollIntervalMs' });
    expect(invalidOption(make({ store, pollIntervalMs: 2.5 })).issues[0]).toMatchObject({ path: 'pollIntervalMs' });
    expect(invalidOption(make({ store, maxResultBytes: '1MB' })).issues[0]).toMatchObject({ path: 'maxResultBytes', received: '"1MB"' });
    expect(invalidOption(make({ store, waitTimeoutMs: 0 })).issues[0]).toMatchObject({ path: 'waitTimeoutMs' });
    expect(invalidOption(make({ store, shareWindowMs: -5 })).issues[0]).toMatchObject({ path: 'shareWindowMs' });
    expect(invalidOption(make({ store, serialize: JSON.stringify })).issues[0]).toMatchObject({ path: 'deserialize' });
    expect(invalidOption(make({ store, serialize: 'json', deserialize: JSON.parse })).issues[0]).toMatchObject({ path: 'serialize' });
    expect(invalidOption(make({ store, clock: {} })).issues[0]).toMatchObject({ path: 'clock' });
    expect(invalidOption(make({ store, logger: console.log })).issues[0]).toMatchObject({ path: 'logger' });
    const unknown = invalidOption(make({ store, lease: 1000 }));
    expect(unknown.message).toContain('lease');
    expect(unknown).toBeInstanceOf(InvalidOptionError);
    expect(() => new SharedSingleFlight({ store, leaseMs: 10, resultTtlMs: 1, pollIntervalMs: 1, maxResultBytes: 1, shareWindowMs: 0 }).close()).not.toThrow();
  });
});

describe('Lease (owner-token lease scripts)', () => {
  it('acquires, renews and releases only with its own token', async () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ clock });
    const key = store.key('lease-test', 'lease');
    const first = await Lease.acquire(store, key, 100);
    expect(first).toBeDefined();
    expect(await Lease.acquire(store, key, 100)).toBeUndefined();
    const taken = await store.run(LEASE_ACQUIRE, [key], ['other', 100]);
    expect(taken).toEqual({ acquired: false, holder: first!.token, ttlMs: 100 });
    const stranger = new Lease(store, key, 'stranger', 100);
    expect(await stranger.renew()).toBe(false);
    expect(await stranger.release()).toBe(false);
    await clock.advance(90);
    expect(await first!.renew()).toBe(true);
    await clock.advance(90);
    expect(store.space.has(key)).toBe(true); // 180 ms after acquiring a 100 ms lease: the renewal counted
    const lost: string[] = [];
    const stop = first!.keepAlive({ clock, intervalMs: 5, onLost: () => lost.push('lost') });
    await clock.advance(1_000);
    expect(store.space.has(key)).toBe(true);
    stop();
    expect(await first!.release()).toBe(true);
    expect(store.space.has(key)).toBe(false);
    // A lapsed lease is reported once and renewal stops.
    const second = (await Lease.acquire(store, key, 100))!;
    const stop2 = second.keepAlive({ clock, intervalMs: 200, onLost: () => lost.push('lost') });
    await clock.advance(1_000);
    expect(lost).toEqual(['lost']);
    stop2();
    await store.close();
  });
});

// ---------------------------------------------------------------------------------------------------------

describe('SharedSingleFlight on real Redis (two RedisStores in one process)', () => {
  const cleanups: Array<() => unknown> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function redisPair(options: Partial<SharedSingleFlightOptions> = {}, wrap?: (store: Store, i: number) => Store) {
    const prefix = uniquePrefix();
    const stores = [new RedisStore({ url: REDIS_URL, prefix, logger: recordingLogger() }), new RedisStore({ url: REDIS_URL, prefix, logger: recordingLogger() })];
    cleanups.push(async () => {
      // Every key expires by itself; delete them anyway so the shared Redis stays tidy.
      const keys = await stores[0]!.connection.keys(`${prefix}*`);
      if (keys.length) await stores[0]!.connection.del(...keys);
      await Promise.all(stores.map((s) => s.close()));
    });
    await Promise.all(stores.map((s) => s.ready()));
    const flights = stores.map((store, i) => {
      const flight = new SharedSingleFlight({ store: wrap ? wrap(store, i) : store, logger: recordingLogger(), leaseMs: 2_000, pollIntervalMs: 5_000, ...options });
      cleanups.push(() => flight.close());
      return flight;
    });
    /** Resolves once `count` connections subscribe to the channel of `key` (i.e. that many replicas wait). */
    const waiting = async (key: string, count = 1) => {
      const channel = `${prefix}${tag(key)}`;
      await until(async () => {
        const reply = (await stores[0]!.connection.call('PUBSUB', 'NUMSUB', channel)) as [string, number];
        return Number(reply[1]) >= count;
      }, `${count} waiter(s) on ${key}`);
    };
    return { stores, flights: flights as [SharedSingleFlight, SharedSingleFlight], waiting, prefix };
  }

  it('runs concurrent identical calls once across two stores; different keys run separately', async () => {
    const { flights: [a, b], waiting } = await redisPair();
    const d = deferred<{ text: string; raw: Buffer }>();
    let runs = 0;
    const pa = a.do('same prompt', () => (runs++, d.promise));
    await until(() => runs === 1, 'a runs');
    const pb = b.do('same prompt', () => (runs++, { text: 'dup', raw: Buffer.alloc(0) }));
    await waiting('same prompt');
    d.resolve({ text: 'answer', raw: Buffer.from([1, 2, 3]) });
    expect(await pa).toEqual({ text: 'answer', raw: Buffer.from([1, 2, 3]) });
    const fromB = await pb;
    expect(fromB).toEqual({ text: 'answer', raw: Buffer.from([1, 2, 3]) });
    expect(Buffer.isBuffer(fromB.raw)).toBe(true);
    expect(runs).toBe(1);
    expect(b.stats()).toMatchObject({ remoteFollowers: 1, leaders: 0, fallbacks: 0 });

    const [x, y] = await Promise.all([a.do('key x', () => (runs++, 'X')), b.do('key y', () => (runs++, 'Y'))]);
    expect([x, y, runs]).toEqual(['X', 'Y', 3]);
  });

  it('handles very long keys (hashed) and many concurrent callers on both replicas', async () => {
    const { flights: [a, b], waiting } = await redisPair();
    const key = 'p'.repeat(100_000);
    const d = deferred<string>();
    let runs = 0;
    const calls = Array.from({ length: 10 }, () => a.do(key, () => (runs++, d.promise)));
    await until(() => runs === 1, 'a runs');
    calls.push(...Array.from({ length: 10 }, () => b.do(key, () => (runs++, d.promise))));
    await waiting(key);
    d.resolve('long');
    expect(new Set(await Promise.all(calls))).toEqual(new Set(['long']));
    expect(runs).toBe(1);
  });

  it('does not share a too-large result: both replicas run the call', async () => {
    const { flights: [a, b], waiting } = await redisPair({ maxResultBytes: 1_000 });
    const d = deferred<string>();
    let runs = 0;
    const pa = a.do('big', () => (runs++, d.promise));
    await until(() => runs === 1, 'a runs');
    const pb = b.do('big', () => (runs++, 'b ran it'));
    await waiting('big');
    d.resolve('x'.repeat(1_001));
    expect((await pa).length).toBe(1_001);
    expect(await pb).toBe('b ran it');
    expect(runs).toBe(2);
    expect(a.stats().tooLarge).toBe(1);
    expect(b.stats().unshared).toBe(1);
  });

  it('shares a result too big for a Pub/Sub message (re-read from the result key)', async () => {
    const { flights: [a, b], waiting } = await redisPair();
    const big = randomBytes(300 * 1024); // 400 KiB as base64: above the inline message limit, below 1 MiB
    const d = deferred<Buffer>();
    const pa = a.do('large', () => d.promise);
    const pb = b.do('large', () => Buffer.alloc(0));
    await waiting('large');
    d.resolve(big);
    expect((await pa).equals(big)).toBe(true);
    expect((await pb).equals(big)).toBe(true);
    expect(b.stats()).toMatchObject({ remoteFollowers: 1, leaders: 0, fallbacks: 0 });
  });

  it('shares the holder error', async () => {
    const { flights: [a, b], waiting } = await redisPair();
    const d = deferred<string>();
    const pa = settle(a.do('err', () => d.promise));
    const pb = settle(b.do('err', () => 'never'));
    await waiting('err');
    d.reject(Object.assign(new Error('provider 500'), { code: 'E_UPSTREAM', status: 500 }));
    expect(((await pa).error as Error).message).toBe('provider 500');
    expect((await pb).error).toMatchObject({ name: 'Error', message: 'provider 500', code: 'E_UPSTREAM', status: 500, remote: true });
  });

  it('falls back to polling when the holder publishes nothing', async () => {
    const { flights: [a, b], waiting } = await redisPair({ pollIntervalMs: 50 }, (store, i) => (i === 0 ? wrapStore(store, { dropPublish: true }) : store));
    const d = deferred<string>();
    let runs = 0;
    const pa = a.do('quiet', () => (runs++, d.promise));
    await until(() => runs === 1, 'a runs');
    const pb = b.do('quiet', () => (runs++, 'b'));
    await waiting('quiet');
    d.resolve('found by polling');
    expect(await pa).toBe('found by polling');
    expect(await pb).toBe('found by polling');
    expect(runs).toBe(1);
  });

  it('lets a waiter take over when the holder stops renewing; its lease lapses', async () => {
    const { flights: [a, b], stores, waiting, prefix } = await redisPair({ leaseMs: 200 });
    let runs = 0;
    void a.do('orphan', () => (runs++, new Promise<string>(() => {})));
    await until(() => runs === 1, 'a runs');
    const pb = b.do('orphan', () => (runs++, 'taken over'));
    await waiting('orphan');
    await a.close(); // renewals stop, as if the process had died
    expect(await pb).toBe('taken over');
    expect(runs).toBe(2);
    expect(b.stats().takeovers).toBe(1);
    expect(await stores[0]!.connection.exists(`${prefix}{${tag('orphan')}}:lease`)).toBe(0);
  });
});

/** Polls `check` until it holds; the deadline only turns a hang into a failure, it measures nothing. */
async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = systemClock.now() + timeoutMs;
  while (!(await check())) {
    if (systemClock.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
