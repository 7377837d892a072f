/** Deterministic embeddings: a unit-length vector seeded by a hash of the text (same text, same vector). */
import { createPrng, hashString } from './prng.js';

export function mockEmbedding(text: string, dimensions: number): number[] {
  const rand = createPrng(hashString(text));
  const vector = new Array<number>(dimensions);
  let norm = 0;
  for (let i = 0; i < dimensions; i++) {
    const v = rand() * 2 - 1;
    vector[i] = v;
    norm += v * v;
  }
  // A zero vector is practically impossible, but guard so the result is always unit length.
  if (norm === 0) {
    vector[0] = 1;
    return vector;
  }
  const scale = 1 / Math.sqrt(norm);
  for (let i = 0; i < dimensions; i++) vector[i] *= scale;
  return vector;
}

/** OpenAI's `encoding_format: 'base64'`: little-endian float32 bytes, base64-encoded. */
export function embeddingToBase64(vector: readonly number[]): string {
  const buf = Buffer.alloc(vector.length * 4);
  for (let i = 0; i < vector.length; i++) buf.writeFloatLE(vector[i], i * 4);
  return buf.toString('base64');
}
