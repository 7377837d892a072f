/**
 * The pooled HTTP client for AI providers (`ProviderTransport`), on undici.
 *
 * - One undici Pool per origin (`scheme://host:port`), shared by every endpoint on that origin: keep-alive
 *   sockets, at most `connections` sockets per origin, connect/headers/body timeouts, and HTTP/2 when an
 *   https origin offers it through ALPN (`http2`, default on). Plain http:// origins always speak HTTP/1.1:
 *   h2c is never negotiated (a local vLLM/Ollama/mock server is HTTP/1.1 anyway).
 * - DNS answers are cached for `dnsTtl` (see origin-pool.ts for why this is not undici's dns interceptor).
 * - `request` buffers a 2xx body (at most `maxResponseBytes`, else a 502 UpstreamError); `stream` resolves at
 *   the response headers and yields the body's bytes as they arrive. Stopping the iteration early (break,
 *   return, throw) or aborting the signal aborts the upstream request and frees its socket.
 * - Every failure is an UpstreamError (see provider-types.ts): the upstream status with the provider's body
 *   and `retryAfterMs`, 502 `network` for connect/reset/socket errors, 504 `network` for connect, headers and
 *   body timeouts. An aborted `signal` rejects with the signal's own reason, unwrapped.
 * - No routing, retries or fallbacks here: the router composes those on top of `ProviderTransport`.
 *
 * URLs: `endpoint.url` is a base URL (credentials in it, `https://user:pass@host`, are sent as Basic auth unless
 * `apiKey` is set, and never appear in ids, stats or messages), optionally with a base path (`https://x.openai.azure.com/openai/
 * deployments/gpt-4o`) and a query (`?api-version=...`, merged with the request path's own query). A trailing
 * slash is ignored. When the base path already ends in the version segment the request path starts with
 * (`https://api.openai.com/v1` + `/v1/chat/completions`), the segment is not repeated.
 */
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { z } from 'zod';
import type { Clock } from '../clock.js';
import { InvalidOptionError } from '../errors.js';
import { durationSchema } from '../options/duration.js';
import { describe, fn, MAX_TIMER_MS, parseOptions, positiveInt } from '../options/validate.js';
import { retryAfterFromError } from '../policies/retry-after.js';
import { createCachedLookup, OriginPool, type CachedLookup, type CallOutcome, type Lookup, type OriginStats } from './origin-pool.js';
import {
  UpstreamError,
  type EndpointConfig,
  type ProviderTransport,
  type UpstreamRequest,
  type UpstreamResponse,
  type UpstreamStream,
} from './provider-types.js';

export type { OriginStats, LatencyStats } from './origin-pool.js';

export interface ProviderClientOptions {
  /** Sockets per origin at most (HTTP/2: sessions, each carrying up to `maxConcurrentStreams`). Default 64. */
  connections?: number;
  /** TCP + TLS handshake. Default '10s'. */
  connectTimeout?: number | string;
  /**
   * From sending the request to the complete response headers. A non-streamed completion sends its headers
   * only when the answer is generated, so this bounds generation time too. Default '5m'; 0 disables.
   */
  headersTimeout?: number | string;
  /** Longest silence between two body chunks (a stream's gap between tokens). Default '5m'; 0 disables. */
  bodyTimeout?: number | string;
  /** How long an idle keep-alive socket stays open (a server's `Keep-Alive: timeout` hint wins). Default '30s'. */
  keepAliveTimeout?: number | string;
  /** Offer HTTP/2 to https origins (ALPN; the server chooses). Never used for http:// origins. Default true. */
  http2?: boolean;
  /** HTTP/2 streams per session at most (the server's SETTINGS may lower it). Default 100. */
  maxConcurrentStreams?: number;
  /** How long a resolved host name is reused. Default '30s'; 0 resolves on every new socket. */
  dnsTtl?: number | string;
  /** A `dns.lookup`-compatible resolver (service discovery, tests). Its answers are cached for `dnsTtl`. */
  lookup?: Lookup;
  /** TLS settings for https origins: a private CA, or (tests only) no certificate check. */
  tls?: { ca?: string | Buffer | Array<string | Buffer>; rejectUnauthorized?: boolean };
  /** Largest 2xx body `request` buffers; a larger one fails with a 502 UpstreamError. Default 32 MiB. */
  maxResponseBytes?: number;
  /** Bytes of a non-2xx body kept in UpstreamError.body (the rest is dropped). Default 64 KiB. */
  maxErrorBodyBytes?: number;
  /** Calls per origin in the latency window of `stats()`. Default 256. */
  latencyWindow?: number;
  /** Headers sent with every call (the endpoint's and the call's own headers override them). */
  headers?: Record<string, string>;
  /** Time source for latencies and DNS expiry (`now()` only). Default: `performance.now`. */
  clock?: Pick<Clock, 'now'>;
}

const duration = durationSchema.pipe(z.number().max(MAX_TIMER_MS, 'a duration of at most 24.8 days'));
const bytes = z.union([z.instanceof(Buffer), z.string()]);
const headerRecord = z.record(
  z.string().regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, 'an HTTP header name'),
  z.string().refine((v) => !/[\r\n\0]/.test(v), 'a header value without CR, LF or NUL'),
);

export const providerClientOptionsSchema = z.strictObject({
  connections: positiveInt.max(65_536).optional(),
  connectTimeout: durationSchema.pipe(z.number().positive('a duration > 0').max(MAX_TIMER_MS, 'a duration of at most 24.8 days')).optional(),
  headersTimeout: duration.optional(),
  bodyTimeout: duration.optional(),
  keepAliveTimeout: durationSchema.pipe(z.number().positive('a duration > 0').max(MAX_TIMER_MS, 'a duration of at most 24.8 days')).optional(),
  http2: z.boolean().optional(),
  maxConcurrentStreams: positiveInt.max(65_535).optional(),
  dnsTtl: duration.optional(),
  lookup: fn.optional(),
  tls: z.strictObject({ ca: z.union([bytes, z.array(bytes)]).optional(), rejectUnauthorized: z.boolean().optional() }).optional(),
  maxResponseBytes: positiveInt.optional(),
  maxErrorBodyBytes: positiveInt.optional(),
  latencyWindow: positiveInt.max(100_000).optional(),
  headers: headerRecord.optional(),
  clock: z.custom<Pick<Clock, 'now'>>((v) => typeof v === 'object' && v !== null && typeof (v as { now?: unknown }).now === 'function', { message: 'a clock with now()' }).optional(),
});

/** Per-call options of the OpenAI-style helpers. */
export interface ProviderCallOptions {
  signal?: AbortSignal;
  headers?: Record<string, string>;
  /** Overrides the helper's default path (e.g. an Azure deployment path or a gateway prefix). */
  path?: string;
}

/** `closeAll` options. */
export interface CloseOptions {
  /** Fail the calls still running instead of waiting for them. Default false. */
  force?: boolean;
}

const DEFAULTS = {
  connections: 64,
  connectTimeout: 10_000,
  headersTimeout: 300_000,
  bodyTimeout: 300_000,
  keepAliveTimeout: 30_000,
  http2: true,
  maxConcurrentStreams: 100,
  dnsTtl: 30_000,
  maxResponseBytes: 32 * 1024 * 1024,
  maxErrorBodyBytes: 64 * 1024,
  latencyWindow: 256,
} as const;

/** A parsed endpoint base URL. */
interface BaseUrl {
  url: URL;
  origin: string;
  /** No trailing slash; '' for the root. */
  basePath: string;
  /** Without '?'; '' when none. */
  query: string;
  /** `Basic ...` from credentials in the URL (`https://user:pass@host`), else undefined. */
  basicAuth: string | undefined;
}

/** The endpoint's base URL parsed, or an InvalidOptionError naming `endpoint.url`. */
export function parseEndpointUrl(url: unknown): BaseUrl {
  let parsed: URL | undefined;
  if (typeof url === 'string') {
    try {
      parsed = new URL(url);
    } catch {
      parsed = undefined;
    }
  }
  if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
    if (parsed) parsed.username = parsed.password = ''; // never echo credentials
    throw new InvalidOptionError([{ path: 'endpoint.url', received: describe(parsed ? parsed.href : url), expected: 'an http(s) URL' }], 'provider endpoint');
  }
  let basicAuth: string | undefined;
  if (parsed.username || parsed.password) {
    const user = safeDecode(parsed.username);
    const pass = safeDecode(parsed.password);
    basicAuth = `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
    parsed.username = '';
    parsed.password = '';
  }
  return { url: parsed, origin: parsed.origin, basePath: parsed.pathname.replace(/\/+$/, ''), query: parsed.search.slice(1), basicAuth };
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** The default endpoint id: `<provider>:<origin><basePath>`, e.g. `openai:https://api.openai.com`. */
export function endpointId(endpoint: EndpointConfig): string {
  if (endpoint.id) return endpoint.id;
  const base = parseEndpointUrl(endpoint.url);
  return `${endpoint.provider ?? 'openai'}:${base.origin}${base.basePath}`;
}

/** The request target (path and query, no origin) for `path` under the endpoint base. */
export function upstreamPath(base: Pick<BaseUrl, 'basePath' | 'query'>, path: string): string {
  const q = path.indexOf('?');
  let rel = q === -1 ? path : path.slice(0, q);
  const relQuery = q === -1 ? '' : path.slice(q + 1);
  if (!rel.startsWith('/')) rel = `/${rel}`;
  const last = base.basePath.slice(base.basePath.lastIndexOf('/') + 1);
  if (/^v\d+[a-z0-9]*$/i.test(last) && (rel === `/${last}` || rel.startsWith(`/${last}/`))) rel = rel.slice(last.length + 1) || '/';
  const query = [base.query, relQuery].filter(Boolean).join('&');
  return `${base.basePath}${rel}${query ? `?${query}` : ''}`;
}

/** The full URL a call to `path` on `endpoint` goes to. */
export function upstreamUrl(endpoint: EndpointConfig, path: string): string {
  const base = parseEndpointUrl(endpoint.url);
  return `${base.origin}${upstreamPath(base, path)}`;
}

/** undici's parsed headers (arrays for repeated names) as one lower-cased string per name. */
function flatHeaders(headers: Dispatcher.ResponseData['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    out[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

function lowerKeys(target: Record<string, string>, source: Record<string, string> | undefined): void {
  if (!source) return;
  for (const [name, value] of Object.entries(source)) target[name.toLowerCase()] = value;
}

const noop = () => {};

/** Drops a body we no longer read; the socket is closed unless the body already ended. */
function discard(body: Readable): void {
  body.on('error', noop);
  if (!body.destroyed && !body.readableEnded) body.destroy();
}

/** Reads at most `limit` bytes; `truncated` when there was more (the rest is discarded). */
async function readCapped(body: Readable, limit: number): Promise<{ data: Buffer; truncated: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    const room = limit - size;
    if (chunk.length > room) {
      if (room > 0) chunks.push(chunk.subarray(0, room));
      discard(body);
      return { data: Buffer.concat(chunks, limit), truncated: true };
    }
    chunks.push(chunk);
    size += chunk.length;
  }
  return { data: Buffer.concat(chunks, size), truncated: false };
}

/** A provider error body: parsed JSON when it is complete JSON, else text. */
function decodeErrorBody(data: Buffer, truncated: boolean, contentType: string | undefined): unknown {
  if (data.length === 0) return undefined;
  const text = data.toString('utf8');
  const trimmed = text.trimStart();
  if (!truncated && (/\bjson\b|\+json/i.test(contentType ?? '') || trimmed.startsWith('{') || trimmed.startsWith('['))) {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      // not JSON after all
    }
  }
  return text;
}

/** The provider's own message in an error body (`{ error: { message } }`, `{ error: '...' }`, `{ message }`, text). */
function providerMessage(body: unknown): string | undefined {
  let message: unknown;
  if (typeof body === 'string') message = body;
  else if (typeof body === 'object' && body !== null) {
    const b = body as { error?: unknown; message?: unknown; detail?: unknown };
    message =
      typeof b.error === 'object' && b.error !== null ? (b.error as { message?: unknown }).message : typeof b.error === 'string' ? b.error : (b.message ?? b.detail);
  }
  if (typeof message !== 'string') return undefined;
  const oneLine = message.replace(/\s+/g, ' ').trim();
  return oneLine.length > 200 ? `${oneLine.slice(0, 197)}...` : oneLine || undefined;
}

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT']);
const TIMEOUT_WHAT: Record<string, string> = {
  UND_ERR_HEADERS_TIMEOUT: 'timed out waiting for the response headers',
  UND_ERR_BODY_TIMEOUT: 'timed out waiting for the response body',
  UND_ERR_CONNECT_TIMEOUT: 'timed out connecting',
  ETIMEDOUT: 'timed out connecting',
};

/** The most specific error code on an error (AggregateError from happy-eyeballs, a cause chain). */
function errorCode(error: unknown): string | undefined {
  let e = error as { code?: unknown; errors?: unknown; cause?: unknown } | undefined;
  for (let depth = 0; e && depth < 5; depth++) {
    if (typeof e.code === 'string') return e.code;
    if (Array.isArray(e.errors) && e.errors.length) e = e.errors[0] as typeof e;
    else e = e.cause as typeof e;
  }
  return undefined;
}

/** undici errors that say "you called me wrong", passed through unchanged rather than blamed on the upstream. */
const CALLER_ERRORS = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED', 'ERR_INVALID_ARG_TYPE', 'ERR_INVALID_CHAR', 'ERR_INVALID_HTTP_TOKEN']);

interface Call {
  id: string;
  origin: OriginPool;
  signal: AbortSignal | undefined;
  startedAt: number;
  done: boolean;
}

export class ProviderClient implements ProviderTransport {
  private readonly o: {
    connections: number;
    connectTimeout: number;
    headersTimeout: number;
    bodyTimeout: number;
    keepAliveTimeout: number;
    http2: boolean;
    maxConcurrentStreams: number;
    maxResponseBytes: number;
    maxErrorBodyBytes: number;
    latencyWindow: number;
    tls: ProviderClientOptions['tls'];
  };
  private readonly defaultHeaders: Record<string, string>;
  private readonly now: () => number;
  private readonly dns: CachedLookup;
  private readonly pools = new Map<string, OriginPool>();
  private readonly bases = new Map<string, BaseUrl>();
  private closing: Promise<void> | undefined;

  constructor(options: ProviderClientOptions = {}) {
    const o = parseOptions(providerClientOptionsSchema, options, 'ProviderClient options');
    this.o = {
      connections: o.connections ?? DEFAULTS.connections,
      connectTimeout: o.connectTimeout ?? DEFAULTS.connectTimeout,
      headersTimeout: o.headersTimeout ?? DEFAULTS.headersTimeout,
      bodyTimeout: o.bodyTimeout ?? DEFAULTS.bodyTimeout,
      keepAliveTimeout: o.keepAliveTimeout ?? DEFAULTS.keepAliveTimeout,
      http2: o.http2 ?? DEFAULTS.http2,
      maxConcurrentStreams: o.maxConcurrentStreams ?? DEFAULTS.maxConcurrentStreams,
      maxResponseBytes: o.maxResponseBytes ?? DEFAULTS.maxResponseBytes,
      maxErrorBodyBytes: o.maxErrorBodyBytes ?? DEFAULTS.maxErrorBodyBytes,
      latencyWindow: o.latencyWindow ?? DEFAULTS.latencyWindow,
      tls: o.tls,
    };
    const clock = o.clock;
    this.now = clock ? () => clock.now() : () => performance.now();
    this.dns = createCachedLookup(o.dnsTtl ?? DEFAULTS.dnsTtl, this.now, o.lookup as Lookup | undefined);
    this.defaultHeaders = { 'user-agent': 'amas-provider-client' };
    lowerKeys(this.defaultHeaders, o.headers);
  }

  /** True once `closeAll` was called. */
  get closed(): boolean {
    return this.closing !== undefined;
  }

  /** A complete 2xx answer, body buffered (at most `maxResponseBytes`). */
  async request(endpoint: EndpointConfig, request: UpstreamRequest): Promise<UpstreamResponse> {
    const call = this.begin(endpoint, request);
    const res = await this.send(call, endpoint, request, 'application/json');
    try {
      const length = Number(res.headers['content-length']);
      if (Number.isFinite(length) && length > this.o.maxResponseBytes) {
        discard(res.body);
        throw this.tooLarge(call, res.status, res.headers);
      }
      const { data, truncated } = await readCapped(res.body, this.o.maxResponseBytes);
      if (truncated) throw this.tooLarge(call, res.status, res.headers);
      this.end(call, 'succeeded');
      return { status: res.status, headers: res.headers, body: data, latencyMs: this.now() - call.startedAt };
    } catch (error) {
      discard(res.body);
      throw this.fail(call, error);
    }
  }

  /**
   * A 2xx answer whose body yields its bytes as they arrive. Iterate it to the end, or stop early (break /
   * return / the signal) to abort the upstream request; an un-iterated body holds its socket until
   * `bodyTimeout`. The body can be iterated once.
   */
  async stream(endpoint: EndpointConfig, request: UpstreamRequest): Promise<UpstreamStream> {
    const call = this.begin(endpoint, request);
    const res = await this.send(call, endpoint, request, 'text/event-stream, application/json');
    const body = new StreamBody(
      res.body,
      (outcome) => this.end(call, outcome),
      (error) => this.fail(call, error),
    );
    return { status: res.status, headers: res.headers, body, latencyMs: res.headersAt - call.startedAt };
  }

  /** POST `/v1/chat/completions` (the endpoint's `model` replaces the body's when set); the parsed JSON answer. */
  async chatCompletion<T = Record<string, unknown>>(endpoint: EndpointConfig, body: Record<string, unknown>, options: ProviderCallOptions = {}): Promise<T> {
    return this.json<T>(endpoint, options.path ?? '/v1/chat/completions', withModel(endpoint, body), options);
  }

  /** POST `/v1/chat/completions` with `stream: true`; the server-sent events as raw bytes. */
  chatCompletionStream(endpoint: EndpointConfig, body: Record<string, unknown>, options: ProviderCallOptions = {}): Promise<UpstreamStream> {
    return this.stream(endpoint, {
      path: options.path ?? '/v1/chat/completions',
      method: 'POST',
      body: { ...withModel(endpoint, body), stream: true },
      ...(options.headers ? { headers: options.headers } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
  }

  /** POST `/v1/embeddings` (the endpoint's `model` replaces the body's when set); the parsed JSON answer. */
  async embeddings<T = Record<string, unknown>>(endpoint: EndpointConfig, body: Record<string, unknown>, options: ProviderCallOptions = {}): Promise<T> {
    return this.json<T>(endpoint, options.path ?? '/v1/embeddings', withModel(endpoint, body), options);
  }

  /** Per origin: undici's pool stats, this client's counters and the recent latency. */
  stats(): Record<string, OriginStats> {
    const out: Record<string, OriginStats> = {};
    for (const [origin, pool] of this.pools) out[origin] = pool.stats();
    return out;
  }

  /**
   * Closes every pool: waits for running calls (or fails them with `force`), then closes every socket.
   * Idempotent (later calls return the same promise; `force` on a later call still fails the calls a graceful
   * close is waiting for). Calls made afterwards reject with a 503 UpstreamError (`details.reason`
   * 'client-closed'), as do calls a forced close interrupts.
   */
  closeAll(options: CloseOptions = {}): Promise<void> {
    if (this.closing === undefined) {
      const pools = [...this.pools.values()];
      this.closing = Promise.all(pools.map((p) => (options.force ? p.destroy() : p.close()))).then(noop);
    } else if (options.force) {
      void Promise.all([...this.pools.values()].map((p) => p.destroy())).catch(noop);
    }
    return this.closing;
  }

  // ---- internals -------------------------------------------------------------------------------------------

  private async json<T>(endpoint: EndpointConfig, path: string, body: unknown, options: ProviderCallOptions): Promise<T> {
    const res = await this.request(endpoint, {
      path,
      method: 'POST',
      body,
      ...(options.headers ? { headers: options.headers } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    try {
      return JSON.parse(res.body.toString('utf8')) as T;
    } catch {
      const id = this.safeId(endpoint);
      throw new UpstreamError(`Upstream ${id} answered ${res.status} with a body that is not JSON`, {
        status: 502,
        endpoint: id,
        body: res.body.subarray(0, this.o.maxErrorBodyBytes).toString('utf8'),
        responseHeaders: res.headers,
        details: { reason: 'invalid-json', upstreamStatus: res.status },
      });
    }
  }

  private safeId(endpoint: EndpointConfig): string {
    try {
      return endpointId(endpoint);
    } catch {
      return String(endpoint?.id ?? endpoint?.url);
    }
  }

  private base(url: string): BaseUrl {
    let base = this.bases.get(url);
    if (!base) {
      base = parseEndpointUrl(url);
      if (this.bases.size >= 1024) this.bases.clear();
      this.bases.set(url, base);
    }
    return base;
  }

  private poolFor(base: BaseUrl): OriginPool {
    let pool = this.pools.get(base.origin);
    if (!pool) {
      pool = new OriginPool(base.url, {
        connections: this.o.connections,
        connectTimeout: this.o.connectTimeout,
        headersTimeout: this.o.headersTimeout,
        bodyTimeout: this.o.bodyTimeout,
        keepAliveTimeout: this.o.keepAliveTimeout,
        http2: this.o.http2,
        maxConcurrentStreams: this.o.maxConcurrentStreams,
        tls: this.o.tls,
        lookup: this.dns,
        latencyWindow: this.o.latencyWindow,
      });
      this.pools.set(base.origin, pool);
    }
    return pool;
  }

  /** Validates the call and starts counting it; throws (synchronously, inside the async callers) on a bad call. */
  private begin(endpoint: EndpointConfig, request: UpstreamRequest): Call & { base: BaseUrl } {
    if (typeof endpoint !== 'object' || endpoint === null) {
      throw new InvalidOptionError([{ path: 'endpoint', received: describe(endpoint), expected: 'an EndpointConfig object' }], 'provider endpoint');
    }
    const base = this.base(endpoint.url);
    const id = endpoint.id || `${endpoint.provider ?? 'openai'}:${base.origin}${base.basePath}`;
    if (this.closing !== undefined) {
      throw new UpstreamError(`ProviderClient is closed (closeAll() was called); no call to ${id} was made`, {
        status: 503,
        endpoint: id,
        network: true,
        details: { reason: 'client-closed' },
      });
    }
    const signal = request?.signal;
    if (signal?.aborted) throw signal.reason;
    if (typeof request?.path !== 'string') {
      throw new InvalidOptionError([{ path: 'request.path', received: describe(request?.path), expected: "a path such as '/v1/chat/completions'" }], 'upstream request');
    }
    const origin = this.poolFor(base);
    origin.started();
    return { id, origin, signal, startedAt: this.now(), done: false, base };
  }

  /** Sends the call; resolves at the headers of a 2xx answer, rejects with the mapped error otherwise. */
  private async send(
    call: Call & { base: BaseUrl },
    endpoint: EndpointConfig,
    request: UpstreamRequest,
    accept: string,
  ): Promise<{ status: number; headers: Record<string, string>; body: Readable; headersAt: number }> {
    const method = request.method ?? 'POST';
    let payload: string | Uint8Array | undefined;
    const headers: Record<string, string> = { ...this.defaultHeaders, accept };
    try {
      if (method === 'POST') {
        payload = request.body instanceof Uint8Array ? request.body : JSON.stringify(request.body ?? {});
        headers['content-type'] = 'application/json';
      }
    } catch (error) {
      this.end(call, 'invalid');
      throw error;
    }
    if (call.base.basicAuth) headers.authorization = call.base.basicAuth;
    if (endpoint.apiKey) headers.authorization = `Bearer ${endpoint.apiKey}`;
    lowerKeys(headers, endpoint.headers);
    lowerKeys(headers, request.headers);

    let res: Dispatcher.ResponseData;
    try {
      const sent = call.origin.pool.request({
        path: upstreamPath(call.base, request.path),
        method,
        headers,
        body: payload ?? null,
        signal: call.signal ?? null,
      });
      res = call.signal ? await abortable(sent, call.signal) : await sent;
    } catch (error) {
      throw this.fail(call, error);
    }
    const headersAt = this.now();
    call.origin.answered(headersAt - call.startedAt);
    const body = res.body as unknown as Readable;
    body.on('error', noop);
    const resHeaders = flatHeaders(res.headers);
    if (res.statusCode >= 200 && res.statusCode < 300) return { status: res.statusCode, headers: resHeaders, body, headersAt };

    let error: unknown;
    try {
      const { data, truncated } = await readCapped(body, this.o.maxErrorBodyBytes);
      error = this.statusError(call, res.statusCode, resHeaders, decodeErrorBody(data, truncated, resHeaders['content-type']), truncated);
    } catch (readError) {
      discard(body);
      error = readError;
    }
    throw this.fail(call, error);
  }

  private statusError(call: Call, status: number, headers: Record<string, string>, body: unknown, truncated: boolean): UpstreamError {
    const retryAfterMs = retryAfterFromError({ headers });
    const message = providerMessage(body);
    // Only 4xx/5xx are errors a client can be answered with; a 1xx/3xx final answer means a misconfigured URL.
    const errorStatus = status >= 400 && status <= 599 ? status : 502;
    return new UpstreamError(`Upstream ${call.id} answered ${status}${message ? `: ${message}` : ''}`, {
      status: errorStatus,
      endpoint: call.id,
      body,
      responseHeaders: headers,
      ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
      details: { upstreamStatus: status, ...(truncated ? { bodyTruncated: true } : {}) },
    });
  }

  private tooLarge(call: Call, status: number, headers: Record<string, string>): UpstreamError {
    return new UpstreamError(`Upstream ${call.id} sent a response body larger than maxResponseBytes (${this.o.maxResponseBytes} bytes)`, {
      status: 502,
      endpoint: call.id,
      responseHeaders: headers,
      details: { reason: 'response-too-large', maxResponseBytes: this.o.maxResponseBytes, upstreamStatus: status },
    });
  }

  /** Maps a failure to what the caller sees, and counts the call as finished. */
  private fail(call: Call, error: unknown): unknown {
    if (call.signal?.aborted) {
      this.end(call, 'aborted');
      return call.signal.reason;
    }
    if (error instanceof UpstreamError) {
      this.end(call, error.network ? (error.status === 504 ? 'timeout' : 'network') : 'error');
      return error;
    }
    const code = errorCode(error);
    if (code && CALLER_ERRORS.has(code)) {
      this.end(call, 'invalid');
      return error;
    }
    if (this.closing !== undefined && (code === 'UND_ERR_CLOSED' || code === 'UND_ERR_DESTROYED')) {
      this.end(call, 'network');
      return new UpstreamError(`ProviderClient was closed while calling ${call.id}`, {
        status: 503,
        endpoint: call.id,
        network: true,
        cause: error,
        details: { reason: 'client-closed' },
      });
    }
    const timeout = code !== undefined && TIMEOUT_CODES.has(code);
    this.end(call, timeout ? 'timeout' : 'network');
    const detail = error instanceof Error && error.message ? ` (${error.message})` : '';
    return new UpstreamError(
      timeout
        ? `Upstream ${call.id} ${TIMEOUT_WHAT[code] ?? 'timed out'}: ${code}${detail}`
        : `Upstream ${call.id} (${call.origin.origin}) unreachable: ${code ?? 'network error'}${detail}`,
      { status: timeout ? 504 : 502, endpoint: call.id, network: true, cause: error, details: { code: code ?? null } },
    );
  }

  /** Counts the call's outcome once. */
  private end(call: Call, outcome: CallOutcome): void {
    if (call.done) return;
    call.done = true;
    call.origin.finished(outcome);
  }
}

/**
 * `sent`, or a rejection with the signal's reason as soon as it aborts. undici 7 notices an abort only once
 * the request has a socket (nodejs/undici#386): a call queued behind the `connections` cap would otherwise wait
 * for a free socket before rejecting. undici still drops the request unsent when it reaches a socket.
 */
function abortable(sent: Promise<Dispatcher.ResponseData>, signal: AbortSignal): Promise<Dispatcher.ResponseData> {
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    sent.then(
      (res) => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) {
          discard(res.body as unknown as Readable);
          reject(signal.reason);
        } else resolve(res);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

function withModel(endpoint: EndpointConfig, body: Record<string, unknown>): Record<string, unknown> {
  return endpoint.model ? { ...body, model: endpoint.model } : body;
}

/**
 * A streamed 2xx body: yields the bytes as they arrive, maps transport failures to UpstreamError, and aborts
 * the upstream request when the consumer stops early. Single-use.
 */
class StreamBody implements AsyncIterableIterator<Uint8Array> {
  private iterator: AsyncIterator<Buffer> | undefined;
  private finished = false;

  constructor(
    private readonly body: Readable,
    private readonly onEnd: (outcome: CallOutcome) => void,
    private readonly mapError: (error: unknown) => unknown,
  ) {}

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<Uint8Array>> {
    if (this.finished) return { done: true, value: undefined };
    this.iterator ??= (this.body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    try {
      const result = await this.iterator.next();
      if (result.done) {
        this.finished = true;
        this.onEnd('succeeded');
      }
      return result;
    } catch (error) {
      this.finished = true;
      discard(this.body);
      throw this.mapError(error);
    }
  }

  /** The consumer stopped early: abort the upstream request and free the socket. */
  async return(): Promise<IteratorResult<Uint8Array>> {
    if (!this.finished) {
      this.finished = true;
      discard(this.body);
      this.onEnd('succeeded');
    }
    return { done: true, value: undefined };
  }

  async throw(error?: unknown): Promise<IteratorResult<Uint8Array>> {
    await this.return();
    throw error;
  }
}
