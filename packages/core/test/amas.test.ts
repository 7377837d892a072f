import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { ManualClock } from '../src/clock.js';
import { createAmas, isAmas, resolveAmas } from '../src/amas.js';
import { BreakerOpenError, InvalidOptionError } from '../src/errors.js';
import { silentLogger } from '../src/logger.js';

describe('createAmas', () => {
  it('validates options at construction with path, value and expectation', () => {
    const bad: Array<[unknown, string, string]> = [
      [{ breakers: { openai: { failureThreshold: 'five' } } }, 'breakers.openai.failureThreshold', '"five"'],
      [{ limits: { perUser: { limit: 10, window: 'soon' } } }, 'limits.perUser', 'soon'],
      [{ http: { trustProxy: 'yes' } }, 'http.trustProxy', '"yes"'],
      [{ http: { rateLimitHeaders: 'old' } }, 'http.rateLimitHeaders', '"old"'],
      [{ metrics: { prefix: '9bad' } }, 'metrics.prefix', '"9bad"'],
      [{ htp: {} }, '', 'htp'],
      [{ clock: { now: 1 } }, 'clock', ''],
      [{ breakerDefaults: { recoveryTimeoutMs: -5 } }, 'breakerDefaults.recoveryTimeoutMs', '-5'],
      [{ http: { isFailureStatus: 500 } }, 'http.isFailureStatus', '500'],
      [{ http: { rejectionBody: 'json' } }, 'http.rejectionBody', '"json"'],
      [{ http: { identity: 'user' } }, 'http.identity', '"user"'],
      [{ http: { maxSharedBodyBytes: -1 } }, 'http.maxSharedBodyBytes', '-1'],
      [{ http: { responseTime: 'yes' } }, 'http.responseTime', '"yes"'],
      [{ http: { observeBreakers: 1 } }, 'http.observeBreakers', '1'],
      [{ http: { dedup: { key: 'k' } } }, 'http.dedup', '"k"'],
      [{ http: { limit: 'nope' } }, 'limit', 'nope'],
      [{ http: { breaker: 42 } }, 'http.breaker', '42'],
      [{ metrics: { maxRoutes: 0 } }, 'metrics.maxRoutes', '0'],
      [{ metrics: { buckets: [] } }, 'metrics.buckets', 'an array of 0'],
      [{ metrics: { registry: {} } }, 'metrics.registry', '{}'],
      [{ logger: console.log }, 'logger', 'a function'],
    ];
    for (const [options, path, value] of bad) {
      let error: unknown;
      try {
        createAmas(options as never);
      } catch (e) {
        error = e;
      }
      expect(error, JSON.stringify(options)).toBeInstanceOf(InvalidOptionError);
      const message = (error as Error).message;
      if (path) expect(message).toContain(path);
      expect(message).toContain(value);
    }
  });

  it('owns named breakers and limiters built from options', async () => {
    const clock = new ManualClock();
    const amas = createAmas({
      clock,
      logger: silentLogger,
      breakerDefaults: { failureThreshold: 2 },
      breakers: { openai: { failureThreshold: 1, recoveryTimeoutMs: 500 } },
      limits: { daily: { windows: [{ limit: 2, window: '1m' }, { limit: 3, window: '1d' }] } },
    });
    expect(amas.breaker('openai')).toBe(amas.breaker('openai'));
    await expect(amas.breaker('openai').execute(() => Promise.reject(new Error('down')))).rejects.toThrow('down');
    await expect(amas.breaker('openai').execute(() => 'x')).rejects.toBeInstanceOf(BreakerOpenError);
    await expect(amas.breaker('other').execute(() => Promise.reject(new Error('1')))).rejects.toThrow('1');
    expect(amas.breaker('other').getState()).toBe('closed');
    const limiter = amas.limiter('daily');
    expect((await limiter.check('u')).allowed).toBe(true);
    expect((await limiter.check('u')).allowed).toBe(true);
    expect((await limiter.check('u')).allowed).toBe(false);
    expect(() => amas.limiter('weekly')).toThrow(/weekly/);
    expect(isAmas(amas)).toBe(true);
    expect(resolveAmas(amas)).toEqual({ amas, owned: false });
    await amas.close();
    await amas.close();
    expect(amas.isClosed).toBe(true);
  });

  it('registers metrics in a registry the user passes and removes them on close', async () => {
    const registry = new Registry();
    const amas = createAmas({ logger: silentLogger, metrics: { registry, prefix: 'svc_amas_' } });
    expect((await registry.metrics())).toContain('svc_amas_http_requests_total');
    await amas.close();
    expect(await registry.metrics()).not.toContain('svc_amas_http_requests_total');
    // Two instances on two owned registries never collide.
    const a = createAmas({ logger: silentLogger });
    const b = createAmas({ logger: silentLogger });
    expect(a.registry).not.toBe(b.registry);
    await a.close();
    await b.close();
  });

  it('builds composed resilience with the instance clock', async () => {
    const clock = new ManualClock();
    const amas = createAmas({ clock, logger: silentLogger });
    const resilience = amas.resilience({ retry: amas.retry({ maxAttempts: 3, baseDelayMs: 100, jitter: 'none' }), breaker: amas.breaker('x') });
    let attempts = 0;
    const result = resilience.execute(() => {
      attempts++;
      if (attempts < 3) throw Object.assign(new Error('flaky'), { status: 503 });
      return 'ok';
    });
    await clock.advance(1000);
    await expect(result).resolves.toBe('ok');
    expect(attempts).toBe(3);
    await amas.close();
  });

  it('a custom http.isFailureStatus that throws falls back to status >= 500 and is logged once', async () => {
    const warnings: unknown[] = [];
    const amas = createAmas({
      logger: { warn: (...args: unknown[]) => warnings.push(args), error() {} },
      breakers: { up: { failureThreshold: 2 } },
      http: { breaker: 'up', isFailureStatus: () => { throw new Error('bad predicate'); } },
    });
    const route = amas.http.compile({}, '/x');
    for (const status of [404, 500, 502]) {
      const a = amas.http.admit({ method: 'GET', url: '/x', headers: {}, ip: '10.0.0.1' }, route);
      if (a instanceof Promise || a.action !== 'pass') throw new Error('expected pass');
      a.ticket.finish({ status });
    }
    expect(amas.breaker('up').getState()).toBe('open');
    expect(warnings).toHaveLength(1);
    await amas.close();
  });
});
