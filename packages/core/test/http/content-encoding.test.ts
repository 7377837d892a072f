import { describe, expect, it } from 'vitest';
import { brotliCompressSync, brotliDecompressSync, constants, deflateSync, gunzipSync, gzipSync, inflateSync } from 'node:zlib';
import { InvalidOptionError } from '../../src/errors.js';
import {
  compress,
  decompress,
  DEFAULT_BROTLI_QUALITY,
  DEFAULT_COMPRESS_THRESHOLD,
  DEFAULT_ENCODINGS,
  DEFAULT_GZIP_LEVEL,
  negotiateEncoding,
  shouldCompress,
  type Encoding,
} from '../../src/http/content-encoding.js';
import { seededRandom } from '../helpers.js';

describe('negotiateEncoding', () => {
  const cases: Array<[string | string[] | undefined, Encoding | 'identity' | undefined]> = [
    // No header, an empty header, nothing we know: no coding.
    [undefined, 'identity'],
    ['', 'identity'],
    ['   ', 'identity'],
    [[], 'identity'],
    ['compress, zstd', 'identity'],
    ['identity', 'identity'],
    // Plain lists: server preference br > gzip > deflate.
    ['gzip', 'gzip'],
    ['br', 'br'],
    ['deflate', 'deflate'],
    ['gzip, deflate', 'gzip'],
    ['gzip, deflate, br', 'br'],
    ['deflate, gzip, br, zstd', 'br'],
    ['deflate, gzip', 'gzip'],
    // q-values.
    ['gzip;q=0.5, br;q=0.4', 'gzip'],
    ['br;q=0.4, gzip;q=0.5, deflate;q=0.6', 'deflate'],
    ['gzip;q=1.000, br;q=0.999', 'gzip'],
    ['br;q=0.001', 'br'],
    ['gzip;q=0.5, br;q=0.5', 'br'],
    ['br;q=0, gzip', 'gzip'],
    ['br;q=0', 'identity'],
    ['br;q=0, gzip;q=0, deflate;q=0', 'identity'],
    ['gzip;q=0.5, identity;q=1', 'identity'],
    ['gzip;q=0.5, identity;q=0.5', 'gzip'],
    ['gzip, identity;q=0.5', 'gzip'],
    // `*` stands for every coding not listed by name, identity included.
    ['*', 'br'],
    ['*;q=0.5, gzip', 'gzip'],
    ['*, br;q=0', 'gzip'],
    ['*, br;q=0, gzip;q=0', 'deflate'],
    ['gzip;q=0, *', 'br'],
    ['*;q=0.5, identity;q=0.8', 'identity'],
    ['*;q=0.5, gzip;q=0.2', 'br'],
    // Refusals: undefined means nothing is acceptable.
    ['*;q=0', undefined],
    ['identity;q=0', undefined],
    ['*;q=0, identity', 'identity'],
    ['*;q=0, identity;q=0.1', 'identity'],
    ['*;q=0, gzip', 'gzip'],
    ['identity;q=0, gzip', 'gzip'],
    ['identity;q=0, gzip;q=0', undefined],
    ['identity;q=0, *;q=0', undefined],
    ['identity;q=0, br;q=0.1', 'br'],
    // Case, whitespace, aliases, extensions.
    ['GZIP', 'gzip'],
    ['Br;Q=0.5, GZip;q=0.4', 'br'],
    ['  gzip  ;  q=0.5  ,  br ; q=0.4 ', 'gzip'],
    ['\tgzip\t', 'gzip'],
    ['x-gzip', 'gzip'],
    ['X-GZIP;q=0.9, deflate;q=0.8', 'gzip'],
    ['gzip;level=9', 'gzip'],
    ['gzip,,,,br', 'br'],
    [', , ,', 'identity'],
    // Malformed members are ignored, the rest still counts.
    ['gzip;q=2', 'identity'],
    ['gzip;q=abc', 'identity'],
    ['gzip;q=', 'identity'],
    ['gzip;q', 'identity'],
    ['gzip;q=0.5555', 'identity'],
    ['gzip;q=-1', 'identity'],
    ['gzip;q=.5', 'identity'],
    ['gzip;q=1.1', 'identity'],
    ['br;q=2, gzip', 'gzip'],
    [';q=1', 'identity'],
    ['"gzip"', 'identity'],
    ['gz ip', 'identity'],
    ['brötli, gzip', 'gzip'],
    // A coding listed twice keeps its lowest weight.
    ['gzip, gzip;q=0', 'identity'],
    ['gzip;q=0, gzip', 'identity'],
    ['br;q=0.2, gzip;q=0.5, br', 'gzip'],
    ['*, *;q=0', undefined],
    // Several header lines are one list.
    [['gzip', 'br'], 'br'],
    [['br;q=0', 'gzip;q=0.1'], 'gzip'],
    [['', 'identity;q=0'], undefined],
  ];
  it.each(cases)('%j -> %j', (header, expected) => {
    expect(negotiateEncoding(header)).toBe(expected);
  });

  const supportedCases: Array<[string, readonly Encoding[], Encoding | 'identity' | undefined]> = [
    ['br, gzip', ['gzip'], 'gzip'],
    ['br', ['gzip', 'deflate'], 'identity'],
    ['br;q=0.9, gzip', ['gzip', 'br'], 'gzip'],
    ['gzip, br', ['gzip', 'br'], 'gzip'],
    ['gzip, br', ['br', 'gzip'], 'br'],
    ['*', ['deflate'], 'deflate'],
    ['*', [], 'identity'],
    ['*;q=0', [], undefined],
    ['gzip', ['zstd' as Encoding], 'identity'],
    ['gzip, zstd', ['zstd' as Encoding, 'gzip'], 'gzip'],
  ];
  it.each(supportedCases)('%j with supported %j -> %j', (header, supported, expected) => {
    expect(negotiateEncoding(header, supported)).toBe(expected);
  });

  it('prefers br, then gzip, then deflate by default', () => {
    expect(DEFAULT_ENCODINGS).toEqual(['br', 'gzip', 'deflate']);
  });

  it('never throws on garbage and always answers one of the possible values', () => {
    const random = seededRandom(7);
    const alphabet = 'gzipbrdeflatidentyx*;,=q.0123456789 \t"\'\u0000\u00ff😀-GZIPBR';
    const possible = new Set<unknown>(['br', 'gzip', 'deflate', 'identity', undefined]);
    for (let n = 0; n < 3000; n++) {
      const length = Math.floor(random() * 40);
      let header = '';
      for (let i = 0; i < length; i++) header += alphabet[Math.floor(random() * alphabet.length)];
      expect(possible.has(negotiateEncoding(header)), header).toBe(true);
    }
    for (const odd of [42, {}, null, [1, 2], [null], Symbol.iterator, () => 'gzip']) {
      expect(negotiateEncoding(odd as unknown as string)).toBe('identity');
    }
    expect(negotiateEncoding(['gzip', 42 as unknown as string])).toBe('gzip');
  });

  it('handles a header with 100 000 members in linear time', () => {
    const header = `${'zstd;q=0.1, '.repeat(100_000)}gzip;q=0.2`;
    expect(negotiateEncoding(header)).toBe('gzip');
  });
});

describe('compress / decompress', () => {
  const text = Buffer.from(JSON.stringify({ choices: Array.from({ length: 200 }, (_, i) => ({ index: i, text: 'The quick brown fox jumps over the lazy dog.' })) }));

  it.each<Encoding>(['br', 'gzip', 'deflate'])('%s round-trips and actually shrinks text', async (encoding) => {
    const packed = await compress(text, encoding);
    expect(packed.length).toBeLessThan(text.length / 5);
    expect((await decompress(packed, encoding)).equals(text)).toBe(true);
  });

  it('produces the standard formats other tools read', async () => {
    const gz = await compress(text, 'gzip');
    expect([...gz.subarray(0, 2)]).toEqual([0x1f, 0x8b]);
    expect(gunzipSync(gz).equals(text)).toBe(true);
    // `deflate` is the zlib format (RFC 1950), as the content coding is defined, not raw deflate.
    const zl = await compress(text, 'deflate');
    expect(zl[0]).toBe(0x78);
    expect(inflateSync(zl).equals(text)).toBe(true);
    expect(brotliDecompressSync(await compress(text, 'br')).equals(text)).toBe(true);
  });

  it('uses brotli quality 4 in text mode and gzip level 6 by default', async () => {
    expect([DEFAULT_BROTLI_QUALITY, DEFAULT_GZIP_LEVEL]).toEqual([4, 6]);
    const br = brotliCompressSync(text, {
      params: {
        [constants.BROTLI_PARAM_QUALITY]: 4,
        [constants.BROTLI_PARAM_MODE]: constants.BROTLI_MODE_TEXT,
        [constants.BROTLI_PARAM_SIZE_HINT]: text.length,
      },
    });
    expect((await compress(text, 'br')).equals(br)).toBe(true);
    expect((await compress(text, 'gzip')).equals(gzipSync(text, { level: 6 }))).toBe(true);
    expect((await compress(text, 'deflate')).equals(deflateSync(text, { level: 6 }))).toBe(true);
  });

  it('takes brotli quality and gzip level options', async () => {
    const fast = await compress(text, 'br', { brotliQuality: 0 });
    const best = await compress(text, 'br', { brotliQuality: 11 });
    expect(best.length).toBeLessThan(fast.length);
    expect((await decompress(best, 'br')).equals(text)).toBe(true);
    const stored = await compress(text, 'gzip', { gzipLevel: 0 });
    expect(stored.length).toBeGreaterThan(text.length);
    expect((await compress(text, 'deflate', { gzipLevel: 9 })).equals(deflateSync(text, { level: 9 }))).toBe(true);
  });

  it.each<[Encoding, { brotliQuality?: number; gzipLevel?: number }, string]>([
    ['br', { brotliQuality: 12 }, 'brotliQuality'],
    ['br', { brotliQuality: -1 }, 'brotliQuality'],
    ['br', { brotliQuality: 4.5 }, 'brotliQuality'],
    ['gzip', { gzipLevel: 10 }, 'gzipLevel'],
    ['deflate', { gzipLevel: -1 }, 'gzipLevel'],
  ])('%s rejects the options %j naming %s', async (encoding, options, name) => {
    const error = await compress(text, encoding, options).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect((error as InvalidOptionError).issues[0]!.path).toBe(name);
  });

  it('passes identity through and handles an empty body', async () => {
    expect(await compress(text, 'identity')).toBe(text);
    expect(await decompress(text, 'identity')).toBe(text);
    for (const encoding of ['br', 'gzip', 'deflate'] as const) {
      expect((await decompress(await compress(Buffer.alloc(0), encoding), encoding)).length).toBe(0);
    }
  });

  it('rejects an unknown encoding and corrupt input', async () => {
    await expect(compress(text, 'zstd' as Encoding)).rejects.toThrow(new TypeError('compress: unknown encoding "zstd"'));
    await expect(decompress(text, 'zstd' as Encoding)).rejects.toThrow(new TypeError('decompress: unknown encoding "zstd"'));
    for (const encoding of ['br', 'gzip', 'deflate'] as const) {
      await expect(decompress(Buffer.from('not compressed at all'), encoding)).rejects.toBeInstanceOf(Error);
    }
  });

  it('stops a decompression bomb at maxOutputLength', async () => {
    const bomb = gzipSync(Buffer.alloc(10 * 1024 * 1024));
    expect(bomb.length).toBeLessThan(20_000);
    const error = await decompress(bomb, 'gzip', { maxOutputLength: 1024 * 1024 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RangeError);
    expect((error as { code?: string }).code).toBe('ERR_BUFFER_TOO_LARGE');
    const brBomb = await compress(Buffer.alloc(10 * 1024 * 1024), 'br');
    await expect(decompress(brBomb, 'br', { maxOutputLength: 1024 })).rejects.toBeInstanceOf(RangeError);
    expect((await decompress(bomb, 'gzip', { maxOutputLength: 10 * 1024 * 1024 })).length).toBe(10 * 1024 * 1024);
  });
});

describe('shouldCompress', () => {
  const big = 4096;
  const cases: Array<[string | undefined, boolean]> = [
    ['text/plain', true],
    ['text/html; charset=utf-8', true],
    ['text/css', true],
    ['text/csv', true],
    ['text/javascript', true],
    ['TEXT/PLAIN', true],
    [' application/json ; charset=utf-8', true],
    ['application/json', true],
    ['application/x-ndjson', true],
    ['application/problem+json', true],
    ['application/vnd.api+json', true],
    ['application/ld+json', true],
    ['application/javascript', true],
    ['application/xml', true],
    ['application/atom+xml', true],
    ['application/rss+xml', true],
    ['image/svg+xml', true],
    ['application/xhtml+xml', true],
    // Server-sent events: each event must reach the client when written.
    ['text/event-stream', false],
    // Binary or already compressed.
    ['image/png', false],
    ['image/jpeg', false],
    ['image/webp', false],
    ['audio/mpeg', false],
    ['video/mp4', false],
    ['application/zip', false],
    ['application/gzip', false],
    ['application/x-brotli', false],
    ['application/pdf', false],
    ['application/octet-stream', false],
    ['font/woff2', false],
    ['application/jsonx', false],
    ['', false],
    [undefined, false],
    ['json', false],
  ];
  it.each(cases)('%j -> %j', (contentType, expected) => {
    expect(shouldCompress(contentType, big)).toBe(expected);
  });

  it('compresses from the threshold up (1024 bytes by default)', () => {
    expect(DEFAULT_COMPRESS_THRESHOLD).toBe(1024);
    expect(shouldCompress('application/json', 1023)).toBe(false);
    expect(shouldCompress('application/json', 1024)).toBe(true);
    expect(shouldCompress('application/json', 99, 100)).toBe(false);
    expect(shouldCompress('application/json', 100, 100)).toBe(true);
    expect(shouldCompress('application/json', 0, 0)).toBe(true);
  });

  it('does not compress a body of unknown size or one that already has a content coding', () => {
    expect(shouldCompress('application/json', undefined)).toBe(false);
    expect(shouldCompress('application/json', Number.NaN)).toBe(false);
    expect(shouldCompress('application/json', Infinity)).toBe(false);
    expect(shouldCompress('application/json', big, 1024, 'gzip')).toBe(false);
    expect(shouldCompress('application/json', big, 1024, 'br')).toBe(false);
    expect(shouldCompress('application/json', big, 1024, 'identity')).toBe(true);
    expect(shouldCompress('application/json', big, 1024, ' Identity ')).toBe(true);
    expect(shouldCompress('application/json', big, 1024, '')).toBe(true);
  });
});
