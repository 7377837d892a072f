/**
 * An exact-text embedding cache in front of any Embedder: a bounded LRU of recent text -> row, so a repeated
 * text is never embedded twice while it is remembered, and an in-flight map, so concurrent requests for the
 * same text share one embedding. The misses of one `embed` call go to the inner embedder in one call (which
 * batches them as it likes).
 *
 * Rows are keyed by the exact text (no trimming or case folding: the model sees those differences). A caller
 * gets its own copy of each row, so mutating a result never corrupts the cache.
 */
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import { fn, parseOptions, positiveInt } from '../options/validate.js';
import {
  EmbeddingFailedError,
  raceAbort,
  throwIfAborted,
  validateTexts,
  type EmbedOptions,
  type Embedder,
} from './embedder.js';

export interface CachedEmbedderOptions {
  /** Rows remembered at most (least recently used evicted first); default 10_000 (about 20 MB at 512 dims). */
  maxEntries?: number;
  /** Whether `close()` also closes the inner embedder; default true (the cache owns it). */
  closeInner?: boolean;
  /** Milliseconds clock for `embedMs`; default performance.now. */
  now?: () => number;
}

export const cachedEmbedderOptionsSchema = z.strictObject({
  maxEntries: positiveInt.optional(),
  closeInner: z.boolean().optional(),
  now: fn.optional(),
});

export interface CachedEmbedderStats {
  /** Texts answered from the LRU. */
  hits: number;
  /** Texts that joined an embedding already in flight for another call (or earlier in the same call). */
  shared: number;
  /** Texts sent to the inner embedder. */
  misses: number;
  /** Texts the inner embedder returned rows for (misses minus failed ones). */
  embeddedTexts: number;
  /** Calls made to the inner embedder. */
  innerCalls: number;
  /** Milliseconds spent in inner `embed` calls. */
  embedMs: number;
  /** Rows currently remembered. */
  size: number;
  evictions: number;
}

export class CachedEmbedder implements Embedder {
  readonly inner: Embedder;
  readonly maxEntries: number;
  private readonly closeInner: boolean;
  private readonly now: () => number;
  /** Map iteration order is the LRU order: the first key is the least recently used. */
  private readonly lru = new Map<string, Float32Array>();
  private readonly inFlight = new Map<string, Promise<Float32Array>>();
  private closed = false;
  private readonly counters = { hits: 0, shared: 0, misses: 0, embeddedTexts: 0, innerCalls: 0, embedMs: 0, evictions: 0 };

  constructor(inner: Embedder, options: CachedEmbedderOptions = {}) {
    if (!inner || typeof inner.embed !== 'function' || typeof inner.close !== 'function') {
      throw new TypeError('CachedEmbedder: the first argument must be an Embedder (with embed() and close())');
    }
    const o = parseOptions(cachedEmbedderOptionsSchema, options, 'CachedEmbedder options');
    this.inner = inner;
    this.maxEntries = o.maxEntries ?? 10_000;
    this.closeInner = o.closeInner ?? true;
    this.now = (o.now as (() => number) | undefined) ?? (() => performance.now());
  }

  get name(): string {
    return this.inner.name;
  }

  get dimensions(): number {
    return this.inner.dimensions;
  }

  stats(): CachedEmbedderStats {
    return { ...this.counters, size: this.lru.size };
  }

  /** Forgets every remembered row (in-flight embeddings still complete and are stored). */
  clear(): void {
    this.lru.clear();
  }

  async embed(texts: readonly string[], options: EmbedOptions = {}): Promise<Float32Array[]> {
    const input = validateTexts(texts, this.name);
    if (this.closed) throw new EmbeddingFailedError(`${this.name}: the cached embedder is closed`, 'closed');
    throwIfAborted(options.signal, this.name);
    if (input.length === 0) return [];

    const rows = new Array<Float32Array | Promise<Float32Array>>(input.length);
    const misses: string[] = [];
    for (let i = 0; i < input.length; i++) {
      const text = input[i];
      const hit = this.lru.get(text);
      if (hit) {
        this.lru.delete(text);
        this.lru.set(text, hit);
        this.counters.hits++;
        rows[i] = hit;
        continue;
      }
      const pending = this.inFlight.get(text);
      if (pending) {
        this.counters.shared++;
        rows[i] = pending;
        continue;
      }
      // The first occurrence of a new text: later occurrences (in this call or concurrent ones) share it.
      misses.push(text);
      rows[i] = this.track(text);
    }
    if (misses.length) {
      // One inner call for every miss of this call.
      const batch = this.embedMisses(misses);
      for (let m = 0; m < misses.length; m++) this.settle(misses[m], batch, m);
    }
    const resolved = await raceAbort(Promise.all(rows), options.signal, this.name);
    return resolved.map((row) => row.slice());
  }

  /** Deferred rows of texts in flight, settled by `settle` once their batch is known. */
  private readonly deferred = new Map<string, { resolve(row: Float32Array): void; reject(error: unknown): void }>();

  /** Registers `text` as in flight and returns the promise every caller of that text awaits. */
  private track(text: string): Promise<Float32Array> {
    let resolve!: (row: Float32Array) => void;
    let reject!: (error: unknown) => void;
    const promise = new Promise<Float32Array>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // A caller that stopped waiting (abort) must not leave an unhandled rejection behind.
    promise.catch(() => {});
    this.inFlight.set(text, promise);
    this.deferred.set(text, { resolve, reject });
    return promise;
  }

  private settle(text: string, batch: Promise<Float32Array[]>, index: number): void {
    const deferred = this.deferred.get(text)!;
    this.deferred.delete(text);
    batch.then(
      (rows) => {
        this.inFlight.delete(text);
        if (!this.closed) this.remember(text, rows[index]);
        deferred.resolve(rows[index]);
      },
      (error: unknown) => {
        this.inFlight.delete(text);
        deferred.reject(error);
      },
    );
  }

  private async embedMisses(misses: string[]): Promise<Float32Array[]> {
    this.counters.misses += misses.length;
    this.counters.innerCalls++;
    const started = this.now();
    let rows: Float32Array[];
    try {
      // No caller's signal is passed: other callers may be sharing these rows.
      rows = await this.inner.embed(misses);
    } finally {
      this.counters.embedMs += this.now() - started;
    }
    if (!Array.isArray(rows) || rows.length !== misses.length) {
      throw new EmbeddingFailedError(
        `${this.name}: the inner embedder returned ${Array.isArray(rows) ? rows.length : 'no'} rows for ${misses.length} texts`,
        'malformed-response',
      );
    }
    this.counters.embeddedTexts += misses.length;
    return rows;
  }

  private remember(text: string, row: Float32Array): void {
    this.lru.delete(text);
    this.lru.set(text, row);
    while (this.lru.size > this.maxEntries) {
      const oldest = this.lru.keys().next().value as string;
      this.lru.delete(oldest);
      this.counters.evictions++;
    }
  }

  /** Forgets every row and, unless `closeInner: false`, closes the inner embedder. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.lru.clear();
    if (this.closeInner) await this.inner.close();
  }
}
