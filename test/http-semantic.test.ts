/**
 * The semantic cache on an OpenAI-style `POST /v1/chat/completions` route, the same scenario against Express,
 * Fastify and NestJS (both platforms), each a real server with the real embedding model: a paraphrase is
 * answered from the cache (X-Cache: SEMANTIC-HIT) as JSON and as an event stream, near-misses and other
 * partitions (system prompt, user, model) reach the handler, a completed stream is cached while truncated and
 * aborted ones are not, per-request controls (bypass, refresh, TTL, threshold), and bad input (a 400 naming
 * the header, or a bypass saying why). The route handler plays the provider: it counts its calls.
 */
import 'reflect-metadata';
import { request as httpRequest, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import express from 'express';
import Fastify from 'fastify';
import { Body, Controller, Injectable, Module, Post, Res, type MiddlewareConsumer, type NestModule } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { silentLogger, type Amas, type AmasOptions, type SemanticCacheOption } from '@amas/core';
import { amasMiddleware } from '@amas/express';
import amasPlugin from '@amas/fastify';
import { AMAS, AmasModule, SemanticCached } from '@amas/nestjs';

interface Running {
  url: string;
  amas: Amas;
  calls: () => number;
  close(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const options: AmasOptions = { logger: silentLogger };
const ROUTE: SemanticCacheOption = { maxTtl: '1h' };
const PATH = '/v1/chat/completions';

interface ChatBody {
  model?: string;
  stream?: boolean;
  messages?: Array<{ role: string; content: unknown }>;
}

/**
 * The provider: answers `answer #<n>: <last user message>` as JSON or as an event stream. `x-test-mode`:
 * `truncate` ends with finish_reason "length"; `slow` streams a piece every 50 ms (a client can leave midway).
 */
function provider() {
  let calls = 0;
  const answer = (body: ChatBody, mode: string | undefined, res: ServerResponse): void => {
    calls++;
    const last = [...(body.messages ?? [])].reverse().find((m) => m.role === 'user');
    const content = `answer #${calls}: ${typeof last?.content === 'string' ? last.content : 'parts'}`;
    const finish = mode === 'truncate' ? 'length' : 'stop';
    const base = { id: `chatcmpl-${calls}`, created: 1, model: body.model ?? 'gpt-test' };
    if (body.stream !== true) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ...base, object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: finish }], usage: { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 } }));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const words = content.split(' ');
    const events = [
      ...words.map((w, i) => ({ ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: i === 0 ? w : ` ${w}` }, finish_reason: null }] })),
      { ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta: {}, finish_reason: finish }] },
    ].map((e) => `data: ${JSON.stringify(e)}\n\n`);
    events.push('data: [DONE]\n\n');
    if (mode !== 'slow') {
      for (const e of events) res.write(e);
      res.end();
      return;
    }
    let i = 0;
    const timer = setInterval(() => {
      if (res.destroyed) return clearInterval(timer);
      if (i < events.length) res.write(events[i++]);
      else {
        clearInterval(timer);
        res.end();
      }
    }, 50);
  };
  return { answer, calls: () => calls };
}

function userFromHeader(req: { headers: Record<string, unknown>; user?: unknown }): void {
  const header = req.headers['x-user'];
  if (typeof header === 'string') req.user = { id: header };
}

async function startExpress(engine: AmasOptions = options): Promise<Running> {
  const p = provider();
  const app = express();
  app.use((req, _res, next) => (userFromHeader(req as never), next()));
  app.use(express.json({ limit: '1mb' }));
  const amas = amasMiddleware(engine);
  app.use(amas);
  app.post(PATH, amas.route({ semanticCache: ROUTE }), (req, res) => p.answer(req.body, req.get('x-test-mode'), res));
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((r) => server.once('listening', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    amas: amas.amas,
    calls: p.calls,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await amas.close();
    },
  };
}

async function startFastify(): Promise<Running> {
  const p = provider();
  const app = Fastify({ bodyLimit: 1024 * 1024 });
  app.decorateRequest('user', null);
  app.addHook('onRequest', (request, _reply, done) => (userFromHeader(request as never), done()));
  await app.register(amasPlugin, options);
  app.post(PATH, { config: { amas: { semanticCache: ROUTE } } }, (req, reply) => {
    reply.hijack();
    p.answer(req.body as ChatBody, req.headers['x-test-mode'] as string | undefined, reply.raw);
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, amas: app.amas, calls: p.calls, close: () => app.close() };
}

async function startNest(platform: 'express' | 'fastify'): Promise<Running> {
  const p = provider();

  @Controller('v1/chat')
  class ChatController {
    @Post('completions')
    @SemanticCached(ROUTE as Exclude<SemanticCacheOption, boolean>)
    completions(@Body() body: ChatBody, @Res() res: { raw?: ServerResponse; req?: { headers: Record<string, string> }; hijack?: () => void } & ServerResponse) {
      const raw = res.raw ?? res;
      const mode = raw.req?.headers['x-test-mode'];
      res.hijack?.();
      p.answer(body, typeof mode === 'string' ? mode : undefined, raw);
    }
  }

  @Module({ imports: [AmasModule.forRoot(options)], controllers: [ChatController] })
  class ChatModule implements NestModule {
    configure(consumer: MiddlewareConsumer) {
      consumer.apply((req: never, _res: unknown, next: () => void) => (userFromHeader(req), next())).forRoutes(ChatController);
    }
  }

  const app = await NestFactory.create(ChatModule, platform === 'express' ? new ExpressAdapter() : new FastifyAdapter({ bodyLimit: 1024 * 1024 }), { logger: false, abortOnError: false });
  await app.listen(0, '127.0.0.1');
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1').replace('localhost', '127.0.0.1');
  return { url, amas: app.get(AMAS), calls: p.calls, close: () => app.close() };
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
}

function post(base: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  const url = new URL(PATH, base);
  const bytes = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: url.port, path: url.pathname, method: 'POST', headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.end(bytes);
  });
}

/** Starts a streaming request and leaves after the first event arrives (the client goes away). */
function postAndLeave(base: string, body: unknown): Promise<void> {
  const url = new URL(PATH, base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: url.port, path: url.pathname, method: 'POST', headers: { 'content-type': 'application/json', 'x-test-mode': 'slow' } }, (res) => {
      res.once('data', () => {
        req.destroy();
        resolve();
      });
    });
    req.on('error', (error) => ((error as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve() : reject(error)));
    req.end(JSON.stringify(body));
  });
}

/** The content of an event stream of chat.completion.chunk events, and whether it ended with [DONE]. */
function streamed(text: string): { content: string; done: boolean; finish: unknown; objects: string[] } {
  let content = '';
  let done = false;
  let finish: unknown;
  const objects: string[] = [];
  for (const event of text.split('\n\n')) {
    if (!event.startsWith('data: ')) continue;
    const data = event.slice(6);
    if (data === '[DONE]') {
      done = true;
      continue;
    }
    const chunk = JSON.parse(data);
    objects.push(chunk.object);
    for (const choice of chunk.choices) {
      if (typeof choice.delta?.content === 'string') content += choice.delta.content;
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  }
  return { content, done, finish, objects };
}

const chat = (prompt: unknown, extra: Record<string, unknown> = {}) => ({
  model: 'gpt-test',
  temperature: 0,
  messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: prompt }],
  ...extra,
});

/** Waits for the fire-and-forget store of a just-answered request (embedding happens there). */
async function stored(app: Running, entries: number): Promise<void> {
  for (let i = 0; i < 200 && app.amas.semantic.stats().entries < entries; i++) await sleep(10);
}

const frameworks: Array<[string, () => Promise<Running>]> = [
  ['express', startExpress],
  ['fastify', startFastify],
  ['nest (express)', () => startNest('express')],
  ['nest (fastify)', () => startNest('fastify')],
];

beforeAll(async () => {
  // Load the model once for the file (every engine's default embedder shares the process-wide model).
  const warm = await startExpress();
  await post(warm.url, chat('warm up the model'));
  await stored(warm, 1);
  await warm.close();
}, 60_000);

describe.each(frameworks)('semantic cache over HTTP: %s', (_name, start) => {
  let app: Running;
  beforeAll(async () => {
    app = await start();
  }, 30_000);
  afterAll(async () => {
    await app?.close();
  });

  it('answers a paraphrase from the cache, as JSON and as an event stream', async () => {
    const first = await post(app.url, chat('How do I reverse a list in Python?'));
    expect(first.status).toBe(200);
    expect(first.headers['x-cache']).toBe('MISS');
    const answer = first.json.choices[0].message.content as string;
    expect(answer).toMatch(/^answer #\d+: How do I reverse/);
    await stored(app, 1);
    const calls = app.calls();

    const paraphrase = await post(app.url, chat('In Python, how can a list be reversed?'));
    expect(paraphrase.status).toBe(200);
    expect(paraphrase.headers['x-cache']).toBe('SEMANTIC-HIT');
    expect(Number(paraphrase.headers['x-amas-semantic-score'])).toBeGreaterThan(0.7);
    expect(paraphrase.headers['content-type']).toMatch(/application\/json/);
    expect(paraphrase.json).toMatchObject({ object: 'chat.completion', model: 'gpt-test', choices: [{ index: 0, message: { role: 'assistant', content: answer }, finish_reason: 'stop' }], usage: { total_tokens: 12 } });
    expect(paraphrase.json.id).toMatch(/^chatcmpl-amas/);

    const asStream = await post(app.url, chat('How do I reverse a list in Python?', { stream: true, stream_options: { include_usage: true } }));
    expect(asStream.headers['x-cache']).toBe('HIT');
    expect(asStream.headers['content-type']).toMatch(/text\/event-stream/);
    const events = streamed(asStream.text);
    expect(events).toMatchObject({ content: answer, done: true, finish: 'stop' });
    expect(new Set(events.objects)).toEqual(new Set(['chat.completion.chunk']));
    expect(asStream.text).toContain('"usage":{"prompt_tokens":5');
    expect(app.calls()).toBe(calls);

    const metrics = await app.amas.registry.metrics();
    expect(metrics).toMatch(/amas_http_cache_total\{route="[^"]*completions",status="SEMANTIC-HIT"\} [1-9]/);
    expect(metrics).toMatch(/amas_http_cache_total\{route="[^"]*completions",status="MISS"\} [1-9]/);
    expect(metrics).toMatch(/amas_semantic_cache_lookups_total\{cache="semantic",result="semantic_hit"\} [1-9]/);
    expect(metrics).toMatch(/amas_semantic_cache_entries\{cache="semantic"\} [1-9]/);
    // Latency by cache status: the hits and the miss were each observed.
    expect(metrics).toMatch(/amas_http_cache_request_duration_seconds_count\{route="[^"]*completions",status="SEMANTIC-HIT"\} [1-9]/);
    expect(metrics).toMatch(/amas_http_cache_request_duration_seconds_count\{route="[^"]*completions",status="MISS"\} [1-9]/);
  });

  it('never answers a different question, another system prompt, model or user', async () => {
    const before = app.amas.semantic.stats().entries;
    await post(app.url, chat('Set an alarm for 6:30 am'));
    await stored(app, before + 1);
    const calls = app.calls();
    const misses = [
      await post(app.url, chat('Set an alarm for 7:30 am')),
      await post(app.url, { ...chat('Set an alarm for 6:30 am'), messages: [{ role: 'system', content: 'You are a pirate.' }, { role: 'user', content: 'Set an alarm for 6:30 am' }] }),
      await post(app.url, chat('Set an alarm for 6:30 am', { model: 'gpt-other' })),
      await post(app.url, chat('Set an alarm for 6:30 am', { temperature: 1.2 })),
      await post(app.url, chat('Set an alarm for 6:30 am'), { 'x-user': 'someone-else' }),
    ];
    for (const miss of misses) {
      expect(miss.status).toBe(200);
      expect(miss.headers['x-cache']).toBe('MISS');
    }
    expect(app.calls()).toBe(calls + misses.length);
    // The first user's own repeat is still a hit.
    expect((await post(app.url, chat('Set an alarm for 6:30 am'))).headers['x-cache']).toBe('HIT');
  });

  it('caches a stream that completed; never one that was truncated or that the client left', async () => {
    const entries = app.amas.semantic.stats().entries;
    const live = await post(app.url, chat('What is the boiling point of water at sea level?', { stream: true }));
    expect(live.headers['x-cache']).toBe('MISS');
    expect(live.headers['content-type']).toMatch(/text\/event-stream/);
    const original = streamed(live.text);
    expect(original.done).toBe(true);
    await stored(app, entries + 1);
    const replay = await post(app.url, chat('What is the boiling point of water at sea level?'));
    expect(replay.headers['x-cache']).toBe('HIT');
    expect(replay.json.choices[0].message.content).toBe(original.content);

    const truncated = await post(app.url, chat('Write a long poem about the sea.', { stream: true }), { 'x-test-mode': 'truncate' });
    expect(streamed(truncated.text).finish).toBe('length');
    const truncatedJson = await post(app.url, chat('Write a long poem about mountains.'), { 'x-test-mode': 'truncate' });
    expect(truncatedJson.json.choices[0].finish_reason).toBe('length');
    await postAndLeave(app.url, chat('Explain how a refrigerator works.', { stream: true }));
    await sleep(600); // the handler's stream runs out on a closed socket
    expect(app.amas.semantic.stats().entries).toBe(entries + 1);
    const calls = app.calls();
    expect((await post(app.url, chat('Write a long poem about the sea.', { stream: true }))).headers['x-cache']).toBe('MISS');
    expect((await post(app.url, chat('Explain how a refrigerator works.'))).headers['x-cache']).toBe('MISS');
    expect(app.calls()).toBe(calls + 2);
  });

  it('per-request controls: bypass, refresh, threshold and TTL', async () => {
    const prompt = 'How many legs does a spider have?';
    const before = app.amas.semantic.stats().entries;
    await post(app.url, chat(prompt));
    await stored(app, before + 1);
    let calls = app.calls();

    const bypass = await post(app.url, chat(prompt), { 'x-amas-cache': 'bypass' });
    expect(bypass.headers['x-cache']).toBe('BYPASS');
    expect((await post(app.url, chat(prompt), { 'cache-control': 'no-store' })).headers['x-cache']).toBe('BYPASS');
    expect(app.calls()).toBe(calls + 2);

    const refreshed = await post(app.url, chat(prompt), { 'x-amas-cache': 'refresh' });
    expect(refreshed.headers['x-cache']).toBe('MISS');
    const fresh = refreshed.json.choices[0].message.content as string;
    await sleep(150); // the refreshed answer's store
    expect((await post(app.url, chat(prompt))).json.choices[0].message.content).toBe(fresh);
    calls = app.calls();

    // A paraphrase that hits at the route's threshold misses at 0.99.
    await post(app.url, chat('How do I reverse a list in Python?'));
    const strict = await post(app.url, chat('In Python, how can a list be reversed?'), { 'x-amas-cache-threshold': '0.99' });
    expect(strict.headers['x-cache']).toBe('MISS');

    const short = 'Name the largest planet in the solar system.';
    await post(app.url, chat(short), { 'x-amas-cache-ttl': '1' });
    await sleep(150);
    expect((await post(app.url, chat(short))).headers['x-cache']).toBe('HIT');
    await sleep(1100);
    expect((await post(app.url, chat(short))).headers['x-cache']).toBe('MISS');
  });

  it('bad input: a 400 naming the header, or the handler answers uncached and says why', async () => {
    const calls = app.calls();
    const bad: Array<[string, string, RegExp]> = [
      ['x-amas-cache', 'sometimes', /X-Amas-Cache: expected "bypass".*received "sometimes"/],
      ['x-amas-cache-ttl', 'abc', /X-Amas-Cache-Ttl: expected seconds/],
      ['x-amas-cache-ttl', '0', /X-Amas-Cache-Ttl/],
      ['x-amas-cache-ttl', '2d', /at most 3600 s.*received "2d"/],
      ['x-amas-cache-threshold', '1.5', /X-Amas-Cache-Threshold: expected a number above 0 and at most 1/],
      ['x-amas-cache-threshold', 'high', /X-Amas-Cache-Threshold/],
    ];
    for (const [header, value, message] of bad) {
      const res = await post(app.url, chat('Hello there'), { [header]: value });
      expect(res.status, `${header}: ${value}`).toBe(400);
      expect(res.json.error, `${header}: ${value}`).toMatchObject({ code: 'AMAS_INVALID_REQUEST', status: 400 });
      expect(res.json.error.message).toMatch(message);
    }
    expect(app.calls()).toBe(calls);

    const bypassed: Array<[unknown, RegExp]> = [
      [chat([{ type: 'text', text: 'What is in this picture?' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }]), /image_url/],
      [{ model: 'gpt-test', messages: [{ role: 'system', content: 'You are terse.' }] }, /no user message/],
      [chat('   '), /empty/],
      [chat('x'.repeat(40_000)), /maxPromptChars/],
      [{ model: 'gpt-test', messages: 'not a list' }, /no messages/],
      [chat('Hello there', { n: 2 }), /n > 1/],
    ];
    for (const [body, reason] of bypassed) {
      const res = await post(app.url, body);
      expect(res.status).toBe(200);
      expect(res.headers['x-cache']).toBe('BYPASS');
      expect(String(res.headers['x-amas-cache-reason'])).toMatch(reason);
    }
    expect(app.calls()).toBe(calls + bypassed.length);
  });
});

describe('semantic cache over HTTP on Redis', () => {
  it('replicas share answers: one stores, the other answers a paraphrase; a restarted replica still does', async () => {
    const engine: AmasOptions = { logger: silentLogger, redis: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', semanticCache: { name: `http-${process.pid}-${Date.now()}` } };
    const a = await startExpress(engine);
    let b = await startExpress(engine);
    try {
      await a.amas.ready();
      await b.amas.ready();
      const first = await post(a.url, chat('How do I reverse a list in Python?'));
      expect(first.headers['x-cache']).toBe('MISS');
      await stored(a, 1);
      for (let i = 0; i < 100 && b.amas.semantic.stats().entries < 1; i++) await sleep(20); // the Pub/Sub hop
      const other = await post(b.url, chat('In Python, how can a list be reversed?'));
      expect(other.headers['x-cache']).toBe('SEMANTIC-HIT');
      expect(other.json.choices[0].message.content).toBe(first.json.choices[0].message.content);
      expect(b.calls()).toBe(0);
      await b.close();
      b = await startExpress(engine);
      await b.amas.ready();
      expect(b.amas.semantic.stats().entries).toBe(1);
      expect((await post(b.url, chat('How can I reverse a Python list?'))).headers['x-cache']).toBe('SEMANTIC-HIT');
      await a.amas.semantic.clear();
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('semantic cache over HTTP when it cannot work', () => {
  it('a failing embedder degrades to the handler (BYPASS), logged once; an unparsed body bypasses and says why', async () => {
    const warnings: string[] = [];
    const failing = { dimensions: 4, embed: async () => Promise.reject(new Error('model missing')), close: async () => undefined };
    const engine: AmasOptions = { logger: { warn: (m: unknown) => warnings.push(String(m)), error: () => undefined }, semanticCache: { embedder: failing } };
    const app = await startExpress(engine);
    try {
      for (let i = 0; i < 3; i++) {
        const res = await post(app.url, chat('How do I reverse a list in Python?'));
        expect(res.status).toBe(200);
        expect(res.json.choices[0].message.content).toMatch(/^answer #/);
      }
      expect(app.calls()).toBe(3);
      await sleep(50);
      expect(warnings.filter((w) => /semantic cache "semantic": could not .*model missing/.test(w))).toHaveLength(1);
    } finally {
      await app.close();
    }

    // The body parser after AMAS: nothing to read, so the request passes through uncached.
    const express5 = express();
    const amas = amasMiddleware({ logger: silentLogger });
    let calls = 0;
    express5.post(PATH, amas.route({ semanticCache: true }), express.json(), (_req, res) => {
      calls++;
      res.json({ choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }] });
    });
    const server = express5.listen(0, '127.0.0.1');
    await new Promise<void>((r) => server.once('listening', () => r()));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const res = await post(url, chat('Hello'));
      expect(res.status).toBe(200);
      expect(res.headers['x-cache']).toBe('BYPASS');
      expect(String(res.headers['x-amas-cache-reason'])).toMatch(/not a parsed JSON object/);
      expect(calls).toBe(1);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await amas.close();
    }
  });
});

describe('@SemanticCached() on a Nest provider method', () => {
  it('returns the result of an earlier call whose prompt means the same; other tenants and near-misses run', async () => {
    let runs = 0;

    @Injectable()
    class Assistant {
      @SemanticCached({ partition: (_prompt: string, tenant: string) => tenant })
      async ask(prompt: string, tenant: string) {
        runs++;
        return { prompt, tenant, run: runs };
      }
    }

    @Module({ imports: [AmasModule.forRoot(options)], providers: [Assistant] })
    class AssistantModule {}

    const app = await NestFactory.createApplicationContext(AssistantModule, { logger: false, abortOnError: false });
    await app.init();
    try {
      const assistant = app.get(Assistant);
      const first = await assistant.ask('How do I reverse a list in Python?', 'acme');
      expect(await assistant.ask('In Python, how can a list be reversed?', 'acme')).toEqual(first);
      expect((await assistant.ask('In Python, how can a list be reversed?', 'globex')).run).toBe(2);
      expect((await assistant.ask('Set an alarm for 6:30 am', 'acme')).run).toBe(3);
      expect((await assistant.ask('Set an alarm for 7:30 am', 'acme')).run).toBe(4);
      // Unreadable input runs uncached instead of failing.
      expect((await assistant.ask('', 'acme')).run).toBe(5);
      expect((await assistant.ask('', 'acme')).run).toBe(6);
      expect(runs).toBe(6);
    } finally {
      await app.close();
    }
  });
});
