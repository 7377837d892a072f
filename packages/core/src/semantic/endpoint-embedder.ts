/**
 * Embeddings from an OpenAI-compatible `POST /v1/embeddings` endpoint, through the AI provider layer.
 *
 * Where the calls go (exactly one of):
 * - `baseUrl` (+ `apiKey`, `headers`): one endpoint, over a `ProviderClient` (undici pool) the embedder creates
 *   and closes, or over the `transport` you pass (which you close).
 * - `endpoint`: one `EndpointConfig` of the provider layer (url, apiKey, headers, id, provider, model), over a
 *   created client or your `transport`. The request goes to `/v1/embeddings` under `endpoint.url`.
 * - `router`: a `ModelRouter` (`router.embeddings(body)`): `model` names its model group, so the group's
 *   endpoints, balancing, breakers, retries and fallbacks apply.
 * - `ai`: the engine's `AiService` (`amas.ai.embeddings(body, { user })`): the router plus budgets and usage/cost
 *   records, under `user` (default 'semantic-cache').
 * The embedder never closes a transport, router or AI service it was given.
 *
 * Concurrent `embed` calls are micro-batched (MicroBatcher): texts queued within `maxWaitMs` of the first one
 * go out in one request of at most `maxBatch` texts (a full batch leaves at once), and each caller gets its
 * own rows, in its order. A caller with more than `maxBatch` texts spans several requests. An HTTP error, a
 * network error, a timeout or a malformed answer rejects only the callers whose texts were in that request,
 * with an EmbeddingFailedError carrying the upstream status and message (`reason` says which kind).
 *
 * Errors (EmbeddingFailedError `reason`): an HTTP error status -> 'http' (status 429/503 kept, others 502;
 * `retryAfterMs` from Retry-After; `details.upstreamStatus`, `upstreamMessage`, `endpoint` when routed); no answer
 * -> 'network' (502), or 'timeout' (504) for the transport's own timeouts and for `timeoutMs`; an answer that is
 * not an embeddings list for the texts sent (or too large for the client) -> 'malformed-response'; the embedder
 * closed, or the client / router / AI service closed under it -> 'closed'. Routed calls add: no eligible
 * endpoint (every breaker open, ejected, cooling down) -> 'network' (503, `retryAfterMs`); a refusal of the AI
 * layer (budget exceeded: its 429/402) or of the router (unknown model) -> 'http'; `details.attempts` counts the
 * upstream calls made. An aborted caller gets AbortedError.
 *
 * URL (`baseUrl`): the server root ('http://127.0.0.1:8080' -> '/v1/embeddings' is appended), an OpenAI-style
 * base that ends in a version ('https://api.openai.com/v1' -> '/embeddings' is appended), or the full endpoint
 * URL ending in '/embeddings' (used as is).
 */
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import type { Clock, TimerHandle } from '../clock.js';
import { AbortedError, InvalidOptionError, isAmasError, type OptionIssue } from '../errors.js';
import { clockSchema, describe, parseOptions, positiveInt, timerMs } from '../options/validate.js';
import { MicroBatcher } from '../policies/micro-batcher.js';
import type { AiService } from '../ai/ai-service.js';
import { routeAttemptsOf, type ModelRouter } from '../ai/model-router.js';
import { ProviderClient, providerClientOptionsSchema, upstreamUrl, type ProviderClientOptions } from '../ai/provider-client.js';
import { UpstreamError, type EndpointConfig, type ProviderTransport } from '../ai/provider-types.js';
import {
  EmbeddingFailedError,
  throwIfAborted,
  toUnitRow,
  validateTexts,
  type EmbedOptions,
  type Embedder,
  type EmbeddingFailureReason,
} from './embedder.js';

export interface EndpointEmbedderOptions {
  /**
   * One endpoint's URL (see the module notes: server root, an OpenAI-style '/v1' base, or the full
   * '/embeddings' URL). http(s) only. Give exactly one of `baseUrl`, `endpoint`, `router`, `ai`.
   */
  baseUrl?: string;
  /** One endpoint as the provider layer describes it; requests go to `/v1/embeddings` under `endpoint.url`. */
  endpoint?: EndpointConfig;
  /**
   * The HTTP client for `baseUrl` / `endpoint` (any `ProviderTransport`). Default: a `ProviderClient` the
   * embedder creates (with `client` options) and closes in `close()`. A transport you pass is not closed.
   */
  transport?: ProviderTransport;
  /**
   * Options of the `ProviderClient` the embedder creates (TLS, connections, DNS...). Not with `transport`.
   * The embedder's defaults: `connectTimeout` min(10 s, timeoutMs), `maxResponseBytes` max(32 MiB, maxBatch x 64 KiB).
   */
  client?: ProviderClientOptions;
  /**
   * Route through a model router: `model` is the router's model name; its endpoints, balancing, breakers,
   * retries and fallbacks apply. Not closed by the embedder.
   */
  router?: Pick<ModelRouter, 'embeddings'>;
  /** Route through the engine's AI layer (`amas.ai`): the router, plus budgets and usage/cost records under `user`. Not closed by the embedder. */
  ai?: Pick<AiService, 'embeddings'>;
  /** With `ai`: who the calls are recorded (and budgeted) for. Default 'semantic-cache'. */
  user?: string;
  /** With `ai`: the team the calls are recorded for. */
  team?: string;
  /** Sent as `model`, e.g. 'text-embedding-3-small' (with `router` / `ai`: the model group's name). */
  model: string;
  /** With `baseUrl`: sent as `Authorization: Bearer <apiKey>`. (An `endpoint` carries its own `apiKey`.) */
  apiKey?: string;
  /**
   * Sent as `dimensions` (models that can shorten their vectors, like text-embedding-3-*) and checked against
   * every row. When not given, learned from the first response (`dimensions` is 0 until then).
   */
  dimensions?: number;
  /**
   * Per request, from send to parsed body; default 30_000. With `router` / `ai` it covers the whole routed call,
   * retries and fallbacks included.
   */
  timeoutMs?: number;
  /** Texts per request at most; default 64. */
  maxBatch?: number;
  /**
   * How long the first queued text waits for company before its request leaves; default 5 (0: only calls
   * made in the same synchronous turn share a request).
   */
  maxWaitMs?: number;
  /**
   * Adapt the wait to the arrival rate (MicroBatcher's adaptive window: a lone call leaves at once, the wait
   * grows to `maxWaitMs` under load). Default false: every request waits `maxWaitMs` for company.
   */
  adaptive?: boolean;
  /** Requests in flight at most; later batches wait for one to finish (and grow meanwhile). Default: no limit. */
  maxConcurrentRequests?: number;
  /** Extra request headers (e.g. an organization or a gateway key). Not with `ai`. */
  headers?: Record<string, string>;
  /** The name rows are tagged with; default `endpoint:<model>`. */
  name?: string;
  /**
   * Timers for `maxWaitMs` and `timeoutMs`. The default is the wall clock with referenced timers (unlike
   * systemClock's unref'd ones): a caller waiting in a batch window must keep the process alive, or a
   * script's `await embedder.embed(...)` could end the process before its request is sent.
   */
  clock?: Clock;
}

const httpUrl = z.string().refine(
  (v) => {
    try {
      const u = new URL(v);
      return u.protocol === 'http:' || u.protocol === 'https:';
    } catch {
      return false;
    }
  },
  { message: 'an http(s) URL' },
);
const headerRecord = z.record(z.string(), z.string());
const withMethod = (method: string, message: string) =>
  z.custom<object>((v) => typeof v === 'object' && v !== null && typeof (v as Record<string, unknown>)[method] === 'function', { message });

export const endpointEmbedderOptionsSchema = z.strictObject({
  baseUrl: httpUrl.optional(),
  endpoint: z
    .strictObject({
      id: z.string().min(1).optional(),
      url: httpUrl,
      provider: z.string().min(1).optional(),
      apiKey: z.string().min(1).optional(),
      headers: headerRecord.optional(),
      weight: z.number().finite().positive().optional(),
      model: z.string().min(1).optional(),
    })
    .optional(),
  transport: withMethod('request', 'a ProviderTransport (request(endpoint, request))').optional(),
  client: z.record(z.string(), z.unknown()).optional(),
  router: withMethod('embeddings', 'a ModelRouter (embeddings(body, opts))').optional(),
  ai: withMethod('embeddings', 'an AiService (amas.ai)').optional(),
  user: z.string().min(1).optional(),
  team: z.string().min(1).optional(),
  model: z.string().min(1),
  apiKey: z.string().min(1).optional(),
  dimensions: positiveInt.optional(),
  timeoutMs: timerMs.positive().optional(),
  maxBatch: z.number().int().min(1).max(2048).optional(),
  maxWaitMs: timerMs.optional(),
  adaptive: z.boolean().optional(),
  maxConcurrentRequests: positiveInt.optional(),
  headers: headerRecord.optional(),
  name: z.string().min(1).optional(),
  clock: clockSchema.optional(),
});

/** The URL requests go to (see the module notes). */
export function embeddingsUrl(baseUrl: string): string {
  const url = new URL(baseUrl);
  const path = url.pathname.replace(/\/+$/, '');
  if (/\/embeddings$/.test(path)) url.pathname = path;
  else if (/\/v\d+[a-z]*$/i.test(path)) url.pathname = `${path}/embeddings`;
  else url.pathname = `${path}/v1/embeddings`;
  return url.toString();
}

/** The wall clock with referenced timers (see the `clock` option). */
const referencedClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, Math.max(0, ms)),
  clearTimeout: (handle) => {
    if (handle !== undefined) clearTimeout(handle as NodeJS.Timeout);
  },
};

export interface EndpointEmbedderStats {
  /** Requests sent. */
  requests: number;
  /** Requests that failed (HTTP error, network, timeout, malformed answer; not aborted or closed ones). */
  failures: number;
  /** Texts sent. */
  texts: number;
  /** Largest number of texts in one request. */
  largestBatch: number;
  /** Milliseconds from send to parsed answer, summed over requests. */
  requestMs: number;
  /** Texts waiting for a request now. */
  queued: number;
  /** Requests in flight now. */
  running: number;
}

/** How the embedder reaches the provider. */
export type EndpointEmbedderRoute = 'endpoint' | 'router' | 'ai';

/** One answer, whichever way it came. */
interface Answer {
  status: number;
  body: Buffer;
  /** The endpoint id that answered (router / ai). */
  endpoint?: string;
}

const SOURCES = ['baseUrl', 'endpoint', 'router', 'ai'] as const;

export class EndpointEmbedder implements Embedder {
  readonly name: string;
  /** The embeddings URL (credentials never shown); undefined with `router` / `ai`, where the endpoint varies per call. */
  readonly url: string | undefined;
  readonly model: string;
  readonly maxBatch: number;
  readonly maxWaitMs: number;
  readonly timeoutMs: number;
  /** 'endpoint' (`baseUrl` / `endpoint`), 'router' or 'ai'. */
  readonly via: EndpointEmbedderRoute;
  private dims: number;
  private readonly requestedDimensions: number | undefined;
  private readonly clock: Clock;
  private readonly batcher: MicroBatcher<string, Float32Array>;
  private readonly send: (body: Record<string, unknown>, signal: AbortSignal) => Promise<Answer>;
  /** The client this embedder created (closed with it). */
  private readonly ownedClient: ProviderClient | undefined;
  private closed = false;
  private readonly counters = { requests: 0, failures: 0, texts: 0, largestBatch: 0, requestMs: 0 };

  constructor(options: EndpointEmbedderOptions) {
    const where = 'EndpointEmbedder options';
    const o = parseOptions(endpointEmbedderOptionsSchema, options, where);
    checkCombination(o, where);
    // Checked here so a bad client option is reported as `client.<name>` (the client checks again when built).
    if (o.client !== undefined) parseOptions(providerClientOptionsSchema, o.client, where, 'client');
    const clientOptions = options.client;
    this.model = o.model;
    this.name = o.name ?? `endpoint:${o.model}`;
    this.requestedDimensions = o.dimensions;
    this.dims = o.dimensions ?? 0;
    this.timeoutMs = o.timeoutMs ?? 30_000;
    this.maxBatch = o.maxBatch ?? 64;
    this.maxWaitMs = o.maxWaitMs ?? 5;
    this.clock = o.clock ?? referencedClock;
    const headers = o.headers;

    if (o.ai !== undefined) {
      const ai = o.ai as Pick<AiService, 'embeddings'>;
      const callOptions = { user: o.user ?? 'semantic-cache', ...(o.team !== undefined && { team: o.team }) };
      this.via = 'ai';
      this.url = undefined;
      this.ownedClient = undefined;
      this.send = async (body, signal) => {
        const r = await ai.embeddings(body, { ...callOptions, signal });
        return { status: r.response.status, body: r.response.body, endpoint: r.endpoint };
      };
    } else if (o.router !== undefined) {
      const router = o.router as Pick<ModelRouter, 'embeddings'>;
      this.via = 'router';
      this.url = undefined;
      this.ownedClient = undefined;
      this.send = async (body, signal) => {
        const r = await router.embeddings(body, { signal, ...(headers !== undefined && { headers }) });
        return { status: r.response.status, body: r.response.body, endpoint: r.endpoint };
      };
    } else {
      let endpoint: EndpointConfig;
      let path: string;
      if (o.endpoint !== undefined) {
        endpoint = o.endpoint;
        path = '/v1/embeddings';
        this.url = upstreamUrl(endpoint, path);
      } else {
        // The embeddings URL splits into the endpoint's base (origin, with any user:pass for Basic auth) and
        // the request path, so a full '/embeddings' URL or a gateway prefix is used exactly as given.
        const full = new URL(embeddingsUrl(o.baseUrl!));
        const base = new URL(full.href);
        base.pathname = '/';
        base.search = '';
        base.hash = '';
        path = `${full.pathname}${full.search}`;
        endpoint = { url: base.href, ...(o.apiKey !== undefined && { apiKey: o.apiKey }), ...(headers !== undefined && { headers: withoutAuthorization(headers, o.apiKey) }) };
        this.url = `${full.origin}${path}`;
      }
      this.via = 'endpoint';
      // A full batch of long vectors as JSON is big (3072 dims are ~60 KiB a row): room for `maxBatch` of them.
      const maxResponseBytes = Math.max(32 * 1024 * 1024, this.maxBatch * 64 * 1024);
      this.ownedClient =
        o.transport === undefined ? new ProviderClient({ connectTimeout: Math.min(10_000, this.timeoutMs), maxResponseBytes, ...clientOptions }) : undefined;
      const transport = (o.transport as ProviderTransport | undefined) ?? this.ownedClient!;
      const requestHeaders = o.endpoint !== undefined ? headers : undefined;
      const model = endpoint.model;
      this.send = async (body, signal) => {
        const r = await transport.request(endpoint, {
          path,
          method: 'POST',
          body: model === undefined ? body : { ...body, model },
          ...(requestHeaders !== undefined && { headers: requestHeaders }),
          signal,
        });
        return { status: r.status, body: r.body };
      };
    }

    this.batcher = new MicroBatcher<string, Float32Array>({
      name: this.name,
      clock: this.clock,
      maxBatchSize: this.maxBatch,
      maxWaitMs: this.maxWaitMs,
      adaptive: o.adaptive ?? false,
      ...(o.maxConcurrentRequests !== undefined && { maxConcurrentBatches: o.maxConcurrentRequests }),
      run: (texts, { signal }) => this.request(texts, signal),
      closedError: () => new EmbeddingFailedError(`${this.name}: the embedder was closed`, 'closed'),
    });
  }

  /** The configured dimensions, else learned from the first answer (0 before it). */
  get dimensions(): number {
    return this.dims;
  }

  stats(): EndpointEmbedderStats {
    const b = this.batcher.stats();
    return { ...this.counters, queued: b.queued, running: b.running };
  }

  embed(texts: readonly string[], options: EmbedOptions = {}): Promise<Float32Array[]> {
    let input: string[];
    try {
      input = validateTexts(texts, this.name);
      if (this.closed) throw new EmbeddingFailedError(`${this.name}: the embedder is closed`, 'closed');
      throwIfAborted(options.signal, this.name);
    } catch (error) {
      return Promise.reject(error);
    }
    if (input.length === 0) return Promise.resolve([]);
    const signal = options.signal;
    const rows = this.batcher.addMany(input, signal === undefined ? {} : { signal });
    if (signal === undefined) return rows;
    return rows.catch((error: unknown) => {
      if (error instanceof AbortedError && signal.aborted) throw new AbortedError(`${this.name}: embedding aborted`, { cause: signal.reason });
      throw error;
    });
  }

  /** Sends everything queued now (in requests of at most `maxBatch`). */
  flush(): void {
    this.batcher.flush();
  }

  /**
   * Rejects every queued and in-flight caller (reason 'closed'), cancels in-flight requests and closes the
   * client the embedder created (never a transport, router or AI service it was given). Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.batcher.close();
    await this.ownedClient?.closeAll({ force: true }).catch(() => undefined);
  }

  /** One request (the batch function): one unit row per text, or an EmbeddingFailedError for all of them. */
  private async request(texts: string[], batchSignal: AbortSignal): Promise<Float32Array[]> {
    this.counters.requests++;
    this.counters.texts += texts.length;
    if (texts.length > this.counters.largestBatch) this.counters.largestBatch = texts.length;
    const controller = new AbortController();
    const onBatchAbort = () => controller.abort(batchSignal.reason);
    if (batchSignal.aborted) onBatchAbort();
    else batchSignal.addEventListener('abort', onBatchAbort, { once: true });
    let timedOut = false;
    const timer = this.clock.setTimeout(() => {
      timedOut = true;
      controller.abort(new AbortedError(`${this.name}: timed out after ${this.timeoutMs} ms`));
    }, this.timeoutMs);
    const started = performance.now();
    const body: Record<string, unknown> = { model: this.model, input: texts };
    if (this.requestedDimensions !== undefined) body.dimensions = this.requestedDimensions;
    try {
      let answer: Answer;
      try {
        answer = await this.send(body, controller.signal);
      } catch (error) {
        throw this.failure(error, timedOut, batchSignal);
      }
      // A timeout or a closed embedder that raced the answer still wins: its callers were told so already.
      if (timedOut || this.closed || batchSignal.aborted) throw this.failure(undefined, timedOut, batchSignal);
      return this.rowsOf(answer, texts.length);
    } catch (error) {
      if (error instanceof EmbeddingFailedError && error.reason !== 'closed') this.counters.failures++;
      throw error;
    } finally {
      this.clock.clearTimeout(timer);
      batchSignal.removeEventListener('abort', onBatchAbort);
      this.counters.requestMs += performance.now() - started;
    }
  }

  /** Where a request went, for messages: the URL, or the model (and the endpoint, when known) when routed. */
  private where(endpoint?: string): string {
    if (this.url !== undefined) return `${this.name}: POST ${this.url}`;
    return `${this.name}: POST /v1/embeddings for model "${this.model}"${endpoint ? ` on ${endpoint}` : ''}`;
  }

  /** What a failed call rejects its callers with (see the error mapping in the module notes). */
  private failure(error: unknown, timedOut: boolean, batchSignal: AbortSignal): unknown {
    if (timedOut) {
      return new EmbeddingFailedError(`${this.where()} timed out after ${this.timeoutMs} ms`, 'timeout', {
        cause: error,
        status: 504,
        details: { url: this.url, timeoutMs: this.timeoutMs },
      });
    }
    if (this.closed) return new EmbeddingFailedError(`${this.name}: the embedder was closed`, 'closed', { cause: error });
    if (batchSignal.aborted) return new AbortedError(`${this.name}: embedding aborted`, { cause: error });
    if (error instanceof EmbeddingFailedError) return error;

    const code = isAmasError(error) ? error.code : undefined;
    const attempts = routeAttemptsOf(error)?.length;
    const extra = { ...(this.url !== undefined && { url: this.url }), ...(attempts !== undefined && { attempts }) };
    const fail = (message: string, reason: EmbeddingFailureReason, status: number, details: Record<string, unknown> = {}, retryAfterMs?: number) =>
      new EmbeddingFailedError(message, reason, { cause: error, status, ...(retryAfterMs !== undefined && { retryAfterMs }), details: { ...extra, ...details } });

    if (error instanceof UpstreamError || code === 'AMAS_UPSTREAM_ERROR') {
      const e = error as UpstreamError;
      const where = this.where(e.endpoint);
      const d = e.details;
      const endpoint = e.endpoint === undefined ? {} : { endpoint: e.endpoint };
      if (d.reason === 'client-closed') return fail(`${where} failed: ${e.message}`, 'closed', 503, endpoint);
      if (e.network) {
        if (e.status === 504) return fail(`${where} timed out: ${e.message}`, 'timeout', 504, { ...endpoint, code: d.code });
        return fail(`${where} failed: ${typeof d.code === 'string' ? d.code : e.message}`, 'network', 502, { ...endpoint, code: d.code });
      }
      const upstreamStatus = typeof d.upstreamStatus === 'number' ? d.upstreamStatus : e.status;
      if (d.reason === 'response-too-large' || d.reason === 'invalid-json') {
        return fail(`${where} answered a malformed embeddings response: ${e.message}`, 'malformed-response', 502, { ...endpoint, upstreamStatus });
      }
      const message = upstreamMessage(e.body);
      const status = upstreamStatus === 429 || upstreamStatus === 503 ? upstreamStatus : 502;
      return fail(`${where} answered ${upstreamStatus}: ${message}`, 'http', status, { ...endpoint, upstreamStatus, upstreamMessage: message }, e.retryAfterMs);
    }
    const where = this.where();
    const text = error instanceof Error ? error.message : String(error);
    switch (code) {
      case 'AMAS_BREAKER_OPEN': // the router found no endpoint to call (breakers open, ejected, cooling down)
        return fail(`${where} failed: ${text}`, 'network', 503, { code }, (error as { retryAfterMs?: number }).retryAfterMs);
      case 'AMAS_BUDGET_EXCEEDED': // the AI layer refused before any call
        return fail(`${where} refused: ${text}`, 'http', (error as { status: number }).status, { code }, (error as { retryAfterMs?: number }).retryAfterMs);
      case 'AMAS_INVALID_REQUEST': // e.g. a model the router does not know
        return fail(`${where} refused: ${text}`, 'http', 502, { code, upstreamStatus: (error as { status: number }).status });
      case 'AMAS_ABORTED': // not our signal: the router or AI service was closed under us
        return fail(`${where} failed: ${text}`, 'closed', 503, { code });
      default:
        // Through `ai`, the AI layer's own batcher parses the answer: its plain errors mean a malformed one.
        if (this.via === 'ai' && !isAmasError(error)) return fail(`${where} answered a malformed embeddings response: ${text}`, 'malformed-response', 502);
        return fail(`${where} failed: ${text}`, 'network', 502, code === undefined ? {} : { code });
    }
  }

  private malformed(where: string, what: string, upstreamStatus: number): EmbeddingFailedError {
    return new EmbeddingFailedError(`${where} answered a malformed embeddings response: ${what}`, 'malformed-response', {
      status: 502,
      details: { ...(this.url !== undefined && { url: this.url }), upstreamStatus },
    });
  }

  private rowsOf(answer: Answer, count: number): Float32Array[] {
    const where = this.where(answer.endpoint);
    const status = answer.status;
    const text = answer.body.toString('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw this.malformed(where, `the body is not JSON (${snippet(text)})`, status);
    }
    const data = (parsed as { data?: unknown } | null)?.data;
    if (!Array.isArray(data)) throw this.malformed(where, 'no `data` array', status);
    if (data.length !== count) throw this.malformed(where, `${data.length} embeddings for ${count} inputs`, status);
    const ordered = new Array<unknown>(count);
    for (let i = 0; i < count; i++) {
      const entry = data[i] as { index?: unknown; embedding?: unknown } | null;
      if (!entry || typeof entry !== 'object') throw this.malformed(where, `data[${i}] is not an object`, status);
      const index = entry.index === undefined ? i : entry.index;
      if (!Number.isInteger(index) || (index as number) < 0 || (index as number) >= count || ordered[index as number] !== undefined) {
        throw this.malformed(where, `data[${i}].index is ${JSON.stringify(entry.index)}`, status);
      }
      ordered[index as number] = typeof entry.embedding === 'string' ? fromBase64(entry.embedding) : entry.embedding;
    }
    // Until the dimensions are known, the first row sets them for this answer; they are kept only when the
    // whole answer is valid, so one malformed first answer cannot pin a wrong length.
    let dims = this.dims;
    const first = ordered[0] as ArrayLike<unknown> | undefined;
    if (dims === 0 && (Array.isArray(first) || first instanceof Float32Array) && first.length > 0) dims = first.length;
    const rows: Float32Array[] = [];
    for (let i = 0; i < count; i++) {
      try {
        rows.push(toUnitRow(ordered[i], dims, this.name, i));
      } catch (error) {
        throw this.malformed(where, error instanceof Error ? error.message.replace(`${this.name}: `, '') : String(error), status);
      }
    }
    this.dims = dims;
    return rows;
  }
}

/** The source options given together, the credentials and transports that do not fit the source: one InvalidOptionError. */
function checkCombination(o: z.output<typeof endpointEmbedderOptionsSchema>, where: string): void {
  const issues: OptionIssue[] = [];
  const given = SOURCES.filter((key) => o[key] !== undefined);
  if (given.length === 0) {
    issues.push({ path: 'baseUrl', received: 'undefined', expected: 'an http(s) URL (or one of endpoint, router, ai)' });
  }
  for (const extra of given.slice(1)) {
    issues.push({ path: extra, received: describeOption(o[extra]), expected: `only one of ${SOURCES.join(', ')} (${given[0]} is given)` });
  }
  const source = given[0];
  const direct = source === 'baseUrl' || source === 'endpoint';
  const refuse = (key: keyof typeof o, expected: string) => {
    if (o[key] !== undefined) issues.push({ path: key, received: key === 'apiKey' ? 'a key (not shown)' : describeOption(o[key]), expected });
  };
  if (source !== undefined && source !== 'baseUrl') {
    refuse('apiKey', source === 'endpoint' ? 'no apiKey with endpoint (set endpoint.apiKey)' : `no apiKey with ${source} (its endpoints carry their keys)`);
  }
  if (source !== undefined && !direct) {
    refuse('transport', `no transport with ${source} (it has its own)`);
    refuse('client', `no client options with ${source} (it has its own client)`);
  }
  if (o.transport !== undefined) refuse('client', 'no client options with transport (they configure the client the embedder would create)');
  if (source === 'ai') refuse('headers', 'no headers with ai (set them on the endpoints of its models)');
  if (source !== 'ai') {
    refuse('user', 'user only with ai (usage records)');
    refuse('team', 'team only with ai (usage records)');
  }
  if (issues.length > 0) throw new InvalidOptionError(issues, where);
}

function describeOption(value: unknown): string {
  if (typeof value === 'object' && value !== null) {
    const ctor = (value as { constructor?: { name?: unknown } }).constructor?.name;
    if (typeof ctor === 'string' && ctor !== 'Object') return `a ${ctor}`;
    if ('apiKey' in value) return 'an object'; // never echo credentials
  }
  return describe(value);
}

/** With `apiKey`, an `authorization` header of the user's would override it in the client: the key wins, as before. */
function withoutAuthorization(headers: Record<string, string>, apiKey: string | undefined): Record<string, string> {
  if (apiKey === undefined) return headers;
  return Object.fromEntries(Object.entries(headers).filter(([name]) => name.toLowerCase() !== 'authorization'));
}

/** The provider's message in an error body (`{ error: { message } }`, `{ error: '...' }`, `{ message }`), else the body's text. */
function upstreamMessage(body: unknown): string {
  if (body === undefined || body === null) return '(empty body)';
  if (typeof body === 'string') return snippet(body);
  if (Buffer.isBuffer(body)) return snippet(body.toString('utf8'));
  const b = body as { error?: { message?: unknown } | string; message?: unknown };
  const m = typeof b.error === 'string' ? b.error : (b.error?.message ?? b.message);
  if (typeof m === 'string' && m) return m;
  let text: string;
  try {
    text = JSON.stringify(body);
  } catch {
    text = String(body);
  }
  return snippet(text);
}

function snippet(text: string): string {
  const t = text.trim().replace(/\s+/g, ' ');
  return t.length > 200 ? `${t.slice(0, 197)}...` : t || '(empty body)';
}

/** OpenAI's `encoding_format: 'base64'`: little-endian float32 bytes. */
function fromBase64(value: string): Float32Array | string {
  const bytes = Buffer.from(value, 'base64');
  if (bytes.length === 0 || bytes.length % 4 !== 0) return value;
  const out = new Float32Array(bytes.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = bytes.readFloatLE(i * 4);
  return out;
}
