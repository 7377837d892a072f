/** Small deterministic helpers: a seeded PRNG and a string hash (no crypto needed for a mock). */
import { seededRandom } from '@amas/core';

/** mulberry32 (AMAS core's seeded PRNG): fast, 32-bit state, good enough for jitter and failure draws. Returns [0, 1). */
export const createPrng: (seed: number) => () => number = seededRandom;

/** FNV-1a over UTF-16 code units. */
export function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
