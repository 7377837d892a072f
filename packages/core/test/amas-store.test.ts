/** The engine with a shared store: options, what becomes shared, and what it owns. */
import { describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { createAmas } from '../src/amas.js';
import { InvalidOptionError } from '../src/errors.js';
import { silentLogger } from '../src/logger.js';
import { SingleFlight } from '../src/policies/single-flight.js';
import { SharedSingleFlight } from '../src/policies/shared-single-flight.js';
import { StoreLimiter } from '../src/policies/store-limiter.js';
import { MemoryStore } from '../src/stores/memory-store.js';
import { RedisStore } from '../src/stores/redis-store.js';
import { invalidOption } from './helpers.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = () => `test:${Math.random().toString(36).slice(2, 8)}:`;

describe('createAmas with a shared store', () => {
  it('rejects bad store options with the option, the value and what was expected', () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ redis: 'http://127.0.0.1:6379' }, /redis: expected a redis:\/\/ or rediss:\/\/ URL/],
      [{ redis: { url: 'redis://127.0.0.1', commandTimeoutMs: 0 } }, /redis\.commandTimeoutMs/],
      [{ redis: { prefix: 'a b' } }, /prefix: expected a string without braces or whitespace/],
      [{ redis: 42 }, /redis/],
      [{ store: {} }, /store: expected a Store/],
      [{ store: new MemoryStore(), redis: REDIS_URL }, /store: expected either redis or store, not both/],
      [{ replicas: 0 }, /replicas/],
      [{ replicas: 1.5 }, /replicas/],
      [{ replicas: '4' }, /replicas/],
      [{ onStoreFailure: 'retry' }, /onStoreFailure: expected one of "local", "open", "closed"|onStoreFailure/],
    ];
    for (const [options, message] of cases) {
      const error = invalidOption(() => createAmas({ logger: silentLogger, ...options } as never));
      expect(error.message, String(message)).toMatch(message);
    }
  });

  it('without a store, limits stay in memory and decide synchronously', async () => {
    const amas = createAmas({ limits: { api: { limit: 2, window: '1m' } } });
    const limiter = amas.limiter('api');
    expect(limiter).not.toBeInstanceOf(StoreLimiter);
    // Typed as the in-memory Limiter (createAmas infers it from options without a store): no await needed.
    const decision: { allowed: boolean } = limiter.check('u');
    expect(decision.allowed).toBe(true);
    expect(amas.store).toBeUndefined();
    await amas.close();
  });

  it('with `store`, named and inline limits are store-backed and the store is left open on close', async () => {
    const store = new MemoryStore({ prefix: prefix() });
    const amas = createAmas({ store, limits: { api: { limit: 2, window: '1m' } } });
    const limiter = amas.limiter('api');
    expect(limiter).toBeInstanceOf(StoreLimiter);
    const decisions = await Promise.all([limiter.check('u'), limiter.check('u'), limiter.check('u')]);
    expect(decisions.map((d) => d.allowed)).toEqual([true, true, false]);
    const inline = amas.resolveLimiter({ limit: 1, window: '1s' }, 'test');
    expect(inline).toBeInstanceOf(StoreLimiter);
    // The same inline spec on another instance gets the same name, so replicas share its keys.
    const other = createAmas({ store, logger: silentLogger });
    expect(other.resolveLimiter({ window: '1s', limit: 1 }, 'test').name).toBe(inline.name);
    await other.close();
    await amas.close();
    expect(await store.set(store.key('still-open'), '1')).toBe(true);
    await store.close();
  });

  it('with `redis`, the instance owns a RedisStore and closes it', async () => {
    const amas = createAmas({ redis: { url: REDIS_URL, prefix: prefix() }, limits: { api: { limit: 1, window: '1m' } } });
    await amas.ready();
    expect(amas.store).toBeInstanceOf(RedisStore);
    const limiter = amas.limiter('api') as StoreLimiter;
    expect((await limiter.check('u')).source).toBe('store');
    expect((await limiter.check('u')).allowed).toBe(false);
    const store = amas.store as RedisStore;
    await amas.close();
    await expect(store.get('x')).rejects.toThrow(/closed/);
  });

  it('singleFlight({ shared }) builds a SharedSingleFlight on the store; without a store it is a clear error', async () => {
    const store = new MemoryStore({ prefix: prefix() });
    const a = createAmas({ store });
    const b = createAmas({ store });
    expect(a.singleFlight()).toBeInstanceOf(SingleFlight);
    const fa = a.singleFlight({ shared: true });
    const fb = b.singleFlight({ shared: { leaseMs: 5000 } });
    expect(fa).toBeInstanceOf(SharedSingleFlight);
    let runs = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const work = async () => {
      runs++;
      await gate;
      return { answer: 42 };
    };
    const both = Promise.all([fa.do('same', work), fb.do('same', work)]);
    await new Promise((r) => setTimeout(r, 20));
    release();
    expect(await both).toEqual([{ answer: 42 }, { answer: 42 }]);
    expect(runs).toBe(1);
    // The shared flight composes like the local one.
    const call = a.resilience({ dedup: fa, retry: a.retry({ maxAttempts: 1 }) });
    expect(await call.execute(async () => 'ok', { key: 'k' })).toBe('ok');
    await a.close();
    await b.close();
    await store.close();

    const alone = createAmas();
    const error = invalidOption(() => alone.singleFlight({ shared: true }));
    expect(error.message).toMatch(/shared: expected the engine to have a `redis` or `store` option/);
    await alone.close();
  });

  it('a shared breaker needs a store, and opens on every instance sharing it', async () => {
    expect(() => createAmas({ breakers: { openai: { shared: true } } }).breaker('openai')).toThrow(InvalidOptionError);
    const store = new MemoryStore({ prefix: prefix() });
    const a = createAmas({ store, breakers: { openai: { shared: true, failureThreshold: 1 } } });
    const b = createAmas({ store, breakers: { openai: { shared: true, failureThreshold: 1 } } });
    a.breaker('openai');
    b.breaker('openai');
    await Promise.all([a.ready(), b.ready()]);
    await a.breaker('openai').execute(async () => {
      throw new Error('upstream down');
    }).catch(() => undefined);
    await expect.poll(() => b.breaker('openai').getState(), { timeout: 2000, interval: 5 }).toBe('open');
    await a.close();
    await b.close();
    await store.close();
  });

  it('a constructor that fails on a bad route option closes the Redis connection it had opened', async () => {
    const name = `amas-leak-probe-${Math.random().toString(36).slice(2, 8)}`;
    const make = () =>
      createAmas({
        redis: { url: REDIS_URL, prefix: prefix(), redisOptions: { connectionName: name } },
        logger: silentLogger,
        http: { dedup: { shared: { leaseMs: 1 } } },
      });
    expect(make).toThrow(/dedup\.shared\.leaseMs/);
    const probe = new Redis(REDIS_URL);
    try {
      const deadline = Date.now() + 5000;
      let list = '';
      do {
        await new Promise((r) => setTimeout(r, 50));
        list = String(await probe.client('LIST'));
      } while (list.includes(`name=${name} `) && Date.now() < deadline);
      expect(list).not.toContain(`name=${name} `);
    } finally {
      probe.disconnect();
    }
  });

  it('fail-closed limits deny while the store is down, with a retry time', async () => {
    const amas = createAmas({
      redis: { url: 'redis://127.0.0.1:1', connectTimeoutMs: 200 },
      onStoreFailure: 'closed',
      limits: { api: { limit: 10, window: '1m' } },
      logger: silentLogger,
    });
    const decision = await (amas.limiter('api') as StoreLimiter).check('u');
    expect(decision.allowed).toBe(false);
    expect(decision.source).toBe('fail-closed');
    expect(decision.retryAfterMs).toBeGreaterThan(0);
    await amas.close();
  });
});
