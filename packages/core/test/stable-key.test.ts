import { describe, expect, it } from 'vitest';
import { stableKey, stableStringify } from '../src/util/stable-key.js';

describe('stable keys', () => {
  it('ignore object key order at every depth', () => {
    expect(stableStringify({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: 'x' } })).toBe('{"a":{"c":"x","d":[1,{"x":1,"y":2}]},"b":1}');
    expect(stableKey({ a: 1, b: 2 })).toBe(stableKey({ b: 2, a: 1 }));
    expect(stableKey({ a: 1 })).not.toBe(stableKey({ a: 2 }));
    expect(stableKey('1')).not.toBe(stableKey(1));
  });

  it('drops undefined and functions like JSON, and rejects cycles', () => {
    expect(stableStringify({ a: undefined, b: () => 1, c: null })).toBe('{"c":null}');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => stableStringify(cyclic)).toThrow(/circular/);
    const shared = { x: 1 };
    expect(stableStringify([shared, shared])).toBe('[{"x":1},{"x":1}]');
  });
});
