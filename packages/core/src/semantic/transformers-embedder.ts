/**
 * Sentence embeddings from a transformers.js model (`@huggingface/transformers`), e.g.
 * 'Xenova/all-MiniLM-L6-v2' from the Hugging Face hub or an ONNX export in a local folder.
 *
 * `@huggingface/transformers` is an OPTIONAL dependency: it is imported with a dynamic `import()` on the
 * first `embed` (or `load()`), never when this module is imported. Without it, `embed` rejects with an
 * EmbeddingFailedError (reason 'missing-package') that says what to install.
 *
 * A `model` that is a filesystem path (absolute, or starting with './' or '../', or a file: URL) is a local
 * folder: before importing anything, the folder is checked for `config.json`, `tokenizer.json` and an
 * `onnx/*.onnx` file, and a clear error names the folder looked in and what is missing ('model-files').
 * Anything else is a hub id, which transformers.js resolves (its cache, then the hub unless
 * `localFilesOnly`).
 *
 * Not tested here: the real model path (no hub access on the build machines and the package is not
 * installed); the tests cover the missing-package and missing-folder errors.
 *
 * transformers.js keeps its settings in one global `env`: for a local folder this sets
 * `env.localModelPath` (to the folder's parent) and `env.allowLocalModels = true`, and loads run one at a
 * time in the process so two instances never load with each other's settings.
 */
import { stat, readdir } from 'node:fs/promises';
import { basename, dirname, isAbsolute, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import { parseOptions } from '../options/validate.js';
import {
  EmbeddingFailedError,
  raceAbort,
  throwIfAborted,
  toUnitRow,
  validateTexts,
  type EmbedOptions,
  type Embedder,
} from './embedder.js';

export interface TransformersEmbedderOptions {
  /** A hub id such as 'Xenova/all-MiniLM-L6-v2', or a local folder ('/abs/path', './rel', '../rel', file: URL). */
  model: string;
  /** Never reach the hub; only local folders or transformers.js' cache. Default false for hub ids, true for folders. */
  localFilesOnly?: boolean;
  /** How token vectors become one sentence vector; default 'mean' (what sentence-transformers models expect). */
  pooling?: 'mean' | 'cls';
  /** Ask transformers.js to L2-normalize; default true. Rows are normalized again here either way. */
  normalize?: boolean;
  /** Texts per model call at most (1..1024); default 32. */
  batchSize?: number;
  /** Weights precision transformers.js loads, e.g. 'fp32' or 'q8'; default the library's default. */
  dtype?: string;
  /** transformers.js' download cache folder; default the library's default. */
  cacheDir?: string;
  /** The name rows are tagged with; default `transformers:<model>`. */
  name?: string;
  /**
   * The module specifier imported for transformers.js; default '@huggingface/transformers'. Only for tests
   * and for pinning an alternative build (e.g. '@xenova/transformers' v2, which has the same pipeline API).
   */
  packageName?: string;
}

export const transformersEmbedderOptionsSchema = z.strictObject({
  model: z.string().min(1),
  localFilesOnly: z.boolean().optional(),
  pooling: z.enum(['mean', 'cls']).optional(),
  normalize: z.boolean().optional(),
  batchSize: z.number().int().min(1).max(1024).optional(),
  dtype: z.string().min(1).optional(),
  cacheDir: z.string().min(1).optional(),
  name: z.string().min(1).optional(),
  packageName: z.string().min(1).optional(),
});

/** The subset of transformers.js used here. */
interface TransformersModule {
  pipeline(task: string, model: string, options?: Record<string, unknown>): Promise<FeatureExtractor>;
  env: Record<string, unknown>;
}
type FeatureExtractor = ((texts: string[], options: { pooling: string; normalize: boolean }) => Promise<TensorLike>) & {
  dispose?: () => Promise<void> | void;
};
interface TensorLike {
  dims?: number[];
  data?: ArrayLike<number>;
  tolist?: () => unknown;
}

let loadQueue: Promise<unknown> = Promise.resolve();

/** The folder a `model` option names, or undefined when it is a hub id. */
export function localModelFolder(model: string): string | undefined {
  if (model.startsWith('file:')) return fileURLToPath(model);
  if (isAbsolute(model) || model.startsWith('./') || model.startsWith('../') || model.startsWith(`.${sep}`) || model.startsWith(`..${sep}`)) {
    return resolve(model);
  }
  return undefined;
}

/**
 * Checks that `folder` holds a transformers.js model export; throws EmbeddingFailedError ('model-files')
 * naming the folder and what is missing.
 */
export async function checkModelFolder(folder: string, embedder = 'transformers'): Promise<void> {
  const fail = (what: string): never => {
    throw new EmbeddingFailedError(
      `${embedder}: no transformers.js model in ${folder}: ${what}. Expected config.json, tokenizer.json and onnx/model.onnx ` +
        '(or another onnx/*.onnx such as model_quantized.onnx), e.g. a copy of the Xenova/all-MiniLM-L6-v2 repository',
      'model-files',
      { details: { path: folder } },
    );
  };
  const info = await stat(folder).catch(() => undefined);
  if (!info) fail('the folder does not exist');
  if (!info!.isDirectory()) fail('the path is not a folder');
  const missing: string[] = [];
  for (const file of ['config.json', 'tokenizer.json']) {
    const s = await stat(resolve(folder, file)).catch(() => undefined);
    if (!s?.isFile()) missing.push(file);
  }
  const onnx = await readdir(resolve(folder, 'onnx')).catch(() => [] as string[]);
  if (!onnx.some((f) => f.endsWith('.onnx'))) missing.push('onnx/*.onnx');
  if (missing.length) fail(`missing ${missing.join(', ')}`);
}

function isModuleNotFound(error: unknown, packageName: string): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  return (
    (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND' || /Cannot find (module|package)/i.test(message)) &&
    message.includes(packageName)
  );
}

export class TransformersEmbedder implements Embedder {
  readonly name: string;
  readonly model: string;
  /** The local folder the model is read from, or undefined for a hub id. */
  readonly folder: string | undefined;
  private dims = 0;
  private readonly options: {
    localFilesOnly: boolean;
    pooling: 'mean' | 'cls';
    normalize: boolean;
    batchSize: number;
    dtype?: string;
    cacheDir?: string;
    packageName: string;
  };
  private loading: Promise<FeatureExtractor> | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** Milliseconds the last successful load took (0 before). */
  loadMs = 0;

  constructor(options: TransformersEmbedderOptions) {
    const o = parseOptions(transformersEmbedderOptionsSchema, options, 'TransformersEmbedder options');
    this.model = o.model;
    this.folder = localModelFolder(o.model);
    this.name = o.name ?? `transformers:${o.model}`;
    this.options = {
      localFilesOnly: o.localFilesOnly ?? this.folder !== undefined,
      pooling: o.pooling ?? 'mean',
      normalize: o.normalize ?? true,
      batchSize: o.batchSize ?? 32,
      dtype: o.dtype,
      cacheDir: o.cacheDir,
      packageName: o.packageName ?? '@huggingface/transformers',
    };
  }

  /** 0 until the first rows were produced (the model's hidden size, e.g. 384 for all-MiniLM-L6-v2). */
  get dimensions(): number {
    return this.dims;
  }

  /** Loads the model now (fail fast at start-up). A failed load is retried by the next call. */
  async load(): Promise<void> {
    this.assertOpen();
    await this.extractor();
  }

  private extractor(): Promise<FeatureExtractor> {
    this.loading ??= this.loadExtractor().catch((error: unknown) => {
      this.loading = undefined;
      throw error;
    });
    return this.loading;
  }

  /** Loads one at a time per process: transformers.js reads its global `env` while a pipeline loads. */
  private loadExtractor(): Promise<FeatureExtractor> {
    const run = loadQueue.then(() => this.loadExtractorNow());
    loadQueue = run.catch(() => {});
    return run;
  }

  private async loadExtractorNow(): Promise<FeatureExtractor> {
    const started = performance.now();
    if (this.folder) await checkModelFolder(this.folder, this.name);
    const { packageName } = this.options;
    let mod: TransformersModule;
    try {
      mod = (await import(/* @vite-ignore */ packageName)) as TransformersModule;
    } catch (error) {
      if (isModuleNotFound(error, packageName)) {
        throw new EmbeddingFailedError(
          `${this.name}: the optional package ${packageName} is not installed; install it to use TransformersEmbedder ` +
            `(npm install ${packageName}), or use the default UniversalSentenceEncoderEmbedder`,
          'missing-package',
          { cause: error, details: { package: packageName } },
        );
      }
      throw new EmbeddingFailedError(
        `${this.name}: ${packageName} failed to load (${error instanceof Error ? error.message : String(error)})`,
        'missing-package',
        { cause: error, details: { package: packageName } },
      );
    }
    if (typeof mod?.pipeline !== 'function' || typeof mod.env !== 'object' || mod.env === null) {
      throw new EmbeddingFailedError(`${this.name}: ${packageName} does not export pipeline() and env`, 'missing-package');
    }
    let modelId = this.model;
    if (this.folder) {
      mod.env.allowLocalModels = true;
      mod.env.localModelPath = dirname(this.folder) + sep;
      modelId = basename(this.folder);
    }
    const pipelineOptions: Record<string, unknown> = { local_files_only: this.options.localFilesOnly };
    if (this.options.dtype) pipelineOptions.dtype = this.options.dtype;
    if (this.options.cacheDir) pipelineOptions.cache_dir = this.options.cacheDir;
    try {
      const extractor = await mod.pipeline('feature-extraction', modelId, pipelineOptions);
      this.loadMs = performance.now() - started;
      return extractor;
    } catch (error) {
      throw new EmbeddingFailedError(
        `${this.name}: transformers.js could not load the model ${this.folder ? `from ${this.folder}` : `'${this.model}'`}` +
          `${this.options.localFilesOnly ? ' (local files only)' : ''}: ${error instanceof Error ? error.message : String(error)}`,
        'model-load',
        { cause: error, details: this.folder ? { path: this.folder } : { model: this.model } },
      );
    }
  }

  async embed(texts: readonly string[], options: EmbedOptions = {}): Promise<Float32Array[]> {
    const input = validateTexts(texts, this.name);
    this.assertOpen();
    throwIfAborted(options.signal, this.name);
    if (input.length === 0) return [];
    const extractor = await raceAbort(this.extractor(), options.signal, this.name);
    const out: Float32Array[] = [];
    for (let start = 0; start < input.length; start += this.options.batchSize) {
      throwIfAborted(options.signal, this.name);
      this.assertOpen();
      const batch = input.slice(start, start + this.options.batchSize);
      const call = this.tail.then(() => extractor(batch, { pooling: this.options.pooling, normalize: this.options.normalize }));
      this.tail = call.catch(() => {});
      let tensor: TensorLike;
      try {
        tensor = await raceAbort(call, options.signal, this.name);
      } catch (error) {
        if (error instanceof EmbeddingFailedError || (error as { code?: unknown })?.code === 'AMAS_ABORTED') throw error;
        throw new EmbeddingFailedError(
          `${this.name}: the model failed on a batch of ${batch.length} texts (${error instanceof Error ? error.message : String(error)})`,
          'model-run',
          { cause: error },
        );
      }
      const rows = this.rowsOf(tensor, batch.length);
      for (let i = 0; i < rows.length; i++) out.push(toUnitRow(rows[i], this.dims, this.name, start + i));
    }
    return out;
  }

  /** Splits a [n, d] tensor into n rows; learns `dimensions` from the first one. */
  private rowsOf(tensor: TensorLike, count: number): ArrayLike<number>[] {
    const dims = tensor?.dims;
    const data = tensor?.data;
    if (!Array.isArray(dims) || dims.length !== 2 || dims[0] !== count || !(dims[1] > 0) || !data || data.length !== count * dims[1]) {
      throw new EmbeddingFailedError(
        `${this.name}: expected a [${count}, d] tensor from the feature-extraction pipeline, received dims ${JSON.stringify(dims)}`,
        'malformed-response',
      );
    }
    const d = dims[1];
    if (this.dims === 0) this.dims = d;
    const rows: ArrayLike<number>[] = [];
    for (let i = 0; i < count; i++) rows.push(Array.prototype.slice.call(data, i * d, (i + 1) * d) as number[]);
    return rows;
  }

  private assertOpen(): void {
    if (this.closed) throw new EmbeddingFailedError(`${this.name}: the embedder is closed`, 'closed');
  }

  /** Releases the pipeline (its ONNX session) when it was loaded. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const loading = this.loading;
    this.loading = undefined;
    if (loading) {
      const extractor = await loading.catch(() => undefined);
      await extractor?.dispose?.();
    }
  }
}
