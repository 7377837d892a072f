/**
 * The embedder contract of the semantic cache, its two error types and the vector helpers every embedder
 * shares.
 *
 * Rows are unit length: every `Embedder` returns L2-normalized Float32Array rows, so the cosine similarity of
 * two rows is their dot product (`cosine`), and a similarity threshold means the same thing whichever
 * embedder produced the rows.
 */
import { AmasError, AbortedError, type AmasErrorCode, type AmasErrorInit } from '../errors.js';
import { describe } from '../options/validate.js';

export interface EmbedOptions {
  /**
   * Stops waiting: the call rejects with AbortedError. Work already handed to a model or shared with other
   * callers (a micro-batch, a shared cache miss) may still finish for them.
   */
  signal?: AbortSignal;
}

export interface Embedder {
  /** Identifies the model, e.g. 'use-lite'; vectors of embedders with different names are not comparable. */
  readonly name: string;
  /** Length of every row. An embedder that learns it from its first answer reports 0 until then. */
  readonly dimensions: number;
  /**
   * One L2-normalized row per text, in the order given (|row| = 1 within float32 rounding, so cosine = dot
   * product). An empty array resolves to [] without calling the model. A text that is not a string, or is
   * empty or only whitespace, rejects the whole call with EmbeddingInputError before any model work.
   */
  embed(texts: readonly string[], options?: EmbedOptions): Promise<Float32Array[]>;
  /** Releases what this instance holds; later `embed` calls reject. Idempotent. */
  close(): Promise<void>;
}

const INVALID_INPUT: AmasErrorCode = 'AMAS_INVALID_EMBEDDING_INPUT';
const EMBEDDING_FAILED: AmasErrorCode = 'AMAS_EMBEDDING_FAILED';

/** A text handed to `embed` is not a non-empty string (400: the caller's input, never retried). */
export class EmbeddingInputError extends AmasError {
  static override readonly code = INVALID_INPUT;
  constructor(message: string, init: AmasErrorInit = {}) {
    super(INVALID_INPUT, message, init, 400);
  }
}

/** Why an embedding failed; stable, so callers (the semantic cache's fallback) can branch and count it. */
export type EmbeddingFailureReason =
  | 'missing-package'
  | 'model-files'
  | 'model-load'
  | 'model-run'
  | 'http'
  | 'network'
  | 'timeout'
  | 'malformed-response'
  | 'closed';

/**
 * The embedder could not produce vectors: the model did not load, an optional package is missing, the
 * endpoint answered an error or garbage, or the embedder was closed. 503 by default (the semantic feature is
 * unavailable; callers degrade to exact-match caching). `details.reason` says which.
 */
export class EmbeddingFailedError extends AmasError {
  static override readonly code = EMBEDDING_FAILED;
  readonly reason: EmbeddingFailureReason;
  constructor(message: string, reason: EmbeddingFailureReason, init: AmasErrorInit = {}) {
    super(EMBEDDING_FAILED, message, { ...init, details: { reason, ...init.details } }, 503);
    this.reason = reason;
  }
}

/**
 * Checks `texts` for `embed`: an array (or array-like readonly array) of non-empty strings. Returns a plain
 * array copy; throws EmbeddingInputError naming the embedder, the index and what was received.
 */
export function validateTexts(texts: unknown, embedder: string): string[] {
  if (!Array.isArray(texts)) {
    throw new EmbeddingInputError(`${embedder}: embed() expects an array of strings, received ${describe(texts)}`, {
      details: { embedder, received: describe(texts) },
    });
  }
  const out = new Array<string>(texts.length);
  for (let i = 0; i < texts.length; i++) {
    const text: unknown = texts[i];
    if (typeof text !== 'string') {
      throw new EmbeddingInputError(`${embedder}: texts[${i}] must be a string, received ${describe(text)}`, {
        details: { embedder, index: i, received: describe(text) },
      });
    }
    if (text.trim().length === 0) {
      throw new EmbeddingInputError(
        `${embedder}: texts[${i}] is ${text.length === 0 ? 'an empty string' : 'only whitespace'}; there is nothing to embed`,
        { details: { embedder, index: i, received: describe(text) } },
      );
    }
    out[i] = text;
  }
  return out;
}

/**
 * A unit-length float32 copy of `vector` (computed in float64). Throws RangeError for a zero, empty or
 * non-finite vector, which has no direction.
 */
export function normalize(vector: ArrayLike<number>): Float32Array {
  let sum = 0;
  for (let i = 0; i < vector.length; i++) sum += vector[i] * vector[i];
  const norm = Math.sqrt(sum);
  if (!(norm > 0) || !Number.isFinite(norm)) {
    throw new RangeError(`cannot normalize a vector of length ${vector.length} with norm ${norm}`);
  }
  const out = new Float32Array(vector.length);
  for (let i = 0; i < vector.length; i++) out[i] = vector[i] / norm;
  return out;
}

/**
 * Cosine similarity of two rows from `Embedder.embed`: their dot product, since rows are unit length
 * (in [-1, 1] up to float32 rounding). Rows of different lengths throw RangeError. For vectors that are not
 * normalized, normalize them first.
 */
export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`cosine of vectors of different lengths (${a.length} and ${b.length})`);
  let dot = 0;
  for (let i = 0; i < a.length; i++) dot += a[i] * b[i];
  return dot;
}

/** Rejects with AbortedError when `signal` has fired (its reason as the cause). */
export function throwIfAborted(signal: AbortSignal | undefined, embedder: string): void {
  if (signal?.aborted) throw new AbortedError(`${embedder}: embedding aborted`, { cause: signal.reason });
}

/** `promise`, or an AbortedError as soon as `signal` fires (the work behind `promise` is not cancelled). */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined, embedder: string): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(new AbortedError(`${embedder}: embedding aborted`, { cause: signal.reason }));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new AbortedError(`${embedder}: embedding aborted`, { cause: signal.reason }));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/** Turns one raw model/endpoint row into a checked unit row, or throws EmbeddingFailedError. */
export function toUnitRow(row: unknown, dimensions: number, embedder: string, index: number): Float32Array {
  const isArrayLike =
    Array.isArray(row) || (ArrayBuffer.isView(row) && !(row instanceof DataView));
  if (!isArrayLike) {
    throw new EmbeddingFailedError(`${embedder}: row ${index} is not a vector (received ${describe(row)})`, 'malformed-response');
  }
  const values = row as ArrayLike<unknown>;
  if (dimensions > 0 && values.length !== dimensions) {
    throw new EmbeddingFailedError(
      `${embedder}: row ${index} has ${values.length} dimensions, expected ${dimensions}`,
      'malformed-response',
    );
  }
  for (let i = 0; i < values.length; i++) {
    if (typeof values[i] !== 'number' || !Number.isFinite(values[i])) {
      throw new EmbeddingFailedError(
        `${embedder}: row ${index} has a non-finite value at ${i} (${describe(values[i])})`,
        'malformed-response',
      );
    }
  }
  try {
    return normalize(values as ArrayLike<number>);
  } catch {
    throw new EmbeddingFailedError(`${embedder}: row ${index} is a zero or empty vector`, 'malformed-response');
  }
}
