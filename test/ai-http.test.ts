/**
 * The AI provider layer behind each adapter's handler, the same scenario against Express, Fastify and NestJS
 * (both platforms), each a real server in front of real mock providers: a chat completion routed and billed
 * (X-Amas-Tokens / X-Amas-Cost matching the provider's usage and the price table), a stream passed through
 * with its usage as trailers (and the usage chunk the caller did not ask for kept out), a client that hangs up
 * aborting the upstream call, a fallback when the model's only endpoint is down, a budget refusing a call
 * before it reaches the provider, concurrent embeddings batched into fewer upstream calls, and the caller's
 * usage endpoint.
 */
import 'reflect-metadata';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import express from 'express';
import Fastify from 'fastify';
import { Controller, Get, Inject, Module, Post, Req, Res } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { createPriceTable, silentLogger, type Amas, type AmasOptions, type NeutralRequest } from '@amas/core';
import { amasMiddleware } from '@amas/express';
import amasPlugin, { aiHandler, aiUsageHandler } from '@amas/fastify';
import { AMAS, AmasAiHandler, AmasModule } from '@amas/nestjs';
import { startMockProvider, type MockProvider } from '@amas/loadtest';

interface Running {
  url: string;
  amas: Amas;
  close(): Promise<void>;
}

let primary: MockProvider;
let secondary: MockProvider;
let embedder: MockProvider;
let down: MockProvider;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function engineOptions(): AmasOptions {
  return {
    logger: silentLogger,
    http: { identity: (req: NeutralRequest) => (typeof req.headers['x-user'] === 'string' ? req.headers['x-user'] : undefined) },
    ai: {
      models: {
        'gpt-4o-mini': { endpoints: [{ url: primary.url, id: 'primary' }, { url: secondary.url, id: 'secondary' }] },
        // One endpoint that is down: calls fall back to gpt-4o-mini.
        'gpt-4o': { endpoints: [{ url: down.url, id: 'down' }], fallbacks: ['gpt-4o-mini'], retry: { maxAttempts: 1 } },
        'text-embedding-3-small': { endpoints: [{ url: embedder.url, id: 'embedder' }] },
      },
      budgets: { users: { 'tight-budget': { day: 0.000001 } } },
      embeddingBatch: { maxWaitMs: 20 },
    },
  };
}

async function startExpress(): Promise<Running> {
  const app = express();
  app.use(express.json());
  const amas = amasMiddleware(engineOptions());
  app.use(amas);
  app.post('/v1/chat/completions', amas.aiHandler('chat'));
  app.post('/v1/embeddings', amas.aiHandler('embeddings'));
  app.get('/v1/usage', amas.aiUsageHandler());
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((r) => server.once('listening', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    amas: amas.amas,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await amas.close();
    },
  };
}

async function startFastify(): Promise<Running> {
  const app = Fastify();
  await app.register(amasPlugin, engineOptions());
  app.post('/v1/chat/completions', aiHandler('chat'));
  app.post('/v1/embeddings', aiHandler('embeddings'));
  app.get('/v1/usage', aiUsageHandler());
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, amas: app.amas, close: () => app.close() };
}

async function startNest(platform: 'express' | 'fastify'): Promise<Running> {
  @Controller('v1')
  class AiController {
    constructor(@Inject(AmasAiHandler) private readonly ai: AmasAiHandler) {}

    @Post('chat/completions')
    chat(@Req() req: unknown, @Res() res: unknown) {
      return this.ai.serve('chat', req, res);
    }

    @Post('embeddings')
    embeddings(@Req() req: unknown, @Res() res: unknown) {
      return this.ai.serve('embeddings', req, res);
    }

    @Get('usage')
    usage(@Req() req: unknown, @Res() res: unknown) {
      return this.ai.usage(req, res);
    }
  }

  @Module({ imports: [AmasModule.forRoot(engineOptions())], controllers: [AiController] })
  class AiModule {}

  const app = await NestFactory.create(AiModule, platform === 'express' ? new ExpressAdapter() : new FastifyAdapter(), { logger: false, abortOnError: false });
  await app.listen(0, '127.0.0.1');
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1').replace('localhost', '127.0.0.1');
  return { url, amas: app.get(AMAS), close: () => app.close() };
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  trailers: Record<string, string | undefined>;
  text: string;
  json: any;
}

function call(base: string, path: string, body: unknown, headers: Record<string, string> = {}, method = 'POST'): Promise<Reply> {
  const url = new URL(path, base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: url.port, path: url.pathname, method, headers: { 'content-type': 'application/json', 'x-user': 'alice', ...headers } }, (res) => {
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
        resolve({ status: res.statusCode ?? 0, headers: res.headers, trailers: res.trailers as Record<string, string | undefined>, text, json });
      });
    });
    req.on('error', reject);
    req.end(method === 'GET' ? undefined : JSON.stringify(body));
  });
}

/** Starts a stream and hangs up after the first bytes. */
function callAndLeave(base: string, body: unknown): Promise<void> {
  const url = new URL('/v1/chat/completions', base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: url.port, path: url.pathname, method: 'POST', headers: { 'content-type': 'application/json', 'x-user': 'leaver' } }, (res) => {
      res.once('data', () => {
        req.destroy();
        resolve();
      });
    });
    req.on('error', (error) => ((error as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve() : reject(error)));
    req.end(JSON.stringify(body));
  });
}

const chat = (content: string, extra: Record<string, unknown> = {}) => ({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }], max_tokens: 50, ...extra });
const prices = createPriceTable();

beforeAll(async () => {
  primary = await startMockProvider({ latencyMs: 5, chunkDelayMs: 2, seed: 1 });
  secondary = await startMockProvider({ latencyMs: 5, chunkDelayMs: 2, seed: 2 });
  embedder = await startMockProvider({ latencyMs: 30, seed: 3 });
  down = await startMockProvider({ seed: 4 });
  down.setOutage({ status: 503 });
});

afterAll(async () => {
  await Promise.all([primary, secondary, embedder, down].map((m) => m?.close()));
});

const frameworks: Array<[string, () => Promise<Running>]> = [
  ['express', startExpress],
  ['fastify', startFastify],
  ['nest (express)', () => startNest('express')],
  ['nest (fastify)', () => startNest('fastify')],
];

describe.each(frameworks)('AI provider layer over HTTP: %s', (_name, start) => {
  let app: Running;
  beforeAll(async () => {
    app = await start();
  }, 30_000);
  afterAll(async () => {
    await app?.close();
  });

  it('routes a chat completion across the endpoints and bills it from the provider usage', async () => {
    const before = primary.stats().chat + secondary.stats().chat;
    const replies = [await call(app.url, '/v1/chat/completions', chat('Hello there')), await call(app.url, '/v1/chat/completions', chat('Hello again'))];
    for (const reply of replies) {
      expect(reply.status).toBe(200);
      expect(reply.json.object).toBe('chat.completion');
      const usage = reply.json.usage;
      expect(Number(reply.headers['x-amas-tokens'])).toBe(usage.total_tokens);
      const expected = prices.cost('gpt-4o-mini', { inputTokens: usage.prompt_tokens, outputTokens: usage.completion_tokens }).cost;
      expect(Number(reply.headers['x-amas-cost'])).toBeCloseTo(expected, 6);
      expect(reply.headers['x-amas-model']).toBe('gpt-4o-mini');
    }
    // Round-robin: one call to each endpoint.
    expect(new Set(replies.map((r) => r.headers['x-amas-endpoint']))).toEqual(new Set(['primary', 'secondary']));
    expect(primary.stats().chat + secondary.stats().chat).toBe(before + 2);
  });

  it('passes a stream through, with its usage as trailers and no usage chunk the caller did not ask for', async () => {
    const reply = await call(app.url, '/v1/chat/completions', chat('Tell me a story', { stream: true }));
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toMatch(/text\/event-stream/);
    const events = reply.text.split('\n\n').filter(Boolean);
    expect(events.at(-1)).toBe('data: [DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)));
    expect(chunks.every((c) => Array.isArray(c.choices) && c.choices.length > 0)).toBe(true);
    // Nor the `usage: null` the provider puts on every chunk once usage was asked for (as OpenAI does).
    expect(chunks.filter((c) => 'usage' in c)).toEqual([]);
    const content = chunks.map((c) => c.choices[0].delta?.content ?? '').join('');
    expect(content.length).toBeGreaterThan(0);
    expect(Number(reply.trailers['x-amas-tokens'])).toBeGreaterThan(0);
    expect(Number(reply.trailers['x-amas-cost'])).toBeGreaterThan(0);

    const asked = await call(app.url, '/v1/chat/completions', chat('Tell me a story', { stream: true, stream_options: { include_usage: true } }));
    expect(asked.text).toMatch(/"choices":\[\],"usage":\{"prompt_tokens":\d+/);
    expect(asked.text).toContain('"usage":null'); // the caller asked: the provider's stream as it is
  });

  it('a client that hangs up mid-stream aborts the upstream call', async () => {
    const aborts = () => primary.stats().clientAborts + secondary.stats().clientAborts;
    const before = aborts();
    // A long answer, slowly: the client leaves after the first event.
    primary.setLatency(0);
    await callAndLeave(app.url, chat('x '.repeat(10) + 'please write at length', { stream: true, max_tokens: 2000 }));
    for (let i = 0; i < 100 && aborts() === before; i++) await sleep(20);
    expect(aborts()).toBe(before + 1);
    primary.setLatency(5);
  });

  it('falls back to another model when the only endpoint of the asked one is down', async () => {
    const reply = await call(app.url, '/v1/chat/completions', chat('Are you there?', { model: 'gpt-4o' }));
    expect(reply.status).toBe(200);
    expect(reply.headers['x-amas-model']).toBe('gpt-4o-mini');
    expect(Number(reply.headers['x-amas-attempts'])).toBe(2);
  });

  it('refuses a call over budget before it reaches the provider, with a clear 429', async () => {
    const before = primary.stats().chat + secondary.stats().chat;
    const reply = await call(app.url, '/v1/chat/completions', chat('Expensive question'), { 'x-user': 'tight-budget' });
    expect(reply.status).toBe(429);
    expect(reply.json.error.code).toBe('AMAS_BUDGET_EXCEEDED');
    expect(reply.json.error.message).toMatch(/tight-budget/);
    expect(Number(reply.headers['retry-after'])).toBeGreaterThan(0);
    expect(primary.stats().chat + secondary.stats().chat).toBe(before);
  });

  it('bad bodies get a clear 4xx and reach no provider', async () => {
    const before = primary.stats().requests + secondary.stats().requests;
    const noModel = await call(app.url, '/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }] });
    expect(noModel.status).toBe(400);
    expect(noModel.json.error.code).toBe('AMAS_INVALID_REQUEST');
    const unknownModel = await call(app.url, '/v1/chat/completions', chat('hi', { model: 'no-such-model' }));
    expect(unknownModel.status).toBe(404);
    expect(unknownModel.json.error.message).toMatch(/no-such-model/);
    expect(primary.stats().requests + secondary.stats().requests).toBe(before);
  });

  it('batches concurrent embedding calls; each caller gets its own vectors', async () => {
    const before = embedder.stats().embeddings;
    const inputs = Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? `text ${i}` : [`text ${i}a`, `text ${i}b`]));
    const replies = await Promise.all(inputs.map((input) => call(app.url, '/v1/embeddings', { model: 'text-embedding-3-small', input })));
    replies.forEach((reply, i) => {
      expect(reply.status).toBe(200);
      const expected = Array.isArray(inputs[i]) ? 2 : 1;
      expect(reply.json.data.map((d: { index: number }) => d.index)).toEqual(Array.from({ length: expected }, (_, j) => j));
      expect(Number(reply.headers['x-amas-tokens'])).toBe(reply.json.usage.total_tokens);
    });
    const upstream = embedder.stats().embeddings - before;
    expect(upstream).toBeLessThan(inputs.length);
    expect(upstream).toBeGreaterThanOrEqual(1);
  });

  it('answers the caller its own usage and budgets', async () => {
    await app.amas.ai.costs.flush();
    const reply = await call(app.url, '/v1/usage', undefined, {}, 'GET');
    expect(reply.status).toBe(200);
    expect(reply.json.user).toBe('alice');
    expect(reply.json.usage.requests).toBeGreaterThanOrEqual(4);
    expect(reply.json.usage.cost).toBeGreaterThan(0);
    expect(Object.keys(reply.json.usage.byModel)).toContain('gpt-4o-mini');
    // No budget for alice: no limit, nothing left to say about remaining (Infinity is sent as null).
    expect(reply.json.budget.day.limit).toBeUndefined();
    expect(reply.json.budget.day.remaining).toBeNull();
    expect(reply.json.budget.day.spent).toBeGreaterThan(0);
    const tight = await call(app.url, '/v1/usage', undefined, { 'x-user': 'tight-budget' }, 'GET');
    expect(tight.json.budget.day.limit).toBe(0.000001);
  });
});

describe('AI handlers: a bad endpoint name', () => {
  it('fails at set-up with a TypeError in every adapter', async () => {
    const mw = amasMiddleware({ logger: silentLogger });
    try {
      expect(() => mw.aiHandler('completions' as never)).toThrow(/aiHandler: endpoint must be 'chat' or 'embeddings', received "completions"/);
    } finally {
      await mw.amas.close();
    }
    expect(() => aiHandler('image' as never)).toThrow(/aiHandler\(\): endpoint must be 'chat' or 'embeddings', received "image"/);
    const nest = new AmasAiHandler({} as Amas);
    expect(() => nest.serve(undefined as never, {}, {})).toThrow(/AmasAiHandler\.serve: endpoint must be 'chat' or 'embeddings', received undefined/);
  });
});
