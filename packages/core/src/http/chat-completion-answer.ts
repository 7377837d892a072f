/**
 * What the semantic cache keeps of an OpenAI-style chat completion, and how it is read from a provider's
 * response (JSON or a server-sent event stream) and written back out in either form. A cached answer
 * recorded from a stream can answer a non-streaming request and the other way round.
 *
 * Only complete, plain-text, single-choice answers are kept: finish_reason "stop", no tool calls, no refusal.
 * A truncated answer (finish_reason "length"), an aborted or unfinished stream ([DONE] never came), several
 * choices or an error body give `undefined`: nothing is cached.
 */
import { randomBytes } from 'node:crypto';

export interface ChatCompletionAnswer {
  content: string;
  model?: string;
  /** The usage the original call reported (a cached answer repeats it; X-Cache says it was not billed). */
  usage?: Record<string, unknown>;
  systemFingerprint?: string;
}

interface CompletionJson {
  model?: unknown;
  usage?: unknown;
  system_fingerprint?: unknown;
  choices?: Array<{
    index?: unknown;
    finish_reason?: unknown;
    message?: { role?: unknown; content?: unknown; tool_calls?: unknown; function_call?: unknown; refusal?: unknown };
    delta?: { role?: unknown; content?: unknown; tool_calls?: unknown; function_call?: unknown; refusal?: unknown };
  }>;
}

/** The answer in a non-streaming `chat.completion` body, or undefined when it must not be cached. */
export function answerFromJson(body: Buffer | string): ChatCompletionAnswer | undefined {
  let json: CompletionJson;
  try {
    json = JSON.parse(typeof body === 'string' ? body : body.toString('utf8')) as CompletionJson;
  } catch {
    return undefined;
  }
  const choices = json?.choices;
  if (!Array.isArray(choices) || choices.length !== 1) return undefined;
  const choice = choices[0]!;
  const message = choice?.message;
  if (choice?.finish_reason !== 'stop' || typeof message?.content !== 'string' || message.content.length === 0) return undefined;
  if (hasValue(message.tool_calls) || hasValue(message.function_call) || hasValue(message.refusal)) return undefined;
  return withMeta({ content: message.content }, json);
}

/**
 * The answer in a complete `text/event-stream` of `chat.completion.chunk` events, or undefined when the
 * stream is unfinished (no `[DONE]`), truncated, carries tool calls or several choices, or does not parse.
 */
export function answerFromStream(body: Buffer | string): ChatCompletionAnswer | undefined {
  const text = typeof body === 'string' ? body : body.toString('utf8');
  let content = '';
  let finish: unknown;
  let done = false;
  let meta: CompletionJson = {};
  for (const event of text.split(/\r?\n\r?\n/)) {
    const data = eventData(event);
    if (data === undefined) continue;
    if (data === '[DONE]') {
      done = true;
      break;
    }
    let chunk: CompletionJson & { error?: unknown };
    try {
      chunk = JSON.parse(data) as CompletionJson & { error?: unknown };
    } catch {
      return undefined;
    }
    if (chunk === null || typeof chunk !== 'object' || chunk.error !== undefined) return undefined;
    if (chunk.model !== undefined) meta = { ...meta, model: chunk.model };
    if (chunk.usage !== undefined && chunk.usage !== null) meta = { ...meta, usage: chunk.usage };
    if (chunk.system_fingerprint !== undefined) meta = { ...meta, system_fingerprint: chunk.system_fingerprint };
    const choices = chunk.choices;
    if (!Array.isArray(choices)) continue;
    for (const choice of choices) {
      if ((choice?.index ?? 0) !== 0) return undefined; // n > 1: one cached answer cannot stand for several
      const delta = choice?.delta;
      if (hasValue(delta?.tool_calls) || hasValue(delta?.function_call) || hasValue(delta?.refusal)) return undefined;
      if (typeof delta?.content === 'string') content += delta.content;
      if (choice?.finish_reason !== undefined && choice.finish_reason !== null) finish = choice.finish_reason;
    }
  }
  if (!done || finish !== 'stop' || content.length === 0) return undefined;
  return withMeta({ content }, meta);
}

/** A `chat.completion` body answering `request` with a cached answer (a fresh id, created now). */
export function completionJson(answer: ChatCompletionAnswer, request: { model?: unknown }): Buffer {
  return Buffer.from(
    JSON.stringify({
      id: completionId(),
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: answer.model ?? modelOf(request),
      choices: [{ index: 0, message: { role: 'assistant', content: answer.content, refusal: null }, logprobs: null, finish_reason: 'stop' }],
      ...(answer.usage !== undefined && { usage: answer.usage }),
      ...(answer.systemFingerprint !== undefined && { system_fingerprint: answer.systemFingerprint }),
    }),
  );
}

/**
 * The same answer as the event stream a provider sends: a role chunk, the content in word-aligned pieces,
 * the finish chunk, the usage chunk when the request asked for it (`stream_options.include_usage`), [DONE].
 */
export function completionStream(answer: ChatCompletionAnswer, request: { model?: unknown; stream_options?: unknown }): Buffer {
  const id = completionId();
  const created = Math.floor(Date.now() / 1000);
  const model = answer.model ?? modelOf(request);
  const fingerprint = answer.systemFingerprint !== undefined ? { system_fingerprint: answer.systemFingerprint } : {};
  const includeUsage = (request.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true;
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
    `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, ...fingerprint, choices, ...extra })}\n\n`;
  const events = [chunk([{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }])];
  for (const piece of pieces(answer.content)) events.push(chunk([{ index: 0, delta: { content: piece }, logprobs: null, finish_reason: null }]));
  events.push(chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }]));
  if (includeUsage) events.push(chunk([], { usage: answer.usage ?? null }));
  events.push('data: [DONE]\n\n');
  return Buffer.from(events.join(''));
}

/** The data of one SSE event (its `data:` lines joined), or undefined for a comment-only or empty event. */
function eventData(event: string): string | undefined {
  let data: string | undefined;
  for (const line of event.split(/\r?\n/)) {
    if (!line.startsWith('data:')) continue;
    const value = line.slice(line.startsWith('data: ') ? 6 : 5);
    data = data === undefined ? value : `${data}\n${value}`;
  }
  return data?.trim();
}

/** Content cut at word boundaries into pieces of about 32 characters (what a provider's tokens look like in bulk). */
function pieces(content: string): string[] {
  const out: string[] = [];
  let current = '';
  for (const word of content.match(/\s*\S+\s*|\s+/g) ?? [content]) {
    if (current.length > 0 && current.length + word.length > 32) {
      out.push(current);
      current = '';
    }
    current += word;
  }
  if (current.length > 0) out.push(current);
  return out;
}

function withMeta(answer: ChatCompletionAnswer, json: CompletionJson): ChatCompletionAnswer {
  if (typeof json.model === 'string') answer.model = json.model;
  if (json.usage !== null && typeof json.usage === 'object' && !Array.isArray(json.usage)) answer.usage = json.usage as Record<string, unknown>;
  if (typeof json.system_fingerprint === 'string') answer.systemFingerprint = json.system_fingerprint;
  return answer;
}

function hasValue(value: unknown): boolean {
  return value !== undefined && value !== null && !(Array.isArray(value) && value.length === 0);
}

function modelOf(request: { model?: unknown }): string {
  return typeof request.model === 'string' ? request.model : 'unknown';
}

function completionId(): string {
  return `chatcmpl-amas${randomBytes(12).toString('base64url')}`;
}

/** True when `value` looks like a stored ChatCompletionAnswer (entries written by another version are skipped). */
export function isChatCompletionAnswer(value: unknown): value is ChatCompletionAnswer {
  return typeof value === 'object' && value !== null && typeof (value as ChatCompletionAnswer).content === 'string';
}
