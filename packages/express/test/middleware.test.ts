import { afterEach, describe, expect, it } from 'vitest';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express5 from 'express';
// @ts-expect-error express4 is an npm alias of express@4 without its own type declarations
import express4 from 'express4';
import { BreakerOpenError, InvalidOptionError, ManualClock, createAmas, isAmasError, silentLogger } from '@amas/core';
import { amasMiddleware } from '../src/index.js';

type ExpressFactory = typeof express5;
const versions: Array<[string, ExpressFactory]> = [
  ['express 5', express5],
  ['express 4', express4 as unknown as ExpressFactory],
];

const servers: Server[] = [];
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
  for (const close of closers.splice(0)) await close();
});

async function listen(app: ReturnType<ExpressFactory>): Promise<string> {
  const server = app.listen(0, '127.0.0.1');
  servers.push(server);
  await new Promise<void>((r) => server.once('listening', () => r()));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe.each(versions)('%s', (_label, express) => {
  it('zero config: times every response, exports metrics, rejects nothing', async () => {
    const app = express();
    const amas = amasMiddleware({ logger: silentLogger });
    closers.push(amas.close);
    app.use(amas);
    app.get('/hello', (_req, res) => {
      res.json({ ok: true });
    });
    app.get('/metrics', amas.metricsHandler());
    const url = await listen(app);
    for (let i = 0; i < 30; i++) {
      const res = await fetch(`${url}/hello`);
      expect(res.status).toBe(200);
      expect(res.headers.get('x-response-time')).toMatch(/^\d+\.\d{3}ms$/);
      expect(res.headers.get('server-timing')).toMatch(/^total;dur=\d+\.\d{3}$/);
      expect(res.headers.get('ratelimit')).toBeNull();
    }
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toMatch(/amas_http_requests_total\{route="\/hello",method="GET",status="200",outcome="success"\} 30/);
    expect(metrics).toContain('amas_breaker_state{breaker="http:GET /hello"} 0');
  });

  it('limits per user with IETF headers, Retry-After and a JSON body', async () => {
    const clock = new ManualClock();
    const app = express();
    app.use((req, _res, next) => {
      (req as { user?: unknown }).user = { id: req.headers['x-user'] };
      next();
    });
    const amas = amasMiddleware({ clock, logger: silentLogger, http: { limit: { limit: 3, window: '1m', name: 'per-user' } } });
    closers.push(amas.close);
    app.use(amas);
    app.get('/chat', (_req, res) => {
      res.send('ok');
    });
    const url = await listen(app);
    const as = (user: string) => fetch(`${url}/chat`, { headers: { 'x-user': user } });
    for (let i = 0; i < 3; i++) {
      const ok = await as('alice');
      expect(ok.status).toBe(200);
      expect(ok.headers.get('ratelimit-policy')).toBe('"per-user";q=3;w=60');
      expect(ok.headers.get('ratelimit')).toMatch(new RegExp(`^"per-user";r=${2 - i};t=\\d+$`));
    }
    const limited = await as('alice');
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(limited.headers.get('ratelimit')).toMatch(/^"per-user";r=0;t=\d+$/);
    expect(limited.headers.get('content-type')).toMatch(/application\/json/);
    expect(limited.headers.get('x-response-time')).toBeTruthy();
    const body: any = await limited.json();
    expect(body.error.code).toBe('AMAS_RATE_LIMITED');
    expect(body.error.status).toBe(429);
    expect(body.error.retryAfterMs).toBeGreaterThan(0);
    expect((await as('bob')).status).toBe(200);
    await clock.advance(61_000);
    expect((await as('alice')).status).toBe(200);
  });

  it('route-level options override the global ones; limit:false lifts the limit', async () => {
    const app = express();
    const amas = amasMiddleware({ logger: silentLogger, http: { limit: { limit: 1, window: '1m' } } });
    closers.push(amas.close);
    app.use(amas);
    app.get('/free', amas.route({ limit: false }), (_req, res) => {
      res.send('free');
    });
    app.get('/strict', amas.route({ limit: { limit: 2, window: '1h', name: 'strict' } }), (_req, res) => {
      res.send('strict');
    });
    app.get('/global', (_req, res) => {
      res.send('global');
    });
    const url = await listen(app);
    // limit:false lifts the app-level limit (1/min) on this route, and gives its charge back.
    for (let i = 0; i < 5; i++) {
      const free = await fetch(`${url}/free`);
      expect(free.status).toBe(200);
      expect(free.headers.get('ratelimit-policy')).toBeNull();
    }
    // The route's own limit (2/hour) replaces the app-level one.
    const strict = await fetch(`${url}/strict`);
    expect(strict.status).toBe(200);
    expect(strict.headers.get('ratelimit-policy')).toBe('"strict";q=2;w=3600');
    expect((await fetch(`${url}/strict`)).status).toBe(200);
    expect((await fetch(`${url}/strict`)).status).toBe(429);
    // None of that was charged to the app-level limit: its one request per minute is still there.
    const global = await fetch(`${url}/global`);
    expect(global.status).toBe(200);
    expect(global.headers.get('ratelimit-policy')).toMatch(/q=1;w=60/);
    expect((await fetch(`${url}/global`)).status).toBe(429);
    const routeOnly = amasMiddleware({ logger: silentLogger });
    closers.push(routeOnly.close);
    const app2 = express();
    app2.get('/free', routeOnly.route({ limit: false }), (_req, res) => {
      res.send('free');
    });
    app2.get('/strict', routeOnly.route({ limit: { limit: 2, window: '1h', name: 'strict' } }), (_req, res) => {
      res.send('strict');
    });
    const url2 = await listen(app2);
    for (let i = 0; i < 5; i++) expect((await fetch(`${url2}/free`)).status).toBe(200);
    expect((await fetch(`${url2}/strict`)).status).toBe(200);
    const second = await fetch(`${url2}/strict`);
    expect(second.headers.get('ratelimit-policy')).toBe('"strict";q=2;w=3600');
    expect((await fetch(`${url2}/strict`)).status).toBe(429);
  });

  it('a breaker opens on upstream failures, rejects fast with 503, recovers through half-open', async () => {
    const clock = new ManualClock();
    const app = express();
    const amas = amasMiddleware({
      clock,
      logger: silentLogger,
      breakers: { upstream: { failureThreshold: 3, recoveryTimeoutMs: 10_000 } },
    });
    closers.push(amas.close);
    let healthy = false;
    let calls = 0;
    app.use(amas);
    app.get('/upstream', amas.route({ breaker: 'upstream' }), (_req, res) => {
      calls++;
      res.status(healthy ? 200 : 502).send(healthy ? 'ok' : 'bad gateway');
    });
    const url = await listen(app);
    for (let i = 0; i < 3; i++) expect((await fetch(`${url}/upstream`)).status).toBe(502);
    expect(amas.amas.breaker('upstream').getState()).toBe('open');
    const rejected = await fetch(`${url}/upstream`);
    expect(rejected.status).toBe(503);
    expect(rejected.headers.get('retry-after')).toBe('10');
    expect(((await rejected.json()) as any).error.code).toBe('AMAS_BREAKER_OPEN');
    expect(calls).toBe(3);
    await clock.advance(10_000);
    healthy = true;
    expect((await fetch(`${url}/upstream`)).status).toBe(200);
    expect(amas.amas.breaker('upstream').getState()).toBe('closed');
    expect(calls).toBe(4);
  });

  it('AMAS errors thrown in handlers reach Express error handling with the right status and headers', async () => {
    const clock = new ManualClock();
    const app = express();
    const amas = amasMiddleware({ clock, logger: silentLogger });
    closers.push(amas.close);
    const upstream = amas.amas.breaker('openai', { failureThreshold: 1, recoveryTimeoutMs: 5_000 });
    upstream.open('test');
    app.use(amas);
    app.get('/call', async (_req, res, next) => {
      try {
        res.send(await upstream.execute(() => 'never'));
      } catch (error) {
        next(error);
      }
    });
    app.use(amas.errorHandler());
    const url = await listen(app);
    const res = await fetch(`${url}/call`);
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('5');
    expect(((await res.json()) as any).error.code).toBe('AMAS_BREAKER_OPEN');
  });

  it("onRejection 'next' hands the typed error to the app's error handler", async () => {
    const app = express();
    const amas = amasMiddleware({ logger: silentLogger, http: { limit: { limit: 1, window: '1m' } } }, { onRejection: 'next' });
    closers.push(amas.close);
    app.use(amas);
    app.get('/x', (_req, res) => {
      res.send('x');
    });
    app.use((error: unknown, _req: express5.Request, res: express5.Response, _next: express5.NextFunction) => {
      res.status(isAmasError(error) ? error.status : 500).json({ mine: isAmasError(error) ? error.code : 'other' });
    });
    const url = await listen(app);
    expect((await fetch(`${url}/x`)).status).toBe(200);
    const res = await fetch(`${url}/x`);
    expect(res.status).toBe(429);
    expect((await res.json()) as any).toEqual({ mine: 'AMAS_RATE_LIMITED' });
  });

  it('a rejectionBody that returns something JSON cannot encode still yields a clean 429', async () => {
    const app = express();
    const amas = amasMiddleware({ logger: silentLogger, http: { limit: { limit: 1, window: '1m' }, rejectionBody: () => ({ n: 10n }) } });
    closers.push(amas.close);
    app.use(amas);
    app.get('/x', (_req, res) => {
      res.send('x');
    });
    const url = await listen(app);
    expect((await fetch(`${url}/x`)).status).toBe(200);
    const res = await fetch(`${url}/x`);
    expect(res.status).toBe(429);
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(((await res.json()) as any).error.code).toBe('AMAS_RATE_LIMITED');
  });

  it('50 identical concurrent requests reach the handler once and all get its response', async () => {
    const app = express();
    const amas = amasMiddleware({ logger: silentLogger });
    closers.push(amas.close);
    app.use(express.json());
    app.use(amas);
    let calls = 0;
    app.post('/v1/chat/completions', amas.route({ dedup: true }), async (req, res) => {
      calls++;
      await new Promise((r) => setTimeout(r, 150));
      res.set('x-upstream', 'mock').json({ answer: `echo ${req.body.prompt}`, n: calls });
    });
    const url = await listen(app);
    const send = (body: object) =>
      fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const responses = await Promise.all(Array.from({ length: 50 }, (_, i) => send(i % 2 ? { prompt: 'hi', t: 0 } : { t: 0, prompt: 'hi' })));
    expect(calls).toBe(1);
    const bodies = await Promise.all(responses.map((r) => r.json()));
    for (const body of bodies) expect(body).toEqual({ answer: 'echo hi', n: 1 });
    expect(responses.filter((r) => r.headers.get('x-amas-dedup') === 'shared')).toHaveLength(49);
    expect(responses.every((r) => r.headers.get('x-upstream') === 'mock' && r.status === 200)).toBe(true);
    // A different body is a different request.
    await send({ prompt: 'other' });
    expect(calls).toBe(2);
  });

  it('a bad option fails at start-up with the path, the value and what was expected', () => {
    expect(() => amasMiddleware({ http: { limit: { limit: -1, window: '1m' } } } as never)).toThrow(InvalidOptionError);
    try {
      amasMiddleware({ breakers: { openai: { failureThreshold: 'five' } } } as never);
      expect.unreachable();
    } catch (error) {
      expect((error as InvalidOptionError).message).toContain('breakers.openai.failureThreshold');
      expect((error as InvalidOptionError).message).toContain('"five"');
    }
    const amas = amasMiddleware({ logger: silentLogger });
    closers.push(amas.close);
    expect(() => amas.route({ limit: 'no-such-limit' })).toThrow(/no-such-limit/);
    expect(() => amas.route({ dedupe: true } as never)).toThrow(/dedupe/);
    expect(() => amasMiddleware({}, { onRejection: 'ignore' as never })).toThrow(/onRejection/);
  });

  it('malformed headers and identities do not crash the process', async () => {
    const app = express();
    const amas = amasMiddleware({ logger: silentLogger, http: { trustProxy: true, limit: { limit: 100, window: '1m' } } });
    closers.push(amas.close);
    app.use((req, _res, next) => {
      const kind = req.headers['x-kind'];
      (req as { user?: unknown }).user =
        kind === 'long' ? { id: 'x'.repeat(100_000) } : kind === 'ctrl' ? { id: '\u0000\u0007evil\r\n' } : kind === 'obj' ? { id: { nested: true } } : undefined;
      next();
    });
    app.use(amas);
    app.get('/x', (_req, res) => {
      res.send('ok');
    });
    const url = await listen(app);
    const cases: Array<Record<string, string>> = [
      { 'x-forwarded-for': 'not-an-ip, , ,' },
      { 'x-forwarded-for': '999.1.1.1' },
      { 'x-forwarded-for': '[::1]:80, 2001:db8::1%eth0' },
      { 'x-forwarded-for': ','.repeat(5000) },
      { 'x-kind': 'long' },
      { 'x-kind': 'ctrl' },
      { 'x-kind': 'obj' },
    ];
    for (const headers of cases) expect((await fetch(`${url}/x`, { headers })).status).toBe(200);
  });

  it('an instance passed in is shared and not closed by the middleware', async () => {
    const engine = createAmas({ logger: silentLogger });
    const a = amasMiddleware(engine);
    const b = amasMiddleware(engine);
    expect(a.amas).toBe(engine);
    expect(b.amas).toBe(engine);
    await a.close();
    expect(engine.isClosed).toBe(false);
    await engine.close();
    const owned = amasMiddleware({ logger: silentLogger });
    await owned.close();
    expect(owned.amas.isClosed).toBe(true);
  });
});

describe('never writes headers after they were sent', () => {
  it('a streamed response keeps its timing header from before the first byte', async () => {
    const app = express5();
    const amas = amasMiddleware({ logger: silentLogger });
    closers.push(amas.close);
    app.use(amas);
    app.get('/stream', async (_req, res) => {
      res.setHeader('content-type', 'text/event-stream');
      res.write('data: 1\n\n');
      await new Promise((r) => setTimeout(r, 20));
      res.end('data: [DONE]\n\n');
    });
    const url = await listen(app);
    const res = await fetch(`${url}/stream`);
    expect(res.headers.get('x-response-time')).toBeTruthy();
    expect(await res.text()).toBe('data: 1\n\ndata: [DONE]\n\n');
  });

  it('BreakerOpenError carries status and headers Express finalhandler reads', () => {
    const error = new BreakerOpenError('open', { retryAfterMs: 2500 });
    expect(error.status).toBe(503);
    expect(error.statusCode).toBe(503);
    expect(error.headers).toEqual({ 'retry-after': '3' });
  });
});
