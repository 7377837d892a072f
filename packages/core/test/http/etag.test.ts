import { describe, expect, it } from 'vitest';
import { ifNoneMatch, strongEtag, weakEtag } from '../../src/http/etag.js';
import { seededRandom } from '../helpers.js';

describe('strongEtag', () => {
  it('is a quoted base64url sha256 prefix and the length in hex (pinned: keys of stored responses use it)', () => {
    expect(strongEtag(Buffer.from('hello'))).toBe('"LPJNul-wow4m6DsqxbninhsWHlw-5"');
    expect(strongEtag(Buffer.alloc(0))).toBe('"47DEQpj8HBSa-_TImW-5JCeuQeR-0"');
    expect(strongEtag(Buffer.alloc(4096))).toMatch(/^"[A-Za-z0-9_-]{27}-1000"$/);
  });

  it('depends on every byte and nothing else', () => {
    const a = Buffer.from('{"a":1}');
    expect(strongEtag(a)).toBe(strongEtag(Buffer.from('{"a":1}')));
    expect(strongEtag(new Uint8Array(a))).toBe(strongEtag(a));
    expect(strongEtag(Buffer.from('{"a":2}'))).not.toBe(strongEtag(a));
    expect(strongEtag(Buffer.from('{"a":1} '))).not.toBe(strongEtag(a));
    const tags = new Set(Array.from({ length: 1000 }, (_, i) => strongEtag(Buffer.from(String(i)))));
    expect(tags.size).toBe(1000);
  });

  it('is a valid entity tag that If-None-Match matches', () => {
    const tag = strongEtag(Buffer.from('body'));
    expect(ifNoneMatch(tag, tag)).toBe(true);
    expect(ifNoneMatch(`W/${tag}`, tag)).toBe(true);
  });
});

describe('weakEtag', () => {
  it('adds W/ once', () => {
    expect(weakEtag('"abc"')).toBe('W/"abc"');
    expect(weakEtag('W/"abc"')).toBe('W/"abc"');
  });
});

describe('ifNoneMatch', () => {
  const tag = '"abc-3"';
  const cases: Array<[string | string[] | undefined, string | undefined, boolean]> = [
    // Exact and weak comparison.
    ['"abc-3"', tag, true],
    ['W/"abc-3"', tag, true],
    ['"abc-3"', 'W/"abc-3"', true],
    ['W/"abc-3"', 'W/"abc-3"', true],
    ['"abc-4"', tag, false],
    ['"ABC-3"', tag, false],
    ['""', '""', true],
    ['""', tag, false],
    // Lists.
    ['"x", "abc-3"', tag, true],
    ['"x","y",W/"abc-3"', tag, true],
    ['"x", "y"', tag, false],
    ['  "x" ,\t"abc-3"  ', tag, true],
    ['"x",,"abc-3"', tag, true],
    [', "abc-3" ,', tag, true],
    [['"x"', '"abc-3"'], tag, true],
    [['"x"', '"y"'], tag, false],
    // A comma inside a tag is part of the tag.
    ['"a,b"', '"a,b"', true],
    ['"a,b"', '"a"', false],
    // `*` alone matches any current representation.
    ['*', tag, true],
    [' * ', tag, true],
    ['*', undefined, false],
    // No header, no tag.
    [undefined, tag, false],
    ['', tag, false],
    [[], tag, false],
    ['"abc-3"', undefined, false],
    // Garbage: matches nothing (a full 200 is always safe).
    ['abc-3', tag, false],
    ['"abc-3', tag, false],
    ['abc-3"', tag, false],
    ['w/"abc-3"', tag, false],
    ['W/ "abc-3"', tag, false],
    ['W/abc-3', tag, false],
    ['"abc-3" "x"', tag, false],
    ['"abc-3"x', tag, false],
    ['"x", *', tag, false],
    ['*, "abc-3"', tag, false],
    ['**', tag, false],
    ['"ab c-3"', '"ab c-3"', false],
    ['"a\u0000"', '"a\u0000"', false],
    ['"a\u007f"', '"a\u007f"', false],
    ['"😀"', '"😀"', false],
    ['"abc-3", garbage', tag, false],
    // obs-text is allowed in entity tags.
    ['"caf\u00e9"', '"caf\u00e9"', true],
    // An etag argument that is not an entity tag matches nothing.
    ['"abc"', 'abc', false],
    ['*', 'abc', false],
    ['"abc"', '', false],
  ];
  it.each(cases)('If-None-Match %j vs %j -> %s', (header, etag, expected) => {
    expect(ifNoneMatch(header, etag)).toBe(expected);
  });

  it('never throws on garbage', () => {
    const random = seededRandom(3);
    const alphabet = '"W/*, \tabc-\u0000\u00ff😀\\';
    for (let n = 0; n < 3000; n++) {
      const length = Math.floor(random() * 30);
      let header = '';
      for (let i = 0; i < length; i++) header += alphabet[Math.floor(random() * alphabet.length)];
      expect(typeof ifNoneMatch(header, tag)).toBe('boolean');
    }
    for (const odd of [42, {}, null, [1, 2], () => tag]) {
      expect(ifNoneMatch(odd as unknown as string, tag)).toBe(false);
      expect(ifNoneMatch(tag, odd as unknown as string)).toBe(false);
    }
  });

  it('reads a long list in linear time', () => {
    const header = `${'"x", '.repeat(100_000)}W/"abc-3"`;
    expect(ifNoneMatch(header, tag)).toBe(true);
    expect(ifNoneMatch(`${header}, oops`, tag)).toBe(false);
  });
});
