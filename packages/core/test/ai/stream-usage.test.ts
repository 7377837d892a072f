import { describe, expect, it } from 'vitest';
import { watchStreamUsage } from '../../src/ai/stream-usage.js';

const chunk = (delta: Record<string, unknown>, finish: string | null = null) => `data: ${JSON.stringify({ object: 'chat.completion.chunk', model: 'gpt-4o-mini', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
const usageChunk = `data: ${JSON.stringify({ object: 'chat.completion.chunk', model: 'gpt-4o-mini', choices: [], usage: { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14, prompt_tokens_details: { cached_tokens: 4 } } })}\n\n`;
const done = 'data: [DONE]\n\n';
const chunkWithId = (delta: Record<string, unknown>, finish: string | null = null) =>
  `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', model: 'gpt-4o-mini', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;

async function* bytesOf(parts: string[], splitEvery = 0): AsyncGenerator<Uint8Array> {
  const all = Buffer.from(parts.join(''));
  if (splitEvery === 0) {
    for (const p of parts) yield Buffer.from(p);
    return;
  }
  for (let i = 0; i < all.length; i += splitEvery) yield all.subarray(i, i + splitEvery);
}

async function drain(body: AsyncIterable<Uint8Array>): Promise<string> {
  const out: Buffer[] = [];
  for await (const b of body) out.push(Buffer.from(b));
  return Buffer.concat(out).toString();
}


describe('watchStreamUsage', () => {
  it('uses the provider usage chunk and forwards every byte when the caller asked for it', async () => {
    const parts = [chunk({ role: 'assistant', content: '' }), chunk({ content: 'Hello ' }), chunk({ content: 'world' }), chunk({}, 'stop'), usageChunk, done];
    const watched = watchStreamUsage(bytesOf(parts, 7), { count: { model: 'gpt-4o-mini', inputTokens: 99 }, stripUsageChunk: false });
    expect(await drain(watched.body)).toBe(parts.join(''));
    expect(await watched.outcome).toEqual({ usage: { inputTokens: 11, outputTokens: 3, cachedInputTokens: 4 }, reported: true, completed: true, finishReason: 'stop', model: 'gpt-4o-mini' });
  });

  it('takes out the usage chunk the layer asked for, whatever the byte boundaries', async () => {
    const parts = [chunk({ content: 'Hello' }), chunk({}, 'stop'), usageChunk, done];
    for (const split of [0, 1, 5, 64]) {
      const watched = watchStreamUsage(bytesOf(parts, split), { count: { model: 'gpt-4o-mini', inputTokens: 99 }, stripUsageChunk: true });
      expect(await drain(watched.body), `split ${split}`).toBe(parts.filter((p) => p !== usageChunk).join(''));
      expect((await watched.outcome).usage.outputTokens).toBe(3);
    }
  });

  it('takes the "usage":null member the provider adds to every chunk out too, byte for byte otherwise', async () => {
    // What OpenAI sends once include_usage is set: usage null on every chunk, then the usage-only chunk.
    const withNull = (delta: Record<string, unknown>, finish: string | null = null) =>
      `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', model: 'gpt-4o-mini', choices: [{ index: 0, delta, finish_reason: finish }], usage: null })}\n\n`;
    const usageFirst = `data: {"usage": null, "id":"c1","choices":[{"index":0,"delta":{"content":"usage: null"},"finish_reason":null}]}\n\n`;
    const parts = [withNull({ role: 'assistant', content: '' }), withNull({ content: 'Say "usage":null ' }), usageFirst, withNull({}, 'stop'), usageChunk, done];
    const expected = [
      chunkWithId({ role: 'assistant', content: '' }),
      chunkWithId({ content: 'Say "usage":null ' }),
      `data: {"id":"c1","choices":[{"index":0,"delta":{"content":"usage: null"},"finish_reason":null}]}\n\n`,
      chunkWithId({}, 'stop'),
      done,
    ].join('');
    for (const split of [0, 1, 7, 64]) {
      const watched = watchStreamUsage(bytesOf(parts, split), { count: { model: 'gpt-4o-mini', inputTokens: 9 }, stripUsageChunk: true });
      expect(await drain(watched.body), `split ${split}`).toBe(expected);
      expect(await watched.outcome).toMatchObject({ usage: { inputTokens: 11, outputTokens: 3 }, reported: true, completed: true });
    }
    // When the caller asked for usage, every byte goes through as the provider sent it.
    const asked = watchStreamUsage(bytesOf(parts), { count: { model: 'gpt-4o-mini', inputTokens: 9 }, stripUsageChunk: false });
    expect(await drain(asked.body)).toBe(parts.join(''));
  });

  it('counts the text when the provider sends no usage, and bills an aborted stream for what was produced', async () => {
    const full = watchStreamUsage(bytesOf([chunk({ content: 'one two three' }), chunk({}, 'stop'), done]), { count: { model: 'gpt-4o-mini', inputTokens: 20 }, stripUsageChunk: true });
    await drain(full.body);
    expect(await full.outcome).toMatchObject({ usage: { inputTokens: 20, outputTokens: 3 }, reported: false, completed: true });

    const aborted = watchStreamUsage(bytesOf([chunk({ content: 'one two ' }), chunk({ content: 'three four' }), chunk({ content: 'never read' })]), { count: { model: 'gpt-4o-mini', inputTokens: 20 }, stripUsageChunk: false });
    let seen = 0;
    for await (const _ of aborted.body) if (++seen === 2) break; // the client went away after two events
    expect(await aborted.outcome).toMatchObject({ usage: { inputTokens: 20, outputTokens: 4 }, completed: false, finishReason: undefined });
  });

  it('a broken upstream still settles the outcome (and the error reaches the caller)', async () => {
    async function* broken(): AsyncGenerator<Uint8Array> {
      yield Buffer.from(chunk({ content: 'partial answer' }));
      throw new Error('socket hang up');
    }
    const watched = watchStreamUsage(broken(), { count: { model: 'gpt-4o-mini', inputTokens: 5 }, stripUsageChunk: true });
    await expect(drain(watched.body)).rejects.toThrow('socket hang up');
    expect(await watched.outcome).toMatchObject({ usage: { outputTokens: 2 }, completed: false });
  });

});
