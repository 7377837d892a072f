/**
 * OpenAI-compatible endpoints served by the engine's AI layer (`amas.ai`), written to a Node response:
 * `POST /v1/chat/completions` (JSON or a stream passed through as it arrives) and `POST /v1/embeddings`.
 * Adapters only hand over the parsed body, the caller and the Node response.
 *
 * - The caller's budget is checked before the upstream call: over budget is a 429 (or 402) AMAS error body
 *   with Retry-After until the period resets.
 * - Usage and cost go out as headers (`X-Amas-Tokens`, `X-Amas-Cost`, `X-Amas-Model`, `X-Amas-Endpoint`):
 *   for a stream, whose cost is known only at its end, as HTTP trailers.
 * - A client that hangs up aborts the upstream call (and is billed for what was produced).
 * - Upstream errors keep the provider's status and body (OpenAI clients read `error.message`); AMAS's own
 *   (breaker open, timeouts, bad requests) are rendered like every other AMAS rejection.
 */
import type { ServerResponse } from 'node:http';
import { isAmasError, InvalidRequestError, type AmasError } from '../errors.js';
import type { AiCallResult, AiService } from '../ai/ai-service.js';
import { UpstreamError } from '../ai/provider-types.js';
import { REJECTION_CONTENT_TYPE, renderRejection, rejectionJson, type RejectionBodyRenderer } from './rejection.js';
import { recordResponseError } from './node-response.js';
import { resolveIdentity } from './identity.js';
import type { NeutralRequest } from './neutral-request.js';
import type { ResolvedHttpOptions } from './pipeline.js';

export type AiEndpoint = 'chat' | 'embeddings';

/** Throws a TypeError naming `where` unless `endpoint` is one the AI handlers serve (adapters check at set-up). */
export function checkAiEndpoint(endpoint: unknown, where: string): asserts endpoint is AiEndpoint {
  if (endpoint !== 'chat' && endpoint !== 'embeddings') {
    throw new TypeError(`${where}: endpoint must be 'chat' or 'embeddings', received ${JSON.stringify(endpoint)}`);
  }
}

export interface ServeAiOptions {
  /** Who pays (budgets and records). Default 'anonymous'. */
  user?: string;
  team?: string;
  /** Send X-Amas-Tokens / X-Amas-Cost (trailers for streams). Default true. */
  usageHeaders?: boolean;
  /** Renders AMAS rejections (the engine's `http.rejectionBody`). */
  rejectionBody?: RejectionBodyRenderer;
}

/** What the adapters' handlers need from the engine. */
export interface AiHost {
  readonly ai: AiService;
  readonly httpOptions: ResolvedHttpOptions;
}

/**
 * An adapter's handler: the caller is the request's identity (the authenticated user, else `http.identity`,
 * else the client address), as for limits. `usageHeaders` as in ServeAiOptions.
 */
export function serveAiRequest(host: AiHost, endpoint: AiEndpoint, req: NeutralRequest, res: ServerResponse, options: { usageHeaders?: boolean } = {}): Promise<void> {
  let service: AiService;
  try {
    service = host.ai;
  } catch (error) {
    writeError(res, error, host.httpOptions.rejectionBody);
    return Promise.resolve();
  }
  const user = callerOf(host, req);
  return serveAi(service, endpoint, req.body, res, { user, rejectionBody: host.httpOptions.rejectionBody, ...options });
}

/**
 * Who pays for a request: the authenticated user's id, else the app's `http.identity` key (both as they
 * are, so `budgets.users.alice` applies to either), else `ip:<address>`.
 */
export function callerOf(host: Pick<AiHost, 'httpOptions'>, req: NeutralRequest): string {
  return resolveIdentity(req, { identity: host.httpOptions.identity, trustProxy: host.httpOptions.trustProxy }).replace(/^(?:user|key):/, '');
}

/**
 * The caller's own usage as JSON: this month's spend and tokens by model and day, the day and month budgets,
 * and the recommendations computed from the records.
 */
export async function serveAiUsage(host: AiHost, req: NeutralRequest, res: ServerResponse): Promise<void> {
  try {
    const user = callerOf(host, req);
    const ai = host.ai;
    const now = new Date();
    const from = `${now.getUTCFullYear()}-${String(now.getUTCMonth() + 1).padStart(2, '0')}-01`;
    const [usage, day, month, recommendations] = await Promise.all([ai.usage({ user, from }), ai.budget(user, 'day'), ai.budget(user, 'month'), ai.recommendations(user)]);
    const body = JSON.stringify({ user, usage, budget: { day, month }, recommendations }, (_key, value: unknown) => (value === Infinity ? null : value));
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'private, no-store' });
    res.end(body);
  } catch (error) {
    writeError(res, error, host.httpOptions.rejectionBody);
  }
}

/** Serves one request; never rejects (every failure becomes a response). */
export async function serveAi(service: AiService, endpoint: AiEndpoint, body: unknown, res: ServerResponse, options: ServeAiOptions = {}): Promise<void> {
  const client = new AbortController();
  const onClose = () => {
    if (!res.writableFinished) client.abort(new Error('the client closed the connection'));
  };
  res.once('close', onClose);
  try {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new InvalidRequestError('The request body must be a JSON object (is a JSON body parser in front of this route?).');
    }
    const call = { ...(options.user !== undefined && { user: options.user }), ...(options.team !== undefined && { team: options.team }), signal: client.signal };
    const request = body as Record<string, unknown>;
    if (endpoint === 'chat' && request.stream === true) {
      const stream = await service.chatStream(request, call);
      await writeStream(res, stream, options.usageHeaders !== false, client.signal);
      return;
    }
    const result = endpoint === 'chat' ? await service.chat(request, call) : await service.embeddings(request, call);
    if (client.signal.aborted || res.headersSent) return;
    res.statusCode = result.response.status;
    res.setHeader('content-type', result.response.headers['content-type'] ?? 'application/json');
    setRouteHeaders(res, result);
    if (options.usageHeaders !== false) for (const [name, value] of Object.entries(usageHeaders(result.usage.inputTokens + result.usage.outputTokens, result.cost))) res.setHeader(name, value);
    res.end(result.response.body);
  } catch (error) {
    if (client.signal.aborted) return; // nobody is listening any more
    writeError(res, error, options.rejectionBody);
  } finally {
    res.off('close', onClose);
  }
}

async function writeStream(res: ServerResponse, stream: Awaited<ReturnType<AiService['chatStream']>>, trailers: boolean, signal: AbortSignal): Promise<void> {
  res.statusCode = stream.status;
  res.setHeader('content-type', stream.headers['content-type'] ?? 'text/event-stream; charset=utf-8');
  res.setHeader('cache-control', 'no-cache');
  setRouteHeaders(res, stream);
  // Trailers need chunked encoding (HTTP/1.1, no content-length).
  if (trailers && res.req?.httpVersion === '1.1') res.setHeader('trailer', 'X-Amas-Tokens, X-Amas-Cost');
  res.flushHeaders();
  try {
    for await (const chunk of stream.body) {
      if (signal.aborted) break;
      if (!res.write(chunk)) await drained(res);
    }
  } catch (error) {
    if (signal.aborted) return;
    // The headers are gone: report the broken stream in-band, the way OpenAI streams do.
    const message = error instanceof Error ? error.message : String(error);
    res.write(`data: ${JSON.stringify({ error: { message: `The provider stream broke: ${message}`, type: 'upstream_error', code: 'upstream_stream_error' } })}\n\n`);
  }
  if (signal.aborted || res.destroyed) return;
  const done = await stream.done;
  if (trailers && res.getHeader('trailer') !== undefined) res.addTrailers(usageHeaders(done.usage.inputTokens + done.usage.outputTokens, done.cost));
  res.end();
}

function setRouteHeaders(res: ServerResponse, result: Pick<AiCallResult, 'model' | 'endpoint' | 'attempts'>): void {
  res.setHeader('x-amas-model', result.model);
  res.setHeader('x-amas-endpoint', result.endpoint);
  res.setHeader('x-amas-attempts', String(result.attempts.length));
}

function usageHeaders(tokens: number, cost: number): Record<string, string> {
  return { 'x-amas-tokens': String(tokens), 'x-amas-cost': cost.toFixed(6) };
}

function writeError(res: ServerResponse, error: unknown, renderBody: RejectionBodyRenderer | undefined): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  recordResponseError(res, error);
  if (error instanceof UpstreamError && !error.network && isProviderErrorBody(error.body)) {
    // The provider's own answer, as its clients expect it.
    res.statusCode = error.status;
    for (const name of ['retry-after', 'retry-after-ms']) if (error.responseHeaders[name] !== undefined) res.setHeader(name, error.responseHeaders[name]!);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(error.body));
    return;
  }
  const amasError: AmasError = isAmasError(error)
    ? error
    : new UpstreamError(`The provider call failed: ${error instanceof Error ? error.message : String(error)}`, { status: 502, network: true, cause: error });
  const rejection = renderRejection(amasError, {}, renderBody);
  res.writeHead(rejection.status, { ...rejection.headers, 'content-type': REJECTION_CONTENT_TYPE });
  res.end(rejectionJson(rejection));
}

function isProviderErrorBody(body: unknown): boolean {
  const error = (body as { error?: { message?: unknown } } | undefined)?.error;
  return typeof error === 'object' && error !== null && typeof error.message === 'string';
}

function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
