/**
 * Cache-Control (RFC 9111 §5.2) as a typed object, and whether a response may go into AMAS's shared cache.
 *
 * Parsing never throws. Directive names are case-insensitive; values may be tokens or quoted strings
 * (`max-age="60"` is read as 60); unknown directives and garbage members are skipped. When a directive
 * repeats, or its value is bad, the most restrictive reading wins (RFC 9111 §4.2.1: "the most restrictive
 * directive should be honored", and invalid freshness information makes a response stale):
 * - `max-age` / `s-maxage`: the smallest value; a missing or non-integer value counts as 0 (stale).
 * - `stale-while-revalidate`, `stale-if-error`, `max-stale`: the smallest value; a bad value is ignored
 *   (these only extend a lifetime, so dropping them is the restrictive choice). `max-stale` without a value
 *   is Infinity (any staleness, RFC 9111 §5.2.1.2).
 * - `min-fresh`: the largest value; a bad value is ignored.
 * - Flags (`no-store`, `private`, ...) are set by any occurrence. The field-name forms `no-cache="Set-Cookie"`
 *   and `private="Authorization"` are read as the unqualified directives, which RFC 9111 allows and which is
 *   stricter.
 * Delta-seconds above 2^31 are read as 2^31 (RFC 9111 §1.2.2).
 */
export interface CacheControl {
  noCache: boolean;
  noStore: boolean;
  private: boolean;
  public: boolean;
  maxAge?: number;
  sMaxAge?: number;
  staleWhileRevalidate?: number;
  staleIfError?: number;
  mustRevalidate: boolean;
  proxyRevalidate: boolean;
  noTransform: boolean;
  onlyIfCached: boolean;
  immutable: boolean;
  /** Request directive: how stale a response the client accepts (Infinity: any). */
  maxStale?: number;
  /** Request directive: how much freshness must remain, in seconds. */
  minFresh?: number;
}

const DELTA_SECONDS_MAX = 2 ** 31;
const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;

type Flag = 'noCache' | 'noStore' | 'private' | 'public' | 'mustRevalidate' | 'proxyRevalidate' | 'noTransform' | 'onlyIfCached' | 'immutable';

const FLAGS: ReadonlyMap<string, Flag> = new Map([
  ['no-cache', 'noCache'],
  ['no-store', 'noStore'],
  ['private', 'private'],
  ['public', 'public'],
  ['must-revalidate', 'mustRevalidate'],
  ['proxy-revalidate', 'proxyRevalidate'],
  ['no-transform', 'noTransform'],
  ['only-if-cached', 'onlyIfCached'],
  ['immutable', 'immutable'],
]);

/** Parses one or more Cache-Control header values (an array is several header lines). Never throws. */
export function parseCacheControl(header: string | readonly string[] | undefined): CacheControl {
  const result: CacheControl = {
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
  const text = typeof header === 'string' ? header : Array.isArray(header) ? header.filter((h) => typeof h === 'string').join(',') : '';
  for (const member of splitMembers(text)) {
    const eq = member.indexOf('=');
    const name = (eq === -1 ? member : member.slice(0, eq)).trim().toLowerCase();
    if (!TOKEN.test(name)) continue;
    const value = eq === -1 ? undefined : unquote(member.slice(eq + 1).trim());
    const flag = FLAGS.get(name);
    if (flag) {
      result[flag] = true;
      continue;
    }
    const seconds = value === undefined ? undefined : deltaSeconds(value);
    switch (name) {
      case 'max-age':
        result.maxAge = smallest(result.maxAge, seconds ?? 0);
        break;
      case 's-maxage':
        result.sMaxAge = smallest(result.sMaxAge, seconds ?? 0);
        break;
      case 'stale-while-revalidate':
        if (seconds !== undefined) result.staleWhileRevalidate = smallest(result.staleWhileRevalidate, seconds);
        break;
      case 'stale-if-error':
        if (seconds !== undefined) result.staleIfError = smallest(result.staleIfError, seconds);
        break;
      case 'max-stale':
        if (value === undefined) result.maxStale = smallest(result.maxStale, Infinity);
        else if (seconds !== undefined) result.maxStale = smallest(result.maxStale, seconds);
        break;
      case 'min-fresh':
        if (seconds !== undefined) result.minFresh = result.minFresh === undefined ? seconds : Math.max(result.minFresh, seconds);
        break;
    }
  }
  return result;
}

/** Why a response stays out of the cache; a small fixed set, fit for a metric label. */
export type NotStorableReason = 'status' | 'no-store' | 'private' | 'no-cache' | 'set-cookie' | 'vary-star';

export interface StorableVerdict {
  storable: boolean;
  reason?: NotStorableReason;
  /** The response's Cache-Control, parsed (callers read s-maxage / max-age from it for the TTL). */
  cacheControl: CacheControl;
}

export type ResponseHeaders = Record<string, string | readonly string[] | number | undefined>;

/**
 * Statuses a replay is correct for. 201/202 report side effects of one request, 205 asks the client to reset
 * its view, 206 is one range of a body (RFC 9111 §3.4 needs range-aware storage), 207/208/226 are
 * WebDAV/delta specifics: none of them may answer a different request.
 */
const STORABLE_STATUSES: ReadonlySet<number> = new Set([200, 203, 204]);

/**
 * Whether AMAS's shared cache may store this response. It may not when:
 * - the status is not 200, 203 or 204 (`status`);
 * - Cache-Control has `no-store` (`no-store`) or `private` (`private`): AMAS is a shared cache, even if its
 *   keys are partitioned by identity;
 * - Cache-Control has `no-cache` (`no-cache`): that requires revalidating with the origin on every use, and
 *   for AMAS the origin is the handler itself, so a stored copy could never be served;
 * - it sets a cookie (`set-cookie`): replaying one user's cookie to another, or twice, is never right;
 * - `Vary: *` (`vary-star`): no request can be known to match.
 * Header names may be in any case. Checks run in the order above; `reason` is the first that failed.
 */
export function isStorableResponse(response: { status: number; headers: ResponseHeaders }): StorableVerdict {
  const headers = lowerCased(response.headers);
  const cacheControl = parseCacheControl(asHeaderText(headers.get('cache-control')));
  const refuse = (reason: NotStorableReason): StorableVerdict => ({ storable: false, reason, cacheControl });
  if (!STORABLE_STATUSES.has(response.status)) return refuse('status');
  if (cacheControl.noStore) return refuse('no-store');
  if (cacheControl.private) return refuse('private');
  if (cacheControl.noCache) return refuse('no-cache');
  const cookie = headers.get('set-cookie');
  if (cookie !== undefined && !(Array.isArray(cookie) && cookie.length === 0)) return refuse('set-cookie');
  const vary = asHeaderText(headers.get('vary'));
  if (vary !== undefined && vary.split(',').some((name) => name.trim() === '*')) return refuse('vary-star');
  return { storable: true, cacheControl };
}

/** Splits at commas outside quoted strings; a backslash inside quotes escapes the next character. */
function splitMembers(text: string): string[] {
  const members: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (quoted) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) quoted = false;
    } else if (c === 0x22) {
      quoted = true;
    } else if (c === 0x2c) {
      members.push(text.slice(start, i));
      start = i + 1;
    }
  }
  members.push(text.slice(start));
  return members;
}

/** A quoted-string's content (escapes removed), the token as is, or undefined for a broken quoted string. */
function unquote(value: string): string | undefined {
  if (!value.startsWith('"')) return value;
  let out = '';
  for (let i = 1; i < value.length; i++) {
    const c = value[i];
    if (c === '\\') {
      i++;
      if (i < value.length) out += value[i];
    } else if (c === '"') {
      return i === value.length - 1 ? out : undefined; // text after the closing quote: not a value
    } else {
      out += c;
    }
  }
  return undefined; // never closed
}

function deltaSeconds(value: string): number | undefined {
  if (!/^\d+$/.test(value)) return undefined;
  return Math.min(Number(value), DELTA_SECONDS_MAX);
}

function smallest(current: number | undefined, next: number): number {
  return current === undefined ? next : Math.min(current, next);
}

function lowerCased(headers: ResponseHeaders): Map<string, string | readonly string[] | number> {
  const map = new Map<string, string | readonly string[] | number>();
  if (typeof headers !== 'object' || headers === null) return map;
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    const key = name.toLowerCase();
    const previous = map.get(key);
    // The same header under two spellings: keep both values, as two header lines would be.
    map.set(key, previous === undefined ? value : [...toList(previous), ...toList(value)]);
  }
  return map;
}

function toList(value: string | readonly string[] | number): string[] {
  return Array.isArray(value) ? value.map(String) : [String(value)];
}

function asHeaderText(value: string | readonly string[] | number | undefined): string | undefined {
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.map(String).join(',') : String(value);
}
