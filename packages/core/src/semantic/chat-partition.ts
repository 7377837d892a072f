/**
 * The partition and the prompt of an OpenAI-style chat request for the semantic cache. The partition is a
 * hard filter: two requests can only share an answer when everything but the wording of the last user
 * message is the same (model, system prompt, earlier turns, tools, response format, sampling bucket,
 * tenant). So a multi-turn chat matches on the whole conversation, and a different system prompt or user
 * never hits.
 */
import { createHash } from 'node:crypto';
import { stableStringify } from '../util/stable-key.js';
import { EmbeddingInputError } from './embedder.js';

export interface ChatMessageLike {
  role: string;
  content?: unknown;
  name?: string;
  tool_calls?: unknown;
  tool_call_id?: string;
}

export interface ChatRequestLike {
  model?: string;
  messages?: ChatMessageLike[];
  tools?: unknown;
  tool_choice?: unknown;
  functions?: unknown;
  response_format?: unknown;
  temperature?: number;
  top_p?: number;
  n?: number;
  seed?: number;
  stop?: unknown;
}

/** Sampling settings grouped coarsely: a temperature of 0.2 and 0.25 answer alike; 0 and 1 do not. */
export function samplingBucket(request: Pick<ChatRequestLike, 'temperature' | 'top_p' | 'n' | 'seed'>): string {
  const t = request.temperature;
  const temperature = t === undefined ? 'default' : t === 0 ? '0' : t <= 0.3 ? 'low' : t <= 0.8 ? 'mid' : 'high';
  const topP = request.top_p === undefined || request.top_p >= 1 ? 'full' : request.top_p >= 0.5 ? 'wide' : 'narrow';
  return `t:${temperature}|p:${topP}|n:${request.n ?? 1}|s:${request.seed ?? ''}`;
}

/** The text of a message's content; a non-text part (an image, audio) makes the request uncacheable. */
export function messageText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    const texts: string[] = [];
    for (const part of content) {
      const p = part as { type?: unknown; text?: unknown };
      if (p?.type === 'text' && typeof p.text === 'string') texts.push(p.text);
      else throw new EmbeddingInputError(`semantic cache: a content part of type ${JSON.stringify(p?.type ?? typeof part)} is not text; the request is not cacheable`);
    }
    return texts.join('\n');
  }
  if (content === null || content === undefined) return '';
  throw new EmbeddingInputError(`semantic cache: message content must be a string or text parts, received ${typeof content}`);
}

/**
 * `{ partition, prompt }` for a chat request: `prompt` is the last user message's text (what is embedded),
 * `partition` a hash of everything else. Throws EmbeddingInputError when the request has no user message or
 * carries non-text content (callers bypass the cache then).
 */
export function chatPartition(request: ChatRequestLike, options: { tenant?: string } = {}): { partition: string; prompt: string } {
  const messages = request?.messages;
  if (!Array.isArray(messages) || messages.length === 0) throw new EmbeddingInputError('semantic cache: the request has no messages');
  let last = -1;
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i]?.role === 'user') {
      last = i;
      break;
    }
  }
  if (last < 0) throw new EmbeddingInputError('semantic cache: the request has no user message');
  const prompt = messageText(messages[last]!.content).trim();
  if (prompt.length === 0) throw new EmbeddingInputError('semantic cache: the last user message is empty');
  const context = {
    model: request.model ?? '',
    // Earlier turns (system prompt included) and anything after the last user message, exactly.
    before: messages.slice(0, last).map((m) => ({ role: m.role, content: messageText(m.content), name: m.name, tool_calls: m.tool_calls, tool_call_id: m.tool_call_id })),
    after: messages.slice(last + 1).map((m) => ({ role: m.role, content: messageText(m.content) })),
    tools: request.tools ?? null,
    toolChoice: request.tool_choice ?? null,
    functions: request.functions ?? null,
    responseFormat: request.response_format ?? null,
    stop: request.stop ?? null,
    sampling: samplingBucket(request),
    tenant: options.tenant ?? '',
  };
  const partition = createHash('sha256').update(stableStringify(context)).digest('base64url');
  return { partition, prompt };
}
