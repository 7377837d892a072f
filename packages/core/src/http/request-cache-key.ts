import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import { stableStringify } from '../util/stable-key.js';

/** What requestCacheKey reads from a request. */
export interface RequestKeyParts {
  method: string;
  /** Path and query as received, e.g. `/v1/chat?model=x`. */
  url: string;
  body?: unknown;
  identity: string | undefined;
  varyHeaders?: Record<string, string | readonly string[] | undefined>;
  excludeBodyFields?: readonly string[];
  excludeQuery?: readonly string[];
}

/** Bumped when normalization changes, so old entries are never read under a new meaning. */
const KEY_VERSION = 'amas-request-key-1';
const ALWAYS_EXCLUDED_QUERY = 'fields';
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * The cache key of an HTTP request: the same for requests a handler cannot tell apart, different for any two
 * it can, and different for different callers.
 *
 * The key is a sha256 hex digest (64 characters) of a JSON array of the normalized parts. JSON-encoding the
 * parts means no two different inputs can run together by concatenation (`/a` + `b=1` vs `/ab` + `=1`), and
 * hashing keeps request paths, query values and identities (which may hold emails, ids, tokens) out of Redis
 * in clear text, at a fixed length whatever the URL. Group keys by route with the cache namespace instead.
 *
 * Normalization:
 * - Method upper-cased; HEAD is keyed as GET (same representation, no body).
 * - The path (everything before `?`) is kept exactly as sent: no decoding, no case or slash folding. A
 *   `#fragment` (never sent by browsers) is dropped.
 * - Query parameters are decoded as URLSearchParams does (`+` and `%20` are both a space, as every
 *   framework's parser reads them), sorted by name; a repeated name keeps its values' relative order. The
 *   `fields` parameter is always dropped (field filtering runs after the cache, on the cached body), and so
 *   is every name in `excludeQuery` (exact, case-sensitive names, e.g. a cache-busting `_`).
 * - The body: undefined, null, `''` or zero bytes mean no body. A parsed JSON value (object, array, number,
 *   ...), or a string or bytes that parse as JSON (bytes only when valid UTF-8), is keyed by its
 *   stableStringify form after removing `excludeBodyFields`: whitespace and object key order never change
 *   the key. Anything else (text, binary) is keyed by a hash of its bytes.
 * - `excludeBodyFields` are dotted paths (`user`, `metadata.request_id`); through an array a path applies to
 *   every element (`messages.id`). A segment cannot contain a dot; a path with an empty segment is ignored.
 *   The body passed in is never modified.
 * - `identity` is part of the key, so two callers never share an entry; `undefined` is its own value.
 * - `varyHeaders`: names lower-cased and values trimmed (several values joined with `, `); a header listed
 *   with value undefined (absent from the request) differs from one sent empty.
 *
 * Throws TypeError for a Map or Set body (they would all stringify as `{}`), and RangeError for a parsed body
 * nested so deeply (thousands of levels) that normalizing it would overflow the stack; a body that arrived as
 * a string or bytes is then keyed by its bytes instead. Callers should treat a throw as "do not cache this
 * request".
 */
export function requestCacheKey(parts: RequestKeyParts): string {
  return sha256(requestCacheKeyMaterial(parts));
}

/**
 * The text requestCacheKey hashes. For tests and debugging only: it holds the path, query and identity in
 * clear, so it must not be logged or stored.
 */
export function requestCacheKeyMaterial(parts: RequestKeyParts): string {
  const method = String(parts.method).trim().toUpperCase();
  const { path, query } = splitUrl(String(parts.url), parts.excludeQuery ?? []);
  return JSON.stringify([
    KEY_VERSION,
    method === 'HEAD' ? 'GET' : method,
    path,
    query,
    bodyDigest(parts.body, parts.excludeBodyFields ?? []),
    parts.identity ?? null,
    varyPairs(parts.varyHeaders),
  ]);
}

function splitUrl(url: string, excludeQuery: readonly string[]): { path: string; query: Array<[string, string]> } {
  const hash = url.indexOf('#');
  const withoutFragment = hash === -1 ? url : url.slice(0, hash);
  const mark = withoutFragment.indexOf('?');
  if (mark === -1) return { path: withoutFragment, query: [] };
  const excluded = new Set([ALWAYS_EXCLUDED_QUERY, ...excludeQuery]);
  const query: Array<[string, string]> = [];
  for (const [name, value] of new URLSearchParams(withoutFragment.slice(mark + 1))) {
    if (!excluded.has(name)) query.push([name, value]);
  }
  // Array.prototype.sort is stable: equal names keep their order.
  query.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return { path: withoutFragment.slice(0, mark), query };
}

/** `null` (no body), `json:<hash>` (normalized JSON), or `bytes:<hash>` / `utf16:<hash>` (anything else). */
function bodyDigest(body: unknown, excludeBodyFields: readonly string[]): string | null {
  if (body === undefined || body === null) return null;
  if (typeof body === 'string') {
    if (body.length === 0) return null;
    const parsed = parseJson(body);
    // A string that is not well-formed UTF-16 (a lone surrogate) has no exact UTF-8 form: hash its code units.
    const raw = () => (!LONE_SURROGATE.test(body) ? `bytes:${sha256(Buffer.from(body, 'utf8'))}` : `utf16:${sha256(Buffer.from(body, 'utf16le'))}`);
    return parsed.ok ? jsonDigest(parsed.value, excludeBodyFields, raw) : raw();
  }
  const bytes = asBytes(body);
  if (bytes !== undefined) {
    if (bytes.length === 0) return null;
    const raw = () => `bytes:${sha256(bytes)}`;
    // Invalid UTF-8 would decode with replacement characters, so two different bodies could parse alike.
    const parsed = isUtf8(bytes) ? parseJson(bytes.toString('utf8')) : { ok: false as const };
    return parsed.ok ? jsonDigest(parsed.value, excludeBodyFields, raw) : raw();
  }
  if (body instanceof Map || body instanceof Set) {
    throw new TypeError(`requestCacheKey: cannot key a ${body instanceof Map ? 'Map' : 'Set'} body; pass the parsed JSON, a string or bytes`);
  }
  return jsonDigest(body, excludeBodyFields, undefined);
}

function jsonDigest(value: unknown, excludeBodyFields: readonly string[], raw: (() => string) | undefined): string {
  try {
    const exclusions = exclusionTree(excludeBodyFields);
    const normalized = exclusions.size > 0 ? withoutFields(value, exclusions) : value;
    return `json:${sha256(stableStringify(normalized))}`;
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    if (raw) return raw();
    throw new RangeError('requestCacheKey: the body is nested too deeply to normalize; do not cache this request', { cause: error });
  }
}

type Exclusions = Map<string, Exclusions | true>;

function exclusionTree(paths: readonly string[]): Exclusions {
  const root: Exclusions = new Map();
  for (const path of paths) {
    const segments = String(path).split('.');
    if (segments.some((segment) => segment === '')) continue;
    let node = root;
    for (let i = 0; i < segments.length; i++) {
      const name = segments[i]!;
      const existing = node.get(name);
      if (existing === true) break; // the whole parent is already removed
      if (i === segments.length - 1) {
        node.set(name, true);
        break;
      }
      const next: Exclusions = existing ?? new Map();
      node.set(name, next);
      node = next;
    }
  }
  return root;
}

/** A copy of `value` without the excluded fields; only the objects on an excluded path are copied. */
function withoutFields(value: unknown, exclusions: Exclusions): unknown {
  if (Array.isArray(value)) return value.map((item) => withoutFields(item, exclusions));
  if (!isPlainObject(value)) return value;
  let copy: Record<string, unknown> | undefined;
  for (const [name, inner] of exclusions) {
    if (!Object.hasOwn(value, name)) continue;
    copy ??= { ...value }; // spread defines own properties, so an own `__proto__` key stays an own key
    if (inner === true) delete copy[name];
    else Object.defineProperty(copy, name, { value: withoutFields(value[name], inner), enumerable: true, writable: true, configurable: true });
  }
  return copy ?? value;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function varyPairs(headers: RequestKeyParts['varyHeaders']): Array<[string, string | null]> {
  if (!headers) return [];
  const pairs: Array<[string, string | null]> = [];
  for (const [name, value] of Object.entries(headers)) {
    const text = value === undefined || value === null ? null : Array.isArray(value) ? value.map((v) => String(v).trim()).join(', ') : String(value).trim();
    pairs.push([name.trim().toLowerCase(), text]);
  }
  // Two spellings of one name (`Accept`, `accept`) both stay: sorting by value too keeps the order stable.
  return pairs.sort((a, b) => compare(a[0], b[0]) || compare(a[1] ?? '', b[1] ?? '') || (a[1] === null ? -1 : b[1] === null ? 1 : 0));
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function asBytes(body: unknown): Buffer | undefined {
  if (Buffer.isBuffer(body)) return body;
  if (ArrayBuffer.isView(body)) return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  if (body instanceof ArrayBuffer) return Buffer.from(body);
  return undefined;
}

function parseJson(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false };
  }
}

function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}
