/**
 * Token counting for budgets and cost: exact counts for OpenAI models (gpt-tokenizer's o200k_base /
 * cl100k_base tables, loaded lazily one at a time — see model-encodings.ts for load time and memory),
 * documented estimates for everything else (`exact: false`), and reading the usage providers report.
 *
 * - `countTextTokens(model, text)`: a bare string (no chat framing).
 * - `countChatTokens(model, messages, { tools })`: a chat prompt with its framing (chat-tokens.ts).
 * - `estimateRequestTokens(model, body)`: a request body (chat completions, Responses, legacy completions,
 *   embeddings, Anthropic messages, Gemini generateContent): its input tokens plus the output it may produce
 *   (`max_completion_tokens` / `max_tokens` / `max_output_tokens` x `n`), for budget reservation.
 * - `usageFromResponse(body)`: the provider's reported usage (OpenAI chat / embeddings / Responses,
 *   Anthropic, Gemini), with cached input tokens.
 * - `usageFromStreamChunks(chunks, { model, request })` and `StreamUsageCounter`: the usage of a stream: the
 *   provider's usage when a chunk carries it, else the streamed text counted (an aborted stream is billed
 *   for what was produced; reasoning tokens a model did not stream cannot be counted).
 */
import type { TokenUsage } from './provider-types.js';
import { addMessages, safeJson, Tally, type ChatCountOptions, type Estimator, type ImageSize, type TokenCount } from './chat-tokens.js';

export { countChatTokens, imageTokens, imageSizeFromDataUrl, type ChatCountOptions, type Estimator, type ImageSize, type TokenCount } from './chat-tokens.js';
export { modelTokenizer, preloadEncodings, loadedEncodings, normalizeModelId, type EncodingName, type ModelTokenizer } from './model-encodings.js';

export interface TextCountOptions {
  /** Non-OpenAI models: 'tokenizer' (o200k_base x family factor, default) or 'chars' (characters / 4 x factor). */
  estimator?: Estimator;
}

/** Tokens of `text` for `model` with no chat framing. */
export function countTextTokens(model: string, text: string, options: TextCountOptions = {}): TokenCount {
  const tally = new Tally(model, options.estimator);
  tally.add(typeof text === 'string' ? text : String(text ?? ''));
  return tally.result();
}

export type RequestKind = 'chat' | 'responses' | 'completions' | 'embeddings' | 'anthropic' | 'gemini' | 'unknown';

export interface RequestEstimateOptions {
  /** Which API the body is for; guessed from its fields when not given (see `requestKind`). */
  kind?: RequestKind;
  /** Output to reserve when the body sets no cap (`max_tokens` & co.). Default 0 (legacy completions: 16, the API default). */
  defaultMaxOutputTokens?: number;
  defaultImageSize?: ImageSize;
  estimator?: Estimator;
}

export interface RequestEstimate extends TokenCount {
  kind: RequestKind;
  /** Prompt / input tokens (same as `tokens`). */
  inputTokens: number;
  /** The output cap the body sets (times `n` choices), or `defaultMaxOutputTokens`; 0 for embeddings. */
  maxOutputTokens: number;
  /** True when the body itself capped the output. */
  outputCapped: boolean;
  /** inputTokens + maxOutputTokens: what a budget should reserve before the call. */
  reserveTokens: number;
}

/**
 * Which API a body is for: `messages` + top-level `system` or `anthropic_version` -> anthropic; `messages`
 * -> chat; `contents` -> gemini; `prompt` -> completions; `input` with an embedding model (or an array of
 * strings / token arrays and no chat fields) -> embeddings; other `input` -> responses.
 */
export function requestKind(model: string, body: unknown): RequestKind {
  if (body === null || typeof body !== 'object') return 'unknown';
  const b = body as Record<string, unknown>;
  if (Array.isArray(b.messages)) {
    if (b.anthropic_version !== undefined || typeof b.system === 'string' || Array.isArray(b.system)) return 'anthropic';
    return 'chat';
  }
  if (Array.isArray(b.contents)) return 'gemini';
  if (b.prompt !== undefined) return 'completions';
  if (b.input !== undefined) {
    if (/embed/i.test(model) || b.encoding_format !== undefined || b.dimensions !== undefined) return 'embeddings';
    return 'responses';
  }
  return 'unknown';
}

/** Input tokens of a request body plus the output it may produce, for budget reservation. */
export function estimateRequestTokens(model: string, body: unknown, options: RequestEstimateOptions = {}): RequestEstimate {
  const b = (body !== null && typeof body === 'object' ? body : {}) as Record<string, unknown>;
  const kind = options.kind ?? requestKind(model, body);
  const tally = new Tally(model, options.estimator);
  const chat: ChatCountOptions = { defaultImageSize: options.defaultImageSize, estimator: options.estimator };
  switch (kind) {
    case 'chat':
      addMessages(tally, b.messages as unknown[], {
        ...chat,
        tools: b.tools as unknown[] | undefined,
        functions: b.functions as unknown[] | undefined,
        toolChoice: b.tool_choice ?? b.function_call,
      });
      if (b.response_format && (b.response_format as { type?: unknown }).type === 'json_schema') {
        tally.exact = false;
        tally.add(safeJson((b.response_format as { json_schema?: unknown }).json_schema));
      }
      break;
    case 'anthropic': {
      const messages: unknown[] = [];
      if (typeof b.system === 'string' || Array.isArray(b.system)) messages.push({ role: 'system', content: b.system });
      messages.push(...(b.messages as unknown[]));
      addMessages(tally, messages, { ...chat, tools: b.tools as unknown[] | undefined, toolChoice: b.tool_choice });
      break;
    }
    case 'responses': {
      const messages: unknown[] = [];
      if (typeof b.instructions === 'string') messages.push({ role: 'developer', content: b.instructions });
      if (typeof b.input === 'string') messages.push({ role: 'user', content: b.input });
      else if (Array.isArray(b.input)) messages.push(...b.input);
      addMessages(tally, messages, { ...chat, tools: b.tools as unknown[] | undefined, toolChoice: b.tool_choice });
      break;
    }
    case 'gemini': {
      const messages: unknown[] = [];
      const system = b.systemInstruction ?? b.system_instruction;
      if (system) messages.push({ role: 'system', content: geminiParts(system) });
      for (const c of b.contents as unknown[]) messages.push({ role: (c as { role?: unknown })?.role ?? 'user', content: geminiParts(c) });
      addMessages(tally, messages, chat);
      break;
    }
    case 'completions':
      addTexts(tally, b.prompt);
      break;
    case 'embeddings':
      addTexts(tally, b.input);
      break;
    default:
      tally.exact = false;
      tally.add(safeJson(body));
  }
  const count = tally.result();
  const n = typeof b.n === 'number' && Number.isInteger(b.n) && b.n > 1 ? b.n : 1;
  const generation = b.generationConfig as { maxOutputTokens?: unknown; candidateCount?: unknown } | undefined;
  const cap = firstCount(b.max_completion_tokens, b.max_tokens, b.max_output_tokens, generation?.maxOutputTokens);
  const candidates = typeof generation?.candidateCount === 'number' && generation.candidateCount > 1 ? generation.candidateCount : 1;
  const fallback = options.defaultMaxOutputTokens ?? (kind === 'completions' ? 16 : 0);
  const maxOutputTokens = kind === 'embeddings' ? 0 : (cap ?? fallback) * n * candidates;
  return {
    ...count,
    kind,
    inputTokens: count.tokens,
    maxOutputTokens,
    outputCapped: cap !== undefined,
    reserveTokens: count.tokens + maxOutputTokens,
  };
}

/** Strings, arrays of strings, token-id arrays (exact: their length) or arrays of those. */
function addTexts(tally: Tally, input: unknown): void {
  if (typeof input === 'string') tally.add(input);
  else if (Array.isArray(input)) {
    if (input.length > 0 && input.every((x) => typeof x === 'number')) tally.fixed += input.length;
    else for (const item of input) addTexts(tally, item);
  } else if (input !== undefined && input !== null) {
    tally.exact = false;
    tally.add(safeJson(input));
  }
}

/** Gemini `{ parts: [{ text }, { inlineData }] }` as chat content parts. */
function geminiParts(content: unknown): unknown[] {
  const parts = (content as { parts?: unknown } | null)?.parts;
  if (!Array.isArray(parts)) return typeof content === 'string' ? [content] : [];
  return parts.map((p) => {
    const part = p as { text?: unknown; inlineData?: { mimeType?: unknown; data?: unknown }; inline_data?: { data?: unknown } };
    if (typeof part?.text === 'string') return { type: 'text', text: part.text };
    const data = part?.inlineData?.data ?? part?.inline_data?.data;
    if (typeof data === 'string') return { type: 'image', source: { type: 'base64', data } };
    return { type: 'unknown' };
  });
}

function firstCount(...values: unknown[]): number | undefined {
  for (const v of values) if (typeof v === 'number' && Number.isFinite(v) && v >= 0) return Math.floor(v);
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Reported usage

/** Usage fields read from one object; a stream merges them chunk by chunk, the latest value of each winning. */
interface PartialUsage {
  input?: number;
  output?: number;
  cached?: number;
  /** Anthropic reports cache reads and writes outside `input_tokens`; they are added to the input. */
  cacheRead?: number;
  cacheWrite?: number;
  anthropic?: boolean;
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined);

/** Usage fields of a `usage` (OpenAI, Anthropic) or `usageMetadata` (Gemini) object. */
function readUsageObject(value: unknown): PartialUsage | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const u = value as Record<string, unknown>;
  // Gemini
  if (u.promptTokenCount !== undefined || u.candidatesTokenCount !== undefined) {
    const output = (num(u.candidatesTokenCount) ?? 0) + (num(u.thoughtsTokenCount) ?? 0);
    return { input: num(u.promptTokenCount), output, cached: num(u.cachedContentTokenCount) };
  }
  // Anthropic: input_tokens excludes cache reads and writes.
  if (u.cache_read_input_tokens !== undefined || u.cache_creation_input_tokens !== undefined) {
    return {
      input: num(u.input_tokens),
      output: num(u.output_tokens),
      cacheRead: num(u.cache_read_input_tokens),
      cacheWrite: num(u.cache_creation_input_tokens),
      anthropic: true,
    };
  }
  // OpenAI chat / completions / embeddings (prompt_*) and Responses (input_* / output_*).
  const details = (u.prompt_tokens_details ?? u.input_tokens_details) as { cached_tokens?: unknown } | null | undefined;
  const out: PartialUsage = {
    input: num(u.prompt_tokens) ?? num(u.input_tokens),
    output: num(u.completion_tokens) ?? num(u.output_tokens),
    cached: num(details?.cached_tokens),
  };
  return out.input === undefined && out.output === undefined ? undefined : out;
}

function toTokenUsage(p: PartialUsage, fallbackInput = 0): TokenUsage {
  const base = p.input ?? fallbackInput;
  const cached = p.anthropic ? (p.cacheRead ?? 0) : (p.cached ?? 0);
  const input = p.anthropic ? base + (p.cacheRead ?? 0) + (p.cacheWrite ?? 0) : base;
  return {
    inputTokens: input,
    outputTokens: p.output ?? 0,
    ...(cached > 0 ? { cachedInputTokens: Math.min(cached, input) } : {}),
  };
}

function parseBody(body: unknown): unknown {
  if (typeof body === 'string' || body instanceof Uint8Array) {
    try {
      return JSON.parse(typeof body === 'string' ? body : Buffer.from(body).toString('utf8'));
    } catch {
      return undefined;
    }
  }
  return body;
}

/**
 * The usage a provider reported in a (non-streamed) response body — a parsed object, JSON text or bytes —
 * or undefined when it has none. `inputTokens` includes cached tokens (OpenAI's convention; Anthropic's
 * cache reads and writes are added to its `input_tokens`); `outputTokens` includes reasoning tokens.
 */
export function usageFromResponse(body: unknown): TokenUsage | undefined {
  const b = parseBody(body) as Record<string, unknown> | undefined;
  if (!b || typeof b !== 'object') return undefined;
  const response = b.response as Record<string, unknown> | undefined; // Responses API `response.completed` event
  const partial = readUsageObject(b.usage) ?? readUsageObject(b.usageMetadata) ?? readUsageObject(response?.usage);
  return partial ? toTokenUsage(partial) : undefined;
}

export interface StreamCountOptions {
  /** The model, for counting streamed text when no chunk reports usage. */
  model: string;
  /** The request body, for its input tokens when no chunk reports usage. */
  request?: unknown;
  /** Input tokens counted before the call (wins over `request`). */
  inputTokens?: number;
  estimator?: Estimator;
}

export interface StreamUsage {
  usage: TokenUsage;
  /** True when the usage came from the provider (a usage chunk / event). */
  reported: boolean;
  /** False whenever any part was counted or estimated instead of reported. */
  exact: boolean;
}

/**
 * Follows a stream chunk by chunk: OpenAI chat completion chunks (`choices[].delta`, a final `usage`
 * chunk when `stream_options.include_usage` was set), Responses API events, Anthropic events
 * (`message_start` / `message_delta` usage, `content_block_delta`), Gemini chunks (`usageMetadata`).
 * Chunks may be parsed objects, JSON text, SSE `data:` lines / events, or bytes of those.
 */
export class StreamUsageCounter {
  private readonly options: StreamCountOptions;
  /** Streamed output text per choice index (counted separately, as each choice is its own completion). */
  private readonly texts = new Map<number, string>();
  private reported: PartialUsage | undefined;
  /** A provisional output count (Anthropic message_start): the counted output is at least this. */
  private minOutput = 0;
  private pending = '';

  constructor(options: StreamCountOptions) {
    this.options = options;
  }

  /** Adds one chunk (object, JSON, SSE text or bytes). Text that is not JSON is ignored. */
  push(chunk: unknown): void {
    if (chunk instanceof Uint8Array) chunk = Buffer.from(chunk).toString('utf8');
    if (typeof chunk === 'string') {
      this.pushText(chunk);
      return;
    }
    this.read(chunk);
  }

  private pushText(text: string): void {
    const trimmed = text.trim();
    if (trimmed === '' || trimmed === '[DONE]') return;
    if (!/^(?:data|event|id|retry)?:/m.test(trimmed) && (trimmed.startsWith('{') || trimmed.startsWith('['))) {
      try {
        this.read(JSON.parse(trimmed));
        return;
      } catch {
        // not one JSON value: read it as SSE
      }
    }
    // SSE: complete events end with a blank line; a trailing partial event waits for the next chunk.
    this.pending += text;
    const events = this.pending.split(/\r?\n\r?\n/);
    this.pending = events.pop() ?? '';
    for (const event of events) this.readEvent(event);
  }

  private readEvent(event: string): void {
    let data = '';
    for (const line of event.split(/\r?\n/)) if (line.startsWith('data:')) data += line.slice(line.startsWith('data: ') ? 6 : 5);
    data = data.trim();
    if (data === '' || data === '[DONE]') return;
    try {
      this.read(JSON.parse(data));
    } catch {
      // a broken event: skip it
    }
  }

  private read(chunk: unknown): void {
    if (chunk === null || typeof chunk !== 'object') return;
    const c = chunk as Record<string, unknown>;
    // Usage: OpenAI `usage`, Gemini `usageMetadata`, Anthropic message_start `message.usage` / message_delta
    // `usage`, Responses `response.usage` on response.completed / incomplete.
    const message = c.message as Record<string, unknown> | undefined;
    const response = c.response as Record<string, unknown> | undefined;
    for (const u of [c.usage, c.usageMetadata, response?.usage]) {
      const partial = readUsageObject(u);
      if (partial) this.merge(partial);
    }
    // Anthropic's message_start carries the input and a provisional output count (usually 1): the output
    // is final only in message_delta, so a stream cut before it is counted.
    const startUsage = readUsageObject(message?.usage);
    if (startUsage) {
      const { output, ...rest } = startUsage;
      this.merge(rest);
      if (output !== undefined) this.minOutput = Math.max(this.minOutput, output);
    }
    // Text: OpenAI chat deltas (content, refusal, tool call names / arguments, reasoning_content from
    // DeepSeek-style servers), Responses deltas, Anthropic deltas, Gemini candidate parts.
    if (Array.isArray(c.choices)) {
      for (const choice of c.choices) {
        const ch = choice as { index?: unknown; delta?: Record<string, unknown>; text?: unknown } | null;
        const index = typeof ch?.index === 'number' ? ch.index : 0;
        const d = ch?.delta;
        if (typeof ch?.text === 'string') this.append(index, ch.text); // legacy completions
        if (!d) continue;
        for (const key of ['content', 'refusal', 'reasoning_content', 'reasoning']) if (typeof d[key] === 'string') this.append(index, d[key] as string);
        if (Array.isArray(d.tool_calls)) {
          for (const call of d.tool_calls) {
            const fn = (call as { function?: { name?: unknown; arguments?: unknown } } | null)?.function;
            if (typeof fn?.name === 'string') this.append(index, fn.name);
            if (typeof fn?.arguments === 'string') this.append(index, fn.arguments);
          }
        }
      }
    }
    if (typeof c.type === 'string') {
      if (c.type.startsWith('response.') && c.type.endsWith('.delta') && typeof c.delta === 'string') this.append(0, c.delta);
      if (c.type === 'content_block_delta') {
        const d = c.delta as Record<string, unknown> | undefined;
        for (const key of ['text', 'partial_json', 'thinking']) if (typeof d?.[key] === 'string') this.append(0, d[key] as string);
      }
    }
    if (Array.isArray(c.candidates)) {
      for (const [i, cand] of c.candidates.entries()) {
        const parts = (cand as { content?: { parts?: unknown } } | null)?.content?.parts;
        if (!Array.isArray(parts)) continue;
        for (const p of parts) if (typeof (p as { text?: unknown })?.text === 'string') this.append(i, (p as { text: string }).text);
      }
    }
  }

  private merge(p: PartialUsage): void {
    const r: PartialUsage = { ...(this.reported ?? {}) };
    for (const key of ['input', 'output', 'cached', 'cacheRead', 'cacheWrite'] as const) if (p[key] !== undefined) r[key] = p[key];
    if (p.anthropic) r.anthropic = true;
    this.reported = r;
  }

  private append(index: number, text: string): void {
    this.texts.set(index, (this.texts.get(index) ?? '') + text);
  }

  /** The text streamed so far (choice 0). */
  get text(): string {
    return this.texts.get(0) ?? '';
  }

  /** The usage so far: reported when a chunk carried it (output included), else counted. */
  result(): StreamUsage {
    // Flush a last event that had no trailing blank line.
    if (this.pending.trim() !== '') {
      const rest = this.pending;
      this.pending = '';
      this.readEvent(rest);
    }
    const { model } = this.options;
    const r = this.reported;
    if (r && r.input !== undefined && r.output !== undefined) return { usage: toTokenUsage(r), reported: true, exact: true };
    // Not reported (or only partly: Anthropic's message_start without its closing message_delta when the
    // stream was cut): count what arrived.
    let output = 0;
    for (const text of this.texts.values()) output += countTextTokens(model, text, { estimator: this.options.estimator }).tokens;
    output = Math.max(output, r?.output ?? 0, this.minOutput);
    let input = r?.input;
    if (input === undefined) {
      if (this.options.inputTokens !== undefined) input = this.options.inputTokens;
      else if (this.options.request !== undefined) input = estimateRequestTokens(model, this.options.request, { estimator: this.options.estimator }).inputTokens;
      else input = 0;
    }
    // Counted output never matches billing exactly (stop tokens, tool-call framing, unstreamed reasoning).
    return { usage: toTokenUsage({ ...r, input, output }), reported: false, exact: false };
  }
}

/** The usage of a whole stream (see StreamUsageCounter); an aborted stream is billed for what was produced. */
export function usageFromStreamChunks(chunks: Iterable<unknown> | string | Uint8Array, options: StreamCountOptions): StreamUsage {
  const counter = new StreamUsageCounter(options);
  if (typeof chunks === 'string' || chunks instanceof Uint8Array) counter.push(chunks);
  else for (const chunk of chunks) counter.push(chunk);
  return counter.result();
}

