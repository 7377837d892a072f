/**
 * TransformersEmbedder's error paths. `@huggingface/transformers` is an optional dependency that is not
 * installed here, and no machine here reaches the model hub, so the real model path is NOT tested: these
 * tests cover the missing-package error and the local-folder checks (which run before any import).
 */
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmbeddingFailedError, EmbeddingInputError } from '../../src/semantic/embedder.js';
import { checkModelFolder, localModelFolder, TransformersEmbedder } from '../../src/semantic/transformers-embedder.js';
import { invalidOption } from '../helpers.js';

let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'amas-transformers-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function failure(promise: Promise<unknown>): Promise<EmbeddingFailedError> {
  const error = await promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(EmbeddingFailedError);
  return error as EmbeddingFailedError;
}

describe('TransformersEmbedder', () => {
  it('is not installed here (this file relies on that)', async () => {
    await expect(import(/* @vite-ignore */ ['@huggingface', 'transformers'].join('/'))).rejects.toThrow();
  });

  it('a hub id without the package: a clear error saying what to install', async () => {
    const e = new TransformersEmbedder({ model: 'Xenova/all-MiniLM-L6-v2' });
    expect(e.name).toBe('transformers:Xenova/all-MiniLM-L6-v2');
    expect(e.folder).toBeUndefined();
    expect(e.dimensions).toBe(0);
    const error = await failure(e.embed(['hello']));
    expect(error.reason).toBe('missing-package');
    expect(error.message).toMatch(/the optional package @huggingface\/transformers is not installed/);
    expect(error.message).toMatch(/npm install @huggingface\/transformers/);
    expect(error.details).toMatchObject({ reason: 'missing-package', package: '@huggingface/transformers' });
    // Not cached: the next call tries again (and fails the same way here).
    expect((await failure(e.load())).reason).toBe('missing-package');
  });

  it('a local folder that does not exist: an error naming the path, before any import', async () => {
    const missing = join(root, 'no-such-model');
    const e = new TransformersEmbedder({ model: missing });
    expect(e.folder).toBe(missing);
    const error = await failure(e.embed(['hello']));
    expect(error.reason).toBe('model-files');
    expect(error.message).toContain(`no transformers.js model in ${missing}: the folder does not exist`);
    expect(error.details).toMatchObject({ path: missing });
  });

  it('a relative ./ path is resolved, and the error names the absolute folder', async () => {
    const e = new TransformersEmbedder({ model: './models/definitely-missing-minilm' });
    const abs = resolve('./models/definitely-missing-minilm');
    expect(e.folder).toBe(abs);
    expect((await failure(e.embed(['x']))).message).toContain(`no transformers.js model in ${abs}`);
  });

  it('a folder that lacks the model files: an error naming the folder and the missing files', async () => {
    const folder = join(root, 'half-copied');
    await mkdir(folder, { recursive: true });
    await writeFile(join(folder, 'config.json'), '{}');
    const error = await failure(new TransformersEmbedder({ model: folder }).embed(['hello']));
    expect(error.reason).toBe('model-files');
    expect(error.message).toContain(`no transformers.js model in ${folder}: missing tokenizer.json, onnx/*.onnx`);
    expect(error.message).toMatch(/Expected config\.json, tokenizer\.json and onnx\/model\.onnx/);
  });

  it('a path that is a file, not a folder', async () => {
    const file = join(root, 'model.onnx');
    await writeFile(file, 'not a model');
    const error = await failure(new TransformersEmbedder({ model: pathToFileURL(file).href }).embed(['x']));
    expect(error.message).toContain(`no transformers.js model in ${file}: the path is not a folder`);
  });

  it('a complete-looking folder passes the check and then reports the missing package', async () => {
    const folder = join(root, 'all-MiniLM-L6-v2');
    await mkdir(join(folder, 'onnx'), { recursive: true });
    await writeFile(join(folder, 'config.json'), '{}');
    await writeFile(join(folder, 'tokenizer.json'), '{}');
    await writeFile(join(folder, 'onnx', 'model_quantized.onnx'), '');
    await expect(checkModelFolder(folder)).resolves.toBeUndefined();
    const error = await failure(new TransformersEmbedder({ model: folder, localFilesOnly: true }).embed(['x']));
    expect(error.reason).toBe('missing-package');
  });

  it('a package that is not installed under a custom name is reported by that name', async () => {
    const e = new TransformersEmbedder({ model: 'Xenova/all-MiniLM-L6-v2', packageName: '@amas/not-a-real-transformers-build' });
    const error = await failure(e.embed(['x']));
    expect(error.message).toMatch(/optional package @amas\/not-a-real-transformers-build is not installed/);
  });

  it('tells hub ids from folders', () => {
    expect(localModelFolder('Xenova/all-MiniLM-L6-v2')).toBeUndefined();
    expect(localModelFolder('/srv/models/minilm')).toBe('/srv/models/minilm');
    expect(localModelFolder('../minilm')).toBe(resolve('../minilm'));
    expect(localModelFolder('file:///srv/models/minilm')).toBe('/srv/models/minilm');
  });

  it('bad input is rejected before loading anything; [] resolves without loading', async () => {
    const e = new TransformersEmbedder({ model: join(root, 'never-checked') });
    expect(await e.embed([])).toEqual([]);
    await expect(e.embed([''])).rejects.toBeInstanceOf(EmbeddingInputError);
    await expect(e.embed([3 as unknown as string])).rejects.toBeInstanceOf(EmbeddingInputError);
    await e.close();
    await expect(e.embed(['x'])).rejects.toMatchObject({ reason: 'closed' });
  });

  it('validates options at construction', () => {
    expect(invalidOption(() => new TransformersEmbedder({ model: '' })).message).toMatch(/model/);
    expect(invalidOption(() => new TransformersEmbedder({} as never)).message).toMatch(/model: expected string, received undefined/);
    expect(invalidOption(() => new TransformersEmbedder({ model: 'x', pooling: 'max' as never })).message).toMatch(/pooling/);
    expect(invalidOption(() => new TransformersEmbedder({ model: 'x', batchSize: 0 })).message).toMatch(/batchSize/);
  });
});
