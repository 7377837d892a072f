import { isIP } from 'node:net';
import { headerValue, type NeutralRequest } from './neutral-request.js';

export type IdentityFn = (req: NeutralRequest) => string | number | undefined | null;

export interface IdentityOptions {
  /** A custom key function; its result wins when it returns a non-empty value. */
  identity?: IdentityFn;
  /**
   * Whether to believe `X-Forwarded-For`. false (default): the socket address only. true: the left-most
   * address. A number n: the n-th address from the right (n trusted proxies in front of the app).
   */
  trustProxy?: boolean | number;
}

const MAX_ID_LENGTH = 200;

/**
 * Who is calling: `user:<id>` when the adapter exposes an authenticated user, else `key:<custom>`, else
 * `ip:<address>` (IPv6 masked to /64 so one client cannot rotate through its prefix), else `anonymous`.
 * Never throws: a custom function that throws or returns garbage falls back to the next source.
 */
export function resolveIdentity(req: NeutralRequest, options: IdentityOptions): string {
  if (options.identity) {
    let custom: unknown;
    try {
      custom = options.identity(req);
    } catch {
      custom = undefined;
    }
    const id = cleanId(custom);
    if (id) return `key:${id}`;
  }
  let user: string | undefined;
  try {
    user = cleanId(userId(req.user));
  } catch {
    user = undefined; // a user object whose id getter throws (or a hostile Proxy)
  }
  if (user) return `user:${user}`;
  const address = clientAddress(req, options.trustProxy ?? false);
  return address ? ipIdentity(address) : 'anonymous';
}

const ipIdentities = new Map<string, string>();

/**
 * `ip:<address>`, the same string object for the same address: it keys the limiter's and dedup's maps on
 * every request, and a string built afresh would be flattened and hashed again each time.
 */
function ipIdentity(address: string): string {
  let identity = ipIdentities.get(address);
  if (identity === undefined) {
    identity = `ip:${address}`;
    if (ipIdentities.size >= MAX_CACHED_ADDRESSES) ipIdentities.clear();
    ipIdentities.set(address, identity);
  }
  return identity;
}

function userId(user: unknown): unknown {
  if (user === null || user === undefined) return undefined;
  if (typeof user === 'string' || typeof user === 'number') return user;
  if (typeof user === 'object') {
    const u = user as Record<string, unknown>;
    return u.id ?? u.sub ?? u.userId ?? undefined;
  }
  return undefined;
}

function cleanId(value: unknown): string | undefined {
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value !== 'string') return undefined;
  // Control characters would corrupt logs and Redis keys; overly long ids would blow up key space.
  // eslint-disable-next-line no-control-regex
  const cleaned = value.replace(/[\u0000-\u001f\u007f]/g, '').trim();
  if (!cleaned) return undefined;
  return cleaned.length > MAX_ID_LENGTH ? cleaned.slice(0, MAX_ID_LENGTH) : cleaned;
}

/** The client's address, normalised; undefined when nothing valid is known. */
export function clientAddress(req: NeutralRequest, trustProxy: boolean | number): string | undefined {
  if (trustProxy !== false && trustProxy !== 0) {
    const forwarded = headerValue(req.headers, 'x-forwarded-for');
    if (forwarded) {
      const hops = forwarded.split(',').map((s) => s.trim()).filter(Boolean);
      const pick = trustProxy === true ? hops[0] : hops[hops.length - trustProxy];
      const normalised = pick === undefined ? undefined : normaliseAddress(pick);
      if (normalised) return normalised;
    }
  }
  return req.ip ? normaliseAddress(req.ip) : undefined;
}

const normalised = new Map<string, string | undefined>();
const MAX_CACHED_ADDRESSES = 10_000;

/**
 * IPv4 as is; IPv4-mapped IPv6 as IPv4; other IPv6 masked to its /64 prefix. Invalid input -> undefined.
 * Cached: the same few client addresses repeat on every request, and validating one runs several regexes.
 */
export function normaliseAddress(raw: string): string | undefined {
  let result = normalised.get(raw);
  if (result === undefined && !normalised.has(raw)) {
    result = normaliseUncached(raw);
    if (normalised.size >= MAX_CACHED_ADDRESSES) normalised.clear();
    normalised.set(raw, result);
  }
  return result;
}

function normaliseUncached(raw: string): string | undefined {
  let address = raw.trim();
  if (address.startsWith('[') && address.includes(']')) address = address.slice(1, address.indexOf(']'));
  const zone = address.indexOf('%');
  if (zone >= 0) address = address.slice(0, zone);
  const kind = isIP(address);
  if (kind === 4) return address;
  if (kind !== 6) return undefined;
  const lower = address.toLowerCase();
  const mapped = /^(?:0{0,4}:){0,5}:?ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (mapped && isIP(mapped[1]!) === 4) return mapped[1];
  const groups = expandIPv6(lower);
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

function expandIPv6(address: string): string[] {
  let text = address;
  // An embedded IPv4 tail becomes two hex groups.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = text.slice(0, v4.index) + ((a << 8) | b).toString(16) + ':' + ((c << 8) | d).toString(16);
  }
  const [head = '', tail] = text.split('::');
  const left = head ? head.split(':') : [];
  const right = tail !== undefined && tail ? tail.split(':') : [];
  const fill = tail === undefined ? [] : new Array(8 - left.length - right.length).fill('0');
  return [...left, ...fill, ...right].map((g) => g.padStart(4, '0'));
}
