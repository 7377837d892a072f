/**
 * Exact (brute-force) vector index: every search computes the dot product of the query with every stored
 * row. Vectors are expected to be L2-normalized by the caller, so the dot product IS the cosine similarity;
 * the index never normalizes (it would hide an embedder bug) but it does reject vectors of the wrong length
 * and vectors holding NaN or Infinity.
 *
 * Storage is one contiguous Float32Array (`capacity * dimensions`), grown by doubling. Removal swaps the last
 * row into the freed slot, so rows stay dense and a search scans `size` rows with no holes. A search
 * allocates nothing but its result: the top-k selection runs in a reusable heap.
 */
import type { VectorIndex, VectorSearchResult } from './vector-index.js';

/** Throws a TypeError naming `who`, the expected length and what was wrong. */
export function validateVector(vector: unknown, dimensions: number, who: string): asserts vector is Float32Array {
  if (!(vector instanceof Float32Array)) {
    throw new TypeError(`${who}: vector must be a Float32Array of length ${dimensions}, got ${describe(vector)}`);
  }
  if (vector.length !== dimensions) {
    throw new TypeError(`${who}: vector has ${vector.length} dimensions, the index expects ${dimensions}`);
  }
  for (let i = 0; i < dimensions; i++) {
    const x = vector[i]!;
    // x - x is NaN for NaN and ±Infinity, 0 for every finite number.
    if (x - x !== 0) throw new TypeError(`${who}: vector[${i}] is ${x}; every component must be a finite number`);
  }
}

export function validateId(id: unknown, who: string): asserts id is string {
  if (typeof id !== 'string') throw new TypeError(`${who}: id must be a string, got ${describe(id)}`);
}

export function validateK(k: unknown, who: string): asserts k is number {
  if (typeof k !== 'number' || !Number.isInteger(k) || k < 0) {
    throw new TypeError(`${who}: k must be a non-negative integer, got ${describe(k)}`);
  }
}

export function validateMinScore(minScore: unknown, who: string): void {
  if (minScore !== undefined && (typeof minScore !== 'number' || Number.isNaN(minScore))) {
    throw new TypeError(`${who}: minScore must be a number, got ${describe(minScore)}`);
  }
}

export function validateDimensions(dimensions: unknown, who: string): asserts dimensions is number {
  if (typeof dimensions !== 'number' || !Number.isInteger(dimensions) || dimensions < 1 || dimensions > 65_536) {
    throw new TypeError(`${who}: dimensions must be an integer from 1 to 65536, got ${describe(dimensions)}`);
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${(value as unknown as ArrayLike<unknown>).length})`;
  if (Array.isArray(value)) return `Array(${value.length})`;
  if (typeof value === 'object') return value.constructor?.name ?? 'object';
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

/** Dot product of `a` (the query) with the row starting at `offset` in `data`. Unrolled by 4. */
export function dotAt(a: Float32Array, data: Float32Array, offset: number, dimensions: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let i = 0;
  const end4 = dimensions - (dimensions & 3);
  for (; i < end4; i += 4) {
    s0 += a[i]! * data[offset + i]!;
    s1 += a[i + 1]! * data[offset + i + 1]!;
    s2 += a[i + 2]! * data[offset + i + 2]!;
    s3 += a[i + 3]! * data[offset + i + 3]!;
  }
  for (; i < dimensions; i++) s0 += a[i]! * data[offset + i]!;
  return s0 + s1 + s2 + s3;
}

/**
 * A fixed-capacity min-heap of (score, slot) pairs keeping the `capacity` highest scores seen. Reused across
 * searches: `reset(k)` grows the backing arrays only when k exceeds every earlier k.
 */
export class TopK {
  scores = new Float64Array(16);
  slots = new Int32Array(16);
  size = 0;
  capacity = 0;

  reset(capacity: number): void {
    if (capacity > this.scores.length) {
      let n = this.scores.length;
      while (n < capacity) n *= 2;
      this.scores = new Float64Array(n);
      this.slots = new Int32Array(n);
    }
    this.capacity = capacity;
    this.size = 0;
  }

  /** The lowest kept score, or -Infinity while the heap is not full. */
  get threshold(): number {
    return this.size < this.capacity ? -Infinity : this.scores[0]!;
  }

  offer(score: number, slot: number): void {
    const scores = this.scores;
    const slots = this.slots;
    if (this.size < this.capacity) {
      // Sift up.
      let i = this.size++;
      while (i > 0) {
        const parent = (i - 1) >> 1;
        if (scores[parent]! <= score) break;
        scores[i] = scores[parent]!;
        slots[i] = slots[parent]!;
        i = parent;
      }
      scores[i] = score;
      slots[i] = slot;
      return;
    }
    if (this.capacity === 0 || score <= scores[0]!) return;
    // Replace the root and sift down.
    const n = this.size;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && scores[r]! < scores[l]! ? r : l;
      if (scores[c]! >= score) break;
      scores[i] = scores[c]!;
      slots[i] = slots[c]!;
      i = c;
    }
    scores[i] = score;
    slots[i] = slot;
  }
}

export interface ExactVectorIndexOptions {
  dimensions: number;
  /** Rows allocated up front (default 64); the storage doubles when full. */
  initialCapacity?: number;
}

export class ExactVectorIndex implements VectorIndex {
  readonly kind = 'exact' as const;
  readonly dimensions: number;
  private data: Float32Array;
  private capacity: number;
  private count = 0;
  private rowIds: string[] = [];
  private readonly rows = new Map<string, number>();
  private readonly heap = new TopK();

  constructor(options: ExactVectorIndexOptions) {
    validateDimensions(options?.dimensions, 'ExactVectorIndex');
    this.dimensions = options.dimensions;
    this.capacity = Math.max(1, Math.floor(options.initialCapacity ?? 64));
    this.data = new Float32Array(this.capacity * this.dimensions);
  }

  get size(): number {
    return this.count;
  }

  add(id: string, vector: Float32Array): void {
    validateId(id, 'ExactVectorIndex.add');
    validateVector(vector, this.dimensions, 'ExactVectorIndex.add');
    let row = this.rows.get(id);
    if (row === undefined) {
      if (this.count === this.capacity) this.grow();
      row = this.count++;
      this.rows.set(id, row);
      this.rowIds[row] = id;
    }
    this.data.set(vector, row * this.dimensions);
  }

  remove(id: string): boolean {
    const row = this.rows.get(id);
    if (row === undefined) return false;
    this.rows.delete(id);
    const last = --this.count;
    if (row !== last) {
      const d = this.dimensions;
      this.data.copyWithin(row * d, last * d, last * d + d);
      const movedId = this.rowIds[last]!;
      this.rowIds[row] = movedId;
      this.rows.set(movedId, row);
    }
    this.rowIds.length = last;
    return true;
  }

  has(id: string): boolean {
    return this.rows.has(id);
  }

  /** A view of the stored vector of `id` (valid until the next change), or undefined. */
  get(id: string): Float32Array | undefined {
    const row = this.rows.get(id);
    if (row === undefined) return undefined;
    const d = this.dimensions;
    return this.data.subarray(row * d, row * d + d);
  }

  search(query: Float32Array, k: number, minScore?: number): VectorSearchResult[] {
    validateVector(query, this.dimensions, 'ExactVectorIndex.search');
    validateK(k, 'ExactVectorIndex.search');
    validateMinScore(minScore, 'ExactVectorIndex.search');
    const n = this.count;
    const want = Math.min(k, n);
    if (want === 0) return [];
    const heap = this.heap;
    heap.reset(want);
    const d = this.dimensions;
    const data = this.data;
    const floor = minScore ?? -Infinity;
    for (let row = 0, offset = 0; row < n; row++, offset += d) {
      const score = dotAt(query, data, offset, d);
      if (score >= floor && score > heap.threshold) heap.offer(score, row);
    }
    return collect(heap, this.rowIds);
  }

  /** Visits every stored (id, vector); the vector is a view into the storage, valid until the next change. */
  forEach(fn: (id: string, vector: Float32Array) => void): void {
    const d = this.dimensions;
    for (let row = 0; row < this.count; row++) fn(this.rowIds[row]!, this.data.subarray(row * d, row * d + d));
  }

  clear(): void {
    this.count = 0;
    this.rows.clear();
    this.rowIds = [];
    this.capacity = 64;
    this.data = new Float32Array(this.capacity * this.dimensions);
  }

  private grow(): void {
    this.capacity *= 2;
    const next = new Float32Array(this.capacity * this.dimensions);
    next.set(this.data.subarray(0, this.count * this.dimensions));
    this.data = next;
  }
}

/** Drains a TopK into results sorted by descending score (ties by ascending id, so order is deterministic). */
export function collect(heap: TopK, ids: ArrayLike<string | undefined>): VectorSearchResult[] {
  const out: VectorSearchResult[] = new Array(heap.size);
  for (let i = 0; i < heap.size; i++) out[i] = { id: ids[heap.slots[i]!]!, score: heap.scores[i]! };
  out.sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return out;
}
