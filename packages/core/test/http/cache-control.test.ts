import { describe, expect, it } from 'vitest';
import { isStorableResponse, parseCacheControl, type CacheControl, type NotStorableReason, type ResponseHeaders } from '../../src/http/cache-control.js';
import { seededRandom } from '../helpers.js';

const NONE: CacheControl = {
  noCache: false,
  noStore: false,
  private: false,
  public: false,
  mustRevalidate: false,
  proxyRevalidate: false,
  noTransform: false,
  onlyIfCached: false,
  immutable: false,
};

describe('parseCacheControl', () => {
  const cases: Array<[string | string[] | undefined, Partial<CacheControl>]> = [
    [undefined, {}],
    ['', {}],
    [[], {}],
    ['no-cache', { noCache: true }],
    ['no-store', { noStore: true }],
    ['private', { private: true }],
    ['public', { public: true }],
    ['must-revalidate', { mustRevalidate: true }],
    ['proxy-revalidate', { proxyRevalidate: true }],
    ['no-transform', { noTransform: true }],
    ['only-if-cached', { onlyIfCached: true }],
    ['immutable', { immutable: true }],
    ['max-age=60', { maxAge: 60 }],
    ['s-maxage=300', { sMaxAge: 300 }],
    ['stale-while-revalidate=30', { staleWhileRevalidate: 30 }],
    ['stale-if-error=86400', { staleIfError: 86400 }],
    ['max-stale=10', { maxStale: 10 }],
    ['max-stale', { maxStale: Infinity }],
    ['min-fresh=5', { minFresh: 5 }],
    ['max-age=0', { maxAge: 0 }],
    ['public, max-age=60, s-maxage=120, stale-while-revalidate=30', { public: true, maxAge: 60, sMaxAge: 120, staleWhileRevalidate: 30 }],
    ['private, no-cache, no-store, must-revalidate', { private: true, noCache: true, noStore: true, mustRevalidate: true }],
    // Case and whitespace.
    ['MAX-AGE=60, No-Store', { maxAge: 60, noStore: true }],
    ['  max-age = 60 ,  public  ', { maxAge: 60, public: true }],
    ['\tmax-age=60\t', { maxAge: 60 }],
    // Quoted values, including commas inside quotes and escapes.
    ['max-age="60"', { maxAge: 60 }],
    ['no-cache="Set-Cookie, X-Foo", max-age=10', { noCache: true, maxAge: 10 }],
    ['private="Authorization", public', { private: true, public: true }],
    ['ext="a\\"b,c", max-age=5', { maxAge: 5 }],
    ['ext="a\\\\", max-age=5', { maxAge: 5 }],
    // Several header lines are one list.
    [['max-age=60', 'no-store'], { maxAge: 60, noStore: true }],
    // Repeats: the most restrictive value wins.
    ['max-age=60, max-age=10', { maxAge: 10 }],
    ['max-age=10, max-age=60', { maxAge: 10 }],
    ['s-maxage=5, s-maxage=50', { sMaxAge: 5 }],
    ['stale-while-revalidate=50, stale-while-revalidate=5', { staleWhileRevalidate: 5 }],
    ['stale-if-error=9, stale-if-error=90', { staleIfError: 9 }],
    ['max-stale, max-stale=5', { maxStale: 5 }],
    ['min-fresh=5, min-fresh=50', { minFresh: 50 }],
    // Bad values: a lifetime that cannot be read is 0 (stale); an extension that cannot be read is ignored.
    ['max-age=abc', { maxAge: 0 }],
    ['max-age=', { maxAge: 0 }],
    ['max-age', { maxAge: 0 }],
    ['max-age=-1', { maxAge: 0 }],
    ['max-age=1.5', { maxAge: 0 }],
    ['max-age=60s', { maxAge: 0 }],
    ['max-age=6 0', { maxAge: 0 }],
    ['max-age="60', { maxAge: 0 }],
    ['max-age="60"x', { maxAge: 0 }],
    ['max-age=60, max-age=oops', { maxAge: 0 }],
    ['s-maxage=x', { sMaxAge: 0 }],
    ['stale-while-revalidate=x', {}],
    ['stale-while-revalidate', {}],
    ['stale-if-error=-5', {}],
    ['max-stale=x', {}],
    ['min-fresh=x', {}],
    ['stale-while-revalidate=x, stale-while-revalidate=7', { staleWhileRevalidate: 7 }],
    // Huge numbers are capped at 2^31 (RFC 9111 §1.2.2).
    ['max-age=99999999999999999999999', { maxAge: 2 ** 31 }],
    ['max-age=2147483647', { maxAge: 2147483647 }],
    // Flags with arguments they do not take still count.
    ['no-store=1', { noStore: true }],
    // Garbage is skipped; what can be read still counts.
    [',,,', {}],
    ['=60', {}],
    ['max age=60', {}],
    ['"max-age=60"', {}],
    ['max-age=60;public', { maxAge: 0 }],
    ['garbage, max-age=60, ???', { maxAge: 60 }],
    ['unknown-directive=1, public', { public: true }],
    ['__proto__=1, constructor, toString=2, public', { public: true }],
  ];
  it.each(cases)('%j', (header, expected) => {
    expect(parseCacheControl(header)).toEqual({ ...NONE, ...expected });
  });

  it('never throws on garbage', () => {
    const random = seededRandom(11);
    const alphabet = 'max-age=0123456789,"\\ \tpublicno-storeprivate;=*\u0000😀';
    for (let n = 0; n < 3000; n++) {
      const length = Math.floor(random() * 60);
      let header = '';
      for (let i = 0; i < length; i++) header += alphabet[Math.floor(random() * alphabet.length)];
      const parsed = parseCacheControl(header);
      expect(typeof parsed.noStore).toBe('boolean');
      for (const value of [parsed.maxAge, parsed.sMaxAge, parsed.staleWhileRevalidate, parsed.staleIfError]) {
        if (value !== undefined) expect(value >= 0 && value <= 2 ** 31, header).toBe(true);
      }
    }
    for (const odd of [42, {}, null, [1, null], () => 'public']) {
      expect(parseCacheControl(odd as unknown as string)).toEqual(NONE);
    }
    expect(({} as Record<string, unknown>).public).toBeUndefined();
  });

  it('parses a long header in linear time', () => {
    const header = `${'x-ext="a,b", '.repeat(50_000)}max-age=7`;
    expect(parseCacheControl(header).maxAge).toBe(7);
    // An unterminated quote swallows the rest of the header (it is one broken member).
    expect(parseCacheControl(`ext="${'a, '.repeat(50_000)}, max-age=7`).maxAge).toBeUndefined();
  });
});

describe('isStorableResponse', () => {
  const cases: Array<[number, ResponseHeaders, NotStorableReason | undefined]> = [
    [200, {}, undefined],
    [203, {}, undefined],
    [204, {}, undefined],
    [200, { 'cache-control': 'public, max-age=60' }, undefined],
    [200, { 'cache-control': 'max-age=0' }, undefined],
    [200, { vary: 'Accept-Encoding, Accept-Language' }, undefined],
    [200, { 'content-type': 'application/json', 'content-length': 10 }, undefined],
    [200, { 'set-cookie': [] }, undefined],
    // Statuses.
    [201, {}, 'status'],
    [202, {}, 'status'],
    [205, {}, 'status'],
    [206, {}, 'status'],
    [207, {}, 'status'],
    [226, {}, 'status'],
    [301, {}, 'status'],
    [304, {}, 'status'],
    [404, {}, 'status'],
    [500, {}, 'status'],
    [503, {}, 'status'],
    [0, {}, 'status'],
    [200.5, {}, 'status'],
    [Number.NaN, {}, 'status'],
    // Cache-Control.
    [200, { 'cache-control': 'no-store' }, 'no-store'],
    [200, { 'cache-control': 'private, max-age=60' }, 'private'],
    [200, { 'cache-control': 'public, private' }, 'private'],
    [200, { 'cache-control': 'private="Set-Cookie"' }, 'private'],
    [200, { 'cache-control': 'no-cache' }, 'no-cache'],
    [200, { 'cache-control': 'no-cache="set-cookie"' }, 'no-cache'],
    [200, { 'Cache-Control': 'No-Store' }, 'no-store'],
    [200, { 'cache-control': ['public', 'no-store'] }, 'no-store'],
    // Cookies.
    [200, { 'set-cookie': 'sid=1; HttpOnly' }, 'set-cookie'],
    [200, { 'set-cookie': ['a=1', 'b=2'] }, 'set-cookie'],
    [200, { 'Set-Cookie': 'sid=1' }, 'set-cookie'],
    [200, { 'set-cookie': '' }, 'set-cookie'],
    // Vary.
    [200, { vary: '*' }, 'vary-star'],
    [200, { vary: 'Accept-Encoding, *' }, 'vary-star'],
    [200, { Vary: ' * ' }, 'vary-star'],
    [200, { vary: ['accept', '*'] }, 'vary-star'],
    // The first failing check is the reason.
    [500, { 'cache-control': 'no-store', 'set-cookie': 'a=1' }, 'status'],
    [200, { 'cache-control': 'private, no-store', 'set-cookie': 'a=1', vary: '*' }, 'no-store'],
    [200, { 'set-cookie': 'a=1', vary: '*' }, 'set-cookie'],
  ];
  it.each(cases)('%s with %j -> %j', (status, headers, reason) => {
    const verdict = isStorableResponse({ status, headers });
    expect(verdict.storable).toBe(reason === undefined);
    expect(verdict.reason).toBe(reason);
  });

  it('hands back the parsed Cache-Control for the TTL', () => {
    const verdict = isStorableResponse({ status: 200, headers: { 'Cache-Control': 'public, s-maxage=120, max-age=60' } });
    expect(verdict).toEqual({ storable: true, cacheControl: { ...NONE, public: true, sMaxAge: 120, maxAge: 60 } });
  });

  it('combines two spellings of one header', () => {
    expect(isStorableResponse({ status: 200, headers: { 'cache-control': 'public', 'Cache-Control': 'no-store' } }).reason).toBe('no-store');
  });

  it('tolerates odd header values', () => {
    expect(isStorableResponse({ status: 200, headers: { 'cache-control': undefined, vary: undefined, 'set-cookie': undefined } }).storable).toBe(true);
    expect(isStorableResponse({ status: 200, headers: { 'cache-control': 42, vary: 7 } }).storable).toBe(true);
    expect(isStorableResponse({ status: 200, headers: null as unknown as ResponseHeaders }).storable).toBe(true);
  });
});
