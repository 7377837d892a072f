/**
 * The semantic cache: answers a prompt with the value stored for the same prompt (exact) or for one that
 * means the same (semantic), never for a different question.
 *
 * - Partitions are hard filters: an entry can only answer prompts of its own partition (model, system prompt,
 *   tools, sampling bucket, tenant... see `chatPartition`), whatever the embedding distance.
 * - A semantic candidate above the threshold is served only if the near-miss guard finds no difference that
 *   makes the two prompts different questions (numbers, times, entities, negation, opposites...).
 * - With a store (Redis), entries live there: replicas share them, a restart keeps them; each replica keeps
 *   its own vector index, rebuilt from the store on `ready()` and kept in sync through Pub/Sub. Expiry is by
 *   each entry's own time, so every replica drops it at the same moment without a message.
 */
import { createHash, randomUUID } from 'node:crypto';
import { z } from 'zod';
import { systemClock, type Clock } from '../clock.js';
import { NAMESPACE_PATTERN } from '../cache/cache-level.js';
import { PeriodicSweep } from '../cache/periodic-sweep.js';
import { consoleLogger, type Logger } from '../logger.js';
import { durationSchema } from '../options/duration.js';
import { clockSchema, MAX_TIMER_MS, parseOptions, loggerSchema } from '../options/validate.js';
import { isStore, type Store, type StoreSubscription } from '../stores/store.js';
import { EmbeddingInputError, type Embedder } from './embedder.js';
import { CachedEmbedder } from './embedding-cache.js';
import { createNearMissGuard, type GuardReason, type NearMissGuard, type NearMissGuardOptions, type PromptFeatures } from './near-miss-guard.js';
import { SEMANTIC_DELETE, SEMANTIC_LIST, SEMANTIC_PUT } from './semantic-entry-scripts.js';
import { UniversalSentenceEncoderEmbedder } from './use-embedder.js';
import { createVectorIndex, type VectorIndex } from './vector-index.js';

/**
 * bench/README.md "Semantic guard": the highest threshold at which cosine + guard keeps >= 80% of the paraphrases
 * of every labelled set (dev, test, a fresh holdout) with <= 1 false hit per 40 near-misses of the listed kinds.
 */
export const DEFAULT_SEMANTIC_THRESHOLD = 0.62;

export interface SemanticCacheOptions {
  /** Default: Universal Sentence Encoder lite behind an LRU of recent embeddings. */
  embedder?: Embedder;
  /** Shared entries (Redis): replicas share them and a restart keeps them. Default: this process only. */
  store?: Store;
  /** Names this cache's keys and channel in the store. Default 'semantic'. */
  name?: string;
  /** Lowest cosine a semantic candidate needs. Default DEFAULT_SEMANTIC_THRESHOLD. */
  threshold?: number;
  /** Default time to live of an entry. Default '1h'. */
  ttl?: number | string;
  /** false turns the near-miss guard off (plain cosine); or options for it. */
  guard?: false | NearMissGuardOptions;
  /** Longest prompt accepted (characters); longer ones are refused with a clear error. Default 32 000. */
  maxPromptChars?: number;
  clock?: Clock;
  logger?: Logger;
}

export interface SemanticSetOptions {
  ttl?: number | string;
  /** The partition key (see `chatPartition`). Default '' (one shared partition). */
  partition?: string;
}

export interface SemanticGetOptions {
  partition?: string;
  threshold?: number;
}

export interface SemanticHit<V> {
  value: V;
  kind: 'exact' | 'semantic';
  /** 1 for an exact hit. */
  score: number;
  /** The stored prompt that answered. */
  prompt: string;
}

export interface SimilarEntry<V> {
  prompt: string;
  value: V;
  score: number;
  /** Set when the guard vetoes serving this entry for the query (with why). */
  vetoed?: GuardReason[];
}

export interface SemanticCacheStats {
  exactHits: number;
  semanticHits: number;
  misses: number;
  /** Candidates above the threshold the guard refused (each would have been a wrong answer). */
  vetoedNearMisses: number;
  hitRate: number;
  entries: number;
  embeddings: number;
  embeddingMs: number;
}

interface Entry {
  id: string;
  prompt: string;
  partition: string;
  vector: Float32Array;
  value: unknown;
  expiresAt: number;
  features?: PromptFeatures;
}

const optionsSchema = z.strictObject({
  embedder: z
    .custom<Embedder>((v) => typeof v === 'object' && v !== null && typeof (v as Embedder).embed === 'function' && typeof (v as Embedder).dimensions === 'number', {
      message: 'an Embedder (embed(), dimensions)',
    })
    .optional(),
  store: z.custom<Store>(isStore, { message: 'a Store (MemoryStore or RedisStore)' }).optional(),
  name: z.string().regex(NAMESPACE_PATTERN, `a name matching ${NAMESPACE_PATTERN} (letters, digits, _ - .)`).optional(),
  threshold: z.number().gt(0).max(1).optional(),
  ttl: durationSchema.pipe(z.number().positive('a duration > 0').max(MAX_TIMER_MS)).optional(),
  guard: z.union([z.literal(false), z.record(z.string(), z.unknown())]).optional(),
  maxPromptChars: z.number().int().positive().optional(),
  clock: clockSchema.optional(),
  logger: loggerSchema.optional(),
});

const setSchema = z.strictObject({
  ttl: durationSchema.pipe(z.number().positive('a duration > 0').max(MAX_TIMER_MS)).optional(),
  partition: z.string().max(512).optional(),
});
const getSchema = z.strictObject({ partition: z.string().max(512).optional(), threshold: z.number().gt(0).max(1).optional() });

const SWEEP_MS = 1000;

export class SemanticCache<V = unknown> {
  readonly name: string;
  private readonly embedder: Embedder;
  private readonly ownsEmbedder: boolean;
  private readonly store: Store | undefined;
  private readonly threshold: number;
  private readonly ttlMs: number;
  private readonly guard: NearMissGuard | undefined;
  /** Longest prompt accepted (characters). */
  readonly maxPromptChars: number;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly entries = new Map<string, Entry>();
  private readonly indexes = new Map<string, VectorIndex>();
  private readonly instanceId = randomUUID();
  private readonly channel: string;
  private subscription: Promise<StoreSubscription | undefined> | undefined;
  private loaded: Promise<void> | undefined;
  private readonly sweeper: PeriodicSweep;
  private counts = { exactHits: 0, semanticHits: 0, misses: 0, vetoed: 0, embeddings: 0, embeddingMs: 0 };
  private closed = false;

  constructor(options: SemanticCacheOptions = {}) {
    const o = parseOptions(optionsSchema, options ?? {}, 'SemanticCache options');
    this.name = o.name ?? 'semantic';
    this.embedder = o.embedder ?? new CachedEmbedder(new UniversalSentenceEncoderEmbedder());
    this.ownsEmbedder = o.embedder === undefined;
    this.store = o.store;
    this.threshold = o.threshold ?? DEFAULT_SEMANTIC_THRESHOLD;
    this.ttlMs = o.ttl ?? 60 * 60_000;
    this.guard = o.guard === false ? undefined : createNearMissGuard((o.guard ?? {}) as NearMissGuardOptions);
    this.maxPromptChars = o.maxPromptChars ?? 32_000;
    this.clock = o.clock ?? systemClock;
    this.logger = o.logger ?? consoleLogger;
    this.channel = `sc:${this.name}`;
    // Expired entries leave the index on their own time (every replica drops them at the same moment).
    this.sweeper = new PeriodicSweep(this.clock, SWEEP_MS, async () => {
      const now = this.clock.now();
      for (const entry of this.entries.values()) if (entry.expiresAt <= now) this.unindex(entry.id);
    });
    this.sweeper.start();
  }

  /**
   * With a store: subscribes to other replicas' changes, then loads every live entry and indexes it (a
   * restart keeps the cache). Called by every operation; call it at start-up to pay the load then.
   */
  ready(): Promise<void> {
    if (this.store === undefined) return Promise.resolve();
    this.loaded ??= this.load(this.store).catch((error: unknown) => {
      this.loaded = undefined; // try again on the next call
      throw error;
    });
    return this.loaded;
  }

  /** Loads the embedding model (and, with a store, the entries) now, so the first request does not pay for it. */
  async warmUp(): Promise<void> {
    await this.ready();
    await this.embedder.embed(['warm up']);
  }

  /** Stores `value` as the answer to `prompt` in `partition`. */
  async set(prompt: string, value: V, options: SemanticSetOptions = {}): Promise<void> {
    const o = parseOptions(setSchema, options, 'SemanticCache.set options');
    const text = this.checkPrompt(prompt);
    if (value === undefined) throw new TypeError('SemanticCache.set: the value is undefined (store null instead)');
    await this.ready();
    const [vector] = await this.embed([text]);
    const partition = o.partition ?? '';
    const ttl = o.ttl ?? this.ttlMs;
    const entry: Entry = { id: entryId(partition, text), prompt: text, partition, vector: vector!, value, expiresAt: this.clock.now() + ttl };
    this.index(entry);
    if (this.store !== undefined) {
      const store = this.store;
      await store.run(SEMANTIC_PUT, [this.entryKey(entry.id), this.idsKey()], [entry.id, serializeEntry(entry), Math.ceil(ttl)]);
      await store.publish(this.channel, JSON.stringify({ o: this.instanceId, op: 'add', id: entry.id })).catch(() => undefined);
    }
  }

  /** The answer for `prompt`: the same prompt first, then the best semantic candidate the guard allows. */
  async get(prompt: string, options: SemanticGetOptions = {}): Promise<SemanticHit<V> | undefined> {
    const o = parseOptions(getSchema, options, 'SemanticCache.get options');
    const text = this.checkPrompt(prompt);
    await this.ready();
    const partition = o.partition ?? '';
    const exact = this.live(this.entries.get(entryId(partition, text)));
    if (exact !== undefined) {
      this.counts.exactHits++;
      return { value: exact.value as V, kind: 'exact', score: 1, prompt: exact.prompt };
    }
    const similar = await this.similar(text, partition, o.threshold ?? this.threshold, 5);
    const best = similar.find((s) => s.vetoed === undefined);
    this.counts.vetoed += similar.filter((s) => s.vetoed !== undefined).length;
    if (best === undefined) {
      this.counts.misses++;
      return undefined;
    }
    this.counts.semanticHits++;
    return { value: best.value, kind: 'semantic', score: best.score, prompt: best.prompt };
  }

  /** Entries similar to `query` in `partition`, best first, each with the guard's verdict. */
  async getSimilar(query: string, options: SemanticGetOptions & { maxResults?: number } = {}): Promise<Array<SimilarEntry<V>>> {
    const { maxResults, ...rest } = options;
    const o = parseOptions(getSchema, rest, 'SemanticCache.getSimilar options');
    if (maxResults !== undefined && (!Number.isInteger(maxResults) || maxResults < 1 || maxResults > 1000)) {
      throw new TypeError(`SemanticCache.getSimilar: maxResults must be an integer from 1 to 1000, received ${String(maxResults)}`);
    }
    const text = this.checkPrompt(query);
    await this.ready();
    return this.similar(text, o.partition ?? '', o.threshold ?? this.threshold, maxResults ?? 5);
  }

  async delete(prompt: string, options: { partition?: string } = {}): Promise<boolean> {
    const text = this.checkPrompt(prompt);
    await this.ready();
    const id = entryId(options.partition ?? '', text);
    const had = this.unindex(id);
    if (this.store === undefined) return had;
    const removed = await this.store.run(SEMANTIC_DELETE, [this.entryKey(id), this.idsKey()], [id]);
    await this.store.publish(this.channel, JSON.stringify({ o: this.instanceId, op: 'del', id })).catch(() => undefined);
    return had || removed;
  }

  /** Drops every entry (every partition, every replica). */
  async clear(): Promise<void> {
    await this.ready();
    this.entries.clear();
    this.indexes.clear();
    if (this.store === undefined) return;
    const prefix = this.store.key(`sc:${this.name}`);
    await this.store.deleteByPrefix(prefix.slice(0, -1)); // up to and without the tag's closing brace
    await this.store.publish(this.channel, JSON.stringify({ o: this.instanceId, op: 'clear' })).catch(() => undefined);
  }

  stats(): SemanticCacheStats {
    const c = this.counts;
    const lookups = c.exactHits + c.semanticHits + c.misses;
    return {
      exactHits: c.exactHits,
      semanticHits: c.semanticHits,
      misses: c.misses,
      vetoedNearMisses: c.vetoed,
      hitRate: lookups === 0 ? 0 : (c.exactHits + c.semanticHits) / lookups,
      entries: this.entries.size,
      embeddings: c.embeddings,
      embeddingMs: c.embeddingMs,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.sweeper.stop();
    const sub = await this.subscription?.catch(() => undefined);
    await sub?.unsubscribe().catch(() => undefined);
    if (this.ownsEmbedder) await this.embedder.close();
  }

  // ---------------------------------------------------------------------------------------------------------

  private async similar(text: string, partition: string, threshold: number, k: number): Promise<Array<SimilarEntry<V>>> {
    const index = this.indexes.get(partition);
    if (index === undefined || index.size === 0) return [];
    const [query] = await this.embed([text]);
    const found = index.search(query!, k, threshold);
    const queryFeatures = this.guard?.extract(text);
    const out: Array<SimilarEntry<V>> = [];
    for (const { id, score } of found) {
      const entry = this.live(this.entries.get(id));
      if (entry === undefined) continue;
      let vetoed: GuardReason[] | undefined;
      if (this.guard !== undefined && queryFeatures !== undefined) {
        entry.features ??= this.guard.extract(entry.prompt);
        const verdict = this.guard.compare(queryFeatures, entry.features);
        if (verdict.veto) vetoed = verdict.reasons;
      }
      out.push({ prompt: entry.prompt, value: entry.value as V, score, ...(vetoed && { vetoed }) });
    }
    return out;
  }

  private async embed(texts: string[]): Promise<Float32Array[]> {
    const started = performance.now();
    const rows = await this.embedder.embed(texts);
    this.counts.embeddings += texts.length;
    this.counts.embeddingMs += performance.now() - started;
    return rows;
  }

  private checkPrompt(prompt: unknown): string {
    if (typeof prompt !== 'string') throw new EmbeddingInputError(`SemanticCache: a prompt must be a string, received ${prompt === null ? 'null' : typeof prompt}`);
    const text = prompt.trim();
    if (text.length === 0) throw new EmbeddingInputError('SemanticCache: the prompt is empty');
    if (text.length > this.maxPromptChars) throw new EmbeddingInputError(`SemanticCache: the prompt has ${text.length} characters, more than maxPromptChars (${this.maxPromptChars})`);
    return text;
  }

  private live(entry: Entry | undefined): Entry | undefined {
    if (entry === undefined) return undefined;
    if (entry.expiresAt > this.clock.now()) return entry;
    this.unindex(entry.id);
    return undefined;
  }

  private index(entry: Entry): void {
    this.unindex(entry.id);
    let index = this.indexes.get(entry.partition);
    if (index === undefined) this.indexes.set(entry.partition, (index = createVectorIndex({ dimensions: entry.vector.length })));
    index.add(entry.id, entry.vector);
    this.entries.set(entry.id, entry);
  }

  private unindex(id: string): boolean {
    const entry = this.entries.get(id);
    if (entry === undefined) return false;
    this.entries.delete(id);
    const index = this.indexes.get(entry.partition);
    index?.remove(id);
    if (index !== undefined && index.size === 0) this.indexes.delete(entry.partition);
    return true;
  }

  private async load(store: Store): Promise<void> {
    this.subscription ??= store.subscribe(this.channel, this.onMessage).catch((error: unknown) => {
      this.logger.warn(`semantic cache "${this.name}": could not subscribe to other replicas' changes`, error);
      this.subscription = undefined;
      return undefined;
    });
    await this.subscription;
    // The subscriber connection may be up before the command connection: wait for the store itself.
    await store.ready?.();
    const ids = await store.run(SEMANTIC_LIST, [this.idsKey()], []);
    for (let i = 0; i < ids.length; i += 500) {
      const slice = ids.slice(i, i + 500);
      const raw = await store.getMany(slice.map((id) => this.entryKey(id)));
      raw.forEach((bytes) => {
        const entry = bytes === undefined ? undefined : parseEntry(bytes.toString('utf8'));
        if (entry !== undefined && entry.expiresAt > this.clock.now()) this.index(entry);
      });
    }
  }

  private readonly onMessage = (message: string): void => {
    let m: { o?: string; op?: string; id?: string };
    try {
      m = JSON.parse(message);
    } catch {
      return;
    }
    if (m.o === this.instanceId || this.store === undefined) return;
    if (m.op === 'clear') {
      this.entries.clear();
      this.indexes.clear();
    } else if (m.op === 'del' && typeof m.id === 'string') {
      this.unindex(m.id);
    } else if (m.op === 'add' && typeof m.id === 'string') {
      const id = m.id;
      void this.store.getBuffer(this.entryKey(id)).then(
        (bytes) => {
          const entry = bytes === undefined ? undefined : parseEntry(bytes.toString('utf8'));
          if (entry !== undefined && entry.expiresAt > this.clock.now() && !this.closed) this.index(entry);
        },
        () => undefined, // the next restart (or the next add) brings it
      );
    }
  };

  private entryKey(id: string): string {
    return this.store!.key(`sc:${this.name}`, `e:${id}`);
  }

  private idsKey(): string {
    return this.store!.key(`sc:${this.name}`, 'ids');
  }
}

function entryId(partition: string, prompt: string): string {
  return createHash('sha256').update(partition).update('\u0000').update(prompt).digest('base64url');
}

function serializeEntry(entry: Entry): string {
  return JSON.stringify({
    id: entry.id,
    prompt: entry.prompt,
    partition: entry.partition,
    vector: Buffer.from(entry.vector.buffer, entry.vector.byteOffset, entry.vector.byteLength).toString('base64'),
    value: entry.value,
    expiresAt: entry.expiresAt,
  });
}

function parseEntry(text: string): Entry | undefined {
  try {
    const o = JSON.parse(text) as { id: string; prompt: string; partition: string; vector: string; value: unknown; expiresAt: number };
    if (typeof o.id !== 'string' || typeof o.prompt !== 'string' || typeof o.vector !== 'string' || typeof o.expiresAt !== 'number') return undefined;
    const bytes = Buffer.from(o.vector, 'base64');
    const vector = new Float32Array(bytes.byteLength / 4);
    new Uint8Array(vector.buffer).set(bytes);
    return { id: o.id, prompt: o.prompt, partition: o.partition ?? '', vector, value: o.value, expiresAt: o.expiresAt };
  } catch {
    return undefined;
  }
}
