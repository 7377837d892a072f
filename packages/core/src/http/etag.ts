import { createHash } from 'node:crypto';

/**
 * Entity tags (RFC 9110 §8.8.3) for buffered responses and the If-None-Match check that turns a repeat GET
 * into a 304.
 */

/**
 * A strong ETag for these exact bytes: `"<27 chars base64url of sha256>-<length in hex>"`; for `hello`
 * it is `"LPJNul-wow4m6DsqxbninhsWHlw-5"`. 162 bits of hash make an accidental match between two
 * bodies practically impossible; the length is a cheap extra discriminator that also helps when reading logs.
 */
export function strongEtag(body: Uint8Array): string {
  const hash = createHash('sha256').update(body).digest('base64url').slice(0, 27);
  return `"${hash}-${body.length.toString(16)}"`;
}

/**
 * The weak form of an ETag (`W/"..."`), unchanged when already weak. A strong ETag promises byte-identical
 * content, so a server that sends one body in several content codings (br, gzip, identity) but computes the
 * tag once, on the uncompressed bytes, should send the weak form with the encoded ones (as the Express
 * `compression` middleware does). If-None-Match uses weak comparison, so both forms still match.
 */
export function weakEtag(etag: string): string {
  return etag.startsWith('W/') ? etag : `W/${etag}`;
}

/**
 * True when If-None-Match matches `etag`, i.e. the client already holds this representation and a GET or
 * HEAD should be answered with 304 Not Modified (RFC 9110 §13.1.2). Uses weak comparison: `W/"x"` and `"x"`
 * match. `*` (alone) matches any current representation. Several header lines are one comma-separated list.
 *
 * A header that does not parse (a tag without quotes, a stray `*` inside a list, characters entity tags may
 * not contain) matches nothing: the worst outcome of ignoring it is a full 200, whereas a misread match would
 * send a 304 for content the client does not have. An `etag` that is not itself a valid entity tag also
 * matches nothing.
 */
export function ifNoneMatch(header: string | readonly string[] | undefined, etag: string | undefined): boolean {
  const text = typeof header === 'string' ? header : Array.isArray(header) ? header.filter((h) => typeof h === 'string').join(',') : undefined;
  if (text === undefined || typeof etag !== 'string') return false;
  const current = opaqueTag(etag.trim());
  if (current === undefined) return false;
  if (text.trim() === '*') return true;
  const tags = parseTagList(text);
  return tags !== undefined && tags.includes(current);
}

/** `W/"abc"` or `"abc"` -> `"abc"` (the opaque-tag, quotes included); undefined when not an entity tag. */
function opaqueTag(value: string): string | undefined {
  const tag = value.startsWith('W/') ? value.slice(2) : value;
  if (tag.length < 2 || tag[0] !== '"' || tag[tag.length - 1] !== '"') return undefined;
  for (let i = 1; i < tag.length - 1; i++) if (!isEtagChar(tag.charCodeAt(i))) return undefined;
  return tag;
}

/** The opaque-tags of a `#entity-tag` list; undefined when any part of it is malformed. */
function parseTagList(text: string): string[] | undefined {
  const tags: string[] = [];
  let i = 0;
  const end = text.length;
  let expectTag = true;
  while (i < end) {
    const c = text.charCodeAt(i);
    if (c === 0x20 || c === 0x09) {
      i++;
    } else if (c === 0x2c) {
      expectTag = true; // empty list elements (`"a",,"b"`) are allowed by RFC 9110 §5.6.1
      i++;
    } else {
      if (!expectTag) return undefined; // two tags without a comma between them
      let start = i;
      if (c === 0x57 && text.charCodeAt(i + 1) === 0x2f) start = i += 2; // W/
      if (text.charCodeAt(i) !== 0x22) return undefined;
      i++;
      while (i < end && isEtagChar(text.charCodeAt(i))) i++;
      if (text.charCodeAt(i) !== 0x22) return undefined;
      i++;
      tags.push(text.slice(start, i));
      expectTag = false;
    }
  }
  return tags;
}

/** etagc = %x21 / %x23-7E / obs-text (%x80-FF): visible ASCII except the double quote. */
function isEtagChar(code: number): boolean {
  return code === 0x21 || (code >= 0x23 && code <= 0x7e) || (code >= 0x80 && code <= 0xff);
}
