/**
 * The same scenario against Express, Fastify and NestJS (on both of Nest's platforms), each a real server:
 * per-user limits, a breaker that opens and recovers, dedup of 50 identical requests, AMAS errors thrown in
 * handlers, malformed identities, and a bad option at start-up. Afterwards every AMAS-made response is
 * compared across the frameworks: same statuses, same headers, same bodies.
 */
import 'reflect-metadata';
import { afterAll, describe, expect, it } from 'vitest';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify from 'fastify';
import { Body, Controller, Get, HttpException, Module, Post, type MiddlewareConsumer, type NestModule } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { InvalidOptionError, ManualClock, silentLogger, type Amas, type AmasOptions } from '@amas/core';
import { amasMiddleware } from '@amas/express';
import amasPlugin from '@amas/fastify';
import { AMAS, AmasModule, CircuitProtected, Deduplicate, RateLimit } from '@amas/nestjs';
import { waitUntil } from './support/redis-servers.js';

interface Upstream {
  healthy: boolean;
  calls: number;
  dedupCalls: number;
}

interface Running {
  url: string;
  amas: Amas;
  upstream: Upstream;
  close(): Promise<void>;
}

const LIMIT = { limit: 3, window: '1m', name: 'per-user' } as const;
const options = (clock: ManualClock): AmasOptions => ({
  clock,
  logger: silentLogger,
  breakers: { upstream: { failureThreshold: 3, recoveryTimeoutMs: 10_000 }, inner: { recoveryTimeoutMs: 7_000 } },
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Requests of the dedup burst (x-user: carol) seen by each app's first hook, before body parsing and AMAS. */
let burstArrivals = 0;
const BURST = 50;

/**
 * The dedup handler's stand-in for a slow upstream call: it returns once every request of the burst has
 * reached the app and had time to join the flight (body parsing and admission take well under a second), so
 * the test does not depend on 50 requests arriving within a fixed time of the first one.
 */
async function slowUpstream(): Promise<void> {
  await waitUntil('every request of the dedup burst to reach the app', async () => burstArrivals >= BURST, { timeoutMs: 10_000, intervalMs: 10 });
  await sleep(300);
}

function userFromHeader(req: { headers: Record<string, unknown>; user?: unknown }): void {
  const header = req.headers['x-user'];
  if (typeof header !== 'string') return;
  if (header === 'carol') burstArrivals++;
  req.user = header === '__control__' ? { id: '\u0000\u0007evil\r\n' } : header === '__long__' ? { id: 'x'.repeat(50_000) } : header === '__object__' ? { id: { a: 1 } } : { id: header };
}

async function innerCall(amas: Amas): Promise<string> {
  // An upstream call through an open breaker: the AMAS error must render like a pipeline rejection.
  return amas.breaker('inner').execute(() => 'never');
}

async function startExpress(clock: ManualClock): Promise<Running> {
  const upstream: Upstream = { healthy: false, calls: 0, dedupCalls: 0 };
  const app = express();
  app.use((req, _res, next) => {
    userFromHeader(req as never);
    next();
  });
  app.use(express.json());
  const amas = amasMiddleware(options(clock));
  app.use(amas);
  app.get('/limited', amas.route({ limit: LIMIT }), (_req, res) => {
    res.json({ ok: true });
  });
  app.get('/upstream', amas.route({ breaker: 'upstream' }), (_req, res) => {
    upstream.calls++;
    if (upstream.healthy) res.json({ ok: true });
    else res.status(502).json({ error: 'bad gateway' });
  });
  app.post('/dedup', amas.route({ dedup: true }), async (req, res) => {
    upstream.dedupCalls++;
    await slowUpstream();
    res.json({ echo: req.body.prompt });
  });
  app.get('/throws', async (_req, res, next) => {
    try {
      res.json(await innerCall(amas.amas));
    } catch (error) {
      next(error);
    }
  });
  app.use(amas.errorHandler());
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((r) => server.once('listening', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    amas: amas.amas,
    upstream,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await amas.close();
    },
  };
}

async function startFastify(clock: ManualClock): Promise<Running> {
  const upstream: Upstream = { healthy: false, calls: 0, dedupCalls: 0 };
  const app = Fastify();
  app.decorateRequest('user', null);
  app.addHook('onRequest', (request, _reply, done) => {
    userFromHeader(request as never);
    done();
  });
  await app.register(amasPlugin, options(clock));
  app.get('/limited', { config: { amas: { limit: LIMIT } } }, async () => ({ ok: true }));
  app.get('/upstream', { config: { amas: { breaker: 'upstream' } } }, async (_req, reply) => {
    upstream.calls++;
    if (upstream.healthy) return { ok: true };
    return reply.code(502).send({ error: 'bad gateway' });
  });
  app.post('/dedup', { config: { amas: { dedup: true } } }, async (req) => {
    upstream.dedupCalls++;
    await slowUpstream();
    return { echo: (req.body as { prompt: string }).prompt };
  });
  app.get('/throws', async () => innerCall(app.amas));
  await app.listen({ port: 0, host: '127.0.0.1' });
  return {
    url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`,
    amas: app.amas,
    upstream,
    close: () => app.close(),
  };
}

async function startNest(clock: ManualClock, platform: 'express' | 'fastify'): Promise<Running> {
  const upstream: Upstream = { healthy: false, calls: 0, dedupCalls: 0 };
  let engine!: Amas;

  @Controller()
  class MatrixController {
    @Get('limited')
    @RateLimit(LIMIT)
    limited() {
      return { ok: true };
    }

    @Get('upstream')
    @CircuitProtected('upstream')
    upstream() {
      upstream.calls++;
      if (!upstream.healthy) throw new HttpException({ error: 'bad gateway' }, 502);
      return { ok: true };
    }

    @Post('dedup')
    @Deduplicate()
    async dedup(@Body() body: { prompt: string }) {
      upstream.dedupCalls++;
      await slowUpstream();
      return { echo: body.prompt };
    }

    @Get('throws')
    throws() {
      return innerCall(engine);
    }
  }

  @Module({ imports: [AmasModule.forRoot(options(clock))], controllers: [MatrixController] })
  class MatrixModule implements NestModule {
    configure(consumer: MiddlewareConsumer) {
      consumer
        .apply((req: never, _res: unknown, next: () => void) => {
          userFromHeader(req);
          next();
        })
        .forRoutes(MatrixController);
    }
  }

  const app = await NestFactory.create(MatrixModule, platform === 'express' ? new ExpressAdapter() : new FastifyAdapter(), { logger: false, abortOnError: false });
  await app.listen(0, '127.0.0.1');
  engine = app.get(AMAS);
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1').replace('localhost', '127.0.0.1');
  return { url, amas: engine, upstream, close: () => app.close() };
}

const frameworks: Array<[string, (clock: ManualClock) => Promise<Running>]> = [
  ['express', startExpress],
  ['fastify', startFastify],
  ['nest-express', (c) => startNest(c, 'express')],
  ['nest-fastify', (c) => startNest(c, 'fastify')],
];

/** AMAS-made responses, per framework and step, compared across frameworks at the end. */
const recorded = new Map<string, Map<string, unknown>>();
const COMPARED_HEADERS = ['retry-after', 'ratelimit', 'ratelimit-policy', 'x-amas-dedup'];

async function record(framework: string, step: string, res: Response): Promise<{ status: number; body: any; headers: Headers }> {
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  const headers: Record<string, string | null> = {};
  for (const name of COMPARED_HEADERS) headers[name] = res.headers.get(name);
  headers['content-type'] = res.headers.get('content-type')?.split(';')[0] ?? null;
  if (!recorded.has(framework)) recorded.set(framework, new Map());
  recorded.get(framework)!.set(step, { status: res.status, headers, body });
  // Every response, AMAS-made or not, carries the timing headers.
  expect(res.headers.get('x-response-time'), `${framework} ${step}`).toMatch(/^\d+\.\d{3}ms$/);
  expect(res.headers.get('server-timing'), `${framework} ${step}`).toMatch(/^total;dur=/);
  return { status: res.status, body, headers: res.headers };
}

describe.each(frameworks)('%s', (name, start) => {
  it('per-user limit, breaker, dedup, thrown AMAS errors and malformed identities behave the same', async () => {
    const clock = new ManualClock();
    const app = await start(clock);
    const get = (path: string, user?: string, headers: Record<string, string> = {}) =>
      fetch(`${app.url}${path}`, { headers: { ...(user ? { 'x-user': user } : {}), ...headers } });
    try {
      // Per-user limit with headers and Retry-After.
      for (let i = 0; i < 3; i++) {
        const ok = await record(name, `limited-${i}`, await get('/limited', 'alice'));
        expect(ok.status).toBe(200);
        expect(ok.headers.get('ratelimit-policy')).toBe('"per-user";q=3;w=60');
      }
      const limited = await record(name, 'limited-429', await get('/limited', 'alice'));
      expect(limited.status).toBe(429);
      expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(60);
      expect(limited.body.error.code).toBe('AMAS_RATE_LIMITED');
      expect((await record(name, 'limited-bob', await get('/limited', 'bob'))).status).toBe(200);

      // Breaker: opens on upstream failures, rejects fast, recovers through half-open.
      for (let i = 0; i < 3; i++) expect((await get('/upstream')).status).toBe(502);
      const open = await record(name, 'breaker-open', await get('/upstream'));
      expect(open.status).toBe(503);
      expect(open.headers.get('retry-after')).toBe('10');
      expect(open.body.error.code).toBe('AMAS_BREAKER_OPEN');
      expect(app.upstream.calls).toBe(3);
      await clock.advance(10_000);
      app.upstream.healthy = true;
      expect((await get('/upstream')).status).toBe(200);
      expect(app.amas.breaker('upstream').getState()).toBe('closed');
      expect(app.upstream.calls).toBe(4);

      // 50 identical concurrent requests reach the handler once.
      burstArrivals = 0;
      const responses = await Promise.all(
        Array.from({ length: BURST }, () =>
          fetch(`${app.url}/dedup`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-user': 'carol' }, body: JSON.stringify({ prompt: 'hi' }) }),
        ),
      );
      expect(app.upstream.dedupCalls).toBe(1);
      const bodies = (await Promise.all(responses.map((r) => r.json()))) as Array<{ echo?: string }>;
      expect(bodies.every((b) => b.echo === "hi")).toBe(true);
      expect(responses.filter((r) => r.headers.get('x-amas-dedup') === 'shared')).toHaveLength(49);
      expect(responses.every((r) => r.status === responses[0]!.status)).toBe(true);

      // An AMAS error thrown inside a handler renders like a pipeline rejection.
      app.amas.breaker('inner').open('test');
      const thrown = await record(name, 'thrown', await get('/throws'));
      expect(thrown.status).toBe(503);
      expect(thrown.headers.get('retry-after')).toBe('7');
      expect(thrown.body.error.code).toBe('AMAS_BREAKER_OPEN');

      // Malformed identities and headers never crash the process.
      for (const user of ['__control__', '__long__', '__object__']) expect((await get('/limited', user)).status).toBe(200);
      expect((await get('/limited', 'dave', { 'x-forwarded-for': 'garbage, , 999.999.1.1' })).status).toBe(200);
      expect((await get('/limited', 'dave')).status).toBe(200);
    } finally {
      await app.close();
    }
  });
});

describe('a bad option fails at start-up with the path in every framework', () => {
  const bad = { breakers: { upstream: { failureThreshold: 'five' } } } as never;
  const check = (error: unknown) => {
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect((error as Error).message).toContain('breakers.upstream.failureThreshold');
    expect((error as Error).message).toContain('"five"');
  };

  it('express', () => {
    let error: unknown;
    try {
      amasMiddleware(bad);
    } catch (e) {
      error = e;
    }
    check(error);
  });

  it('fastify', async () => {
    const app = Fastify();
    let error: unknown;
    try {
      await app.register(amasPlugin, bad);
      await app.ready();
    } catch (e) {
      error = e;
    }
    check(error);
    await app.close().catch(() => {});
  });

  it('nest', async () => {
    @Module({ imports: [AmasModule.forRoot(bad)] })
    class BadModule {}
    let error: unknown;
    try {
      const app = await NestFactory.create(BadModule, new ExpressAdapter(), { logger: false, abortOnError: false });
      await app.close();
    } catch (e) {
      error = e;
    }
    check(error);
  });
});

afterAll(() => {
  // Same statuses, headers and bodies for every AMAS-made response in every framework.
  const [reference, ...others] = [...recorded.entries()];
  if (!reference) return;
  expect(recorded.size).toBe(frameworks.length);
  for (const [framework, steps] of others) {
    for (const [step, value] of reference[1]) {
      const actual = steps.get(step) as { body: { error?: { message?: string } } } | undefined;
      expect(actual, `${framework} ${step}`).toBeDefined();
      expect(normalise(actual), `${framework} ${step} vs ${reference[0]}`).toEqual(normalise(value));
    }
  }
});

/** Retry-After seconds and `t=` can differ by the few ms between requests; messages mention them too. */
function normalise(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value).replace(/t=\d+/g, 't=N').replace(/retry in \d+s/g, 'retry in Ns').replace(/"retryAfterMs":\d+/g, '"retryAfterMs":"N"'));
}
