/**
 * Watches an OpenAI-style chat completion event stream as it passes through, to bill it: the provider's usage
 * chunk when there is one (the layer asks for it with `stream_options.include_usage`), otherwise the streamed
 * text counted. A stream that ends early (the client hung up, the upstream broke) is billed for what was
 * produced. When the caller did not ask for the usage chunk itself, it is taken out of what the caller
 * receives, so asking for it upstream changes nothing downstream.
 *
 * Bytes are forwarded as they arrive (a partial event is held only until its end arrives, and only when a
 * usage chunk may have to be removed); parsing never delays or alters the events the caller asked for.
 */
import type { TokenUsage } from './provider-types.js';

export interface StreamOutcome {
  /** The provider's usage when it sent it, else input from the estimate and output counted from the text. */
  usage: TokenUsage;
  /** True when the usage came from the provider's own usage chunk. */
  reported: boolean;
  /** The stream ran to `[DONE]`. */
  completed: boolean;
  finishReason: string | undefined;
  /** The assistant text streamed (capped at 1 MiB). */
  text: string;
  model: string | undefined;
}

export interface StreamUsageOptions {
  /** Input tokens of the request (counted before the call), used when the provider reports no usage. */
  inputTokens: number;
  /** Counts the output tokens of streamed text when the provider reports no usage. */
  countText: (text: string) => number;
  /** Take the usage chunk out of the forwarded stream (the caller did not ask for it). */
  stripUsageChunk: boolean;
}

const MAX_TEXT = 1024 * 1024;

/** Wraps `source`: iterate the result to forward the stream; `outcome` settles when iteration ends. */
export function watchStreamUsage(source: AsyncIterable<Uint8Array>, options: StreamUsageOptions): { body: AsyncIterable<Uint8Array>; outcome: Promise<StreamOutcome> } {
  let settle!: (outcome: StreamOutcome) => void;
  const outcome = new Promise<StreamOutcome>((resolve) => (settle = resolve));
  const decoder = new TextDecoder();
  let pending = '';
  let text = '';
  let usage: TokenUsage | undefined;
  let finishReason: string | undefined;
  let model: string | undefined;
  let completed = false;

  /** Reads one complete event; returns false when it is the usage chunk that must not be forwarded. */
  const read = (event: string): boolean => {
    let data = '';
    for (const line of event.split(/\r?\n/)) if (line.startsWith('data:')) data += line.slice(line.startsWith('data: ') ? 6 : 5);
    data = data.trim();
    if (data === '') return true;
    if (data === '[DONE]') {
      completed = true;
      return true;
    }
    let chunk: { model?: unknown; usage?: unknown; choices?: Array<{ delta?: { content?: unknown }; finish_reason?: unknown }> };
    try {
      chunk = JSON.parse(data);
    } catch {
      return true;
    }
    if (typeof chunk?.model === 'string') model = chunk.model;
    const reportedUsage = readUsage(chunk?.usage);
    if (reportedUsage !== undefined) usage = reportedUsage;
    const choices = Array.isArray(chunk?.choices) ? chunk.choices : [];
    for (const choice of choices) {
      const content = choice?.delta?.content;
      if (typeof content === 'string' && text.length < MAX_TEXT) text += content;
      if (typeof choice?.finish_reason === 'string') finishReason = choice.finish_reason;
    }
    // The usage chunk is the one with usage and no choices.
    return !(options.stripUsageChunk && reportedUsage !== undefined && choices.length === 0);
  };

  const finish = () => {
    if (pending.trim() !== '') read(pending);
    const reported = usage !== undefined;
    settle({
      usage: usage ?? { inputTokens: options.inputTokens, outputTokens: text === '' ? 0 : options.countText(text) },
      reported,
      completed,
      finishReason,
      text,
      model,
    });
  };

  async function* forward(): AsyncGenerator<Uint8Array> {
    try {
      for await (const bytes of source) {
        pending += decoder.decode(bytes, { stream: true });
        if (!options.stripUsageChunk) {
          // Forward at once; parse whole events as they complete.
          yield bytes;
          let end: number;
          while ((end = eventEnd(pending)) >= 0) {
            read(pending.slice(0, end));
            pending = pending.slice(end).replace(/^(\r?\n)+/, '');
          }
          if (pending.length > MAX_TEXT) pending = ''; // not an event stream after all: stop parsing, keep forwarding
          continue;
        }
        let out = '';
        let end: number;
        while ((end = eventEnd(pending)) >= 0) {
          const event = pending.slice(0, end);
          const separator = /^(\r?\n)+/.exec(pending.slice(end))?.[0] ?? '';
          pending = pending.slice(end + separator.length);
          if (read(event)) out += event + separator;
        }
        if (out !== '') yield Buffer.from(out);
      }
      // The source ended: bytes held of an unfinished last event still belong to the caller.
      if (options.stripUsageChunk && pending.trim() !== '') {
        const rest = pending;
        pending = '';
        if (read(rest)) yield Buffer.from(rest);
      }
    } finally {
      finish();
    }
  }

  return { body: forward(), outcome };
}

/** Index just past the end of the first complete event (before its blank-line separator), or -1. */
function eventEnd(buffer: string): number {
  const lf = buffer.indexOf('\n\n');
  const crlf = buffer.indexOf('\r\n\r\n');
  if (lf < 0) return crlf;
  if (crlf < 0) return lf;
  return Math.min(lf, crlf);
}

/** OpenAI usage (`prompt_tokens`, `completion_tokens`, `prompt_tokens_details.cached_tokens`) as TokenUsage. */
export function readUsage(value: unknown): TokenUsage | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const u = value as { prompt_tokens?: unknown; completion_tokens?: unknown; input_tokens?: unknown; output_tokens?: unknown; prompt_tokens_details?: { cached_tokens?: unknown } | null };
  const input = typeof u.prompt_tokens === 'number' ? u.prompt_tokens : typeof u.input_tokens === 'number' ? u.input_tokens : undefined;
  const output = typeof u.completion_tokens === 'number' ? u.completion_tokens : typeof u.output_tokens === 'number' ? u.output_tokens : 0;
  if (input === undefined) return undefined;
  const cached = u.prompt_tokens_details?.cached_tokens;
  return { inputTokens: input, outputTokens: output, ...(typeof cached === 'number' && cached > 0 && { cachedInputTokens: cached }) };
}
