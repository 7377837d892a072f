/**
 * The contracts between the parts of the AI provider layer (`packages/core/src/ai/`): the pooled HTTP client,
 * the model router (endpoints, balancing, health, fallbacks), token counting, prices, cost tracking and
 * budgets. Each part lives in its own file(s) and depends on the others only through these types.
 */
import { AmasError, type AmasErrorInit } from '../errors.js';

/** One deployment that serves a model: a base URL with its credentials (keys, regions, providers). */
export interface EndpointConfig {
  /** Stable name in metrics, stats and logs. Default: `<provider>:<origin><basePath>` made unique in its group. */
  id?: string;
  /** Base URL without the `/v1/...` path, e.g. `https://api.openai.com` or `http://127.0.0.1:8080`. */
  url: string;
  /** Provider name for prices and labels, e.g. 'openai', 'azure', 'vllm'. Default 'openai'. */
  provider?: string;
  /** Sent as `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Extra request headers (e.g. `api-key` for Azure, organization headers). */
  headers?: Record<string, string>;
  /** Share of traffic for the `weighted` strategy. Default 1. */
  weight?: number;
  /** The model name this deployment expects, when it differs from the one the caller asked for. */
  model?: string;
}

/** What the client sends upstream: a JSON POST (or GET for probes) to `path` under the endpoint's base URL. */
export interface UpstreamRequest {
  /** e.g. '/v1/chat/completions', '/v1/embeddings', '/v1/models'. */
  path: string;
  method?: 'POST' | 'GET';
  /** JSON-serializable body (POST). */
  body?: unknown;
  headers?: Record<string, string>;
  /** Aborts the call (the client hung up, a timeout fired). */
  signal?: AbortSignal;
}

/** A complete (non-streamed) upstream answer with a 2xx status. */
export interface UpstreamResponse {
  status: number;
  /** Lower-cased header names. */
  headers: Record<string, string>;
  body: Buffer;
  /** Time to the last byte, milliseconds. */
  latencyMs: number;
}

/** A streamed upstream answer with a 2xx status: `body` yields the bytes as they arrive. */
export interface UpstreamStream {
  status: number;
  headers: Record<string, string>;
  body: AsyncIterable<Uint8Array>;
  /** Time to the response headers, milliseconds. */
  latencyMs: number;
}

/**
 * The HTTP client contract the router uses (ProviderClient implements it; tests may wrap it). Non-2xx
 * statuses and network failures reject with UpstreamError; an aborted signal rejects with the signal's reason.
 */
export interface ProviderTransport {
  request(endpoint: EndpointConfig, request: UpstreamRequest): Promise<UpstreamResponse>;
  stream(endpoint: EndpointConfig, request: UpstreamRequest): Promise<UpstreamStream>;
}

/**
 * An upstream failure: a non-2xx status (`status`, the provider's `body`, `retryAfterMs` from Retry-After /
 * retry-after-ms) or no answer at all (`status` 502 for a network error, 504 for an upstream timeout).
 */
export class UpstreamError extends AmasError {
  static override readonly code = 'AMAS_UPSTREAM_ERROR' as const;
  /** The endpoint id that failed. */
  readonly endpoint: string | undefined;
  /** The provider's error body (parsed JSON when it was JSON, else text), if any. */
  readonly body: unknown;
  /** Response headers of the failed call (lower-cased), when there was a response. */
  readonly responseHeaders: Record<string, string>;
  /** True when no HTTP response arrived (connect error, reset, upstream timeout). */
  readonly network: boolean;
  constructor(message: string, init: AmasErrorInit & { status: number; endpoint?: string; body?: unknown; responseHeaders?: Record<string, string>; network?: boolean }) {
    super('AMAS_UPSTREAM_ERROR', message, init, init.status);
    this.endpoint = init.endpoint;
    this.body = init.body;
    this.responseHeaders = init.responseHeaders ?? {};
    this.network = init.network === true;
  }
}

/** Token usage of one call, as providers report it (OpenAI field names). */
export interface TokenUsage {
  inputTokens: number;
  outputTokens: number;
  /** Input tokens served from the provider's prompt cache (billed at the cached-input price). */
  cachedInputTokens?: number;
}

/** Prices in US dollars per one million tokens. */
export interface ModelPrice {
  input: number;
  output: number;
  /** Default: `input`. */
  cachedInput?: number;
}

/** The price table contract cost tracking uses (pricing.ts implements it). */
export interface PriceLookup {
  /** The price of `model` (matched exactly, then by the table's aliases / dated-snapshot rules), or undefined. */
  priceOf(model: string, provider?: string): ModelPrice | undefined;
  /** Dollars for a call's usage; 0 for a model without a price (and `known: false`). */
  cost(model: string, usage: TokenUsage, provider?: string): { cost: number; known: boolean };
  /** Cheaper models the table lists as equivalents of `model` (for recommendations), cheapest first. */
  cheaperEquivalents(model: string): Array<{ model: string; price: ModelPrice }>;
}
