/**
 * The vector index behind the semantic cache: top-k most similar stored vectors for a query.
 *
 * Vectors are Float32Array rows of a fixed length, expected L2-normalized by the embedder, so the score is
 * the dot product = cosine similarity (1 = same direction). Indexes validate every vector (wrong length,
 * NaN or Infinity -> TypeError) but never normalize.
 *
 * Implementations (all synchronous, all in-process, no native addon):
 * - `exact`: brute force over contiguous rows; exact answers, cost linear in size. Best for small partitions.
 * - `approximate`: HNSW graph; sub-linear search, recall tunable by `efSearch`.
 * - `auto` (default): exact while small; once the size reaches half of `autoThreshold` it starts building the
 *   HNSW graph alongside (a few inserts per `add`, so no single call pays for the whole build), and answers
 *   from the graph once the size reaches `autoThreshold`. It goes back to exact when the size falls below a
 *   quarter of the threshold.
 */
import { z } from 'zod';
import { parseOptions } from '../options/validate.js';
import { ExactVectorIndex, validateDimensions } from './exact-index.js';
import { HnswVectorIndex, type HnswVectorIndexOptions } from './hnsw-index.js';

export interface VectorSearchResult {
  id: string;
  /** Dot product of the query with the stored vector (the cosine when both are normalized). */
  score: number;
}

export type VectorIndexKind = 'exact' | 'approximate' | 'auto';

export interface VectorIndex {
  readonly kind: VectorIndexKind;
  /** Number of ids stored. */
  readonly size: number;
  readonly dimensions: number;
  /** Stores `vector` (copied) under `id`; an existing id is replaced. */
  add(id: string, vector: Float32Array): void;
  /** Removes `id`; false when it was not stored. A removed id is never returned by `search`. */
  remove(id: string): boolean;
  has(id: string): boolean;
  /**
   * Up to `k` stored ids most similar to `query`, best first, keeping only scores >= `minScore` when given.
   * The approximate index may miss a true neighbour (see its recall in bench/README.md); scores are exact.
   */
  search(query: Float32Array, k: number, minScore?: number): VectorSearchResult[];
  clear(): void;
}

/**
 * Default size at which 'auto' answers from the HNSW graph. Measured with bench/semantic/index-bench.mjs on
 * a loaded 2-vCPU VM, 512 dims: exact search costs ~0.5-0.7 ms p50 (1.0-1.3 ms p99) at 1k entries and grows
 * linearly (5-8 ms p50 at 10k, ~50 ms at 100k); HNSW answers in 0.1-0.3 ms at 1k and ~0.5-1.3 ms at 100k on
 * clustered data. Below ~2k entries exact search stays around a millisecond while being exact, cheap to add
 * to (~25 us vs ~250 us an HNSW insert) and lighter (no graph, no WebAssembly.Memory per partition), so
 * small partitions stay exact; from 1024 entries on the graph is built alongside, a few inserts per add.
 */
export const DEFAULT_AUTO_THRESHOLD = 2048;

export const vectorIndexOptionsSchema = z
  .object({
    dimensions: z.number().int().min(1).max(65_536),
    kind: z.enum(['exact', 'approximate', 'auto']).optional(),
    /** 'auto' only: size at which searches move to the HNSW graph (default 2048). */
    autoThreshold: z.number().int().min(16).optional(),
    /** Tuning of the HNSW graph ('approximate' and 'auto'). */
    hnsw: z
      .object({
        m: z.number().int().min(2).max(128).optional(),
        efConstruction: z.number().int().min(1).max(4096).optional(),
        efSearch: z.number().int().min(1).max(4096).optional(),
        maxTombstoneRatio: z.number().gt(0).max(1).optional(),
        seed: z.number().int().optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

export type VectorIndexOptions = z.input<typeof vectorIndexOptionsSchema>;

export function createVectorIndex(options: VectorIndexOptions): VectorIndex {
  const o = parseOptions(vectorIndexOptionsSchema, options, 'createVectorIndex options');
  const kind = o.kind ?? 'auto';
  if (kind === 'exact') return new ExactVectorIndex({ dimensions: o.dimensions });
  if (kind === 'approximate') return new HnswVectorIndex({ ...o.hnsw, dimensions: o.dimensions });
  return new AutoVectorIndex({ dimensions: o.dimensions, threshold: o.autoThreshold, hnsw: o.hnsw });
}

export interface AutoVectorIndexOptions {
  dimensions: number;
  threshold?: number;
  hnsw?: Omit<HnswVectorIndexOptions, 'dimensions'>;
}

/** Migrated old entries per `add` while the graph is being built alongside the exact index. */
const MIGRATE_PER_ADD = 2;

export class AutoVectorIndex implements VectorIndex {
  readonly kind = 'auto' as const;
  readonly dimensions: number;
  readonly threshold: number;
  private readonly hnswOptions: HnswVectorIndexOptions;
  private exact: ExactVectorIndex | undefined;
  /** Being built while `exact` answers; answering once `exact` is gone. */
  private hnsw: HnswVectorIndex | undefined;
  private pending: string[] = [];
  private cursor = 0;

  constructor(options: AutoVectorIndexOptions) {
    validateDimensions(options?.dimensions, 'AutoVectorIndex');
    this.dimensions = options.dimensions;
    this.threshold = options.threshold ?? DEFAULT_AUTO_THRESHOLD;
    this.hnswOptions = { ...options.hnsw, dimensions: options.dimensions };
    this.exact = new ExactVectorIndex({ dimensions: options.dimensions });
  }

  /** Which implementation answers searches right now. */
  get active(): 'exact' | 'approximate' {
    return this.exact ? 'exact' : 'approximate';
  }

  get size(): number {
    return this.exact ? this.exact.size : this.hnsw!.size;
  }

  add(id: string, vector: Float32Array): void {
    const exact = this.exact;
    if (!exact) {
      this.hnsw!.add(id, vector);
      return;
    }
    exact.add(id, vector); // validates
    if (this.hnsw) {
      this.hnsw.add(id, vector);
      this.migrate(MIGRATE_PER_ADD);
    } else if (exact.size >= this.threshold >> 1) {
      this.hnsw = new HnswVectorIndex(this.hnswOptions);
      this.pending = [];
      this.cursor = 0;
      exact.forEach((key) => this.pending.push(key));
      this.migrate(MIGRATE_PER_ADD);
    }
    if (exact.size >= this.threshold) {
      this.migrate(Infinity);
      this.exact = undefined;
      this.pending = [];
    }
  }

  remove(id: string): boolean {
    if (!this.exact) {
      const hnsw = this.hnsw!;
      const removed = hnsw.remove(id);
      if (removed && hnsw.size < this.threshold >> 2) {
        const exact = new ExactVectorIndex({ dimensions: this.dimensions });
        hnsw.forEach((key, vector) => exact.add(key, vector));
        this.exact = exact;
        this.hnsw = undefined;
      }
      return removed;
    }
    const removed = this.exact.remove(id);
    if (this.hnsw) {
      this.hnsw.remove(id);
      if (this.exact.size < this.threshold >> 2) {
        this.hnsw = undefined;
        this.pending = [];
      }
    }
    return removed;
  }

  has(id: string): boolean {
    return this.exact ? this.exact.has(id) : this.hnsw!.has(id);
  }

  search(query: Float32Array, k: number, minScore?: number): VectorSearchResult[] {
    return this.exact ? this.exact.search(query, k, minScore) : this.hnsw!.search(query, k, minScore);
  }

  clear(): void {
    this.exact = new ExactVectorIndex({ dimensions: this.dimensions });
    this.hnsw = undefined;
    this.pending = [];
  }

  private migrate(budget: number): void {
    const exact = this.exact!;
    const hnsw = this.hnsw!;
    while (budget > 0 && this.cursor < this.pending.length) {
      const id = this.pending[this.cursor++]!;
      if (hnsw.has(id)) continue;
      const vector = exact.get(id);
      if (vector === undefined) continue;
      hnsw.add(id, vector);
      budget--;
    }
  }
}
