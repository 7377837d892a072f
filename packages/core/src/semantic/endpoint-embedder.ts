/**
 * Embeddings from an OpenAI-compatible `POST /v1/embeddings` endpoint, over Node's global `fetch`.
 *
 * Concurrent `embed` calls are micro-batched: texts queued within `maxWaitMs` of the first one go out in one
 * request of at most `maxBatch` texts (a full batch leaves at once), and each caller gets its own rows, in
 * its order. A caller with more than `maxBatch` texts spans several requests. An HTTP error, a network error,
 * a timeout or a malformed answer rejects only the callers whose texts were in that request, with an
 * EmbeddingFailedError carrying the upstream status and message.
 *
 * URL: `baseUrl` may be the server root ('http://127.0.0.1:8080' -> '/v1/embeddings' is appended), an
 * OpenAI-style base that ends in a version ('https://api.openai.com/v1' -> '/embeddings' is appended), or
 * the full endpoint URL ending in '/embeddings' (used as is).
 */
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import type { Clock, TimerHandle } from '../clock.js';
import { AbortedError } from '../errors.js';
import { clockSchema, parseOptions, positiveInt, timerMs } from '../options/validate.js';
import {
  EmbeddingFailedError,
  throwIfAborted,
  toUnitRow,
  validateTexts,
  type EmbedOptions,
  type Embedder,
} from './embedder.js';

export interface EndpointEmbedderOptions {
  /** See the module notes: server root, an OpenAI-style '/v1' base, or the full '/embeddings' URL. http(s) only. */
  baseUrl: string;
  /** Sent as `model`, e.g. 'text-embedding-3-small'. */
  model: string;
  /** Sent as `Authorization: Bearer <apiKey>` when given. */
  apiKey?: string;
  /**
   * Sent as `dimensions` (models that can shorten their vectors, like text-embedding-3-*) and checked against
   * every row. When not given, learned from the first response (`dimensions` is 0 until then).
   */
  dimensions?: number;
  /** Per request, from send to parsed body; default 30_000. */
  timeoutMs?: number;
  /** Texts per request at most; default 64. */
  maxBatch?: number;
  /** How long the first queued text waits for company before its request leaves; default 5 (0: next tick). */
  maxWaitMs?: number;
  /** Extra request headers (e.g. an organization or a gateway key). */
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

export const endpointEmbedderOptionsSchema = z.strictObject({
  baseUrl: z.string().refine(
    (v) => {
      try {
        const u = new URL(v);
        return u.protocol === 'http:' || u.protocol === 'https:';
      } catch {
        return false;
      }
    },
    { message: 'an http(s) URL' },
  ),
  model: z.string().min(1),
  apiKey: z.string().min(1).optional(),
  dimensions: positiveInt.optional(),
  timeoutMs: timerMs.positive().optional(),
  maxBatch: z.number().int().min(1).max(2048).optional(),
  maxWaitMs: timerMs.optional(),
  headers: z.record(z.string(), z.string()).optional(),
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
  /** Requests that failed (HTTP error, network, timeout, malformed answer). */
  failures: number;
  /** Texts sent. */
  texts: number;
  /** Largest number of texts in one request. */
  largestBatch: number;
  /** Milliseconds from send to parsed answer, summed over requests. */
  requestMs: number;
}

/** One caller of `embed`: its rows fill in as the requests carrying its texts answer. */
interface Caller {
  rows: (Float32Array | undefined)[];
  remaining: number;
  done: boolean;
  resolve(rows: Float32Array[]): void;
  reject(error: unknown): void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  /** Requests in flight carrying some of this caller's texts. */
  requests: Set<Flight>;
}

interface Item {
  text: string;
  caller: Caller;
  index: number;
}

interface Flight {
  items: Item[];
  controller: AbortController;
}

export class EndpointEmbedder implements Embedder {
  readonly name: string;
  readonly url: string;
  readonly model: string;
  readonly maxBatch: number;
  readonly maxWaitMs: number;
  readonly timeoutMs: number;
  private dims: number;
  private readonly requestedDimensions: number | undefined;
  private readonly headers: Record<string, string>;
  private readonly clock: Clock;
  private queue: Item[] = [];
  private timer: TimerHandle | undefined;
  private readonly flights = new Set<Flight>();
  private closed = false;
  private readonly counters: EndpointEmbedderStats = { requests: 0, failures: 0, texts: 0, largestBatch: 0, requestMs: 0 };

  constructor(options: EndpointEmbedderOptions) {
    const o = parseOptions(endpointEmbedderOptionsSchema, options, 'EndpointEmbedder options');
    this.url = embeddingsUrl(o.baseUrl);
    this.model = o.model;
    this.name = o.name ?? `endpoint:${o.model}`;
    this.requestedDimensions = o.dimensions;
    this.dims = o.dimensions ?? 0;
    this.timeoutMs = o.timeoutMs ?? 30_000;
    this.maxBatch = o.maxBatch ?? 64;
    this.maxWaitMs = o.maxWaitMs ?? 5;
    this.clock = o.clock ?? referencedClock;
    this.headers = {
      ...o.headers,
      'content-type': 'application/json',
      accept: 'application/json',
      ...(o.apiKey ? { authorization: `Bearer ${o.apiKey}` } : {}),
    };
  }

  /** The configured dimensions, else learned from the first answer (0 before it). */
  get dimensions(): number {
    return this.dims;
  }

  stats(): EndpointEmbedderStats {
    return { ...this.counters };
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
    return new Promise<Float32Array[]>((resolve, reject) => {
      const caller: Caller = {
        rows: new Array<Float32Array | undefined>(input.length),
        remaining: input.length,
        done: false,
        resolve,
        reject,
        signal: options.signal,
        onAbort: undefined,
        requests: new Set(),
      };
      if (options.signal) {
        caller.onAbort = () => this.abortCaller(caller);
        options.signal.addEventListener('abort', caller.onAbort, { once: true });
      }
      for (let i = 0; i < input.length; i++) this.queue.push({ text: input[i], caller, index: i });
      while (this.queue.length >= this.maxBatch) this.send(this.queue.splice(0, this.maxBatch));
      if (this.queue.length > 0 && this.timer === undefined) {
        this.timer = this.clock.setTimeout(() => {
          this.timer = undefined;
          this.flush();
        }, this.maxWaitMs);
      }
    });
  }

  /** Sends everything queued now (in requests of at most `maxBatch`). */
  flush(): void {
    if (this.timer !== undefined) {
      this.clock.clearTimeout(this.timer);
      this.timer = undefined;
    }
    while (this.queue.length > 0) this.send(this.queue.splice(0, this.maxBatch));
  }

  private settle(caller: Caller, error?: unknown): void {
    if (caller.done) return;
    caller.done = true;
    if (caller.signal && caller.onAbort) caller.signal.removeEventListener('abort', caller.onAbort);
    for (const flight of caller.requests) this.release(flight, caller);
    caller.requests.clear();
    if (error !== undefined) caller.reject(error);
    else caller.resolve(caller.rows as Float32Array[]);
  }

  /** A caller left a flight: when nobody waits for it any more, the request is cancelled. */
  private release(flight: Flight, caller: Caller): void {
    if (flight.items.every((item) => item.caller === caller || item.caller.done)) flight.controller.abort();
  }

  private abortCaller(caller: Caller): void {
    if (caller.done) return;
    this.queue = this.queue.filter((item) => item.caller !== caller);
    if (this.queue.length === 0 && this.timer !== undefined) {
      this.clock.clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.settle(caller, new AbortedError(`${this.name}: embedding aborted`, { cause: caller.signal?.reason }));
  }

  private send(items: Item[]): void {
    const flight: Flight = { items, controller: new AbortController() };
    this.flights.add(flight);
    for (const item of items) item.caller.requests.add(flight);
    this.counters.requests++;
    this.counters.texts += items.length;
    if (items.length > this.counters.largestBatch) this.counters.largestBatch = items.length;
    this.request(flight).then(
      (rows) => {
        for (let i = 0; i < items.length; i++) {
          const { caller, index } = items[i];
          if (caller.done) continue;
          caller.rows[index] = rows[i];
          caller.requests.delete(flight);
          if (--caller.remaining === 0) this.settle(caller);
        }
      },
      (error: unknown) => {
        if (!(error instanceof AbortedError)) this.counters.failures++;
        for (const { caller } of items) {
          caller.requests.delete(flight);
          this.settle(caller, error);
        }
      },
    ).finally(() => this.flights.delete(flight));
  }

  /** One request: resolves with one unit row per item, or rejects with EmbeddingFailedError. */
  private async request(flight: Flight): Promise<Float32Array[]> {
    const { items, controller } = flight;
    const started = performance.now();
    let timedOut = false;
    const timeout = this.clock.setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.timeoutMs);
    const body: Record<string, unknown> = { model: this.model, input: items.map((i) => i.text) };
    if (this.requestedDimensions !== undefined) body.dimensions = this.requestedDimensions;
    const where = `${this.name}: POST ${this.url}`;
    try {
      let response: Response;
      let text: string;
      try {
        response = await fetch(this.url, { method: 'POST', headers: this.headers, body: JSON.stringify(body), signal: controller.signal });
        text = await response.text();
      } catch (error) {
        if (timedOut) {
          throw new EmbeddingFailedError(`${where} timed out after ${this.timeoutMs} ms`, 'timeout', {
            cause: error,
            status: 504,
            details: { url: this.url, timeoutMs: this.timeoutMs },
          });
        }
        if (this.closed) throw new EmbeddingFailedError(`${this.name}: the embedder was closed`, 'closed', { cause: error });
        if (controller.signal.aborted) throw new AbortedError(`${this.name}: embedding aborted`, { cause: error });
        const cause = (error as { cause?: { code?: string; message?: string } })?.cause;
        const reason = cause?.code ?? cause?.message ?? (error instanceof Error ? error.message : String(error));
        throw new EmbeddingFailedError(`${where} failed: ${reason}`, 'network', { cause: error, status: 502, details: { url: this.url } });
      }
      if (!response.ok) throw this.httpError(response, text, where);
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        throw this.malformed(where, `the body is not JSON (${snippet(text)})`, response.status);
      }
      return this.rowsOf(parsed, items.length, where, response.status);
    } finally {
      this.clock.clearTimeout(timeout);
      this.counters.requestMs += performance.now() - started;
    }
  }

  private httpError(response: Response, text: string, where: string): EmbeddingFailedError {
    let message = snippet(text);
    try {
      const body = JSON.parse(text) as { error?: { message?: unknown } | string; message?: unknown };
      const m = typeof body.error === 'string' ? body.error : (body.error?.message ?? body.message);
      if (typeof m === 'string' && m) message = m;
    } catch {
      // not JSON: keep the text
    }
    const retryAfter = Number(response.headers.get('retry-after'));
    const retryAfterMs = Number.isFinite(retryAfter) && retryAfter >= 0 && response.headers.has('retry-after') ? retryAfter * 1000 : undefined;
    const status = response.status === 429 || response.status === 503 ? response.status : 502;
    return new EmbeddingFailedError(`${where} answered ${response.status}: ${message}`, 'http', {
      status,
      retryAfterMs,
      details: { url: this.url, upstreamStatus: response.status, upstreamMessage: message },
    });
  }

  private malformed(where: string, what: string, upstreamStatus: number): EmbeddingFailedError {
    return new EmbeddingFailedError(`${where} answered a malformed embeddings response: ${what}`, 'malformed-response', {
      status: 502,
      details: { url: this.url, upstreamStatus },
    });
  }

  private rowsOf(parsed: unknown, count: number, where: string, status: number): Float32Array[] {
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

  /** Rejects every queued and in-flight caller (reason 'closed') and cancels in-flight requests. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) {
      this.clock.clearTimeout(this.timer);
      this.timer = undefined;
    }
    const closedError = () => new EmbeddingFailedError(`${this.name}: the embedder was closed`, 'closed');
    const queued = this.queue;
    this.queue = [];
    for (const { caller } of queued) this.settle(caller, closedError());
    for (const flight of [...this.flights]) {
      for (const { caller } of flight.items) this.settle(caller, closedError());
      flight.controller.abort();
    }
  }
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
