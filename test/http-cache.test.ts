/**
 * HTTP response caching, compression and `?fields=` filtering, the same scenario against Express, Fastify and
 * NestJS (both platforms), each a real server: MISS then HIT, ETag/304, POST opt-in keyed on a normalized
 * body, responses that must never be stored, per-user isolation, request no-cache, concurrent misses (one
 * handler run), stale-if-error, encodings negotiated per client from one stored body, fields filtering and
 * its 400s, per-route Cache-Control.
 */
import 'reflect-metadata';
import { request as httpRequest } from 'node:http';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import express from 'express';
import Fastify from 'fastify';
import { Body, Controller, Get, Header, HttpException, Injectable, Module, Param, Post, Req, UseGuards, type CanActivate, type ExecutionContext, type MiddlewareConsumer, type NestModule } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { silentLogger, type Amas, type AmasOptions, type ResponseCacheOption } from '@amas/core';
import { amasMiddleware } from '@amas/express';
import amasPlugin from '@amas/fastify';
import { AMAS, AmasModule, Cached } from '@amas/nestjs';

interface Counters {
  item: number;
  chat: number;
  slow: number;
  cookie: number;
  priv: number;
  error: number;
  flaky: number;
  flakyFails: boolean;
}

interface Running {
  url: string;
  amas: Amas;
  counters: Counters;
  close(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const options: AmasOptions = { logger: silentLogger, http: { compression: true, fields: true } };
const ROUTES = {
  item: { ttl: '1m' } satisfies ResponseCacheOption,
  publicData: { shared: true, cacheControl: 'public, max-age=60' } satisfies ResponseCacheOption,
  chat: { methods: ['POST'], excludeBodyFields: ['request_id'] } satisfies ResponseCacheOption,
  flaky: { ttl: 150, grace: '1m' } satisfies ResponseCacheOption,
};
const LONG = 'lorem ipsum dolor sit amet '.repeat(120);

function item(counters: Counters, id: string, user: unknown) {
  counters.item++;
  return { id, user: user ?? null, run: counters.item, items: [{ sku: 'a', price: 1, name: 'one' }, { sku: 'b', price: 2, name: 'two' }], text: LONG };
}

function userFromHeader(req: { headers: Record<string, unknown>; user?: unknown }): void {
  const header = req.headers['x-user'];
  if (typeof header === 'string') req.user = { id: header };
}

const counters = (): Counters => ({ item: 0, chat: 0, slow: 0, cookie: 0, priv: 0, error: 0, flaky: 0, flakyFails: false });

async function startExpress(): Promise<Running> {
  const c = counters();
  const app = express();
  app.use((req, _res, next) => (userFromHeader(req as never), next()));
  app.use(express.json());
  const amas = amasMiddleware(options);
  app.use(amas);
  app.get('/items/:id', amas.route({ cache: ROUTES.item }), (req, res) => {
    res.json(item(c, String(req.params.id), (req as { user?: { id: string } }).user?.id));
  });
  app.get('/public', amas.route({ cache: ROUTES.publicData }), (_req, res) => {
    res.json({ shared: true, run: ++c.item });
  });
  app.post('/chat', amas.route({ cache: ROUTES.chat }), (req, res) => {
    res.json({ answer: `echo ${req.body.prompt}`, run: ++c.chat });
  });
  app.get('/slow', amas.route({ cache: true }), async (_req, res) => {
    c.slow++;
    await sleep(100);
    res.json({ slow: true });
  });
  app.get('/cookie', amas.route({ cache: true }), (_req, res) => {
    res.cookie('session', 'abc').json({ run: ++c.cookie });
  });
  app.get('/private', amas.route({ cache: true }), (_req, res) => {
    res.set('cache-control', 'private').json({ run: ++c.priv });
  });
  app.get('/error', amas.route({ cache: true }), (_req, res) => {
    res.status(500).json({ run: ++c.error });
  });
  app.get('/flaky', amas.route({ cache: ROUTES.flaky }), (_req, res) => {
    c.flaky++;
    if (c.flakyFails) res.status(503).json({ down: true });
    else res.json({ fresh: c.flaky });
  });
  app.get('/plain', (_req, res) => {
    res.json({ a: 1, b: { c: 2, d: 3 }, text: LONG });
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((r) => server.once('listening', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    amas: amas.amas,
    counters: c,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await amas.close();
    },
  };
}

async function startFastify(): Promise<Running> {
  const c = counters();
  const app = Fastify();
  app.decorateRequest('user', null);
  app.addHook('onRequest', (request, _reply, done) => (userFromHeader(request as never), done()));
  await app.register(amasPlugin, options);
  app.get('/items/:id', { config: { amas: { cache: ROUTES.item } } }, async (req) => item(c, (req.params as { id: string }).id, (req as { user?: { id: string } }).user?.id));
  app.get('/public', { config: { amas: { cache: ROUTES.publicData } } }, async () => ({ shared: true, run: ++c.item }));
  app.post('/chat', { config: { amas: { cache: ROUTES.chat } } }, async (req) => ({ answer: `echo ${(req.body as { prompt: string }).prompt}`, run: ++c.chat }));
  app.get('/slow', { config: { amas: { cache: true } } }, async () => {
    c.slow++;
    await sleep(100);
    return { slow: true };
  });
  app.get('/cookie', { config: { amas: { cache: true } } }, async (_req, reply) => reply.header('set-cookie', 'session=abc; Path=/').send({ run: ++c.cookie }));
  app.get('/private', { config: { amas: { cache: true } } }, async (_req, reply) => reply.header('cache-control', 'private').send({ run: ++c.priv }));
  app.get('/error', { config: { amas: { cache: true } } }, async (_req, reply) => reply.code(500).send({ run: ++c.error }));
  app.get('/flaky', { config: { amas: { cache: ROUTES.flaky } } }, async (_req, reply) => {
    c.flaky++;
    if (c.flakyFails) return reply.code(503).send({ down: true });
    return { fresh: c.flaky };
  });
  app.get('/plain', async () => ({ a: 1, b: { c: 2, d: 3 }, text: LONG }));
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, amas: app.amas, counters: c, close: () => app.close() };
}

async function startNest(platform: 'express' | 'fastify'): Promise<Running> {
  const c = counters();

  @Controller()
  class CacheController {
    @Get('items/:id')
    @Cached(ROUTES.item)
    items(@Param('id') id: string, @Req() req: { user?: { id: string }; raw?: { user?: { id: string } } }) {
      return item(c, id, (req.user ?? req.raw?.user)?.id);
    }

    @Get('public')
    @Cached(ROUTES.publicData)
    publicData() {
      return { shared: true, run: ++c.item };
    }

    @Post('chat')
    @Cached(ROUTES.chat)
    chat(@Body() body: { prompt: string }) {
      return { answer: `echo ${body.prompt}`, run: ++c.chat };
    }

    @Get('slow')
    @Cached()
    async slow() {
      c.slow++;
      await sleep(100);
      return { slow: true };
    }

    @Get('cookie')
    @Cached()
    @Header('set-cookie', 'session=abc; Path=/')
    cookie() {
      return { run: ++c.cookie };
    }

    @Get('private')
    @Cached()
    @Header('cache-control', 'private')
    priv() {
      return { run: ++c.priv };
    }

    @Get('error')
    @Cached()
    error() {
      throw new HttpException({ run: ++c.error }, 500);
    }

    @Get('flaky')
    @Cached(ROUTES.flaky)
    flaky() {
      c.flaky++;
      if (c.flakyFails) throw new HttpException({ down: true }, 503);
      return { fresh: c.flaky };
    }

    @Get('plain')
    plain() {
      return { a: 1, b: { c: 2, d: 3 }, text: LONG };
    }
  }

  @Module({ imports: [AmasModule.forRoot(options)], controllers: [CacheController] })
  class CacheModule implements NestModule {
    configure(consumer: MiddlewareConsumer) {
      consumer.apply((req: never, _res: unknown, next: () => void) => (userFromHeader(req), next())).forRoutes(CacheController);
    }
  }

  const app = await NestFactory.create(CacheModule, platform === 'express' ? new ExpressAdapter() : new FastifyAdapter(), { logger: false, abortOnError: false });
  await app.listen(0, '127.0.0.1');
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1').replace('localhost', '127.0.0.1');
  return { url, amas: app.get(AMAS), counters: c, close: () => app.close() };
}

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** The body decoded from its content-encoding. */
  text: string;
  json: any;
}

/** A request with full control of headers and no transparent decompression (fetch would hide encodings). */
function raw(base: string, path: string, init: { method?: string; headers?: Record<string, string>; body?: unknown } = {}): Promise<RawResponse> {
  const url = new URL(path, base);
  const body = init.body === undefined ? undefined : Buffer.from(typeof init.body === 'string' ? init.body : JSON.stringify(init.body));
  const headers: Record<string, string> = { ...(body ? { 'content-type': 'application/json' } : {}), ...init.headers };
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: url.port, path: url.pathname + url.search, method: init.method ?? 'GET', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const bytes = Buffer.concat(chunks);
        const encoding = res.headers['content-encoding'];
        const decoded = encoding === 'gzip' ? gunzipSync(bytes) : encoding === 'br' ? brotliDecompressSync(bytes) : encoding === 'deflate' ? inflateSync(bytes) : bytes;
        const text = decoded.toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: bytes, text, json });
      });
    });
    req.on('error', reject);
    if (body) req.end(body);
    else req.end();
  });
}

const frameworks: Array<[string, () => Promise<Running>]> = [
  ['express', startExpress],
  ['fastify', startFastify],
  ['nest-express', () => startNest('express')],
  ['nest-fastify', () => startNest('fastify')],
];

describe.each(frameworks)('%s', (_name, start) => {
  it('caches, validates, partitions, compresses and filters through the core pipeline', async () => {
    const app = await start();
    const c = app.counters;
    const get = (path: string, headers: Record<string, string> = {}) => raw(app.url, path, { headers });
    try {
      // MISS, then HIT from the one stored body; ETag and 304.
      const miss = await get('/items/1', { 'x-user': 'alice' });
      expect(miss.status).toBe(200);
      expect(miss.headers['x-cache']).toBe('MISS');
      expect(miss.json.run).toBe(1);
      const hit = await get('/items/1', { 'x-user': 'alice' });
      expect(hit.headers['x-cache']).toBe('HIT');
      expect(hit.json).toEqual(miss.json);
      expect(c.item).toBe(1);
      expect(hit.headers.etag).toMatch(/^"/);
      expect(Number(hit.headers.age)).toBeGreaterThanOrEqual(0);
      const notModified = await get('/items/1', { 'x-user': 'alice', 'if-none-match': String(hit.headers.etag) });
      expect(notModified.status).toBe(304);
      expect(notModified.body.length).toBe(0);
      expect(notModified.headers.etag).toBe(hit.headers.etag);

      // Per-user isolation: bob never gets alice's entry.
      const bob = await get('/items/1', { 'x-user': 'bob' });
      expect(bob.headers['x-cache']).toBe('MISS');
      expect(bob.json.user).toBe('bob');
      expect((await get('/items/1', { 'x-user': 'bob' })).json.user).toBe('bob');
      expect((await get('/items/1', { 'x-user': 'alice' })).json.user).toBe('alice');

      // A shared route: one entry for everyone, with the route's Cache-Control.
      const p1 = await get('/public', { 'x-user': 'alice' });
      const p2 = await get('/public', { 'x-user': 'bob' });
      expect([p1.headers['x-cache'], p2.headers['x-cache']]).toEqual(['MISS', 'HIT']);
      expect(p2.json.run).toBe(p1.json.run);
      expect(p1.headers['cache-control']).toBe('public, max-age=60');
      expect(p2.headers['cache-control']).toBe('public, max-age=60');

      // Request Cache-Control: no-cache bypasses the cache (and refreshes it).
      const bypass = await get('/items/1', { 'x-user': 'alice', 'cache-control': 'no-cache' });
      expect(bypass.headers['x-cache']).toBe('BYPASS');
      expect(bypass.json.run).toBeGreaterThan(miss.json.run);

      // Compression: one stored body, served in each client's encoding (or none).
      for (const [accept, expected] of [
        ['gzip', 'gzip'],
        ['br', 'br'],
        ['deflate', 'deflate'],
        ['gzip;q=0.5, br;q=0.9', 'br'],
        ['identity', undefined],
        ['br;q=0, gzip', 'gzip'],
      ] as const) {
        const res = await get('/items/1', { 'x-user': 'alice', 'accept-encoding': accept });
        expect(res.headers['content-encoding'], accept).toBe(expected);
        expect(res.headers['x-cache'], accept).toBe('HIT');
        expect(res.json.user, accept).toBe('alice');
        expect(String(res.headers.vary).toLowerCase(), accept).toContain('accept-encoding');
        expect(Number(res.headers['content-length']), accept).toBe(res.body.length);
        if (expected) expect(res.body.length, accept).toBeLessThan(res.text.length / 3);
      }
      // The ETag names the representation, whatever the encoding.
      const gz = await get('/items/1', { 'x-user': 'alice', 'accept-encoding': 'gzip' });
      const br = await get('/items/1', { 'x-user': 'alice', 'accept-encoding': 'br' });
      expect(gz.headers.etag).toBe(br.headers.etag);

      // Fields filtering on cached and uncached routes; a malformed expression is a 400 that says why.
      const filtered = await get('/items/1?fields=id,items.price', { 'x-user': 'alice' });
      expect(filtered.headers['x-cache']).toBe('HIT'); // `fields` is not part of the key
      expect(filtered.json).toEqual({ id: '1', items: [{ price: 1 }, { price: 2 }] });
      expect(filtered.headers.etag).not.toBe(hit.headers.etag);
      const plain = await get('/plain?fields=b.c', { 'accept-encoding': 'gzip' });
      expect(plain.json).toEqual({ b: { c: 2 } });
      expect(plain.headers['x-cache']).toBeUndefined();
      const plainBig = await get('/plain', { 'accept-encoding': 'gzip' });
      expect(plainBig.headers['content-encoding']).toBe('gzip');
      for (const bad of ['id,,name', 'items(price', 'a.__proto__%20x', ')']) {
        const res = await get(`/items/1?fields=${bad}`, { 'x-user': 'alice' });
        expect(res.status, bad).toBe(400);
        expect(res.json.error.code, bad).toBe('AMAS_INVALID_FIELDS');
        expect(res.json.error.message, bad).toMatch(/fields/);
      }
      expect(c.item).toBe(4); // alice, bob, /public, the bypass: nothing else ran

      // POST opt-in: keyed on the normalized body (key order, whitespace, excluded fields).
      const chat1 = await raw(app.url, '/chat', { method: 'POST', headers: { 'x-user': 'alice' }, body: { prompt: 'hi', temperature: 0, request_id: 'r1' } });
      const chat2 = await raw(app.url, '/chat', { method: 'POST', headers: { 'x-user': 'alice' }, body: '{ "temperature": 0,\n  "request_id": "r2", "prompt": "hi" }' });
      const chat3 = await raw(app.url, '/chat', { method: 'POST', headers: { 'x-user': 'alice' }, body: { prompt: 'other', temperature: 0 } });
      expect([chat1.headers['x-cache'], chat2.headers['x-cache'], chat3.headers['x-cache']]).toEqual(['MISS', 'HIT', 'MISS']);
      expect(chat2.json).toEqual(chat1.json);
      expect(c.chat).toBe(2);

      // Never stored: Set-Cookie, Cache-Control private, non-2xx.
      for (const path of ['/cookie', '/private', '/error']) {
        await get(path);
        const again = await get(path);
        expect(again.headers['x-cache'], path).toBe('MISS');
      }
      expect([c.cookie, c.priv, c.error]).toEqual([2, 2, 2]);

      // HEAD is answered from the GET entry.
      const head = await raw(app.url, '/items/1', { method: 'HEAD', headers: { 'x-user': 'alice' } });
      expect(head.status).toBe(200);
      expect(head.headers['x-cache']).toBe('HIT');
      expect(head.body.length).toBe(0);

      // 20 concurrent misses of one key: one handler run, everyone gets its response.
      const burst = await Promise.all(Array.from({ length: 20 }, () => get('/slow', { 'x-user': 'carol' })));
      expect(c.slow).toBe(1);
      expect(burst.every((r) => r.status === 200 && r.json.slow === true)).toBe(true);
      expect(burst.filter((r) => r.headers['x-cache'] === 'MISS')).toHaveLength(1);

      // Stale-if-error: past its TTL (within grace) a failing refresh answers the stale entry.
      const fresh = await get('/flaky');
      expect(fresh.json).toEqual({ fresh: 1 });
      await sleep(200);
      c.flakyFails = true;
      const stale = await get('/flaky');
      expect(stale.status).toBe(200);
      expect(stale.headers['x-cache']).toBe('STALE');
      expect(stale.json).toEqual({ fresh: 1 });
      c.flakyFails = false;
      const refreshed = await get('/flaky');
      expect(refreshed.headers['x-cache']).toBe('MISS');
      expect(refreshed.json).toEqual({ fresh: 3 });

      // Metrics by cache status.
      const metrics = await app.amas.registry.metrics();
      expect(metrics).toMatch(/amas_http_cache_total\{route="[^"]*items[^"]*",status="HIT"\} \d+/);
      expect(metrics).toMatch(/amas_http_cache_request_duration_seconds_count\{route="[^"]*items[^"]*",status="HIT"\} [1-9]/);
      expect(metrics).toMatch(/amas_cache_requests_total\{cache="amas",level="l1",result="hit"\} \d+/);
    } finally {
      await app.close();
    }
  });
});

describe('nest: @Cached() runs after auth guards', () => {
  it.each(['express', 'fastify'] as const)('on %s the cache key is partitioned by the user a controller guard set', async (platform) => {
    let runs = 0;

    @Injectable()
    class TokenGuard implements CanActivate {
      canActivate(context: ExecutionContext): boolean {
        const req = context.switchToHttp().getRequest<{ headers: Record<string, string>; user?: unknown }>();
        const token = req.headers.authorization;
        if (!token) return false;
        req.user = { id: token.replace('Bearer ', '') };
        return true;
      }
    }

    @Controller()
    @UseGuards(TokenGuard)
    class MeController {
      @Get('me')
      @Cached()
      me(@Req() req: { user: { id: string } }) {
        runs++;
        return { me: req.user.id, runs };
      }
    }

    @Module({ imports: [AmasModule.forRoot({ logger: silentLogger })], controllers: [MeController], providers: [TokenGuard] })
    class MeModule {}

    const app = await NestFactory.create(MeModule, platform === 'express' ? new ExpressAdapter() : new FastifyAdapter(), { logger: false, abortOnError: false });
    await app.listen(0, '127.0.0.1');
    const url = (await app.getUrl()).replace('[::1]', '127.0.0.1').replace('localhost', '127.0.0.1');
    try {
      // Same client address, two users: each gets their own entry.
      const a1 = await raw(url, '/me', { headers: { authorization: 'Bearer ann' } });
      const b1 = await raw(url, '/me', { headers: { authorization: 'Bearer ben' } });
      const a2 = await raw(url, '/me', { headers: { authorization: 'Bearer ann' } });
      const b2 = await raw(url, '/me', { headers: { authorization: 'Bearer ben' } });
      expect([a1.json.me, b1.json.me, a2.json.me, b2.json.me]).toEqual(['ann', 'ben', 'ann', 'ben']);
      expect([a1.headers['x-cache'], b1.headers['x-cache'], a2.headers['x-cache'], b2.headers['x-cache']]).toEqual(['MISS', 'MISS', 'HIT', 'HIT']);
      expect(runs).toBe(2);
      expect((await raw(url, '/me')).status).toBe(403);
    } finally {
      await app.close();
    }
  });

  it('with interceptor: false the response step does not run (no X-Cache), admission still does', async () => {
    let runs = 0;

    @Controller()
    class PlainController {
      @Get('n')
      @Cached()
      n() {
        return { runs: ++runs };
      }
    }

    @Module({ imports: [AmasModule.forRoot({ logger: silentLogger }, { interceptor: false })], controllers: [PlainController] })
    class PlainModule {}

    const app = await NestFactory.create(PlainModule, new ExpressAdapter(), { logger: false, abortOnError: false });
    await app.listen(0, '127.0.0.1');
    const url = (await app.getUrl()).replace('[::1]', '127.0.0.1').replace('localhost', '127.0.0.1');
    try {
      const first = await raw(url, '/n');
      const second = await raw(url, '/n');
      expect([first.json.runs, second.json.runs]).toEqual([1, 2]);
      expect(second.headers['x-cache']).toBeUndefined();
      expect(second.headers['x-response-time']).toMatch(/ms$/); // the guard admitted and timed it
    } finally {
      await app.close();
    }
  });
});

describe('express: what POST caching needs', () => {
  it('a body parsed after admission is never keyed (served uncached, one warning); `when` picks the requests cached', async () => {
    const warnings: string[] = [];
    const amas = amasMiddleware({ logger: { warn: (m: string) => void warnings.push(m), error: () => undefined } });
    const app = express();
    let runs = 0;
    // Wrong order: amas.route admits before express.json() has parsed the body.
    app.post('/late', amas.route({ cache: { methods: ['POST'] } }), express.json(), (req, res) => {
      res.json({ echo: req.body.prompt, run: ++runs });
    });
    app.post(
      '/chat',
      express.json(),
      amas.route({ cache: { methods: ['POST'], when: (req) => (req.body as { temperature?: number }).temperature === 0 } }),
      (req, res) => {
        res.json({ echo: req.body.prompt, run: ++runs });
      },
    );
    const server = app.listen(0, '127.0.0.1');
    await new Promise<void>((r) => server.once('listening', () => r()));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const a = await raw(url, '/late', { method: 'POST', body: { prompt: 'one' } });
      const b = await raw(url, '/late', { method: 'POST', body: { prompt: 'two' } });
      expect([a.json.echo, b.json.echo]).toEqual(['one', 'two']);
      expect([a.headers['x-cache'], b.headers['x-cache']]).toEqual([undefined, undefined]);
      expect(warnings.filter((w) => w.includes('body unparsed'))).toHaveLength(1);
      const hot = { prompt: 'p', temperature: 0 };
      const warm = { prompt: 'p', temperature: 0.7 };
      const r1 = await raw(url, '/chat', { method: 'POST', body: hot });
      const r2 = await raw(url, '/chat', { method: 'POST', body: hot });
      const r3 = await raw(url, '/chat', { method: 'POST', body: warm });
      const r4 = await raw(url, '/chat', { method: 'POST', body: warm });
      expect([r1.headers['x-cache'], r2.headers['x-cache'], r3.headers['x-cache'], r4.headers['x-cache']]).toEqual(['MISS', 'HIT', undefined, undefined]);
      expect(r2.json.run).toBe(r1.json.run);
      expect(r4.json.run).toBeGreaterThan(r3.json.run);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await amas.close();
    }
  });
});
