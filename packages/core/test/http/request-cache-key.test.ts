import { describe, expect, it } from 'vitest';
import { requestCacheKey, requestCacheKeyMaterial, type RequestKeyParts } from '../../src/http/request-cache-key.js';

const base: RequestKeyParts = { method: 'GET', url: '/v1/models', identity: 'user:1' };
const key = (parts: Partial<RequestKeyParts>) => requestCacheKey({ ...base, ...parts });
const post = (body: unknown, extra: Partial<RequestKeyParts> = {}) => key({ method: 'POST', url: '/v1/chat', body, ...extra });
const chat = { model: 'gpt-x', messages: [{ role: 'user', content: 'hi' }], temperature: 0 };

describe('requestCacheKey', () => {
  it('is a 64-character sha256 hex digest that holds nothing in clear', () => {
    const k = key({ url: '/users/alice@example.com?token=secret', identity: 'user:alice' });
    expect(k).toMatch(/^[0-9a-f]{64}$/);
    expect(k).not.toContain('alice');
    expect(key({})).toBe(key({}));
  });

  it('pins the normalized material (a change here invalidates every stored entry: bump the version)', () => {
    expect(
      requestCacheKeyMaterial({
        method: 'head',
        url: '/p?b=2&a=1&fields=id',
        body: undefined,
        identity: 'user:1',
        varyHeaders: { 'Accept-Language': ' en ' },
      }),
    ).toBe('["amas-request-key-1","GET","/p",[["a","1"],["b","2"]],null,"user:1",[["accept-language","en"]]]');
  });

  const same: Array<[string, Partial<RequestKeyParts>, Partial<RequestKeyParts>]> = [
    ['HEAD is keyed as GET', { method: 'HEAD' }, { method: 'GET' }],
    ['method case', { method: 'get' }, { method: 'GET' }],
    ['query order', { url: '/p?a=1&b=2' }, { url: '/p?b=2&a=1' }],
    ['query order with repeats kept relative', { url: '/p?a=1&b=x&a=2' }, { url: '/p?b=x&a=1&a=2' }],
    ['fields is always dropped', { url: '/p?a=1&fields=id,name' }, { url: '/p?a=1' }],
    ['fields dropped when repeated', { url: '/p?fields=a&fields=b' }, { url: '/p' }],
    ['excludeQuery drops names', { url: '/p?_=123&a=1', excludeQuery: ['_'] }, { url: '/p?a=1' }],
    ['an empty query is no query', { url: '/p?' }, { url: '/p' }],
    ['+ and %20 are the same space', { url: '/p?q=a+b' }, { url: '/p?q=a%20b' }],
    ['percent-encoding of names and values', { url: '/p?%61=%31' }, { url: '/p?a=1' }],
    ['a name without = is an empty value', { url: '/p?a' }, { url: '/p?a=' }],
    ['fragments are dropped', { url: '/p?a=1#frag' }, { url: '/p?a=1' }],
    ['vary names are lower-cased, values trimmed', { varyHeaders: { 'Accept-Language': ' en-GB ' } }, { varyHeaders: { 'accept-language': 'en-GB' } }],
    ['vary order', { varyHeaders: { a: '1', b: '2' } }, { varyHeaders: { b: '2', a: '1' } }],
    ['vary arrays are joined', { varyHeaders: { accept: ['a', ' b'] } }, { varyHeaders: { accept: 'a, b' } }],
    ['no vary map is an empty one', { varyHeaders: {} }, {}],
    ['undefined body is no body', { method: 'POST', body: undefined }, { method: 'POST', body: '' }],
    ['null body is no body', { method: 'POST', body: null }, { method: 'POST', body: Buffer.alloc(0) }],
    ['excluding a field that is absent', { method: 'POST', body: { a: 1 }, excludeBodyFields: ['b.c'] }, { method: 'POST', body: { a: 1 } }],
  ];
  it.each(same)('same key: %s', (_label, a, b) => {
    expect(key(a)).toBe(key(b));
  });

  const different: Array<[string, Partial<RequestKeyParts>, Partial<RequestKeyParts>]> = [
    ['method', { method: 'GET' }, { method: 'POST' }],
    ['path', { url: '/a' }, { url: '/b' }],
    ['path case', { url: '/A' }, { url: '/a' }],
    ['trailing slash', { url: '/a/' }, { url: '/a' }],
    ['path encoding is kept as sent', { url: '/a%20b' }, { url: '/a b' }],
    ['query value', { url: '/p?a=1' }, { url: '/p?a=2' }],
    ['repeated values order', { url: '/p?a=1&a=2' }, { url: '/p?a=2&a=1' }],
    ['query name case', { url: '/p?A=1' }, { url: '/p?a=1' }],
    ['excludeQuery is exact', { url: '/p?Fields=1' }, { url: '/p' }],
    ['concatenation: path vs query', { url: '/ab?=1' }, { url: '/a?b=1' }],
    ['concatenation: name vs value', { url: '/p?ab=' }, { url: '/p?a=b' }],
    ['concatenation: & inside a value', { url: '/p?a=1%26b%3D2' }, { url: '/p?a=1&b=2' }],
    ['identity', { identity: 'user:1' }, { identity: 'user:2' }],
    ['identity undefined vs "null"', { identity: undefined }, { identity: 'null' }],
    ['identity undefined vs empty', { identity: undefined }, { identity: '' }],
    ['identity vs path (concatenation)', { identity: 'a', url: '/p' }, { identity: '', url: 'a/p' }],
    ['vary value', { varyHeaders: { 'accept-language': 'en' } }, { varyHeaders: { 'accept-language': 'fr' } }],
    ['vary absent vs empty', { varyHeaders: { 'accept-language': undefined } }, { varyHeaders: { 'accept-language': '' } }],
    ['vary listed vs not listed', { varyHeaders: { 'accept-language': undefined } }, {}],
    ['vary name vs value (concatenation)', { varyHeaders: { ab: 'c' } }, { varyHeaders: { a: 'bc' } }],
    ['vary vs identity', { identity: 'x', varyHeaders: {} }, { identity: undefined, varyHeaders: { x: '' } }],
    ['two spellings of one vary header keep both values', { varyHeaders: { Accept: 'a', accept: 'b' } }, { varyHeaders: { accept: 'a' } }],
    ['body vs no body', { method: 'POST', body: { a: 1 } }, { method: 'POST' }],
    ['body value', { method: 'POST', body: { a: 1 } }, { method: 'POST', body: { a: 2 } }],
    ['body types', { method: 'POST', body: { a: 1 } }, { method: 'POST', body: { a: '1' } }],
    ['array order', { method: 'POST', body: [1, 2] }, { method: 'POST', body: [2, 1] }],
    ['json vs text with the same characters', { method: 'POST', body: '"hello"' }, { method: 'POST', body: 'hello' }],
  ];
  it.each(different)('different keys: %s', (_label, a, b) => {
    expect(key(a)).not.toBe(key(b));
  });

  it('never changes with whitespace or key order of a JSON body, in any form it arrives', () => {
    const reference = post(chat);
    const text = '{ "temperature":0,\n "messages":[ {"content":"hi","role":"user"} ],\t"model":"gpt-x" }';
    const forms: unknown[] = [
      { temperature: 0, model: 'gpt-x', messages: [{ content: 'hi', role: 'user' }] },
      JSON.stringify(chat),
      text,
      Buffer.from(text),
      new Uint8Array(Buffer.from(text)),
      new Uint8Array(Buffer.from(text)).buffer,
      Buffer.from(`xx${text}yy`).subarray(2, 2 + Buffer.byteLength(text)),
    ];
    for (const form of forms) expect(post(form)).toBe(reference);
  });

  it('keys a body that is not JSON by its bytes', () => {
    expect(post('plain text')).toBe(post(Buffer.from('plain text')));
    expect(post('plain text')).not.toBe(post('plain  text'));
    expect(post(Buffer.from([0, 1, 2]))).toBe(post(new Uint8Array([0, 1, 2])));
    expect(post(Buffer.from([0, 1, 2]))).not.toBe(post(Buffer.from([0, 1, 3])));
    // JSON with a BOM is not JSON.parse-able: keyed by bytes, stable.
    expect(post(Buffer.from('\ufeff{"a":1}'))).toBe(post(Buffer.from('\ufeff{"a":1}')));
    expect(post(Buffer.from('\ufeff{"a":1}'))).not.toBe(post({ a: 1 }));
  });

  it('does not parse bytes that are not valid UTF-8, so two different bodies never decode alike', () => {
    // Both would decode to "\ufffd" inside a JSON string.
    const a = Buffer.from([0x22, 0xff, 0x22]);
    const b = Buffer.from([0x22, 0xfe, 0x22]);
    expect(post(a)).not.toBe(post(b));
    // Strings with different lone surrogates would encode to the same UTF-8 bytes.
    expect(post('x\ud800')).not.toBe(post('x\udbff'));
    expect(post('x\ud800')).not.toBe(post('x\ufffd'));
    expect(post('😀 ok')).toBe(post(Buffer.from('😀 ok')));
  });

  it('removes excludeBodyFields, including dotted paths and paths through arrays', () => {
    const withNoise = { ...chat, user: 'u-123', metadata: { request_id: 'r-1', team: 't' } };
    const without = { ...chat, metadata: { team: 't' } };
    const exclude = ['user', 'metadata.request_id'];
    expect(post(withNoise, { excludeBodyFields: exclude })).toBe(post(without));
    expect(post({ ...withNoise, user: 'u-999', metadata: { request_id: 'r-2', team: 't' } }, { excludeBodyFields: exclude })).toBe(post(without));
    expect(post(JSON.stringify(withNoise), { excludeBodyFields: exclude })).toBe(post(without));
    expect(post(Buffer.from(JSON.stringify(withNoise)), { excludeBodyFields: exclude })).toBe(post(without));
    // Not excluded: the team still counts.
    expect(post({ ...withNoise, metadata: { request_id: 'r-1', team: 'other' } }, { excludeBodyFields: exclude })).not.toBe(post(without));
    // Through arrays, nested arrays and top-level arrays.
    const messages = (id: string) => ({ messages: [{ id, role: 'user' }, [{ id, role: 'x' }]] });
    expect(post(messages('a'), { excludeBodyFields: ['messages.id'] })).toBe(post(messages('b'), { excludeBodyFields: ['messages.id'] }));
    expect(post([{ id: 1, q: 'x' }, { id: 2, q: 'y' }], { excludeBodyFields: ['id'] })).toBe(post([{ q: 'x' }, { q: 'y' }]));
    // A whole object removed; a parent removed with its child listed too.
    expect(post({ a: { b: 1 }, c: 1 }, { excludeBodyFields: ['a', 'a.b'] })).toBe(post({ c: 1 }));
    expect(post({ a: { b: 1 }, c: 1 }, { excludeBodyFields: ['a.b', 'a'] })).toBe(post({ c: 1 }));
    // A path through a primitive or a missing key is a no-op; paths with empty segments are ignored.
    expect(post({ a: 5 }, { excludeBodyFields: ['a.b', 'x.y', '', 'a.', '.a', 'a..b'] })).toBe(post({ a: 5 }));
  });

  it('never modifies the body it is given', () => {
    const body = deepFreeze({ user: 'u', metadata: { request_id: 'r', keep: 1 }, items: [{ id: 1, v: 2 }] });
    const snapshot = structuredClone(body);
    post(body, { excludeBodyFields: ['user', 'metadata.request_id', 'items.id'] });
    expect(body).toEqual(snapshot);
  });

  it('treats __proto__, constructor and prototype in bodies and paths as plain keys', () => {
    const hostile = '{"__proto__":{"polluted":1,"keep":2},"constructor":{"prototype":{"polluted":1}},"a":1}';
    const k = post(hostile, { excludeBodyFields: ['__proto__.polluted', 'constructor.prototype.polluted'] });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(k).toBe(post('{"__proto__":{"keep":2},"constructor":{"prototype":{}},"a":1}'));
    // The own __proto__ key is part of the key (not silently dropped), and removable.
    expect(post(hostile)).not.toBe(post('{"constructor":{"prototype":{"polluted":1}},"a":1}'));
    expect(post(hostile, { excludeBodyFields: ['__proto__', 'constructor'] })).toBe(post({ a: 1 }));
    // Inherited properties are not excluded into existence, nor followed.
    expect(post({ a: 1 }, { excludeBodyFields: ['constructor.prototype', 'toString', '__proto__.x'] })).toBe(post({ a: 1 }));
    expect(Object.prototype).not.toHaveProperty('x');
  });

  it('keys a JSON body nested 100 000 deep by its bytes when it arrives as text, and refuses it parsed', () => {
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    const k = post(deep);
    expect(k).toMatch(/^[0-9a-f]{64}$/);
    expect(post(Buffer.from(deep))).toBe(k);
    expect(post(`${'['.repeat(100_000)}1${']'.repeat(100_000)}`)).not.toBe(k);
    expect(() => post(JSON.parse(deep))).toThrow(RangeError);
    expect(() => post(JSON.parse(deep))).toThrow('requestCacheKey: the body is nested too deeply to normalize; do not cache this request');
  });

  it('refuses Map and Set bodies, which would all look like {}', () => {
    expect(() => post(new Map([['a', 1]]))).toThrow(TypeError);
    expect(() => post(new Set([1]))).toThrow('requestCacheKey: cannot key a Set body; pass the parsed JSON, a string or bytes');
  });

  it('keys primitive JSON bodies by value', () => {
    expect(post(42)).toBe(post('42'));
    expect(post(42)).toBe(post(' 4.2e1 '));
    expect(post(true)).toBe(post('true'));
    expect(post(true)).not.toBe(post('"true"'));
    expect(post(false)).toBe(post('false'));
  });

  it('handles a large body and a long URL', () => {
    const big = { rows: Array.from({ length: 50_000 }, (_, i) => ({ i, s: `v${i}` })) };
    expect(post(big)).toBe(post(JSON.stringify(big)));
    const url = `/p?${Array.from({ length: 5000 }, (_, i) => `k${i % 97}=${i}`).join('&')}`;
    expect(key({ url })).toMatch(/^[0-9a-f]{64}$/);
  });
});

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
