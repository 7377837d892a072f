/**
 * CachedEmbedder in front of the real USE lite model. A counting pass-through (not a model mock: it calls
 * the real embedder) records every inner call, so the tests see exactly which texts reached the model.
 */
import { describe, expect, it } from 'vitest';
import { AbortedError } from '../../src/errors.js';
import { CachedEmbedder } from '../../src/semantic/embedding-cache.js';
import { cosine, EmbeddingFailedError, EmbeddingInputError, type EmbedOptions, type Embedder } from '../../src/semantic/embedder.js';
import { UniversalSentenceEncoderEmbedder } from '../../src/semantic/use-embedder.js';
import { deferred, invalidOption } from '../helpers.js';

class Counting implements Embedder {
  readonly calls: string[][] = [];
  closed = 0;
  /** When set, the next inner call waits for it (to hold a miss in flight). */
  gate: Promise<unknown> | undefined;
  /** When set, the next inner call fails with it. */
  failNext: Error | undefined;
  constructor(readonly inner: Embedder) {}
  get name() {
    return this.inner.name;
  }
  get dimensions() {
    return this.inner.dimensions;
  }
  async embed(texts: readonly string[], options?: EmbedOptions): Promise<Float32Array[]> {
    this.calls.push([...texts]);
    const gate = this.gate;
    this.gate = undefined;
    if (gate) await gate;
    const fail = this.failNext;
    this.failNext = undefined;
    if (fail) throw fail;
    return this.inner.embed(texts, options);
  }
  async close() {
    this.closed++;
    await this.inner.close();
  }
}

const use = new UniversalSentenceEncoderEmbedder();

describe('CachedEmbedder', () => {
  it('never embeds an exact repeat twice and returns the same rows as the model', async () => {
    const inner = new Counting(use);
    const cache = new CachedEmbedder(inner);
    expect(cache.name).toBe('use-lite');
    expect(cache.dimensions).toBe(512);
    const first = await cache.embed(['What is AI?', 'How do I bake bread?']);
    const again = await cache.embed(['How do I bake bread?', 'What is AI?']);
    expect(inner.calls).toEqual([['What is AI?', 'How do I bake bread?']]);
    expect(Array.from(again[0])).toEqual(Array.from(first[1]));
    expect(Array.from(again[1])).toEqual(Array.from(first[0]));
    const [direct] = await use.embed(['What is AI?']);
    expect(cosine(direct, first[0])).toBeGreaterThan(0.9999);
    expect(cache.stats()).toMatchObject({ hits: 2, misses: 2, shared: 0, embeddedTexts: 2, innerCalls: 1, size: 2 });
    expect(cache.stats().embedMs).toBeGreaterThan(0);
  });

  it('sends only the misses of a call, in one inner call, and keeps the caller order', async () => {
    const inner = new Counting(use);
    const cache = new CachedEmbedder(inner);
    await cache.embed(['b']);
    const rows = await cache.embed(['a', 'b', 'c', 'a', 'd']);
    expect(inner.calls).toEqual([['b'], ['a', 'c', 'd']]);
    const solo = await use.embed(['a', 'b', 'c', 'd']);
    const expected = [solo[0], solo[1], solo[2], solo[0], solo[3]];
    rows.forEach((row, i) => expect(cosine(row, expected[i])).toBeGreaterThan(0.9999));
    expect(cache.stats()).toMatchObject({ hits: 1, shared: 1, misses: 4, innerCalls: 2 });
  });

  it('concurrent requests for the same text share one embedding', async () => {
    const inner = new Counting(use);
    const cache = new CachedEmbedder(inner);
    const gate = deferred<void>();
    inner.gate = gate.promise;
    const calls = Array.from({ length: 10 }, () => cache.embed(['Can you explain artificial intelligence?']));
    const mixed = cache.embed(['Can you explain artificial intelligence?', 'a new one']);
    gate.resolve();
    const results = await Promise.all([...calls, mixed]);
    expect(inner.calls).toEqual([['Can you explain artificial intelligence?'], ['a new one']]);
    for (const [row] of results) expect(Array.from(row)).toEqual(Array.from(results[0][0]));
    expect(cache.stats()).toMatchObject({ misses: 2, shared: 10, hits: 0, innerCalls: 2 });
  });

  it('hands out copies: mutating a result never corrupts the cache', async () => {
    const cache = new CachedEmbedder(new Counting(use));
    const [row] = await cache.embed(['copy me']);
    const original = Array.from(row);
    row.fill(0);
    const [again] = await cache.embed(['copy me']);
    expect(Array.from(again)).toEqual(original);
  });

  it('evicts the least recently used rows beyond maxEntries', async () => {
    const inner = new Counting(use);
    const cache = new CachedEmbedder(inner, { maxEntries: 2 });
    await cache.embed(['one', 'two']);
    await cache.embed(['one']); // 'one' is now the most recent
    await cache.embed(['three']); // evicts 'two'
    expect(cache.stats()).toMatchObject({ size: 2, evictions: 1 });
    await cache.embed(['one', 'three']);
    expect(inner.calls.length).toBe(2);
    await cache.embed(['two']);
    expect(inner.calls).toEqual([['one', 'two'], ['three'], ['two']]);
  });

  it('a failed inner call rejects every caller sharing it and is not remembered', async () => {
    const inner = new Counting(use);
    const cache = new CachedEmbedder(inner);
    const gate = deferred<void>();
    inner.gate = gate.promise;
    inner.failNext = new EmbeddingFailedError('boom', 'model-run');
    const a = cache.embed(['fails once']);
    const b = cache.embed(['fails once']);
    gate.resolve();
    await expect(a).rejects.toThrow('boom');
    await expect(b).rejects.toThrow('boom');
    const [row] = await cache.embed(['fails once']);
    expect(row.length).toBe(512);
    expect(inner.calls).toEqual([['fails once'], ['fails once']]);
  });

  it('an aborted caller stops waiting; the shared embedding still lands in the cache', async () => {
    const inner = new Counting(use);
    const cache = new CachedEmbedder(inner);
    const gate = deferred<void>();
    inner.gate = gate.promise;
    const controller = new AbortController();
    const aborted = cache.embed(['abort me'], { signal: controller.signal });
    const other = cache.embed(['abort me']);
    controller.abort();
    await expect(aborted).rejects.toBeInstanceOf(AbortedError);
    gate.resolve();
    expect((await other)[0].length).toBe(512);
    await cache.embed(['abort me']);
    expect(inner.calls).toEqual([['abort me']]);
  });

  it('bad input: [] without an inner call; empty and non-string texts rejected', async () => {
    const inner = new Counting(use);
    const cache = new CachedEmbedder(inner);
    expect(await cache.embed([])).toEqual([]);
    await expect(cache.embed([''])).rejects.toBeInstanceOf(EmbeddingInputError);
    await expect(cache.embed(['ok', 7 as unknown as string])).rejects.toThrow(/texts\[1\] must be a string, received 7/);
    expect(inner.calls).toEqual([]);
  });

  it('close() clears rows, closes the inner embedder (unless closeInner: false) and rejects later calls', async () => {
    const owned = new Counting(new UniversalSentenceEncoderEmbedder());
    const cache = new CachedEmbedder(owned);
    await cache.embed(['x']);
    await cache.close();
    await cache.close();
    expect(owned.closed).toBe(1);
    expect(cache.stats().size).toBe(0);
    await expect(cache.embed(['x'])).rejects.toMatchObject({ reason: 'closed' });

    const borrowed = new Counting(use);
    await new CachedEmbedder(borrowed, { closeInner: false }).close();
    expect(borrowed.closed).toBe(0);
  });

  it('validates its options and its inner embedder', () => {
    expect(invalidOption(() => new CachedEmbedder(use, { maxEntries: 0 })).message).toMatch(/maxEntries/);
    expect(invalidOption(() => new CachedEmbedder(use, { maxEntries: 1.5 })).message).toMatch(/maxEntries/);
    expect(() => new CachedEmbedder({} as Embedder)).toThrow(/must be an Embedder/);
  });
});
