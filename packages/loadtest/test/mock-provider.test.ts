import http from 'node:http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { InvalidOptionError } from '@amas/core';
import {
  defaultReply,
  estimateTokens,
  startMockProvider,
  type MockProvider,
  type MockProviderOptions,
} from '../src/index.js';

const open: MockProvider[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((p) => p.close()));
});

async function start(options?: MockProviderOptions): Promise<MockProvider> {
  const p = await startMockProvider(options);
  open.push(p);
  return p;
}

const userMsg = (content: unknown) => [{ role: 'user', content }];

function post(p: MockProvider, path: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal) {
  return fetch(`${p.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal,
  });
}

const chat = (p: MockProvider, body: Record<string, unknown>, headers?: Record<string, string>) =>
  post(p, '/v1/chat/completions', { model: 'gpt-4o-mini', messages: userMsg('Hello there, mock!'), ...body }, headers);

/** Parses an SSE body into its `data:` payloads (the JSON ones parsed, `[DONE]` kept as a string). */
function parseSse(text: string): unknown[] {
  return text
    .split('\n\n')
    .filter((frame) => frame.length > 0)
    .map((frame) => {
      expect(frame.startsWith('data: ')).toBe(true);
      const data = frame.slice('data: '.length);
      return data === '[DONE]' ? data : JSON.parse(data);
    });
}

async function errorOf(res: Response) {
  const body = (await res.json()) as { error: { message: string; type: string; code: string | null; param: string | null } };
  expect(Object.keys(body)).toEqual(['error']);
  expect(typeof body.error.message).toBe('string');
  expect(typeof body.error.type).toBe('string');
  return body.error;
}

/** Whichever comes first: `promise`, or `label` once the wait it must not sit through (`ms`) has passed. */
async function firstOf<T>(promise: Promise<T>, ms: number, label: string): Promise<T | string> {
  let timer: NodeJS.Timeout | undefined;
  const gaveUp = new Promise<string>((resolve) => (timer = setTimeout(() => resolve(label), ms)));
  try {
    return await Promise.race([promise, gaveUp]);
  } finally {
    clearTimeout(timer);
  }
}

describe('startMockProvider options', () => {
  it('rejects bad options with InvalidOptionError naming each option', async () => {
    const bad = async (options: unknown, path: string) => {
      const err = await startMockProvider(options as MockProviderOptions).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(InvalidOptionError);
      expect((err as InvalidOptionError).issues.map((i) => i.path)).toContain(path);
    };
    await bad({ port: 70000 }, 'port');
    await bad({ port: 1.5 }, 'port');
    await bad({ latencyMs: -1 }, 'latencyMs');
    await bad({ latencyMs: { min: 10, max: 5 } }, 'latencyMs.max');
    await bad({ latencyMs: { min: 'a', max: 5 } }, 'latencyMs.min');
    await bad({ chunkDelayMs: Number.NaN }, 'chunkDelayMs');
    await bad({ failureRate: 1.5 }, 'failureRate');
    await bad({ failureStatus: 200 }, 'failureStatus');
    await bad({ outages: {} }, 'outages');
    await bad({ outages: [{ startMs: 0, durationMs: -5 }] }, 'outages.0.durationMs');
    await bad({ outages: [{ startMs: 0, durationMs: 5, status: 99 }] }, 'outages.0.status');
    await bad({ outages: [{ startMs: 0, durationMs: 5, retryAfterSeconds: -1 }] }, 'outages.0.retryAfterSeconds');
    await bad({ seed: 1.5 }, 'seed');
    await bad({ reply: 'hi' }, 'reply');
    await bad({ embeddingDimensions: 0 }, 'embeddingDimensions');
    await bad({ latncyMs: 5 }, 'latncyMs');
    await bad('nope', '');
  });

  it('setLatency and setOutage validate their argument', async () => {
    const p = await start();
    expect(() => p.setLatency(-5)).toThrow(InvalidOptionError);
    expect(() => p.setLatency({ min: 5, max: 1 })).toThrow(/latencyMs\.max/);
    expect(() => p.setOutage({ status: 200 })).toThrow(/outage\.status/);
    expect(() => p.setOutage('on' as unknown as boolean)).toThrow(InvalidOptionError);
  });

  it('listens on 127.0.0.1 with a random port and a url without trailing slash', async () => {
    const p = await start();
    expect(p.port).toBeGreaterThan(0);
    expect(p.url).toBe(`http://127.0.0.1:${p.port}`);
    const res = await fetch(`${p.url}/health`);
    expect(res.status).toBe(200);
    expect((await res.json()) as any).toEqual({ status: 'ok' });
  });
});

describe('POST /v1/chat/completions', () => {
  it('returns an OpenAI chat.completion with a deterministic reply and usage', async () => {
    const p = await start();
    const messages = [
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'What is a circuit breaker?' },
    ];
    const res = await post(p, '/v1/chat/completions', { model: 'gpt-4o-mini', messages });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/application\/json/);
    const body: any = await res.json();
    const content = defaultReply(messages, 'gpt-4o-mini');
    expect(content).toMatch(/^Mock answer to "What is a circuit breaker\?": /);
    expect(body).toMatchObject({
      object: 'chat.completion',
      model: 'gpt-4o-mini',
      choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
    });
    expect(body.id).toMatch(/^chatcmpl-/);
    expect(Math.abs(body.created - Date.now() / 1000)).toBeLessThan(60);
    const prompt = estimateTokens('You are terse.') + estimateTokens('What is a circuit breaker?');
    const completion = estimateTokens(content);
    expect(body.usage).toEqual({ prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion });

    // Same input, same reply; a different last user message gives a different reply.
    const again: any = await (await post(p, '/v1/chat/completions', { model: 'gpt-4o-mini', messages })).json();
    expect(again.choices[0].message.content).toBe(content);
    const other: any = await (await chat(p, { messages: userMsg('Something else entirely') })).json();
    expect(other.choices[0].message.content).not.toBe(content);
  });

  it('estimates tokens as ceil(chars / 4), min 1 for non-empty text', () => {
    expect(estimateTokens('')).toBe(0);
    expect(estimateTokens('a')).toBe(1);
    expect(estimateTokens('abcd')).toBe(1);
    expect(estimateTokens('abcde')).toBe(2);
    expect(estimateTokens('x'.repeat(400))).toBe(100);
  });

  it('accepts content part arrays and passes messages and model to a custom reply', async () => {
    const seen: unknown[] = [];
    const p = await start({
      reply: (messages, model) => {
        seen.push({ messages, model });
        return 'custom words here';
      },
    });
    const messages = [{ role: 'user', content: [{ type: 'text', text: 'part one ' }, { type: 'text', text: 'part two' }] }];
    const body: any = await (await post(p, '/v1/chat/completions', { model: 'm1', messages })).json();
    expect(body.choices[0].message.content).toBe('custom words here');
    expect(seen).toEqual([{ messages, model: 'm1' }]);
    expect(body.usage.prompt_tokens).toBe(estimateTokens('part one part two'));
  });

  it('truncates to max_tokens with finish_reason length', async () => {
    const p = await start({ reply: () => 'one two three four five six seven eight nine ten' });
    const body: any = await (await chat(p, { max_tokens: 3 })).json();
    expect(body.choices[0].finish_reason).toBe('length');
    // Whole words only: 'one two ' is 2 tokens, 'one two three ' would be 4.
    expect(body.choices[0].message.content).toBe('one two ');
    expect(body.usage.completion_tokens).toBe(2);
    const full: any = await (await chat(p, { max_tokens: 1000 })).json();
    expect(full.choices[0].finish_reason).toBe('stop');
    expect(full.choices[0].message.content).toBe('one two three four five six seven eight nine ten');
  });

  it('answers a throwing reply option with a 500 error', async () => {
    const p = await start({
      reply: () => {
        throw new Error('boom');
      },
    });
    const res = await chat(p, {});
    expect(res.status).toBe(500);
    expect((await errorOf(res)).message).toMatch(/boom/);
  });
});

describe('streaming chat completions', () => {
  it('streams SSE chunks word by word, then finish, usage and [DONE]', async () => {
    const reply = 'The quick brown fox jumps over the lazy dog.';
    const p = await start({ reply: () => reply, chunkDelayMs: 0 });
    const res = await chat(p, { stream: true, stream_options: { include_usage: true } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = parseSse(await res.text());
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1) as Array<Record<string, any>>;
    for (const c of chunks) {
      expect(c.object).toBe('chat.completion.chunk');
      expect(c.model).toBe('gpt-4o-mini');
      expect(c.id).toBe(chunks[0].id);
    }
    expect(chunks[0].choices[0].delta.role).toBe('assistant');
    const usageChunk = chunks.at(-1)!;
    expect(usageChunk.choices).toEqual([]);
    const finish = chunks.at(-2)!;
    expect(finish.choices[0].finish_reason).toBe('stop');
    const pieces = chunks.slice(1, -2).map((c) => c.choices[0].delta.content as string);
    expect(pieces).toHaveLength(9); // one per word
    expect(pieces.join('')).toBe(reply);
    for (const c of chunks.slice(0, -1)) expect(c.usage).toBeNull();
    const prompt = estimateTokens('Hello there, mock!');
    expect(usageChunk.usage).toEqual({
      prompt_tokens: prompt,
      completion_tokens: estimateTokens(reply),
      total_tokens: prompt + estimateTokens(reply),
    });
    expect(p.stats()).toMatchObject({ chat: 1, streams: 1, byStatus: { '200': 1 }, inFlight: 0 });
  });

  it('omits the usage chunk unless include_usage, and honours max_tokens', async () => {
    const p = await start({ reply: () => 'alpha beta gamma delta epsilon zeta', chunkDelayMs: 1 });
    const events = parseSse(await (await chat(p, { stream: true, max_tokens: 4 })).text());
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1) as Array<Record<string, any>>;
    expect(chunks.every((c) => !('usage' in c))).toBe(true);
    expect(chunks.at(-1)!.choices[0].finish_reason).toBe('length');
    const text = chunks.map((c) => c.choices[0].delta.content ?? '').join('');
    expect(text).toBe('alpha beta '); // 3 tokens; adding 'gamma ' would make 5
  });

  it('stops the stream when the client disconnects and counts it', async () => {
    const words = Array.from({ length: 200 }, (_, i) => `w${i}`).join(' ');
    const p = await start({ reply: () => words, chunkDelayMs: 20 });
    const controller = new AbortController();
    const live = await post(
      p,
      '/v1/chat/completions',
      { model: 'm', messages: userMsg('go'), stream: true },
      {},
      controller.signal,
    );
    const reader = live.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toMatch(/^data: /);
    await vi.waitFor(() => expect(p.stats().inFlight).toBeGreaterThanOrEqual(1));
    controller.abort();
    await reader.cancel().catch(() => undefined);
    await vi.waitFor(() => expect(p.stats().inFlight).toBe(0), { timeout: 2000 });
    // The server stopped long before writing all 200 words (that would take ~4 s).
    expect(p.stats()).toMatchObject({ clientAborts: 1, streams: 1, inFlight: 0, maxInFlight: 1 });
  });
});

describe('POST /v1/embeddings', () => {
  const norm = (v: number[]) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

  it('returns deterministic unit-length vectors with usage', async () => {
    const p = await start();
    const res = await post(p, '/v1/embeddings', { model: 'text-embedding-3-small', input: ['hello', 'world', 'hello'] });
    expect(res.status).toBe(200);
    const body: any = await res.json();
    expect(body).toMatchObject({ object: 'list', model: 'text-embedding-3-small' });
    expect(body.data.map((d: any) => [d.object, d.index])).toEqual([
      ['embedding', 0],
      ['embedding', 1],
      ['embedding', 2],
    ]);
    const [a, b, c] = body.data.map((d: any) => d.embedding as number[]);
    expect(a).toHaveLength(16);
    expect(norm(a)).toBeCloseTo(1, 10);
    expect(norm(b)).toBeCloseTo(1, 10);
    expect(c).toEqual(a);
    expect(b).not.toEqual(a);
    expect(body.usage).toEqual({ prompt_tokens: 6, total_tokens: 6 }); // 2 tokens per 5-char input

    // Same text on another server (any seed) gives the same vector.
    const other = await start({ seed: 99 });
    const single: any = await (await post(other, '/v1/embeddings', { model: 'x', input: 'hello' })).json();
    expect(single.data[0].embedding).toEqual(a);
    expect(p.stats().embeddings).toBe(1);
  });

  it('honours dimensions, embeddingDimensions and base64 encoding', async () => {
    const p = await start({ embeddingDimensions: 8 });
    const def: any = await (await post(p, '/v1/embeddings', { model: 'x', input: 'abc' })).json();
    expect(def.data[0].embedding).toHaveLength(8);
    const wide: any = await (await post(p, '/v1/embeddings', { model: 'x', input: 'abc', dimensions: 64 })).json();
    expect(wide.data[0].embedding).toHaveLength(64);
    expect(norm(wide.data[0].embedding)).toBeCloseTo(1, 10);
    const b64: any = await (await post(p, '/v1/embeddings', { model: 'x', input: 'abc', encoding_format: 'base64' })).json();
    const buf = Buffer.from(b64.data[0].embedding as string, 'base64');
    expect(buf.length).toBe(8 * 4);
    expect(buf.readFloatLE(0)).toBeCloseTo(def.data[0].embedding[0], 5);
  });

  it('rejects a bad input, dimensions or model naming the field', async () => {
    const p = await start();
    for (const [body, param] of [
      [{ model: 'x' }, 'input'],
      [{ model: 'x', input: [] }, 'input'],
      [{ model: 'x', input: [1, 2] }, 'input'],
      [{ model: 'x', input: 'a', dimensions: 0 }, 'dimensions'],
      [{ model: 'x', input: 'a', encoding_format: 'hex' }, 'encoding_format'],
      [{ input: 'a' }, 'model'],
    ] as const) {
      const res = await post(p, '/v1/embeddings', body);
      expect(res.status).toBe(400);
      const err = await errorOf(res);
      expect(err.param).toBe(param);
      expect(err.type).toBe('invalid_request_error');
      expect(err.message).toContain(param);
    }
  });
});

describe('GET /v1/models and /health', () => {
  it('lists models', async () => {
    const p = await start();
    const body: any = await (await fetch(`${p.url}/v1/models`)).json();
    expect(body.object).toBe('list');
    expect(body.data.length).toBeGreaterThan(0);
    for (const m of body.data) expect(m).toMatchObject({ object: 'model', owned_by: 'amas-mock' });
    expect(body.data.map((m: any) => m.id)).toContain('gpt-4o-mini');
  });

  it('health is not counted in stats and rejects other methods', async () => {
    const p = await start();
    await fetch(`${p.url}/health`);
    const res = await fetch(`${p.url}/health`, { method: 'POST' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET');
    await res.body?.cancel();
    expect(p.stats().requests).toBe(0);
  });
});

describe('error paths', () => {
  it('400 on invalid JSON and on a non-object body', async () => {
    const p = await start();
    const bad = await post(p, '/v1/chat/completions', '{"model": ');
    expect(bad.status).toBe(400);
    expect(await errorOf(bad)).toMatchObject({ type: 'invalid_request_error', code: 'invalid_json' });
    const arr = await post(p, '/v1/chat/completions', '[1,2]');
    expect(arr.status).toBe(400);
    expect((await errorOf(arr)).code).toBe('invalid_json');
    const empty = await post(p, '/v1/embeddings', '');
    expect(empty.status).toBe(400);
    await empty.body?.cancel();
  });

  it('400 naming model or messages when they are missing or invalid', async () => {
    const p = await start();
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ messages: userMsg('hi') }, 'model'],
      [{ model: 42, messages: userMsg('hi') }, 'model'],
      [{ model: '', messages: userMsg('hi') }, 'model'],
      [{ model: 'm' }, 'messages'],
      [{ model: 'm', messages: [] }, 'messages'],
      [{ model: 'm', messages: 'hi' }, 'messages'],
      [{ model: 'm', messages: ['hi'] }, 'messages[0]'],
      [{ model: 'm', messages: [{ content: 'hi' }] }, 'messages[0].role'],
      [{ model: 'm', messages: [{ role: 'user', content: 5 }] }, 'messages[0].content'],
      [{ model: 'm', messages: userMsg('hi'), stream: 'yes' }, 'stream'],
      [{ model: 'm', messages: userMsg('hi'), max_tokens: 0 }, 'max_tokens'],
    ];
    for (const [body, param] of cases) {
      const res = await post(p, '/v1/chat/completions', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      const err = await errorOf(res);
      expect(err.param).toBe(param);
      expect(err.message).toContain(param);
    }
    expect(p.stats()).toMatchObject({ requests: cases.length, chat: cases.length, byStatus: { '400': cases.length } });
  });

  it('404 on unknown paths and 405 with allow on the wrong method', async () => {
    const p = await start();
    const missing = await fetch(`${p.url}/v1/nope`);
    expect(missing.status).toBe(404);
    expect(await errorOf(missing)).toMatchObject({ code: 'unknown_url' });
    const wrong = await fetch(`${p.url}/v1/chat/completions`);
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get('allow')).toBe('POST');
    expect((await errorOf(wrong)).code).toBe('method_not_allowed');
    const models = await fetch(`${p.url}/v1/models`, { method: 'DELETE' });
    expect(models.status).toBe(405);
    expect(models.headers.get('allow')).toBe('GET');
    await models.body?.cancel();
    const adminMissing = await fetch(`${p.url}/__mock/nope`);
    expect(adminMissing.status).toBe(404);
    await adminMissing.body?.cancel();
    const adminWrong = await fetch(`${p.url}/__mock/stats`, { method: 'POST' });
    expect(adminWrong.status).toBe(405);
    await adminWrong.body?.cancel();
  });

  it('413 when the body exceeds 1 MiB, and a body just under the limit is accepted', async () => {
    const p = await start();
    const big = JSON.stringify({ model: 'm', messages: userMsg('x'.repeat(1024 * 1024)) });
    const res = await post(p, '/v1/chat/completions', big);
    expect(res.status).toBe(413);
    expect(await errorOf(res)).toMatchObject({ code: 'request_too_large' });
    const near = JSON.stringify({ model: 'm', messages: userMsg('x'.repeat(1024 * 1024 - 100)) });
    expect(Buffer.byteLength(near)).toBeLessThanOrEqual(1024 * 1024);
    const ok = await post(p, '/v1/chat/completions', near);
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as any).usage.prompt_tokens).toBe(estimateTokens('x'.repeat(1024 * 1024 - 100)));
  });

  it('413 for an oversized chunked upload without content-length', async () => {
    const p = await start();
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${p.url}/v1/embeddings`, { method: 'POST' }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
      for (let i = 0; i < 20; i++) req.write('x'.repeat(64 * 1024)); // 1.25 MiB, chunked
      req.end();
    });
    expect(status).toBe(413);
  });
});

describe('test headers', () => {
  it('x-mock-fail forces a failure status (counted) and x-mock-retry-after sets retry-after', async () => {
    const p = await start();
    const res = await chat(p, {}, { 'x-mock-fail': '429', 'x-mock-retry-after': '3' });
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('3');
    expect(await errorOf(res)).toMatchObject({ type: 'rate_limit_error', code: 'mock_forced_failure' });
    const emb = await post(p, '/v1/embeddings', { model: 'x', input: 'a' }, { 'x-mock-fail': '502' });
    expect(emb.status).toBe(502);
    expect((await errorOf(emb)).type).toBe('server_error');
    const invalid = await chat(p, {}, { 'x-mock-fail': 'teapot' });
    expect(invalid.status).toBe(400);
    expect((await errorOf(invalid)).param).toBe('x-mock-fail');
    expect(p.stats()).toMatchObject({ failures: 2, byStatus: { '429': 1, '502': 1, '400': 1 } });
  });

  it('x-mock-latency-ms delays this request only', async () => {
    const p = await start();
    const t0 = performance.now();
    const res = await chat(p, {}, { 'x-mock-latency-ms': '120' });
    expect(res.status).toBe(200);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(100);
    expect(res.headers.get('x-mock-latency-ms')).toBe('120');
    await res.body?.cancel();
    const fast = await chat(p, {});
    expect(fast.headers.get('x-mock-latency-ms')).toBe('0');
    await fast.body?.cancel();
    const bad = await chat(p, {}, { 'x-mock-latency-ms': '-1' });
    expect(bad.status).toBe(400);
    expect((await errorOf(bad)).param).toBe('x-mock-latency-ms');
  });
});

describe('latency, failures and determinism', () => {
  async function run(p: MockProvider, n: number) {
    const out: Array<[number, string | null]> = [];
    for (let i = 0; i < n; i++) {
      const res = await post(p, '/v1/embeddings', { model: 'x', input: `t${i}` });
      out.push([res.status, res.headers.get('x-mock-latency-ms')]);
      await res.body?.cancel();
    }
    return out;
  }

  it('latency ranges and failures are deterministic for a seed', async () => {
    const options = { seed: 1234, latencyMs: { min: 0, max: 3 }, failureRate: 0.3 };
    const [a, b, c] = await Promise.all([start(options), start(options), start({ ...options, seed: 4321 })]);
    const ra = await run(a, 40);
    const rb = await run(b, 40);
    const rc = await run(c, 40);
    expect(ra).toEqual(rb);
    expect(rc).not.toEqual(ra);
    for (const [, latency] of ra) expect([0, 1, 2, 3]).toContain(Number(latency));
    expect(new Set(ra.map(([, l]) => l)).size).toBeGreaterThan(1);
    expect(a.stats().failures).toBe(ra.filter(([s]) => s === 500).length);
  });

  it('failureRate fails roughly that share of chat and embeddings requests', async () => {
    const p = await start({ seed: 7, failureRate: 0.25, failureStatus: 502 });
    const results = await Promise.all(
      Array.from({ length: 400 }, async (_, i) => {
        const res = i % 2 ? await chat(p, {}) : await post(p, '/v1/embeddings', { model: 'x', input: 'a' });
        await res.body?.cancel();
        return res.status;
      }),
    );
    const failed = results.filter((s) => s === 502).length;
    expect(results.every((s) => s === 200 || s === 502)).toBe(true);
    expect(failed / 400).toBeGreaterThan(0.17);
    expect(failed / 400).toBeLessThan(0.33);
    expect(p.stats()).toMatchObject({ requests: 400, failures: failed, byStatus: { '200': 400 - failed, '502': failed } });
    // Models are never failed by failureRate.
    const always = await start({ failureRate: 1 });
    expect((await fetch(`${always.url}/v1/models`)).status).toBe(200);
    const failedChat = await chat(always, {});
    expect(failedChat.status).toBe(500);
    expect(await errorOf(failedChat)).toMatchObject({ type: 'server_error', code: 'mock_failure' });
  });

  it('setLatency changes the delay of later requests and tracks inFlight concurrency', async () => {
    const p = await start();
    p.setLatency(60);
    const responses = await Promise.all(Array.from({ length: 5 }, () => chat(p, {})));
    for (const r of responses) {
      expect(r.headers.get('x-mock-latency-ms')).toBe('60');
      await r.body?.cancel();
    }
    expect(p.stats()).toMatchObject({ maxInFlight: 5, inFlight: 0 });
    p.setLatency({ min: 1, max: 2 });
    const r = await chat(p, {});
    expect(['1', '2']).toContain(r.headers.get('x-mock-latency-ms'));
    await r.body?.cancel();
  });
});

describe('outages', () => {
  it('scheduled windows reject with their status and retry-after, then recover', async () => {
    const p = await start({ outages: [{ startMs: 0, durationMs: 300, status: 429, retryAfterSeconds: 2 }] });
    const during = await chat(p, {});
    expect(during.status).toBe(429);
    expect(during.headers.get('retry-after')).toBe('2');
    expect(await errorOf(during)).toMatchObject({ code: 'mock_outage' });
    const health = await fetch(`${p.url}/health`);
    expect(health.status).toBe(503);
    expect((await health.json()) as any).toEqual({ status: 'outage' });
    await vi.waitFor(
      async () => {
        const res = await chat(p, {});
        await res.body?.cancel();
        expect(res.status).toBe(200);
      },
      { timeout: 2000, interval: 20 },
    );
    expect((await fetch(`${p.url}/health`)).status).toBe(200);
    const s = p.stats();
    expect(s.outageRejections).toBeGreaterThanOrEqual(1);
    expect(s.byStatus['429']).toBe(s.outageRejections);
    expect(s.failures).toBe(0);
  });

  it('a later window starts after its startMs and defaults to 503 without retry-after', async () => {
    const p = await start({ outages: [{ startMs: 250, durationMs: 200 }] });
    const before = await chat(p, {});
    expect(before.status).toBe(200);
    await before.body?.cancel();
    let seen: Response | undefined;
    await vi.waitFor(
      async () => {
        const res = await fetch(`${p.url}/v1/models`);
        if (res.status === 503) seen = res;
        else await res.body?.cancel();
        expect(res.status).toBe(503);
      },
      { timeout: 2000, interval: 10 },
    );
    expect(seen!.headers.get('retry-after')).toBeNull();
    expect((await errorOf(seen!)).type).toBe('server_error');
    await vi.waitFor(
      async () => {
        const res = await fetch(`${p.url}/v1/models`);
        await res.body?.cancel();
        expect(res.status).toBe(200);
      },
      { timeout: 2000, interval: 20 },
    );
  });

  it('setOutage turns a manual outage on and off', async () => {
    const p = await start();
    p.setOutage(true);
    const a = await chat(p, {});
    expect(a.status).toBe(503);
    expect(a.headers.get('retry-after')).toBeNull();
    await a.body?.cancel();
    expect((await fetch(`${p.url}/health`)).status).toBe(503);
    p.setOutage({ status: 529, retryAfterSeconds: 1.2 });
    const b = await post(p, '/v1/embeddings', { model: 'x', input: 'a' });
    expect(b.status).toBe(529);
    expect(b.headers.get('retry-after')).toBe('2');
    await b.body?.cancel();
    p.setOutage(false);
    const c = await chat(p, {});
    expect(c.status).toBe(200);
    await c.body?.cancel();
    expect(p.stats()).toMatchObject({ outageRejections: 2, chat: 2, embeddings: 1 });
  });
});

describe('admin endpoints', () => {
  it('GET /__mock/stats and POST /__mock/reset', async () => {
    const p = await start();
    await (await chat(p, {})).text();
    await (await chat(p, { stream: true })).text();
    const stats: any = await (await fetch(`${p.url}/__mock/stats`)).json();
    expect(stats).toEqual({
      requests: 2,
      chat: 2,
      streams: 1,
      embeddings: 0,
      failures: 0,
      outageRejections: 0,
      byStatus: { '200': 2 },
      inFlight: 0,
      maxInFlight: 1,
      clientAborts: 0,
    });
    expect(p.stats()).toEqual(stats);
    const reset = await fetch(`${p.url}/__mock/reset`, { method: 'POST' });
    expect(reset.status).toBe(200);
    expect(((await reset.json()) as any).stats.requests).toBe(0);
    expect(p.stats()).toMatchObject({ requests: 0, chat: 0, byStatus: {} });
    await (await chat(p, {})).text();
    p.resetStats();
    expect(p.stats().requests).toBe(0);
  });

  it('POST /__mock/outage switches a manual outage and validates the body', async () => {
    const p = await start();
    const on = await post(p, '/__mock/outage', { on: true, status: 503, retryAfterSeconds: 5 });
    expect((await on.json()) as any).toEqual({ ok: true, outage: { on: true, status: 503, retryAfterSeconds: 5 } });
    const rejected = await chat(p, {});
    expect(rejected.status).toBe(503);
    expect(rejected.headers.get('retry-after')).toBe('5');
    await rejected.body?.cancel();
    const badOn = await post(p, '/__mock/outage', { on: 'yes' });
    expect(badOn.status).toBe(400);
    expect((await errorOf(badOn)).param).toBe('on');
    const badStatus = await post(p, '/__mock/outage', { on: true, status: 200 });
    expect(badStatus.status).toBe(400);
    expect((await errorOf(badStatus)).param).toBe('status');
    const badJson = await post(p, '/__mock/outage', '{');
    expect(badJson.status).toBe(400);
    await badJson.body?.cancel();
    const off = await post(p, '/__mock/outage', { on: false });
    expect((await off.json()) as any).toEqual({ ok: true, outage: { on: false } });
    const ok = await chat(p, {});
    expect(ok.status).toBe(200);
    await ok.body?.cancel();
    // Admin traffic is not counted.
    expect(p.stats()).toMatchObject({ requests: 2, outageRejections: 1 });
  });
});

describe('close()', () => {
  it('resolves promptly with idle keep-alive sockets open', async () => {
    const p = await startMockProvider();
    const agent = new http.Agent({ keepAlive: true });
    try {
      for (let i = 0; i < 3; i++) {
        await new Promise<void>((resolve, reject) => {
          http.get(`${p.url}/v1/models`, { agent }, (res) => res.resume().on('end', resolve)).on('error', reject);
        });
      }
      await fetch(`${p.url}/v1/models`).then((r) => r.text());
      expect(Object.values(agent.freeSockets).flat().length).toBe(1);
      // The server's keep-alive timeout is 5 s; closing must not wait for it to drop the idle socket.
      expect(await firstOf(p.close().then(() => 'closed'), 5_000, 'waited for keep-alive')).toBe('closed');
      await expect(fetch(`${p.url}/health`)).rejects.toThrow();
      await p.close(); // idempotent
    } finally {
      agent.destroy();
    }
  });

  it('ends in-flight streams and latency waits', async () => {
    const p = await startMockProvider({ reply: () => 'word '.repeat(500), chunkDelayMs: 50 });
    const streaming = await chat(p, { stream: true });
    const reader = streaming.body!.getReader();
    await reader.read();
    const slow = chat(p, {}, { 'x-mock-latency-ms': '10000' });
    await vi.waitFor(() => expect(p.stats().inFlight).toBe(2));
    // The pending request waits 10 s; closing ends it instead of waiting for it.
    expect(await firstOf(p.close().then(() => 'closed'), 10_000, 'waited for the request')).toBe('closed');
    await expect(slow).rejects.toThrow();
    await expect(
      (async () => {
        for (;;) if ((await reader.read()).done) return 'ended';
      })(),
    ).rejects.toThrow();
    expect(p.stats()).toMatchObject({ inFlight: 0, clientAborts: 0 });
  });
});
