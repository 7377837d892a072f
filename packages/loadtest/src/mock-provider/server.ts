/**
 * An OpenAI-compatible mock provider on a real node:http server (127.0.0.1). Latency, injected failures and
 * outages use real time and a seeded PRNG, so a given seed and request order always behave the same.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { InvalidOptionError } from '@amas/core';
import { embeddingToBase64, mockEmbedding } from './embedding.js';
import { errorBody, readBody, sendJson } from './http.js';
import {
  resolveLatency,
  resolveManualOutage,
  resolveMockOptions,
  type ManualOutage,
  type ResolvedMockOptions,
} from './options.js';
import { createPrng } from './prng.js';
import {
  isBadRequest,
  parseChatRequest,
  parseEmbeddingsRequest,
  type ChatRequest,
  type EmbeddingsRequest,
} from './requests.js';
import { defaultReply, estimateTokens, promptTokens, splitWords, truncateToTokens } from './text.js';
import type { MockLatency, MockProvider, MockProviderOptions, MockProviderStats } from './types.js';

type Kind = 'chat' | 'embeddings' | 'models';
const ROUTES = new Map<string, { method: string; kind: Kind }>([
  ['/v1/chat/completions', { method: 'POST', kind: 'chat' }],
  ['/v1/embeddings', { method: 'POST', kind: 'embeddings' }],
  ['/v1/models', { method: 'GET', kind: 'models' }],
]);
const ADMIN_ROUTES = new Map<string, string>([
  ['/__mock/stats', 'GET'],
  ['/__mock/reset', 'POST'],
  ['/__mock/outage', 'POST'],
  ['/__mock/latency', 'POST'],
]);
export const MOCK_MODELS = ['gpt-4o-mini', 'gpt-4o', 'text-embedding-3-small'] as const;

/** One counted provider request: its abort signal fires when the client goes away or the server closes. */
interface Exchange {
  id: number;
  req: IncomingMessage;
  res: ServerResponse;
  controller: AbortController;
  done: boolean;
}

type Counters = Omit<MockProviderStats, 'inFlight' | 'maxInFlight'>;
const zeroCounters = (): Counters => ({
  requests: 0,
  chat: 0,
  streams: 0,
  embeddings: 0,
  failures: 0,
  outageRejections: 0,
  byStatus: {},
  clientAborts: 0,
});

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function retryHeaders(retryAfterSeconds: number | undefined): Record<string, string> | undefined {
  return retryAfterSeconds === undefined ? undefined : { 'retry-after': String(Math.ceil(retryAfterSeconds)) };
}

class MockProviderServer implements MockProvider {
  url = '';
  port = 0;
  private readonly server: Server;
  private readonly live = new Set<Exchange>();
  private counters = zeroCounters();
  private inFlight = 0;
  private maxInFlight = 0;
  private latency: { min: number; max: number };
  private manualOutage: ManualOutage | undefined;
  private startedAt = 0;
  private nextId = 0;
  private closing: Promise<void> | undefined;
  private closed = false;
  // Separate streams so changing latency never shifts which requests fail.
  private readonly latencyRng: () => number;
  private readonly failureRng: () => number;

  constructor(private readonly opts: ResolvedMockOptions) {
    this.latency = opts.latency;
    this.latencyRng = createPrng(opts.seed);
    this.failureRng = createPrng(opts.seed ^ 0x9e3779b9);
    this.server = createServer({ noDelay: true }, (req, res) => {
      this.handle(req, res).catch(() => {
        if (!res.headersSent && !res.destroyed) sendJson(res, 500, errorBody(500, 'Mock provider error', 'mock_internal'));
        else res.destroy();
      });
    });
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port, '127.0.0.1', () => {
        this.server.off('error', reject);
        this.port = (this.server.address() as AddressInfo).port;
        this.url = `http://127.0.0.1:${this.port}`;
        this.startedAt = performance.now();
        resolve();
      });
    });
  }

  stats(): MockProviderStats {
    return {
      ...this.counters,
      byStatus: { ...this.counters.byStatus },
      inFlight: this.inFlight,
      maxInFlight: this.maxInFlight,
    };
  }

  resetStats(): void {
    this.counters = zeroCounters();
    this.maxInFlight = this.inFlight;
  }

  setOutage(outage: boolean | { status?: number; retryAfterSeconds?: number }): void {
    this.manualOutage = resolveManualOutage(outage);
  }

  setLatency(latencyMs: MockLatency): void {
    this.latency = resolveLatency(latencyMs);
  }

  close(): Promise<void> {
    this.closed = true;
    this.closing ??= new Promise<void>((resolve) => {
      // Settle bookkeeping now: socket 'close' events may arrive after the server's close callback.
      for (const ex of [...this.live]) this.end(ex);
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    return this.closing;
  }

  // ---- request handling -------------------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    if (path.startsWith('/__mock/')) return this.admin(req, res, path);
    if (path === '/health') return this.health(req, res);

    const ex = this.begin(req, res);
    const route = ROUTES.get(path);
    if (!route) return this.fail(ex, 404, `Unknown request URL: ${req.method} ${path}.`, 'unknown_url');
    if (req.method !== route.method) {
      return this.fail(ex, 405, `Method ${req.method} not allowed on ${path}; use ${route.method}.`, 'method_not_allowed', null, {
        allow: route.method,
      });
    }
    if (route.kind === 'chat') this.counters.chat++;
    else if (route.kind === 'embeddings') this.counters.embeddings++;

    const outage = this.currentOutage();
    if (outage) {
      this.counters.outageRejections++;
      return this.fail(ex, outage.status, 'The mock provider is unavailable (outage).', 'mock_outage', null, retryHeaders(outage.retryAfterSeconds));
    }

    // Test hooks: force a failure status or a latency for this request only.
    const forcedRaw = headerValue(req, 'x-mock-fail');
    const forced = forcedRaw === undefined ? undefined : Number(forcedRaw);
    if (forced !== undefined && (!Number.isInteger(forced) || forced < 400 || forced > 599)) {
      return this.fail(ex, 400, '`x-mock-fail` must be an HTTP error status 400..599.', 'invalid_value', 'x-mock-fail');
    }
    const retryRaw = headerValue(req, 'x-mock-retry-after');
    const forcedRetry = retryRaw === undefined ? undefined : Number(retryRaw);
    if (forcedRetry !== undefined && !(forcedRetry >= 0 && Number.isFinite(forcedRetry))) {
      return this.fail(ex, 400, '`x-mock-retry-after` must be a number of seconds >= 0.', 'invalid_value', 'x-mock-retry-after');
    }
    const latencyRaw = headerValue(req, 'x-mock-latency-ms');
    const latencyOverride = latencyRaw === undefined ? undefined : Number(latencyRaw);
    if (latencyOverride !== undefined && !(latencyOverride >= 0 && Number.isFinite(latencyOverride))) {
      return this.fail(ex, 400, '`x-mock-latency-ms` must be a number >= 0.', 'invalid_value', 'x-mock-latency-ms');
    }

    let chat: ChatRequest | undefined;
    let embeddings: EmbeddingsRequest | undefined;
    if (route.method === 'POST') {
      const body = await this.readJson(ex);
      if (body === undefined) return;
      const parsed = route.kind === 'chat' ? parseChatRequest(body) : parseEmbeddingsRequest(body);
      if (isBadRequest(parsed)) return this.fail(ex, 400, parsed.error, parsed.code, parsed.param);
      if (route.kind === 'chat') {
        chat = parsed as ChatRequest;
        if (chat.stream) this.counters.streams++;
      } else embeddings = parsed as EmbeddingsRequest;
    }

    const latency = latencyOverride ?? this.drawLatency();
    res.setHeader('x-mock-latency-ms', String(latency));
    if (latency > 0 && !(await this.wait(ex, latency))) return;

    if (forced !== undefined) {
      this.counters.failures++;
      return this.fail(ex, forced, `Forced failure (x-mock-fail: ${forced}).`, 'mock_forced_failure', null, retryHeaders(forcedRetry));
    }
    if (route.kind !== 'models' && this.opts.failureRate > 0 && this.failureRng() < this.opts.failureRate) {
      this.counters.failures++;
      return this.fail(ex, this.opts.failureStatus, 'Injected failure (failureRate).', 'mock_failure');
    }

    if (chat) return this.chat(ex, chat);
    if (embeddings) return this.embeddings(ex, embeddings);
    return this.send(ex, 200, {
      object: 'list',
      data: MOCK_MODELS.map((id) => ({ id, object: 'model', created: 1_700_000_000, owned_by: 'amas-mock' })),
    });
  }

  private begin(req: IncomingMessage, res: ServerResponse): Exchange {
    const ex: Exchange = { id: ++this.nextId, req, res, controller: new AbortController(), done: false };
    this.counters.requests++;
    if (++this.inFlight > this.maxInFlight) this.maxInFlight = this.inFlight;
    this.live.add(ex);
    res.setHeader('x-mock-request-id', `mock-${ex.id}`);
    res.once('close', () => this.end(ex));
    return ex;
  }

  /** Runs once per exchange, when the response finished or the connection went away first. */
  private end(ex: Exchange): void {
    if (ex.done) return;
    ex.done = true;
    this.inFlight--;
    this.live.delete(ex);
    if (!ex.res.writableFinished) {
      if (!this.closed) this.counters.clientAborts++;
      ex.controller.abort();
    }
  }

  private count(status: number): void {
    const key = String(status);
    this.counters.byStatus[key] = (this.counters.byStatus[key] ?? 0) + 1;
  }

  private send(ex: Exchange, status: number, body: unknown, headers?: Record<string, string>): void {
    if (ex.controller.signal.aborted) return;
    this.count(status);
    sendJson(ex.res, status, body, headers);
  }

  private fail(
    ex: Exchange,
    status: number,
    message: string,
    code: string | null,
    param: string | null = null,
    headers?: Record<string, string>,
  ): void {
    this.send(ex, status, errorBody(status, message, code, param), headers);
  }

  /** Resolves false when the exchange was aborted during the wait. */
  private async wait(ex: Exchange, ms: number): Promise<boolean> {
    try {
      await delay(ms, undefined, { signal: ex.controller.signal });
      return true;
    } catch {
      return false;
    }
  }

  private drawLatency(): number {
    const { min, max } = this.latency;
    return min === max ? min : Math.round(min + this.latencyRng() * (max - min));
  }

  private currentOutage(): ManualOutage | undefined {
    if (this.manualOutage) return this.manualOutage;
    if (this.opts.outages.length === 0) return undefined;
    const elapsed = performance.now() - this.startedAt;
    for (const w of this.opts.outages) if (elapsed >= w.startMs && elapsed < w.endMs) return w;
    return undefined;
  }

  /** The parsed JSON object body, or undefined after answering 400/413 (or when the client went away). */
  private async readJson(ex: Exchange): Promise<Record<string, unknown> | undefined> {
    const result = await readBody(ex.req);
    if (!result.ok) {
      if (result.reason === 'too_large') {
        this.fail(ex, 413, 'Request body exceeds the 1 MiB limit.', 'request_too_large', null, { connection: 'close' });
      }
      return undefined;
    }
    let body: unknown;
    try {
      body = JSON.parse(result.body.toString('utf8'));
    } catch {
      this.fail(ex, 400, 'We could not parse the JSON body of your request.', 'invalid_json');
      return undefined;
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      this.fail(ex, 400, 'The request body must be a JSON object.', 'invalid_json');
      return undefined;
    }
    return body as Record<string, unknown>;
  }

  // ---- endpoints ----------------------------------------------------------------------------------------------

  private chat(ex: Exchange, request: ChatRequest): Promise<void> | void {
    let text: unknown;
    try {
      text = (this.opts.reply ?? defaultReply)(request.messages, request.model);
    } catch (err) {
      return this.fail(ex, 500, `The reply option threw: ${err instanceof Error ? err.message : String(err)}`, 'mock_reply_error');
    }
    if (typeof text !== 'string') return this.fail(ex, 500, 'The reply option must return a string.', 'mock_reply_error');
    const { text: content, truncated } =
      request.maxTokens === undefined ? { text, truncated: false } : truncateToTokens(text, request.maxTokens);
    const prompt = promptTokens(request.messages);
    const completion = estimateTokens(content);
    const usage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
    const finishReason = truncated ? 'length' : 'stop';
    const id = `chatcmpl-mock-${ex.id}`;
    const created = Math.floor(Date.now() / 1000);
    if (request.stream) return this.stream(ex, { id, created, model: request.model }, content, finishReason, request.includeUsage ? usage : undefined);
    this.send(ex, 200, {
      id,
      object: 'chat.completion',
      created,
      model: request.model,
      system_fingerprint: 'fp_amas_mock',
      choices: [{ index: 0, message: { role: 'assistant', content, refusal: null }, logprobs: null, finish_reason: finishReason }],
      usage,
    });
  }

  private async stream(
    ex: Exchange,
    head: { id: string; created: number; model: string },
    content: string,
    finishReason: string,
    usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | undefined,
  ): Promise<void> {
    const { res } = ex;
    if (ex.controller.signal.aborted) return;
    this.count(200);
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
    // OpenAI sends `usage: null` on every chunk when usage was requested, then one usage-only chunk.
    const extra = usage ? { usage: null } : undefined;
    const chunk = (delta: object, finish: string | null) =>
      `data: ${JSON.stringify({
        ...head,
        object: 'chat.completion.chunk',
        system_fingerprint: 'fp_amas_mock',
        choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
        ...extra,
      })}\n\n`;

    if (!(await this.write(ex, chunk({ role: 'assistant', content: '' }, null)))) return;
    for (const piece of splitWords(content)) {
      if (!(await this.pause(ex)) || !(await this.write(ex, chunk({ content: piece }, null)))) return;
    }
    if (!(await this.pause(ex)) || !(await this.write(ex, chunk({}, finishReason)))) return;
    if (usage) {
      const tail = { ...head, object: 'chat.completion.chunk', system_fingerprint: 'fp_amas_mock', choices: [], usage };
      if (!(await this.write(ex, `data: ${JSON.stringify(tail)}\n\n`))) return;
    }
    if (!(await this.write(ex, 'data: [DONE]\n\n'))) return;
    res.end();
  }

  private pause(ex: Exchange): Promise<boolean> | boolean {
    return this.opts.chunkDelayMs > 0 ? this.wait(ex, this.opts.chunkDelayMs) : !ex.controller.signal.aborted;
  }

  /** Writes one SSE frame, honouring backpressure; false once the exchange is aborted. */
  private async write(ex: Exchange, frame: string): Promise<boolean> {
    const { signal } = ex.controller;
    if (signal.aborted) return false;
    if (ex.res.write(frame)) return true;
    await new Promise<void>((resolve) => {
      const done = () => {
        ex.res.off('drain', done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      ex.res.on('drain', done);
      signal.addEventListener('abort', done);
    });
    return !signal.aborted;
  }

  private embeddings(ex: Exchange, request: EmbeddingsRequest): void {
    const dims = request.dimensions ?? this.opts.embeddingDimensions;
    let tokens = 0;
    const data = request.inputs.map((text, index) => {
      tokens += estimateTokens(text);
      const vector = mockEmbedding(text, dims);
      return { object: 'embedding', index, embedding: request.base64 ? embeddingToBase64(vector) : vector };
    });
    this.send(ex, 200, { object: 'list', data, model: request.model, usage: { prompt_tokens: tokens, total_tokens: tokens } });
  }

  // ---- health and admin (not counted in stats) --------------------------------------------------------------

  private health(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'GET') {
      sendJson(res, 405, errorBody(405, `Method ${req.method} not allowed on /health; use GET.`, 'method_not_allowed'), { allow: 'GET' });
      return;
    }
    const outage = this.currentOutage();
    if (outage) sendJson(res, 503, { status: 'outage' }, retryHeaders(outage.retryAfterSeconds));
    else sendJson(res, 200, { status: 'ok' });
  }

  private async admin(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const method = ADMIN_ROUTES.get(path);
    if (!method) return sendJson(res, 404, errorBody(404, `Unknown admin URL: ${path}.`, 'unknown_url'));
    if (req.method !== method) {
      return sendJson(res, 405, errorBody(405, `Method ${req.method} not allowed on ${path}; use ${method}.`, 'method_not_allowed'), {
        allow: method,
      });
    }
    if (path === '/__mock/stats') return sendJson(res, 200, this.stats());
    const result = await readBody(req);
    if (!result.ok) {
      if (result.reason === 'too_large') sendJson(res, 413, errorBody(413, 'Request body exceeds the 1 MiB limit.', 'request_too_large'), { connection: 'close' });
      return;
    }
    if (path === '/__mock/reset') {
      this.resetStats();
      return sendJson(res, 200, { ok: true, stats: this.stats() });
    }
    let body: unknown;
    try {
      body = JSON.parse(result.body.toString('utf8'));
    } catch {
      return sendJson(res, 400, errorBody(400, 'We could not parse the JSON body of your request.', 'invalid_json'));
    }
    if (path === '/__mock/latency') {
      // POST /__mock/latency {latencyMs: number | {min, max}}: same as setLatency().
      const { latencyMs } = (body ?? {}) as { latencyMs?: unknown };
      try {
        this.setLatency(latencyMs as MockLatency);
      } catch (err) {
        if (!(err instanceof InvalidOptionError)) throw err;
        return sendJson(res, 400, errorBody(400, err.message, 'invalid_value', 'latencyMs'));
      }
      return sendJson(res, 200, { ok: true, latencyMs: { ...this.latency } });
    }
    // POST /__mock/outage {on, status?, retryAfterSeconds?}
    const { on, status, retryAfterSeconds } = (body ?? {}) as { on?: unknown; status?: unknown; retryAfterSeconds?: unknown };
    if (typeof on !== 'boolean') return sendJson(res, 400, errorBody(400, '`on` must be a boolean.', 'invalid_type', 'on'));
    try {
      this.manualOutage = on ? resolveManualOutage({ status, retryAfterSeconds }, 'outage request') : undefined;
    } catch (err) {
      if (!(err instanceof InvalidOptionError)) throw err;
      const param = err.issues[0]?.path.replace(/^outage\./, '') ?? null;
      return sendJson(res, 400, errorBody(400, err.message, 'invalid_value', param));
    }
    sendJson(res, 200, { ok: true, outage: this.manualOutage ? { on: true, ...this.manualOutage } : { on: false } });
  }
}

/** Starts the mock on 127.0.0.1 (random port by default). Rejects with InvalidOptionError for bad options. */
export async function startMockProvider(options?: MockProviderOptions): Promise<MockProvider> {
  const provider = new MockProviderServer(resolveMockOptions(options));
  await provider.listen();
  return provider;
}
