/**
 * Text helpers of the mock: token estimates, the default reply and word splitting for streams.
 *
 * Token estimate (documented, deliberately simple): `ceil(chars / 4)`, at least 1 for non-empty text, 0 for
 * the empty string. `prompt_tokens` is the sum over messages (each message's text content, min 1 per message);
 * `completion_tokens` is the estimate of the reply actually returned (after any `max_tokens` truncation).
 */
import { createPrng, hashString } from './prng.js';
import type { MockChatMessage } from './types.js';

export function estimateTokens(text: string): number {
  return text.length === 0 ? 0 : Math.max(1, Math.ceil(text.length / 4));
}

/** Text of an OpenAI message `content`: a string, or an array of parts whose `text` fields are joined. */
export function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    let out = '';
    for (const part of content) {
      if (typeof part === 'string') out += part;
      else if (part && typeof part === 'object' && typeof (part as { text?: unknown }).text === 'string') {
        out += (part as { text: string }).text;
      }
    }
    return out;
  }
  return '';
}

export function promptTokens(messages: readonly MockChatMessage[]): number {
  let total = 0;
  for (const m of messages) total += Math.max(1, estimateTokens(contentText(m.content)));
  return total;
}

const VOCABULARY = [
  'resilient', 'systems', 'retry', 'with', 'jitter', 'and', 'respect', 'budgets', 'while', 'circuit',
  'breakers', 'shed', 'load', 'so', 'that', 'upstream', 'providers', 'stay', 'healthy', 'under', 'pressure',
  'the', 'gateway', 'queues', 'requests', 'fairly', 'across', 'tenants', 'tokens', 'flow', 'smoothly',
];

/** `Mock answer to "<first words of the last user message>": <8..20 words picked by a hash of it>.` */
export function defaultReply(messages: readonly MockChatMessage[], model: string): string {
  let last = '';
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i].role === 'user') {
      last = contentText(messages[i].content);
      break;
    }
  }
  const words = last.trim().split(/\s+/).filter(Boolean);
  const excerpt = words.slice(0, 8).join(' ') + (words.length > 8 ? ' ...' : '');
  const rand = createPrng(hashString(`${model}\u0000${last}`));
  const count = 8 + Math.floor(rand() * 13);
  const picked: string[] = [];
  for (let i = 0; i < count; i++) picked.push(VOCABULARY[Math.floor(rand() * VOCABULARY.length)]);
  return `Mock answer to "${excerpt}": ${picked.join(' ')}.`;
}

/** Word-by-word pieces (each word keeps its trailing whitespace); joining them gives back `text`. */
export function splitWords(text: string): string[] {
  return text.match(/\s*\S+\s*|\s+/g) ?? [];
}

/** Longest whole-word prefix within `maxTokens` (falls back to a character cut if no word fits). */
export function truncateToTokens(text: string, maxTokens: number): { text: string; truncated: boolean } {
  if (estimateTokens(text) <= maxTokens) return { text, truncated: false };
  let out = '';
  for (const piece of splitWords(text)) {
    if (estimateTokens(out + piece) > maxTokens) break;
    out += piece;
  }
  if (out === '') out = text.slice(0, maxTokens * 4);
  return { text: out, truncated: true };
}
