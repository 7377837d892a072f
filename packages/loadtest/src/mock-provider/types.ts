/** Public types of the OpenAI-compatible mock provider. */

export interface MockOutageWindow {
  /** Milliseconds after server start when the outage begins. */
  startMs: number;
  durationMs: number;
  /** Status returned while the outage lasts; default 503. */
  status?: number;
  /** When set, rejected responses carry `retry-after: <seconds>`. */
  retryAfterSeconds?: number;
}

export type MockLatency = number | { min: number; max: number };

export interface MockChatMessage {
  role: string;
  content: unknown;
}

export interface MockProviderOptions {
  /** Default 0 (a random free port); the host is always 127.0.0.1. */
  port?: number;
  /** Delay before each response (streaming: before the first chunk). A range draws uniformly from the seeded PRNG. */
  latencyMs?: MockLatency;
  /** Delay between stream chunks; default 5. */
  chunkDelayMs?: number;
  /** 0..1 probability that a chat/embeddings request fails with `failureStatus` (seeded). */
  failureRate?: number;
  /** Default 500. */
  failureStatus?: number;
  /** Scheduled outages, relative to server start. */
  outages?: MockOutageWindow[];
  /** PRNG seed for latency ranges and failures; same seed + same request order = same behaviour. */
  seed?: number;
  /** Reply text for chat completions; default: a deterministic sentence derived from the last user message. */
  reply?: (messages: MockChatMessage[], model: string) => string;
  /** Default embedding length when the request has no `dimensions`; default 16. */
  embeddingDimensions?: number;
}

/**
 * Counters over provider traffic: every request except `/health` and the `/__mock/*` admin endpoints.
 * `chat` counts every chat completion request (streaming ones too), `streams` the streaming subset.
 */
export interface MockProviderStats {
  requests: number;
  chat: number;
  streams: number;
  embeddings: number;
  /** Failures injected by `failureRate` or `x-mock-fail`. */
  failures: number;
  /** Requests rejected by a scheduled or manual outage. */
  outageRejections: number;
  /** Final response status -> count (a stream counts as its 200). */
  byStatus: Record<string, number>;
  inFlight: number;
  maxInFlight: number;
  /** Requests whose client disconnected before the response (or stream) finished. */
  clientAborts: number;
}

export interface MockProvider {
  /** e.g. http://127.0.0.1:43123 (no trailing slash). */
  readonly url: string;
  readonly port: number;
  stats(): MockProviderStats;
  /** Zeroes the counters; `inFlight` keeps its live value and `maxInFlight` restarts from it. */
  resetStats(): void;
  /** Manual outage on/off (default status 503); scheduled windows still apply when it is off. */
  setOutage(outage: boolean | { status?: number; retryAfterSeconds?: number }): void;
  setLatency(latencyMs: MockLatency): void;
  /** Closes the server and every open socket (keep-alive and streams too). Idempotent. */
  close(): Promise<void>;
}
