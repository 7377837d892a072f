import { describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { createAmas } from '../src/amas.js';
import { InvalidOptionError } from '../src/errors.js';
import { silentLogger } from '../src/logger.js';
import type { Admission } from '../src/http/pipeline.js';
import type { NeutralRequest } from '../src/http/neutral-request.js';

const req = (over: Partial<NeutralRequest> = {}): NeutralRequest => ({ method: 'GET', url: '/x', route: '/x', headers: {}, ip: '127.0.0.1', ...over });

function expectSync(admission: Admission | Promise<Admission>): Admission {
  expect(admission).not.toBeInstanceOf(Promise);
  return admission as Admission;
}

describe('HTTP pipeline', () => {
  it('zero config passes everything synchronously and records metrics and a watch-only breaker', async () => {
    const amas = createAmas({ logger: silentLogger });
    const route = amas.http.compile({});
    for (let i = 0; i < 10; i++) {
      const a = expectSync(amas.http.admit(req(), route));
      expect(a.action).toBe('pass');
      if (a.action !== 'pass') return;
      expect(a.ticket.headers).toBeUndefined();
      expect(Object.keys(a.ticket.timingHeaders())).toEqual(['x-response-time', 'server-timing']);
      a.ticket.finish({ status: 500 });
    }
    // Watch-only: the route's breaker opened (5 consecutive failures by default) but nothing is rejected.
    expect(amas.breaker('http:GET /x').getState()).toBe('open');
    expect(expectSync(amas.http.admit(req(), route)).action).toBe('pass');
    const text = (await amas.metrics.expose()).body;
    expect(text).toContain('amas_http_requests_total{route="/x",method="GET",status="500",outcome="server_error"} 10');
    await amas.close();
  });

  it('rejects over the limit with 429, Retry-After, IETF headers and the JSON body', async () => {
    const clock = new ManualClock();
    const amas = createAmas({ clock, logger: silentLogger, limits: { perUser: { limit: 2, window: '10s' } } });
    const route = amas.http.compile({ limit: 'perUser' }, '/x');
    const alice = req({ user: { id: 'alice' } });
    for (let i = 0; i < 2; i++) {
      const a = expectSync(amas.http.admit(alice, route));
      expect(a.action).toBe('pass');
      if (a.action === 'pass') {
        expect(a.ticket.headers).toMatchObject({ 'ratelimit-policy': '"perUser";q=2;w=10' });
        a.ticket.finish({ status: 200 });
      }
    }
    const denied = expectSync(amas.http.admit(alice, route));
    expect(denied.action).toBe('reject');
    if (denied.action !== 'reject') return;
    expect(denied.rejection.status).toBe(429);
    // Strict bucketed counting may make the wait a sub-bucket longer than the window.
    expect(denied.rejection.headers['retry-after']).toBe(String(Math.ceil(denied.rejection.error.retryAfterMs! / 1000)));
    expect(['10', '11']).toContain(denied.rejection.headers['retry-after']);
    expect(denied.rejection.headers.ratelimit).toMatch(/^"perUser";r=0;t=\d+$/);
    expect(denied.rejection.headers['x-response-time']).toBeDefined();
    expect(denied.rejection.body).toMatchObject({ error: { code: 'AMAS_RATE_LIMITED', status: 429 } });
    denied.ticket.finish({ status: 429, error: denied.rejection.error });
    expect(expectSync(amas.http.admit(req({ user: { id: 'bob' } }), route)).action).toBe('pass');
    const text = (await amas.metrics.expose()).body;
    expect(text).toContain('amas_ratelimit_decisions_total{limit="perUser",outcome="allowed"} 3');
    expect(text).toContain('amas_ratelimit_decisions_total{limit="perUser",outcome="limited"} 1');
    await clock.advance(10_001);
    expect(expectSync(amas.http.admit(alice, route)).action).toBe('pass');
    await amas.close();
  });

  it('an enforcing breaker rejects fast with 503 and counts 5xx (not 4xx) as failures', async () => {
    const clock = new ManualClock();
    const amas = createAmas({ clock, logger: silentLogger, breakers: { up: { failureThreshold: 2, recoveryTimeoutMs: 1000 } } });
    const route = amas.http.compile({ breaker: 'up' }, '/x');
    const run = (status: number) => {
      const a = expectSync(amas.http.admit(req(), route));
      if (a.action === 'pass') a.ticket.finish({ status });
      return a.action;
    };
    expect(run(404)).toBe('pass');
    expect(run(404)).toBe('pass');
    expect(amas.breaker('up').getState()).toBe('closed');
    run(500);
    run(503);
    expect(amas.breaker('up').getState()).toBe('open');
    const rejected = expectSync(amas.http.admit(req(), route));
    expect(rejected.action).toBe('reject');
    if (rejected.action === 'reject') {
      expect(rejected.rejection.status).toBe(503);
      expect(rejected.rejection.headers['retry-after']).toBe('1');
    }
    await clock.advance(1000);
    expect(run(200)).toBe('pass');
    expect(amas.breaker('up').getState()).toBe('closed');
    // A client that went away releases its probe without counting.
    await amas.close();
  });

  it('identical concurrent requests share one execution; a different body or user does not', async () => {
    const amas = createAmas({ logger: silentLogger });
    const route = amas.http.compile({ dedup: true }, '/chat');
    const post = (body: unknown, user = 'u1') => req({ method: 'POST', url: '/chat', body, user });
    const leader = expectSync(amas.http.admit(post({ a: 1, b: 2 }), route));
    expect(leader.action).toBe('pass');
    const followers = [amas.http.admit(post({ b: 2, a: 1 }), route), amas.http.admit(post({ a: 1, b: 2 }), route)];
    expect(followers[0]).toBeInstanceOf(Promise);
    expect(expectSync(amas.http.admit(post({ a: 2 }), route)).action).toBe('pass');
    expect(expectSync(amas.http.admit(post({ a: 1, b: 2 }, 'u2'), route)).action).toBe('pass');
    if (leader.action !== 'pass') return;
    expect(leader.ticket.leads).toBe(true);
    leader.ticket.finish({ status: 201, headers: { 'content-type': 'application/json', 'set-cookie': 'no', 'x-up': '1' }, body: Buffer.from('{"ok":1}') });
    for (const f of await Promise.all(followers)) {
      expect(f.action).toBe('replay');
      if (f.action === 'replay') {
        expect(f.response.status).toBe(201);
        expect(f.response.body.toString()).toBe('{"ok":1}');
        expect(f.response.headers).toEqual({ 'content-type': 'application/json', 'x-up': '1' });
      }
    }
    expect((await amas.metrics.expose()).body).toContain('amas_dedup_shared_total{route="/chat"} 2');
    await amas.close();
  });

  it('followers of an aborted leader run themselves instead of failing', async () => {
    const amas = createAmas({ logger: silentLogger });
    const route = amas.http.compile({ dedup: true }, '/chat');
    const leader = expectSync(amas.http.admit(req(), route));
    const follower = amas.http.admit(req(), route);
    if (leader.action === 'pass') leader.ticket.finish({ status: 200, aborted: true });
    const after = await follower;
    expect(after.action).toBe('pass');
    await amas.close();
  });

  it('route options are validated at compile time with the option path', async () => {
    const amas = createAmas({ logger: silentLogger });
    expect(() => amas.http.compile({ limit: { limit: 0, window: '1m' } }, '/x')).toThrow(InvalidOptionError);
    expect(() => amas.http.compile({ limit: 'nope' }, '/x')).toThrow(/nope/);
    expect(() => amas.http.compile({ dedup: 'yes' } as never, '/x')).toThrow(/dedup/);
    expect(() => amas.http.compile({ unknown: 1 } as never, '/x')).toThrow(/unknown/);
    expect(() => amas.http.compile({ identity: 'user' } as never, '/x')).toThrow(/identity.*"user"/s);
    expect(() => amas.http.compile({ skip: 'yes' } as never, '/x')).toThrow(/skip.*"yes"/s);
    expect(() => amas.http.compile({ breaker: { failureThreshold: 2 } } as never, '/x')).toThrow(/breaker/);
    expect(() => amas.http.compile({ limit: [{ limit: 1, window: '1m' }, 7] } as never, '/x')).toThrow(/limit\.1/);
    expect(() => amas.http.compile({ dedup: { key: 'k' } } as never, '/x')).toThrow(/dedup\.key/);
    expect(amas.http.compile({ skip: true }).skip).toBe(true);
    expect(expectSync(amas.http.admit(req(), amas.http.compile({ skip: true }))).action).toBe('skip');
    await amas.close();
  });

  it('a throwing rejection-body renderer falls back to the default body', async () => {
    const amas = createAmas({
      logger: silentLogger,
      http: { limit: { limit: 1, window: '1m' }, rejectionBody: () => { throw new Error('bad renderer'); } },
    });
    const route = amas.http.compile({});
    expectSync(amas.http.admit(req(), route));
    const denied = expectSync(amas.http.admit(req(), route));
    expect(denied.action === 'reject' && denied.rejection.body).toMatchObject({ error: { code: 'AMAS_RATE_LIMITED' } });
    await amas.close();
  });

  it('a nested route that sets its own options takes the outer admission back for those parts', async () => {
    const clock = new ManualClock();
    const amas = createAmas({
      clock,
      logger: silentLogger,
      limits: { global: { limit: 5, window: '1m' } },
      breakers: { up: { failureThreshold: 1 } },
      http: { limit: 'global', breaker: 'up', dedup: true },
    });
    const outerRoute = amas.http.compile({});
    const nested = amas.http.compile({ limit: false, breaker: false, dedup: false }, undefined, { nested: true });
    expect(nested.overrides).toEqual({ limit: true, breaker: true, dedup: true, response: false });
    const outer = expectSync(amas.http.admit(req(), outerRoute));
    if (outer.action !== 'pass') throw new Error('expected pass');
    const follower = amas.http.admit(req(), outerRoute); // waits on the outer leader
    expect(outer.ticket.withdraw(nested.overrides).sort()).toEqual(['ratelimit', 'ratelimit-policy']);
    // The follower was released to run itself, the limit charge given back, the breaker permit released.
    expect((await follower).action).toBe('pass');
    expect((await amas.limiter('global').getUsage('ip:127.0.0.1'))[0]!.used).toBe(1); // only the follower's own charge
    outer.ticket.finish({ status: 500 });
    expect(amas.breaker('up').getState()).toBe('closed');
    // Nothing set by the route: nothing withdrawn.
    const untouched = amas.http.compile({}, undefined, { nested: true });
    expect(untouched.overrides).toEqual({ limit: false, breaker: false, dedup: false, response: false });
    await amas.close();
  });
});
