/**
 * The default embedder with the real Universal Sentence Encoder lite model (no mocks of the model). The
 * load-once test runs first in this file: vitest runs each file in its own process, so the module-level
 * shared model starts unloaded here.
 */
import { performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { AbortedError, AmasError } from '../../src/errors.js';
import { cosine, EmbeddingFailedError, EmbeddingInputError, normalize } from '../../src/semantic/embedder.js';
import {
  defaultUseModelLoader,
  UniversalSentenceEncoderEmbedder,
  useModelLoadStats,
  type UseModel,
} from '../../src/semantic/use-embedder.js';
import { invalidOption } from '../helpers.js';

const norm = (v: Float32Array) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

describe('UniversalSentenceEncoderEmbedder (real model)', () => {
  it('loads the model lazily and once for several instances, even when they start together', async () => {
    expect(useModelLoadStats()).toMatchObject({ attempts: 0, loaded: 0 });
    const a = new UniversalSentenceEncoderEmbedder();
    const b = new UniversalSentenceEncoderEmbedder({ batchSize: 4 });
    expect(useModelLoadStats().attempts).toBe(0); // nothing loads at construction
    const [ra, rb] = await Promise.all([a.embed(['hello there']), b.embed(['hello there'])]);
    expect(useModelLoadStats()).toMatchObject({ attempts: 1, loaded: 1, failures: 0 });
    const c = new UniversalSentenceEncoderEmbedder();
    await c.embed(['a third instance']);
    await c.load();
    expect(useModelLoadStats()).toMatchObject({ attempts: 1, loaded: 1 });
    expect(Array.from(ra[0])).toEqual(Array.from(rb[0]));
    console.info(`[use-lite] model load: ${useModelLoadStats().lastLoadMs.toFixed(0)} ms`);
  });

  it('returns 512-dimensional L2-normalized Float32Array rows, one per text in order', async () => {
    const e = new UniversalSentenceEncoderEmbedder();
    expect(e.name).toBe('use-lite');
    expect(e.dimensions).toBe(512);
    const texts = ['What is AI?', 'How do I bake bread?', 'The stock market fell today.'];
    const rows = await e.embed(texts);
    expect(rows).toHaveLength(3);
    for (const row of rows) {
      expect(row).toBeInstanceOf(Float32Array);
      expect(row.length).toBe(512);
      expect(Math.abs(norm(row) - 1)).toBeLessThan(1e-5);
    }
    // Order: each row equals the row of the same text embedded alone.
    for (let i = 0; i < texts.length; i++) {
      const [alone] = await e.embed([texts[i]]);
      expect(cosine(alone, rows[i])).toBeGreaterThan(0.9999);
    }
  });

  it('gives real semantic relationships: same > near-duplicate > paraphrase > unrelated', async () => {
    const e = new UniversalSentenceEncoderEmbedder();
    const [ai, aiAgain, nearDup, paraphrase, bread] = await e.embed([
      'What is AI?',
      'What is AI?',
      'What is AI ?',
      'Can you explain artificial intelligence?',
      'How do I bake bread?',
    ]);
    const same = cosine(ai, aiAgain);
    const near = cosine(ai, nearDup);
    const para = cosine(ai, paraphrase);
    const unrelated = cosine(ai, bread);
    console.info(`[use-lite] cos same=${same.toFixed(4)} near-dup=${near.toFixed(4)} paraphrase=${para.toFixed(4)} unrelated=${unrelated.toFixed(4)}`);
    expect(same).toBeCloseTo(1, 5);
    expect(near).toBeGreaterThan(0.95);
    expect(para).toBeLessThan(near);
    expect(para).toBeGreaterThan(0.5); // a plausible paraphrase, clearly related
    expect(unrelated).toBeLessThan(0.35);
    expect(para - unrelated).toBeGreaterThan(0.25);
    expect(cosine(paraphrase, bread)).toBeLessThan(para);
  });

  it('splits large inputs into model calls of at most batchSize texts, with the same rows', async () => {
    const texts = Array.from({ length: 10 }, (_, i) => `Sentence number ${i} about a different topic ${i * 7}.`);
    const small = new UniversalSentenceEncoderEmbedder({ batchSize: 4 });
    const big = new UniversalSentenceEncoderEmbedder();
    const a = await small.embed(texts);
    const b = await big.embed(texts);
    expect(small.stats()).toMatchObject({ texts: 10, modelCalls: 3 });
    expect(big.stats()).toMatchObject({ texts: 10, modelCalls: 1 });
    for (let i = 0; i < texts.length; i++) expect(cosine(a[i], b[i])).toBeGreaterThan(0.9999);
  });

  it('resolves [] for an empty array without calling the model', async () => {
    let calls = 0;
    const loader = async (): Promise<UseModel> => {
      calls++;
      return defaultUseModelLoader();
    };
    const e = new UniversalSentenceEncoderEmbedder({ loader });
    expect(await e.embed([])).toEqual([]);
    expect(calls).toBe(0);
    expect(e.stats().modelCalls).toBe(0);
  });

  it('rejects empty, whitespace-only and non-string texts with EmbeddingInputError before any model work', async () => {
    const e = new UniversalSentenceEncoderEmbedder();
    const before = e.stats().modelCalls;
    const cases: [unknown, RegExp][] = [
      [[''], /texts\[0\] is an empty string/],
      [['ok', '   \n'], /texts\[1\] is only whitespace/],
      [['ok', 42], /texts\[1\] must be a string, received 42/],
      [[null], /texts\[0\] must be a string, received null/],
      ['just a string', /expects an array of strings, received "just a string"/],
      [undefined, /expects an array of strings, received undefined/],
    ];
    for (const [input, message] of cases) {
      const error = await e.embed(input as string[]).catch((err: unknown) => err);
      expect(error, String(input)).toBeInstanceOf(EmbeddingInputError);
      expect(error).toBeInstanceOf(AmasError);
      expect((error as EmbeddingInputError).status).toBe(400);
      expect((error as Error).message).toMatch(message);
      expect((error as Error).message).toMatch(/^use-lite: /);
    }
    expect(e.stats().modelCalls).toBe(before);
  });

  it('a failed load rejects with a clear error and is retried by the next call', async () => {
    let attempts = 0;
    const flaky = async (): Promise<UseModel> => {
      attempts++;
      if (attempts === 1) throw new Error('disk read failed');
      return defaultUseModelLoader();
    };
    const e = new UniversalSentenceEncoderEmbedder({ loader: flaky });
    const statsBefore = useModelLoadStats();
    const error = await e.embed(['first try']).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(EmbeddingFailedError);
    expect((error as EmbeddingFailedError).reason).toBe('model-load');
    expect((error as Error).message).toMatch(/use-lite: the Universal Sentence Encoder model could not be loaded \(disk read failed\)/);
    expect((error as Error).message).toMatch(/next call tries again/);
    const rows = await e.embed(['second try']);
    expect(rows[0].length).toBe(512);
    expect(attempts).toBe(2);
    const statsAfter = useModelLoadStats();
    expect(statsAfter.failures - statsBefore.failures).toBe(1);
    expect(statsAfter.loaded - statsBefore.loaded).toBe(1);
  });

  it('a loader returning something that is not a model fails clearly', async () => {
    const e = new UniversalSentenceEncoderEmbedder({ loader: async () => ({}) as UseModel });
    await expect(e.embed(['x'])).rejects.toThrow(/could not be loaded \(the loader did not return a model with an embed\(\) method\)/);
  });

  it('honours an aborted signal and rejects after close', async () => {
    const e = new UniversalSentenceEncoderEmbedder();
    const controller = new AbortController();
    controller.abort(new Error('client went away'));
    await expect(e.embed(['x'], { signal: controller.signal })).rejects.toBeInstanceOf(AbortedError);
    await e.close();
    await e.close();
    const error = await e.embed(['x']).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(EmbeddingFailedError);
    expect((error as EmbeddingFailedError).reason).toBe('closed');
    // Other instances keep the shared model.
    expect((await new UniversalSentenceEncoderEmbedder().embed(['still works']))[0].length).toBe(512);
  });

  it('validates options at construction', () => {
    const bad = invalidOption(() => new UniversalSentenceEncoderEmbedder({ batchSize: 0 }));
    expect(bad.message).toMatch(/batchSize: expected a number >= 1, received 0/);
    expect(invalidOption(() => new UniversalSentenceEncoderEmbedder({ batchSize: 2.5 })).message).toMatch(/batchSize/);
    expect(invalidOption(() => new UniversalSentenceEncoderEmbedder({ loader: 'x' as never })).message).toMatch(/loader/);
    expect(invalidOption(() => new UniversalSentenceEncoderEmbedder({ batchsize: 3 } as never)).message).toMatch(/unknown: batchsize/);
  });
});

describe('vector helpers', () => {
  it('normalize returns a unit float32 copy and refuses zero or non-finite vectors', () => {
    const v = normalize([3, 4]);
    expect(Array.from(v)).toEqual([Math.fround(0.6), Math.fround(0.8)]);
    expect(() => normalize([0, 0])).toThrow(RangeError);
    expect(() => normalize([])).toThrow(RangeError);
    expect(() => normalize([1, Number.NaN])).toThrow(RangeError);
    expect(() => normalize([Infinity, 1])).toThrow(RangeError);
  });

  it('cosine is the dot product of unit rows and refuses different lengths', () => {
    const a = normalize([1, 0, 0]);
    const b = normalize([1, 1, 0]);
    expect(cosine(a, a)).toBeCloseTo(1, 6);
    expect(cosine(a, b)).toBeCloseTo(Math.SQRT1_2, 6);
    expect(cosine(a, normalize([-1, 0, 0]))).toBeCloseTo(-1, 6);
    expect(() => cosine(a, new Float32Array(2))).toThrow(/different lengths \(3 and 2\)/);
  });
});
