import type { AddressInfo } from 'node:net';
import {
  BreakerOpenError,
  InvalidOptionError,
  ManualClock,
  RateLimitedError,
  createAmas,
  isAmasError,
  type AmasOptions,
} from '@amas/core';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import amasDefault, { amas, amasErrorHandler, metricsHandler, type AmasFastifyOptions } from '../src/index.js';

const apps: FastifyInstance[] = [];

afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

/** A Fastify app with AMAS registered (awaited, so every route declared afterwards is covered). */
async function createApp(options?: AmasFastifyOptions, fastifyOptions: Record<string, unknown> = {}): Promise<FastifyInstance> {
  const app = Fastify(fastifyOptions);
  apps.push(app);
  // A stand-in for an auth plugin: sets request.user from a header before AMAS admits the request.
  app.decorateRequest('user', null);
  app.addHook('onRequest', (request, _reply, done) => {
    const id = request.headers['x-user'];
    if (typeof id === 'string') (request as FastifyRequest & { user: unknown }).user = { id };
    done();
  });
  await app.register(amas, options ?? {});
  return app;
}

async function listen(app: FastifyInstance): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' });
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
}

function get(base: string, path: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(base + path, { headers });
}

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

describe('zero configuration', () => {
  it('adds timing headers, never rejects and exposes metrics', async () => {
    const app = await createApp();
    app.get('/hello', async () => ({ hello: 'world' }));
    app.get('/metrics', { config: { amas: { skip: true } } }, metricsHandler());
    const base = await listen(app);

    for (let i = 0; i < 30; i++) {
      const res = await get(base, '/hello');
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ hello: 'world' });
      expect(res.headers.get('x-response-time')).toMatch(/^\d+\.\d{3}ms$/);
      expect(res.headers.get('server-timing')).toMatch(/^total;dur=\d+\.\d{3}$/);
      expect(res.headers.get('ratelimit')).toBeNull();
    }

    const metrics = await get(base, '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toContain('text/plain');
    expect(metrics.headers.get('x-response-time')).toBeNull(); // skipped route
    const text = await metrics.text();
    expect(text).toContain('amas_http_requests_total');
    expect(text).toMatch(/amas_http_requests_total\{route="\/hello",method="GET",status="200",outcome="success"\} 30/);
    expect(text).not.toMatch(/route="\/metrics"/);
  });

  it('decorates the app with the instance and works as the default export', async () => {
    const app = Fastify();
    apps.push(app);
    await app.register(amasDefault);
    expect(isAmasError(app.amas)).toBe(false);
    expect(typeof app.amas.breaker).toBe('function');
    expect(app.amas.isClosed).toBe(false);
  });

  it('does not cover routes registered before the plugin', async () => {
    const app = Fastify();
    apps.push(app);
    app.get('/early', async () => 'early');
    await app.register(amas);
    app.get('/late', async () => 'late');
    const base = await listen(app);
    expect((await get(base, '/early')).headers.get('x-response-time')).toBeNull();
    expect((await get(base, '/late')).headers.get('x-response-time')).not.toBeNull();
  });
});

describe('rate limits', () => {
  const limited = (clock: ManualClock): AmasOptions => ({
    clock,
    limits: { perUser: { limit: 2, window: '1m' } },
    http: { limit: 'perUser' },
  });

  it('answers 429 with retry-after, RateLimit headers and a JSON body once a user is over the limit', async () => {
    const clock = new ManualClock();
    const app = await createApp(limited(clock));
    let calls = 0;
    app.get('/chat', async () => ({ ok: ++calls }));
    const base = await listen(app);

    const first = await get(base, '/chat', { 'x-user': 'alice' });
    expect(first.status).toBe(200);
    // One list member per window; the member's name is core's choice (limit or window name).
    expect(first.headers.get('ratelimit-policy')).toMatch(/^"[\w-]+";q=2;w=60$/);
    expect(first.headers.get('ratelimit')).toMatch(/^"[\w-]+";r=1;t=6[01]$/);
    expect((await get(base, '/chat', { 'x-user': 'alice' })).status).toBe(200);

    const res = await get(base, '/chat', { 'x-user': 'alice' });
    expect(res.status).toBe(429);
    expect(calls).toBe(2);
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(res.headers.get('retry-after')).toMatch(/^6[01]$/);
    expect(res.headers.get('ratelimit-policy')).toMatch(/^"[\w-]+";q=2;w=60$/);
    expect(res.headers.get('ratelimit')).toMatch(/^"[\w-]+";r=0;t=6[01]$/);
    expect(res.headers.get('x-response-time')).toMatch(/ms$/);
    expect(res.headers.get('server-timing')).toMatch(/^total;dur=/);
    const body = (await res.json()) as { error: Record<string, unknown> };
    expect(body).toEqual({
      error: { code: 'AMAS_RATE_LIMITED', message: expect.stringContaining('perUser'), status: 429, retryAfterMs: expect.any(Number) },
    });

    // Waiting as long as advertised is enough.
    await clock.advance(body.error.retryAfterMs as number);
    expect((await get(base, '/chat', { 'x-user': 'alice' })).status).toBe(200);

    const text = await app.amas.metrics.expose();
    expect(text.body).toMatch(/amas_http_requests_total\{route="\/chat",method="GET",status="429",outcome="rate_limited"\} 1/);
  });

  it("sends limit headers with every admitted reply, and a handler's own header of the same name wins", async () => {
    const app = await createApp(limited(new ManualClock()));
    app.get('/plain', async () => ({ ok: true }));
    app.get('/own', async (_req, reply) => {
      reply.header('RateLimit', 'set-by-handler');
      return { ok: true };
    });
    app.get('/raw', (_req, reply) => {
      // A handler that writes the raw response itself still gets them.
      reply.hijack();
      reply.raw.writeHead(200, { 'content-type': 'text/plain' });
      reply.raw.end('raw');
    });
    const base = await listen(app);
    const plain = await get(base, '/plain', { 'x-user': 'dora' });
    expect(plain.headers.get('ratelimit')).toMatch(/^"[\w-]+";r=1;t=6[01]$/);
    const own = await get(base, '/own', { 'x-user': 'erin' });
    expect(own.headers.get('ratelimit')).toBe('set-by-handler');
    expect(own.headers.get('ratelimit-policy')).toMatch(/^"[\w-]+";q=2;w=60$/);
    const raw = await get(base, '/raw', { 'x-user': 'fay' });
    expect(await raw.text()).toBe('raw');
    expect(raw.headers.get('ratelimit')).toMatch(/^"[\w-]+";r=1;t=6[01]$/);
    expect(raw.headers.get('x-response-time')).toMatch(/ms$/);
  });

  it('limits each user id independently', async () => {
    const app = await createApp(limited(new ManualClock()));
    app.get('/chat', async () => 'ok');
    const base = await listen(app);
    for (const user of ['alice', 'alice']) expect((await get(base, '/chat', { 'x-user': user })).status).toBe(200);
    expect((await get(base, '/chat', { 'x-user': 'alice' })).status).toBe(429);
    expect((await get(base, '/chat', { 'x-user': 'bob' })).status).toBe(200);
    expect((await get(base, '/chat', { 'x-user': 'bob' })).status).toBe(200);
    expect((await get(base, '/chat', { 'x-user': 'bob' })).status).toBe(429);
    // Anonymous callers are keyed by address, apart from both users.
    expect((await get(base, '/chat')).status).toBe(200);
  });

  it('lets route config override the global limit, or turn it off with limit: false', async () => {
    const app = await createApp({ clock: new ManualClock(), limits: { global: { limit: 1, window: '1m' } }, http: { limit: 'global' } });
    app.get('/default', async () => 'default');
    app.get('/free', { config: { amas: { limit: false } } }, async () => 'free');
    app.get('/roomy', { config: { amas: { limit: { name: 'roomy', limit: 3, window: 60_000 } } } }, async () => 'roomy');
    const base = await listen(app);

    expect((await get(base, '/default')).status).toBe(200);
    expect((await get(base, '/default')).status).toBe(429);

    for (let i = 0; i < 10; i++) {
      const res = await get(base, '/free');
      expect(res.status).toBe(200);
      expect(res.headers.get('ratelimit')).toBeNull();
    }

    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await get(base, '/roomy')).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
  });
});

describe('circuit breaker', () => {
  it('opens after failures, rejects fast with 503 + retry-after, then recovers through half-open', async () => {
    const clock = new ManualClock();
    const app = await createApp({ clock, breakers: { upstream: { failureThreshold: 2, recoveryTimeoutMs: 10_000 } } });
    let calls = 0;
    let failing = true;
    app.get('/upstream', { config: { amas: { breaker: 'upstream' } } }, async (_req, reply) => {
      calls++;
      return failing ? reply.code(502).send({ upstream: 'down' }) : { upstream: 'up' };
    });
    const base = await listen(app);

    expect((await get(base, '/upstream')).status).toBe(502);
    expect((await get(base, '/upstream')).status).toBe(502);
    expect(app.amas.breaker('upstream').getState()).toBe('open');

    const rejected = await get(base, '/upstream');
    expect(rejected.status).toBe(503);
    expect(calls).toBe(2); // the handler was not called
    expect(rejected.headers.get('retry-after')).toBe('10');
    expect(rejected.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(rejected.headers.get('x-response-time')).toMatch(/ms$/);
    expect(await rejected.json()).toEqual({
      error: { code: 'AMAS_BREAKER_OPEN', message: expect.any(String), status: 503, retryAfterMs: 10_000 },
    });

    await clock.advance(10_000);
    failing = false;
    const probe = await get(base, '/upstream');
    expect(probe.status).toBe(200);
    expect(await probe.json()).toEqual({ upstream: 'up' });
    expect(app.amas.breaker('upstream').getState()).toBe('closed');
    expect((await get(base, '/upstream')).status).toBe(200);
    expect(calls).toBe(4);
  });
});

describe('AMAS errors thrown in handlers', () => {
  it('render exactly like pipeline rejections (503 breaker open, 429 rate limited)', async () => {
    const clock = new ManualClock();
    const app = await createApp({ clock, limits: { one: { limit: 1, window: '30s' } } });
    app.get('/breaker', async () => {
      throw new BreakerOpenError('Breaker "provider" is open', { retryAfterMs: 4_500 });
    });
    app.get('/limited', async () => {
      throw new RateLimitedError('Provider quota exceeded', { retryAfterMs: 2_000 });
    });
    app.get('/pipeline', { config: { amas: { limit: 'one' } } }, async () => 'ok');
    const base = await listen(app);

    const breaker = await get(base, '/breaker');
    expect(breaker.status).toBe(503);
    expect(breaker.headers.get('retry-after')).toBe('5');
    expect(breaker.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(breaker.headers.get('x-response-time')).toMatch(/ms$/);
    expect(await breaker.json()).toEqual({
      error: { code: 'AMAS_BREAKER_OPEN', message: 'Breaker "provider" is open', status: 503, retryAfterMs: 4_500 },
    });

    const thrown = await get(base, '/limited');
    await get(base, '/pipeline');
    const pipeline = await get(base, '/pipeline');
    expect(thrown.status).toBe(429);
    expect(pipeline.status).toBe(429);
    for (const name of ['content-type', 'x-response-time', 'server-timing', 'retry-after']) {
      expect(thrown.headers.has(name), name).toBe(true);
      expect(pipeline.headers.has(name), name).toBe(true);
    }
    const thrownBody = (await thrown.json()) as { error: Record<string, unknown> };
    const pipelineBody = (await pipeline.json()) as { error: Record<string, unknown> };
    expect(Object.keys(thrownBody.error).sort()).toEqual(Object.keys(pipelineBody.error).sort());
    expect(thrownBody.error).toEqual({ code: 'AMAS_RATE_LIMITED', message: 'Provider quota exceeded', status: 429, retryAfterMs: 2_000 });
  });

  it('renders an open breaker around an upstream call, and does not count it against the route', async () => {
    const app = await createApp({ clock: new ManualClock(), breakers: { provider: { failureThreshold: 1, recoveryTimeoutMs: 60_000 } } });
    let upstreamCalls = 0;
    app.get('/ask', async () =>
      app.amas.breaker('provider').execute(async () => {
        upstreamCalls++;
        throw new Error('provider down');
      }),
    );
    const base = await listen(app);
    expect((await get(base, '/ask')).status).toBe(500);
    const res = await get(base, '/ask');
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('60');
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('AMAS_BREAKER_OPEN');
    expect(upstreamCalls).toBe(1);
    // The route's watch-only breaker saw the 500 as a failure but AMAS's own 503 as no new upstream failure.
    const totals = app.amas.breaker('http:GET /ask').stats().totals;
    expect(totals).toMatchObject({ failures: 1, successes: 1 });
  });

  it("leaves AMAS errors to a user's setErrorHandler (auto), which sees statusCode and headers", async () => {
    const app = await createApp();
    const seen: unknown[] = [];
    app.setErrorHandler((error: Error & { statusCode?: number; headers?: Record<string, string> }, _request, reply) => {
      seen.push(error);
      return reply.code(error.statusCode ?? 500).headers(error.headers ?? {}).send({ mine: error.message });
    });
    app.get('/x', async () => {
      throw new RateLimitedError('slow down', { retryAfterMs: 1_000 });
    });
    app.get('/boom', async () => {
      throw new Error('boom');
    });
    const base = await listen(app);
    const res = await get(base, '/x');
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(await res.json()).toEqual({ mine: 'slow down' });
    const boom = await get(base, '/boom');
    expect(boom.status).toBe(500);
    expect(await boom.json()).toEqual({ mine: 'boom' });
    expect(seen).toHaveLength(2);
  });

  it("amasErrorHandler() wraps a user's handler; errorHandler 'always' renders AMAS errors even past one", async () => {
    const wrapped = await createApp();
    wrapped.setErrorHandler(amasErrorHandler((error: Error, _request, reply) => reply.code(500).send({ mine: error.message })));
    wrapped.get('/amas', async () => {
      throw new BreakerOpenError('open', { retryAfterMs: 3_000 });
    });
    wrapped.get('/other', async () => {
      throw new Error('other');
    });
    const base = await listen(wrapped);
    const amasRes = await get(base, '/amas');
    expect(amasRes.status).toBe(503);
    expect(amasRes.headers.get('retry-after')).toBe('3');
    expect(await amasRes.json()).toEqual({ error: { code: 'AMAS_BREAKER_OPEN', message: 'open', status: 503, retryAfterMs: 3_000 } });
    expect(await (await get(base, '/other')).json()).toEqual({ mine: 'other' });

    const always = await createApp({ errorHandler: 'always' });
    always.setErrorHandler((error: Error, _request, reply) => reply.code(500).send({ mine: error.message }));
    always.get('/amas', async () => {
      throw new BreakerOpenError('open', { retryAfterMs: 3_000 });
    });
    const base2 = await listen(always);
    const res = await get(base2, '/amas');
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('AMAS_BREAKER_OPEN');
  });

  it("errorHandler 'never' leaves AMAS errors to Fastify's default handler (status and retry-after still right)", async () => {
    const app = await createApp({ errorHandler: 'never' });
    app.get('/x', async () => {
      throw new BreakerOpenError('open', { retryAfterMs: 2_000 });
    });
    const base = await listen(app);
    const res = await get(base, '/x');
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('2');
    expect(((await res.json()) as { code: string }).code).toBe('AMAS_BREAKER_OPEN');
  });
});

describe('dedup', () => {
  it('runs the handler once for 50 identical concurrent POSTs and gives all 50 the same body', async () => {
    const app = await createApp();
    const gate = deferred();
    let arrived = 0;
    // Counts requests as they reach admission (app-level preHandler hooks run just before AMAS's route-level one).
    app.addHook('preHandler', (request, _reply, done) => {
      if (request.url === '/complete' && ++arrived === 50) setImmediate(gate.resolve);
      done();
    });
    let calls = 0;
    app.post('/complete', { config: { amas: { dedup: true } } }, async (request) => {
      calls++;
      await gate.promise;
      return { answer: `echo:${(request.body as { prompt: string }).prompt}`, run: calls };
    });
    const base = await listen(app);

    const responses = await Promise.all(
      Array.from({ length: 50 }, () =>
        fetch(`${base}/complete`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'hi' }) }),
      ),
    );
    const bodies = await Promise.all(responses.map((r) => r.text()));
    expect(calls).toBe(1);
    expect(responses.every((r) => r.status === 200)).toBe(true);
    expect(new Set(bodies)).toEqual(new Set([JSON.stringify({ answer: 'echo:hi', run: 1 })]));
    expect(responses.filter((r) => r.headers.get('x-amas-dedup') === 'shared')).toHaveLength(49);
    for (const r of responses) {
      expect(r.headers.get('content-type')).toBe('application/json; charset=utf-8');
      expect(r.headers.get('x-response-time')).toMatch(/ms$/);
    }
    expect((await app.amas.metrics.expose()).body).toMatch(/amas_dedup_shared_total\{route="\/complete"\} 49/);

    // A different body is a different request.
    const other = await fetch(`${base}/complete`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'yo' }) });
    expect(await other.json()).toEqual({ answer: 'echo:yo', run: 2 });
  });
});

describe('options', () => {
  it('rejects a bad global option at register/ready with InvalidOptionError naming the path', async () => {
    const app = Fastify();
    apps.push(app);
    const error = await app.register(amas, { limits: { perUser: { limit: -1, window: '1m' } } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect((error as InvalidOptionError).issues.map((i) => i.path)).toContain('limits.perUser.limit');
  });

  it('rejects bad adapter options and an instance mixed with options', async () => {
    for (const [options, path] of [
      [{ onRejection: 'explode' }, 'onRejection'],
      [{ errorHandler: 'sometimes' }, 'errorHandler'],
      [{ instance: { not: 'amas' } }, 'instance'],
      [{ instance: createAmas(), limits: {} }, 'limits'],
      [{ bogus: true }, ''],
    ] as const) {
      const app = Fastify();
      apps.push(app);
      app.register(amas, options as unknown as AmasFastifyOptions);
      const error = await app.ready().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, JSON.stringify(path)).toBeInstanceOf(InvalidOptionError);
      const issues = (error as InvalidOptionError).issues;
      expect(issues.some((i) => i.path === path || (path === '' && i.expected.includes('bogus'))), JSON.stringify(issues)).toBe(true);
    }
  });

  it('fails at ready when a route has a bad config.amas, naming the route', async () => {
    const app = Fastify();
    apps.push(app);
    app.register(amas, { limits: { known: { limit: 1, window: '1s' } } });
    app.register(async (child) => {
      child.get('/ok', { config: { amas: { limit: 'known' } } }, async () => 'ok');
      child.post('/bad', { config: { amas: { limit: 'unknown' } } }, async () => 'bad');
    });
    const error = await app.ready().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect((error as Error).message).toContain('POST /bad');
    expect((error as InvalidOptionError).issues[0]).toMatchObject({ path: 'limit', received: '"unknown"' });
  });

  it('throws at route registration for an unknown route option key', async () => {
    const app = await createApp();
    expect(() =>
      app.get('/typo', { config: { amas: { limt: 5 } as never } }, async () => 'x'),
    ).toThrow(InvalidOptionError);
    expect(() => app.get('/bad-breaker', { config: { amas: { breaker: { name: 'b', failureThreshold: -1 } } } }, async () => 'x')).toThrow(
      /failureThreshold/,
    );
  });
});

describe('malformed input', () => {
  it('never crashes on garbage X-Forwarded-For, huge or control-character user ids, or odd user values', async () => {
    const app = Fastify();
    apps.push(app);
    app.decorateRequest('user', null);
    app.addHook('onRequest', (request, _reply, done) => {
      const kind = request.headers['x-kind'];
      const r = request as FastifyRequest & { user: unknown };
      if (kind === 'long') r.user = { id: 'x'.repeat(100_000) };
      else if (kind === 'control') r.user = { id: 'evil\u0000\r\nid\u001b[31m' };
      else if (kind === 'object') r.user = { id: { nested: true } };
      else if (kind === 'symbol') r.user = Symbol('user');
      else if (kind === 'throws') r.user = { get id() { throw new Error('getter'); } };
      done();
    });
    await app.register(amas, { http: { trustProxy: true, limit: { limit: 1000, window: '1m' } }, clock: new ManualClock() });
    app.get('/', async () => 'fine');
    const base = await listen(app);

    for (const xff of ['garbage', ', , ,', '::::::', '999.1.1.1, not-an-ip', '1.2.3.4'.repeat(500), '[::1]:80, %%%']) {
      const res = await get(base, '/', { 'x-forwarded-for': xff });
      expect(res.status, xff).toBe(200);
      expect(res.headers.get('ratelimit')).toMatch(/r=\d+/);
    }
    for (const kind of ['long', 'control', 'object', 'symbol', 'throws']) {
      const res = await get(base, '/', { 'x-kind': kind });
      expect(res.status, kind).toBe(200);
    }
    expect((await get(base, '/')).status).toBe(200);
  });
});

describe('instance ownership', () => {
  it('leaves a shared instance open and closes an owned one with the app', async () => {
    const shared = createAmas();
    const withInstance = Fastify();
    await withInstance.register(amas, { instance: shared });
    expect(withInstance.amas).toBe(shared);
    await withInstance.close();
    expect(shared.isClosed).toBe(false);
    await shared.close();

    const withOptions = Fastify();
    await withOptions.register(amas, {});
    const owned = withOptions.amas;
    await withOptions.close();
    expect(owned.isClosed).toBe(true);
  });

  it('one shared instance shares limits across two apps', async () => {
    const shared = createAmas({ clock: new ManualClock(), limits: { l: { limit: 1, window: '1m' } }, http: { limit: 'l' } });
    const a = await createApp({ instance: shared });
    const b = await createApp({ instance: shared });
    a.get('/', async () => 'a');
    b.get('/', async () => 'b');
    const [baseA, baseB] = [await listen(a), await listen(b)];
    expect((await get(baseA, '/', { 'x-user': 'u' })).status).toBe(200);
    expect((await get(baseB, '/', { 'x-user': 'u' })).status).toBe(429);
    await Promise.all(apps.splice(0).map((app) => app.close()));
    expect(shared.isClosed).toBe(false);
    await shared.close();
  });
});

describe("onRejection: 'error'", () => {
  it("sends the rejection through Fastify's error handling with the same shape and limit headers", async () => {
    const app = await createApp({ onRejection: 'error', clock: new ManualClock(), limits: { l: { limit: 1, window: '1m' } }, http: { limit: 'l' } });
    app.get('/', async () => 'ok');
    const base = await listen(app);
    expect((await get(base, '/')).status).toBe(200);
    const res = await get(base, '/');
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toMatch(/^6[01]$/);
    expect(res.headers.get('ratelimit')).toMatch(/^"[\w-]+";r=0;t=6[01]$/);
    expect(res.headers.get('ratelimit-policy')).toMatch(/^"[\w-]+";q=1;w=60$/);
    expect(res.headers.get('x-response-time')).toMatch(/ms$/);
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(await res.json()).toEqual({ error: { code: 'AMAS_RATE_LIMITED', message: expect.stringContaining('"l"'), status: 429, retryAfterMs: expect.any(Number) } });
    expect((await app.amas.metrics.expose()).body).toMatch(/status="429",outcome="rate_limited"\} 1/);
  });

  it("hands the AmasError to the user's error handler", async () => {
    const app = await createApp({ onRejection: 'error', clock: new ManualClock(), limits: { l: { limit: 1, window: '1m' } }, http: { limit: 'l' } });
    const seen: string[] = [];
    app.setErrorHandler((error: Error & { code?: string; statusCode?: number }, _request, reply) => {
      seen.push(String(error.code));
      return reply.code(error.statusCode ?? 500).send({ custom: true });
    });
    app.get('/', async () => 'ok');
    const base = await listen(app);
    await get(base, '/');
    const res = await get(base, '/');
    expect(res.status).toBe(429);
    expect(res.headers.get('ratelimit')).toMatch(/^"[\w-]+";r=0;t=6[01]$/);
    expect(await res.json()).toEqual({ custom: true });
    expect(seen).toEqual(['AMAS_RATE_LIMITED']);
  });
});
