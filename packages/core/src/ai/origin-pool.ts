/**
 * One origin's connection pool for the provider client: an undici Pool (keep-alive sockets, a connection
 * cap, connect/headers/body timeouts, HTTP/2 over TLS when the server offers it) plus the counters and the
 * recent-latency window that `ProviderClient.stats()` reports, and the DNS cache its sockets resolve through.
 *
 * DNS: Node resolves a host name on every new socket (`getaddrinfo` on the libuv thread pool, uncached). The
 * pool's sockets use `createCachedLookup` instead: answers are kept for `ttlMs` (getaddrinfo reports no
 * TTL, so this is the TTL) and concurrent look-ups of one name share one query. Literal IPs skip look-up
 * entirely. A connection error for the origin evicts its name, so a dead address is retried fresh.
 * (undici's `interceptors.dns` is not used: it rewrites the request origin to an IP, which only an Agent
 * honours, and the Agent then keeps one pool per IP address, so the `connections` cap would apply per
 * address instead of per host and stats would be keyed by IP. Resolving inside the pool keeps one pool,
 * one cap and one stats entry per origin.)
 */
import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions, type LookupOptions } from 'node:dns';
import type { LookupFunction } from 'node:net';
import { Pool } from 'undici';

/** A `dns.lookup`-compatible resolver, as `net.connect({ lookup })` calls it. */
export type Lookup = LookupFunction;

export interface CachedLookup {
  lookup: Lookup;
  /** Forgets every cached answer for `hostname`. */
  evict(hostname: string): void;
  /** Host names (per family/hints) with a live cached answer. */
  readonly size: number;
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A caching wrapper around `base` (default `dns.lookup`). It asks `base` for every address (`all: true`)
 * and answers both call styles from that: `all: true` (what Node's happy-eyeballs connect uses) gets the
 * list, otherwise the first address. Failures are not cached. `ttlMs` 0 disables the cache.
 */
export function createCachedLookup(ttlMs: number, now: () => number, base: Lookup = dnsLookup as unknown as Lookup): CachedLookup {
  const entries = new Map<string, { addresses: LookupAddress[]; expires: number; hostname: string }>();
  const inflight = new Map<string, Array<(err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void>>();

  const answer = (options: LookupOptions, addresses: LookupAddress[], callback: LookupCallback): void => {
    if (options.all) callback(null, addresses.map((a) => ({ ...a })));
    else if (addresses.length === 0) callback(Object.assign(new Error('DNS lookup returned no addresses'), { code: 'ENOTFOUND' }), '', undefined);
    else callback(null, addresses[0]!.address, addresses[0]!.family);
  };

  const lookup = ((hostname: string, options: LookupOptions, callback: LookupCallback): void => {
    const opts: LookupOptions = typeof options === 'object' && options !== null ? options : {};
    if (ttlMs <= 0) {
      (base as (h: string, o: LookupOptions, cb: LookupCallback) => void)(hostname, opts, callback);
      return;
    }
    const key = `${hostname}|${String(opts.family ?? 0)}|${String(opts.hints ?? 0)}`;
    const entry = entries.get(key);
    if (entry && entry.expires > now()) {
      answer(opts, entry.addresses, callback);
      return;
    }
    if (entry) entries.delete(key);
    const waiters = inflight.get(key);
    const waiter = (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => {
      if (err) callback(err, '', undefined);
      else answer(opts, addresses, callback);
    };
    if (waiters) {
      waiters.push(waiter);
      return;
    }
    inflight.set(key, [waiter]);
    const query: LookupAllOptions = { ...opts, all: true };
    (base as (h: string, o: LookupAllOptions, cb: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void) => void)(
      hostname,
      query,
      (err, addresses) => {
        const list = inflight.get(key) ?? [];
        inflight.delete(key);
        const result = Array.isArray(addresses) ? addresses.map((a) => ({ address: a.address, family: a.family })) : [];
        if (!err && result.length > 0) entries.set(key, { addresses: result, expires: now() + ttlMs, hostname });
        for (const w of list) w(err, result);
      },
    );
  }) as unknown as Lookup;

  return {
    lookup,
    evict(hostname: string) {
      for (const [key, entry] of entries) if (entry.hostname === hostname) entries.delete(key);
    },
    get size() {
      let live = 0;
      const t = now();
      for (const entry of entries.values()) if (entry.expires > t) live++;
      return live;
    },
  };
}

/** Settings shared by every origin pool of one client (already validated, durations in ms). */
export interface OriginPoolSettings {
  connections: number;
  connectTimeout: number;
  headersTimeout: number;
  bodyTimeout: number;
  keepAliveTimeout: number;
  /** Offer h2 via ALPN on https origins. */
  http2: boolean;
  maxConcurrentStreams: number;
  tls: { ca?: string | Buffer | Array<string | Buffer>; rejectUnauthorized?: boolean } | undefined;
  /** Resolver for the pool's sockets (the client's cached lookup); undefined: Node's default. */
  lookup: CachedLookup | undefined;
  latencyWindow: number;
}

/** Latency of the recent calls to one origin, milliseconds from send to response headers. */
export interface LatencyStats {
  /** Calls in the window (at most `latencyWindow`). */
  samples: number;
  meanMs: number;
  p50Ms: number;
  p95Ms: number;
  maxMs: number;
}

/** What `ProviderClient.stats()` reports for one origin. */
export interface OriginStats {
  /** `scheme://host:port`. */
  origin: string;
  /** Open sockets (HTTP/2: sessions). From undici's pool stats, like the next five. */
  connected: number;
  /** Open sockets with no request on them. */
  free: number;
  /** Requests not sent yet (waiting for a socket, or assigned to one that is busy); includes `queued`. */
  pending: number;
  /** Of `pending`: requests in the pool's own queue, no socket assigned yet. */
  queued: number;
  /** Requests being sent or answered. */
  running: number;
  /** pending + queued + running. */
  size: number;
  /** Calls sent (request and stream). */
  requests: number;
  /** Calls finished with a 2xx answer (a stream: its body read to the end or dropped by the consumer). */
  succeeded: number;
  /** Calls failed with an UpstreamError: non-2xx status, network error, timeout, oversized body. */
  errors: number;
  /** Of `errors`: no usable answer (connect refused/reset, socket closed, malformed response). */
  networkErrors: number;
  /** Of `errors`: connect, headers or body timeouts. */
  timeouts: number;
  /** Calls ended by the caller's signal. */
  aborted: number;
  /** Calls started and not finished (a stream counts until its body is done). */
  inFlight: number;
  latency: LatencyStats;
  /** True once the pool was closed (closeAll). */
  closed: boolean;
}

/**
 * How a call ended: `error` an upstream status error (or an oversized body), `network`/`timeout` no usable
 * answer, `invalid` the call was never sent (a caller mistake such as an unserializable body): uncounted.
 */
export type CallOutcome = 'succeeded' | 'aborted' | 'error' | 'network' | 'timeout' | 'invalid';

export class OriginPool {
  readonly origin: string;
  readonly pool: Pool;
  private readonly hostname: string;
  private readonly window: Float64Array;
  private windowNext = 0;
  private windowFilled = 0;
  private readonly counters = { requests: 0, succeeded: 0, errors: 0, networkErrors: 0, timeouts: 0, aborted: 0, inFlight: 0 };

  constructor(origin: URL, settings: OriginPoolSettings) {
    this.origin = origin.origin;
    this.hostname = origin.hostname;
    this.window = new Float64Array(settings.latencyWindow);
    const https = origin.protocol === 'https:';
    const connect: Record<string, unknown> = {};
    if (settings.lookup) connect.lookup = settings.lookup.lookup;
    if (https && settings.tls) {
      if (settings.tls.ca !== undefined) connect.ca = settings.tls.ca;
      if (settings.tls.rejectUnauthorized !== undefined) connect.rejectUnauthorized = settings.tls.rejectUnauthorized;
    }
    this.pool = new Pool(origin.origin, {
      connections: settings.connections,
      connectTimeout: settings.connectTimeout,
      headersTimeout: settings.headersTimeout,
      bodyTimeout: settings.bodyTimeout,
      keepAliveTimeout: settings.keepAliveTimeout,
      // Server keep-alive hints may lengthen the idle timeout, up to this.
      keepAliveMaxTimeout: Math.max(settings.keepAliveTimeout, 600_000),
      pipelining: 1,
      // h2 is negotiated by ALPN, which only exists over TLS; plain-http h2 (h2c) is never offered.
      allowH2: https && settings.http2,
      maxConcurrentStreams: settings.maxConcurrentStreams,
      connect,
    });
    const cache = settings.lookup;
    if (cache) this.pool.on('connectionError', () => cache.evict(this.hostname));
  }

  /** A call is about to be sent. */
  started(): void {
    this.counters.requests++;
    this.counters.inFlight++;
  }

  /** Response headers arrived `ms` after the call was sent. */
  answered(ms: number): void {
    this.window[this.windowNext] = ms;
    this.windowNext = (this.windowNext + 1) % this.window.length;
    if (this.windowFilled < this.window.length) this.windowFilled++;
  }

  /** A call finished (exactly once per `started`). */
  finished(outcome: CallOutcome): void {
    this.counters.inFlight--;
    switch (outcome) {
      case 'succeeded':
        this.counters.succeeded++;
        break;
      case 'aborted':
        this.counters.aborted++;
        break;
      case 'error':
        this.counters.errors++;
        break;
      case 'invalid':
        this.counters.requests--;
        break;
      case 'network':
        this.counters.errors++;
        this.counters.networkErrors++;
        break;
      case 'timeout':
        this.counters.errors++;
        this.counters.timeouts++;
        break;
    }
  }

  get closed(): boolean {
    return this.pool.closed || this.pool.destroyed;
  }

  stats(): OriginStats {
    const s = this.pool.stats;
    return {
      origin: this.origin,
      connected: s.connected,
      free: s.free,
      pending: s.pending,
      queued: s.queued,
      running: s.running,
      size: s.size,
      ...this.counters,
      latency: this.latency(),
      closed: this.closed,
    };
  }

  private latency(): LatencyStats {
    const n = this.windowFilled;
    if (n === 0) return { samples: 0, meanMs: 0, p50Ms: 0, p95Ms: 0, maxMs: 0 };
    const sorted = Float64Array.from(this.window.subarray(0, n)).sort();
    let sum = 0;
    for (let i = 0; i < n; i++) sum += sorted[i]!;
    const at = (q: number) => sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))]!;
    return { samples: n, meanMs: sum / n, p50Ms: at(0.5), p95Ms: at(0.95), maxMs: sorted[n - 1]! };
  }

  /** Graceful: waits for running requests, then closes every socket. */
  close(): Promise<void> {
    return this.closed ? Promise.resolve() : this.pool.close();
  }

  /** Immediate: fails running requests and closes every socket. */
  destroy(): Promise<void> {
    return this.pool.destroyed ? Promise.resolve() : this.pool.destroy();
  }
}
