/**
 * Watches an OpenAI-style chat completion event stream as it passes through, to bill it: the provider's usage
 * chunk when there is one (the layer asks for it with `stream_options.include_usage`), otherwise the streamed
 * text counted. A stream that ends early (the client hung up, the upstream broke) is billed for what was
 * produced. When the caller did not ask for the usage chunk itself, it is taken out of what the caller
 * receives, and so is the `"usage":null` member OpenAI then adds to every other chunk, so asking for it
 * upstream changes nothing downstream.
 *
 * Bytes are forwarded as they arrive (a partial event is held only until its end arrives, and only when a
 * usage chunk may have to be removed); parsing never delays or alters the events the caller asked for.
 */
import type { TokenUsage } from './provider-types.js';
import { StreamUsageCounter, type StreamCountOptions } from './token-counter.js';

export interface StreamOutcome {
  /** The provider's usage when it sent it, else the input estimate and the streamed text counted. */
  usage: TokenUsage;
  /** True when the usage came from the provider's own usage chunk. */
  reported: boolean;
  /** The stream ran to `[DONE]`. */
  completed: boolean;
  finishReason: string | undefined;
  model: string | undefined;
}

export interface StreamUsageOptions {
  /** How to count when the provider reports no usage: the model and the input tokens counted before the call. */
  count: StreamCountOptions;
  /** Take the usage chunk out of the forwarded stream (the caller did not ask for it). */
  stripUsageChunk: boolean;
}

/** Events longer than this are not parsed (the stream is still forwarded untouched). */
const MAX_EVENT = 1024 * 1024;

/** Wraps `source`: iterate the result to forward the stream; `outcome` settles when iteration ends. */
export function watchStreamUsage(source: AsyncIterable<Uint8Array>, options: StreamUsageOptions): { body: AsyncIterable<Uint8Array>; outcome: Promise<StreamOutcome> } {
  let settle!: (outcome: StreamOutcome) => void;
  const outcome = new Promise<StreamOutcome>((resolve) => (settle = resolve));
  const decoder = new TextDecoder();
  const counter = new StreamUsageCounter(options.count);
  let pending = '';
  let finishReason: string | undefined;
  let model: string | undefined;
  let completed = false;

  /**
   * Reads one complete event; returns what to forward of it: the event, the event without the `"usage":null`
   * member the provider adds to every chunk once usage was asked for (when the caller did not ask), or
   * undefined for the usage chunk itself when the caller did not ask for it.
   */
  const read = (event: string): string | undefined => {
    let data = '';
    let dataLines = 0;
    for (const line of event.split(/\r?\n/)) {
      if (!line.startsWith('data:')) continue;
      data += line.slice(line.startsWith('data: ') ? 6 : 5);
      dataLines++;
    }
    data = data.trim();
    if (data === '') return event;
    if (data === '[DONE]') {
      completed = true;
      return event;
    }
    let chunk: { model?: unknown; usage?: unknown; choices?: Array<{ finish_reason?: unknown }> };
    try {
      chunk = JSON.parse(data);
    } catch {
      return event;
    }
    counter.push(chunk);
    if (typeof chunk?.model === 'string') model = chunk.model;
    const choices = Array.isArray(chunk?.choices) ? chunk.choices : [];
    for (const choice of choices) if (typeof choice?.finish_reason === 'string') finishReason = choice.finish_reason;
    if (!options.stripUsageChunk) return event;
    // The usage chunk is the one with usage and no choices.
    if (typeof chunk?.usage === 'object' && chunk.usage !== null && choices.length === 0) return undefined;
    if (chunk?.usage === null && dataLines === 1) return withoutNullUsage(event, data, chunk) ?? event;
    return event;
  };

  const finish = () => {
    if (pending.trim() !== '') read(pending);
    const result = counter.result();
    settle({ usage: result.usage, reported: result.reported, completed, finishReason, model });
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
          if (pending.length > MAX_EVENT) pending = ''; // not an event stream after all: stop parsing, keep forwarding
          continue;
        }
        let out = '';
        let end: number;
        while ((end = eventEnd(pending)) >= 0) {
          const event = pending.slice(0, end);
          const separator = /^(\r?\n)+/.exec(pending.slice(end))?.[0] ?? '';
          pending = pending.slice(end + separator.length);
          const forwarded = read(event);
          if (forwarded !== undefined) out += forwarded + separator;
        }
        if (out !== '') yield Buffer.from(out);
      }
      // The source ended: bytes held of an unfinished last event still belong to the caller.
      if (options.stripUsageChunk && pending.trim() !== '') {
        const rest = pending;
        pending = '';
        const forwarded = read(rest);
        if (forwarded !== undefined) yield Buffer.from(forwarded);
      }
    } finally {
      finish();
    }
  }

  return { body: forward(), outcome };
}

/**
 * `event` with the top-level `"usage":null` member taken out of its one data line, the rest byte for byte; or
 * undefined when the text cannot be cut safely (the result must parse to the chunk minus `usage`).
 */
function withoutNullUsage(event: string, data: string, chunk: object): string | undefined {
  const matches = data.match(/"usage"\s*:\s*null/g);
  if (matches === null || matches.length !== 1) return undefined;
  const cut = data.replace(/,\s*"usage"\s*:\s*null(?=\s*[,}])/, '').replace(/"usage"\s*:\s*null\s*,\s*/, '');
  if (cut === data) return undefined;
  try {
    const parsed = JSON.parse(cut) as Record<string, unknown>;
    if ('usage' in parsed || Object.keys(parsed).length !== Object.keys(chunk).length - 1) return undefined;
  } catch {
    return undefined;
  }
  const at = event.indexOf(data);
  return at < 0 ? undefined : event.slice(0, at) + cut + event.slice(at + data.length);
}

/** Index just past the end of the first complete event (before its blank-line separator), or -1. */
function eventEnd(buffer: string): number {
  const lf = buffer.indexOf('\n\n');
  const crlf = buffer.indexOf('\r\n\r\n');
  if (lf < 0) return crlf;
  if (crlf < 0) return lf;
  return Math.min(lf, crlf);
}
