/**
 * The semantic cache step of the HTTP pipeline, for OpenAI-style `POST /v1/chat/completions` routes: one
 * decision per request, made here for every adapter.
 *
 * - Before the handler: the request's partition (model, system prompt, earlier turns, tools, sampling bucket,
 *   caller) and prompt (the last user message) are looked up; a hit is answered at once, as a
 *   `chat.completion` or, for `stream: true`, as the event stream a provider would send
 *   (`X-Cache: SEMANTIC-HIT`, or `HIT` when the very same prompt was cached).
 * - After it: a complete single-choice text answer (finish_reason "stop") is cached, from a JSON body or from
 *   a stream that ran to [DONE]; truncated, aborted, tool-call and error answers never are.
 * - A request the cache cannot read (no user message, image or audio parts, a prompt over the cache's limit)
 *   goes to the handler untouched with `X-Cache: BYPASS`. A cache that fails (the model cannot load) does the
 *   same and says so once in the log: the feature degrades, never the request.
 */
import { InvalidRequestError } from '../errors.js';
import { EmbeddingInputError } from '../semantic/embedder.js';
import type { Logger } from '../logger.js';
import { durationSchema } from '../options/duration.js';
import { chatPartition, type ChatRequestLike } from '../semantic/chat-partition.js';
import type { SemanticCache } from '../semantic/semantic-cache.js';
import { parseCacheControl } from './cache-control.js';
import { answerFromJson, answerFromStream, completionJson, completionStream, isChatCompletionAnswer, type ChatCompletionAnswer } from './chat-completion-answer.js';
import { headerValue, type NeutralRequest } from './neutral-request.js';
import { requestWanted, type SemanticCacheOption } from './response-options.js';

export type SemanticStatus = 'SEMANTIC-HIT' | 'HIT' | 'MISS' | 'BYPASS';

/** A route's `semanticCache` option, resolved once at start-up. */
export interface CompiledSemanticOptions {
  cache: SemanticCache<ChatCompletionAnswer>;
  ttlMs: number | undefined;
  threshold: number | undefined;
  shared: boolean;
  requestControls: boolean;
  maxTtlMs: number;
  when: ((req: NeutralRequest) => boolean) | undefined;
  maxBodyBytes: number;
  /** Set once the log has said this cache failed (said again only after it worked in between). */
  failing: boolean;
}

/** What a hit answers with (the response layer adds compression and conditionals). */
export interface SemanticAnswer {
  status: SemanticStatus;
  headers: Record<string, string>;
  body: Buffer;
}

const DAY_MS = 86_400_000;

/** Resolves a validated `semanticCache` option (undefined/false: none). */
export function compileSemanticOptions(option: Exclude<SemanticCacheOption, undefined> | undefined, defaultCache: () => SemanticCache): CompiledSemanticOptions | undefined {
  if (option === undefined || option === false) return undefined;
  const o = option === true ? {} : option;
  return {
    cache: (o.cache ?? defaultCache()) as SemanticCache<ChatCompletionAnswer>,
    ttlMs: o.ttl as number | undefined,
    threshold: o.threshold,
    shared: o.shared === true,
    requestControls: o.requestControls !== false,
    maxTtlMs: (o.maxTtl as number | undefined) ?? DAY_MS,
    when: o.when as ((req: NeutralRequest) => boolean) | undefined,
    maxBodyBytes: o.maxBodyBytes ?? 1024 * 1024,
    failing: false,
  };
}

/**
 * The semantic plan of one request, or undefined when the route's cache does not apply to it (not a POST,
 * `when` said no). Throws InvalidRequestError (400) for a malformed per-request control header.
 */
export function planSemantic(req: NeutralRequest, options: CompiledSemanticOptions, identity: string, logger: Logger): SemanticPlan | undefined {
  if (req.method.toUpperCase() !== 'POST' || !requestWanted(req, options.when)) return undefined;
  const controls = options.requestControls ? readControls(req, options.maxTtlMs) : { mode: 'lookup' as const };
  const body = req.body;
  if (typeof body !== 'object' || body === null || Array.isArray(body) || Buffer.isBuffer(body)) {
    return new SemanticPlan(options, logger, undefined, 'the body is not a parsed JSON object');
  }
  const request = body as ChatRequestLike & { stream?: unknown; stream_options?: unknown };
  if (request.n !== undefined && request.n !== 1) return new SemanticPlan(options, logger, undefined, 'n > 1');
  let keyed: { partition: string; prompt: string };
  try {
    keyed = chatPartition(request, { tenant: options.shared ? '*' : identity });
  } catch (error) {
    return new SemanticPlan(options, logger, undefined, error instanceof Error ? error.message.replace(/^semantic cache: /, '') : 'not a chat request');
  }
  const limit = options.cache.maxPromptChars;
  if (keyed.prompt.length > limit) return new SemanticPlan(options, logger, undefined, `the prompt has ${keyed.prompt.length} characters, more than maxPromptChars (${limit})`);
  return new SemanticPlan(options, logger, {
    ...keyed,
    request,
    stream: request.stream === true,
    mode: controls.mode,
    ttlMs: controls.ttlMs ?? options.ttlMs,
    threshold: controls.threshold ?? options.threshold,
  });
}

interface PlannedRequest {
  partition: string;
  prompt: string;
  request: ChatRequestLike & { stream?: unknown; stream_options?: unknown };
  stream: boolean;
  mode: 'lookup' | 'refresh' | 'bypass';
  ttlMs: number | undefined;
  threshold: number | undefined;
}

/** One request's passage through the semantic cache. */
export class SemanticPlan {
  /** What X-Cache says for this request. */
  status: SemanticStatus;
  /** Why the cache stays out of this request (sent as X-Amas-Cache-Reason). */
  bypassReason: string | undefined;

  constructor(
    readonly options: CompiledSemanticOptions,
    private readonly logger: Logger,
    private readonly planned: PlannedRequest | undefined,
    reason?: string,
  ) {
    this.status = planned === undefined || planned.mode === 'bypass' ? 'BYPASS' : 'MISS';
    // It may quote the client's own input: printable ASCII only, so it is always a valid header value.
    if (reason !== undefined) this.bypassReason = reason.replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
  }

  /** Whether the answer to this request may be stored once the handler produced it. */
  get storing(): boolean {
    return this.planned !== undefined && this.planned.mode !== 'bypass' && this.status === 'MISS';
  }

  /** The cached answer for this request, in the form it asked for, or undefined (the handler runs). */
  async lookup(): Promise<SemanticAnswer | undefined> {
    const p = this.planned;
    if (p === undefined || p.mode !== 'lookup') return undefined;
    let hit;
    try {
      // Success here proves little (an empty index embeds nothing): only a store says the cache works again.
      hit = await this.options.cache.get(p.prompt, { partition: p.partition, ...(p.threshold !== undefined && { threshold: p.threshold }) });
    } catch (error) {
      this.status = 'BYPASS';
      if (error instanceof EmbeddingInputError) this.bypassReason = error.message.replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
      else this.failed('look up', error);
      return undefined;
    }
    if (hit === undefined || !isChatCompletionAnswer(hit.value)) return undefined;
    this.status = hit.kind === 'exact' ? 'HIT' : 'SEMANTIC-HIT';
    const headers: Record<string, string> = {
      'x-cache': this.status,
      'x-amas-semantic-score': hit.score.toFixed(4),
      'cache-control': 'no-cache',
    };
    if (p.stream) {
      headers['content-type'] = 'text/event-stream; charset=utf-8';
      return { status: this.status, headers, body: completionStream(hit.value, p.request) };
    }
    headers['content-type'] = 'application/json; charset=utf-8';
    return { status: this.status, headers, body: completionJson(hit.value, p.request) };
  }

  /** The handler answered with a whole (non-streamed) body: cache it when it is a complete answer. */
  storeJson(status: number, body: Buffer): void {
    // 201: what NestJS answers to every POST unless told otherwise.
    if (!this.storing || (status !== 200 && status !== 201) || body.length > this.options.maxBodyBytes) return;
    this.store(answerFromJson(body));
  }

  /** The handler's event stream ran to its end and was delivered whole: cache it when it is a complete answer. */
  storeStream(status: number, body: Buffer): void {
    if (!this.storing || (status !== 200 && status !== 201) || body.length > this.options.maxBodyBytes) return;
    this.store(answerFromStream(body));
  }

  private store(answer: ChatCompletionAnswer | undefined): void {
    const p = this.planned!;
    if (answer === undefined) return;
    this.options.cache.set(p.prompt, answer, { partition: p.partition, ...(p.ttlMs !== undefined && { ttl: p.ttlMs }) }).then(
      () => this.recovered(),
      (error: unknown) => this.failed('store', error),
    );
  }

  private failed(what: string, error: unknown): void {
    if (this.options.failing) return;
    this.options.failing = true;
    this.logger.warn(`semantic cache "${this.options.cache.name}": could not ${what} an answer (${error instanceof Error ? error.message : String(error)}); requests go to the handler uncached until it works again`);
  }

  private recovered(): void {
    if (!this.options.failing) return;
    this.options.failing = false;
    this.logger.warn(`semantic cache "${this.options.cache.name}" works again`);
  }
}

/** The per-request controls; throws InvalidRequestError naming the header for a value it cannot use. */
function readControls(req: NeutralRequest, maxTtlMs: number): { mode: PlannedRequest['mode']; ttlMs?: number; threshold?: number } {
  const directive = headerValue(req.headers, 'x-amas-cache')?.trim().toLowerCase();
  if (directive !== undefined && directive !== '' && directive !== 'bypass' && directive !== 'refresh') {
    throw invalid('X-Amas-Cache', directive, '"bypass" (no lookup, nothing stored) or "refresh" (no lookup, the new answer stored)');
  }
  const cacheControl = parseCacheControl(req.headers['cache-control']);
  const pragmaNoCache = /no-cache/i.test(headerValue(req.headers, 'pragma') ?? '');
  const mode = directive === 'bypass' || cacheControl.noStore ? 'bypass' : directive === 'refresh' || cacheControl.noCache || pragmaNoCache ? 'refresh' : 'lookup';
  const out: { mode: PlannedRequest['mode']; ttlMs?: number; threshold?: number } = { mode };
  const ttl = headerValue(req.headers, 'x-amas-cache-ttl')?.trim();
  if (ttl !== undefined && ttl !== '') {
    // Seconds, as max-age counts them; or a duration with its unit ('10m').
    const parsed = /^\d+$/.test(ttl) ? { success: true as const, data: Number(ttl) * 1000 } : durationSchema.safeParse(ttl);
    const ms = parsed.success ? (parsed.data as number) : undefined;
    if (ms === undefined || !(ms > 0) || ms > maxTtlMs) throw invalid('X-Amas-Cache-Ttl', ttl, `seconds (e.g. 600) or a duration (e.g. "10m"), above 0 and at most ${maxTtlMs / 1000} s`);
    out.ttlMs = ms;
  }
  const threshold = headerValue(req.headers, 'x-amas-cache-threshold')?.trim();
  if (threshold !== undefined && threshold !== '') {
    const value = /^\d*\.?\d+$/.test(threshold) ? Number(threshold) : NaN;
    if (!(value > 0 && value <= 1)) throw invalid('X-Amas-Cache-Threshold', threshold, 'a number above 0 and at most 1 (e.g. 0.85)');
    out.threshold = value;
  }
  return out;
}

function invalid(header: string, value: string, expected: string): InvalidRequestError {
  const shown = value.length > 64 ? `${value.slice(0, 64)}...` : value;
  return new InvalidRequestError(`${header}: expected ${expected}, received ${JSON.stringify(shown)}`, { details: { header: header.toLowerCase() } });
}
