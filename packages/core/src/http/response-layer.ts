/**
 * The HTTP response layer of the pipeline: response caching, compression and `?fields=` filtering, one
 * decision per request made here, in core, for every adapter. Adapters only buffer the handler's response
 * (node-response.ts) and write what `ResponsePlan.complete` returns.
 *
 * Caching: GET/HEAD by default, other methods opt-in per route (keyed on the normalized body). A response is
 * stored only when it is 2xx, carries no Set-Cookie, no `Cache-Control: private/no-store`, no content
 * encoding of its own, and varies on nothing but Accept-Encoding and the route's `varyBy`. Keys include the
 * caller's identity unless the route says `shared`. One body is stored, uncompressed and unfiltered; each
 * client gets it filtered and encoded as it asks (each variant computed once per cached entry).
 * Concurrent misses of one key wait for the first one's response (one handler run). A stale entry (within
 * grace) is served while one request refreshes it, and instead of a 5xx from the refresh.
 */
import { InvalidFieldsError } from '../errors.js';
import type { TieredCache } from '../cache/tiered-cache.js';
import type { Logger } from '../logger.js';
import { parseOptions } from '../options/validate.js';
import { parseCacheControl, isStorableResponse } from './cache-control.js';
import { compress, negotiateEncoding, shouldCompress, type Encoding } from './content-encoding.js';
import { strongEtag, ifNoneMatch, weakEtag } from './etag.js';
import { applyFields, parseFields, type FieldSelection } from './field-filter.js';
import type { NeutralRequest } from './neutral-request.js';
import { PER_RESPONSE_HEADERS } from './per-response-headers.js';
import { requestCacheKey } from './request-cache-key.js';
import { compressionSchema, fieldsSchema, requestWanted, responseCacheSchema, semanticCacheSchema } from './response-options.js';
import { compileSemanticOptions, planSemantic, type CompiledSemanticOptions, type SemanticAnswer, type SemanticPlan } from './semantic-response.js';
import type { SemanticCache } from '../semantic/semantic-cache.js';

export type CacheStatus = 'HIT' | 'MISS' | 'STALE' | 'BYPASS' | 'SEMANTIC-HIT';

/** A route's response options, validated and resolved once at start-up. */
export interface CompiledResponseOptions {
  cache:
    | {
        ttlMs: number | undefined;
        graceMs: number;
        methods: ReadonlySet<string>;
        shared: boolean;
        varyBy: readonly string[];
        excludeBodyFields: readonly string[];
        excludeQuery: readonly string[];
        cacheControl: string | undefined;
        key: ((req: NeutralRequest) => string) | undefined;
        when: ((req: NeutralRequest) => boolean) | undefined;
        maxBodyBytes: number;
        namespace: string;
      }
    | undefined;
  compression: { thresholdBytes: number; encodings: readonly Encoding[]; maxBodyBytes: number } | undefined;
  fields: { param: string; limits: { maxLength?: number; maxFields?: number; maxDepth?: number } } | undefined;
  /** The semantic cache of a chat completions route (route option `semanticCache`). */
  semantic: CompiledSemanticOptions | undefined;
}

/** The stored form of a cached response (JSON-friendly: it goes through every cache level). */
interface StoredResponse {
  status: number;
  headers: Record<string, string | string[]>;
  /** base64 */
  body: string;
  storedAt: number;
}

/** What the adapter writes: status, the headers to set and to remove, and the body. */
export interface FinalResponse {
  status: number;
  headers: Record<string, string | string[]>;
  removeHeaders: string[];
  body: Buffer;
}

export interface CapturedResponse {
  status: number;
  headers: Record<string, string | string[] | number | undefined>;
  body: Buffer;
}

/** Headers never stored with a response: the per-connection ones, and those each answer sets afresh. */
const NOT_STORED: ReadonlySet<string> = new Set([...PER_RESPONSE_HEADERS, 'x-cache', 'age', 'etag', 'x-amas-dedup', 'x-amas-cache-reason', 'x-amas-semantic-score']);

interface Variant {
  body: Buffer;
  etag: string;
  encoding: Encoding | undefined;
}

/** Per cached entry (by object identity: L1 hands back the same object), its decoded body and variants. */
const variants = new WeakMap<StoredResponse, { body: Buffer; byRepresentation: Map<string, Promise<Variant>> }>();
const MAX_VARIANTS = 8;

export class ResponseLayer {
  /** In-flight cache fills by key: concurrent misses wait for the first request's response. */
  private readonly fills = new Map<string, Promise<void>>();

  private warnedUnparsedBody = false;

  constructor(
    private readonly cache: () => TieredCache,
    private readonly logger: Logger,
    private readonly semanticCache: () => SemanticCache,
  ) {}

  /**
   * Validates and resolves the options of a route (route values replace global ones; `semanticCache` is
   * per route only).
   */
  compile(
    route: { cache?: unknown; compression?: unknown; fields?: unknown; semanticCache?: unknown },
    global: { cache?: unknown; compression?: unknown; fields?: unknown },
    where: string,
  ): CompiledResponseOptions | undefined {
    const cacheOpt = parseOptions(responseCacheSchema.optional(), route.cache !== undefined ? route.cache : global.cache, where, 'cache');
    const compressionOpt = parseOptions(compressionSchema.optional(), route.compression !== undefined ? route.compression : global.compression, where, 'compression');
    const fieldsOpt = parseOptions(fieldsSchema.optional(), route.fields !== undefined ? route.fields : global.fields, where, 'fields');
    const semantic = compileSemanticOptions(parseOptions(semanticCacheSchema.optional(), route.semanticCache, where, 'semanticCache'), this.semanticCache);
    if (!cacheOpt && !compressionOpt && !fieldsOpt && !semantic) return undefined;
    const c = cacheOpt === true ? {} : cacheOpt || undefined;
    if (c !== undefined) this.cache(); // fail at start-up, not on the first request, if no cache can exist
    const z = compressionOpt === true ? {} : compressionOpt || undefined;
    const f = fieldsOpt === true ? {} : fieldsOpt || undefined;
    return {
      cache: c && {
        ttlMs: c.ttl,
        graceMs: c.grace ?? 0,
        methods: new Set(c.methods ?? ['GET', 'HEAD']),
        shared: c.shared === true,
        varyBy: c.varyBy ?? [],
        excludeBodyFields: c.excludeBodyFields ?? [],
        excludeQuery: c.excludeQuery ?? [],
        cacheControl: c.cacheControl,
        key: c.key as ((req: NeutralRequest) => string) | undefined,
        when: c.when as ((req: NeutralRequest) => boolean) | undefined,
        maxBodyBytes: c.maxBodyBytes ?? 1024 * 1024,
        namespace: c.namespace ?? 'http',
      },
      compression: z && { thresholdBytes: z.thresholdBytes ?? 1024, encodings: z.encodings ?? ['br', 'gzip', 'deflate'], maxBodyBytes: z.maxBodyBytes ?? 8 * 1024 * 1024 },
      fields: f && { param: f.param ?? 'fields', limits: { maxLength: f.maxLength, maxFields: f.maxFields, maxDepth: f.maxDepth } },
      semantic,
    };
  }

  /**
   * The plan for one request: its cache key (when cacheable), its semantic lookup, its field selection, its
   * encoding. Throws InvalidFieldsError (400, saying what is wrong and where) for a malformed `?fields=`, and
   * InvalidRequestError (400) for a malformed semantic cache control header.
   */
  plan(req: NeutralRequest, options: CompiledResponseOptions, identity: string): ResponsePlan {
    let selection: { expression: string; fields: FieldSelection } | undefined;
    if (options.fields) {
      const expression = queryParam(req.url, options.fields.param);
      if (expression !== undefined) selection = { expression, fields: parseFields(expression, options.fields.limits) };
    }
    const encoding = options.compression ? negotiateEncoding(req.headers['accept-encoding'], options.compression.encodings) : undefined;
    const plan = new ResponsePlan(this, options, req, selection, encoding === 'identity' ? undefined : encoding);
    const cache = options.cache;
    const method = req.method.toUpperCase();
    if (cache && cache.methods.has(method) && requestWanted(req, cache.when) && this.bodyKnown(req, method)) {
      const requestDirectives = parseCacheControl(req.headers['cache-control']);
      const pragmaNoCache = /no-cache/i.test(String(req.headers.pragma ?? ''));
      plan.bypass = requestDirectives.noCache || requestDirectives.noStore || pragmaNoCache;
      plan.store = !requestDirectives.noStore;
      const vary: Record<string, string | undefined> = {};
      for (const name of cache.varyBy) vary[name] = headerValue(req.headers[name]);
      let custom: string | undefined;
      if (cache.key) {
        try {
          const k = cache.key(req);
          if (typeof k === 'string' && k) custom = k;
        } catch {
          // A broken key function falls back to the default key rather than failing the request.
        }
      }
      const who = cache.shared ? '*' : identity;
      try {
        plan.key =
          custom !== undefined
            ? requestCacheKey({ method: 'KEY', url: custom, body: undefined, identity: who, varyHeaders: vary })
            : requestCacheKey({ method, url: req.url, body: method === 'GET' || method === 'HEAD' ? undefined : req.body, identity: who, varyHeaders: vary, excludeBodyFields: cache.excludeBodyFields, excludeQuery: [...cache.excludeQuery, options.fields?.param ?? 'fields'] });
      } catch {
        plan.key = undefined; // a body that cannot be keyed (a Map, absurd nesting): served, never cached
      }
    }
    if (options.semantic !== undefined) {
      this.bodyKnown(req, method); // says once in the log when bodies arrive unparsed (the plan then bypasses)
      plan.semantic = planSemantic(req, options.semantic, identity, this.logger);
    }
    return plan;
  }

  /**
   * A request with a body that nobody parsed (the body parser runs after AMAS) cannot be keyed on its body:
   * caching it would answer different bodies with one response. It is served uncached, and one line says why.
   */
  private bodyKnown(req: NeutralRequest, method: string): boolean {
    if (method === 'GET' || method === 'HEAD' || req.body !== undefined) return true;
    const length = req.headers['content-length'];
    const hasBody = (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;
    if (!hasBody) return true;
    if (!this.warnedUnparsedBody) {
      this.warnedUnparsedBody = true;
      this.logger.warn(`a ${method} to a cached route arrived with its body unparsed; such requests are not cached. Parse the body before AMAS admits the route (e.g. app.post(path, express.json(), amas.route({ cache })))`);
    }
    return false;
  }

  /**
   * The cache step of admission: the response cache, then the semantic cache. Resolves to a response to send
   * (HIT, STALE, SEMANTIC-HIT) or to undefined: the plan passes on to the handler (MISS, BYPASS).
   */
  async lookup(plan: ResponsePlan): Promise<FinalResponse | undefined> {
    const answer = await this.lookupResponse(plan);
    if (answer !== undefined || plan.semantic === undefined) return answer;
    const hit = await plan.semantic.lookup();
    if (hit === undefined) return undefined;
    plan.filled(); // the handler will not run: requests waiting on this key's fill look again
    return plan.serveSemantic(hit);
  }

  /** The response cache: a response to send, after waiting for a concurrent fill of the same key. */
  private async lookupResponse(plan: ResponsePlan): Promise<FinalResponse | undefined> {
    const key = plan.key;
    if (key === undefined) return undefined;
    if (plan.bypass) {
      plan.status = 'BYPASS';
      return undefined;
    }
    const cache = this.cache();
    const namespace = plan.options.cache!.namespace;
    for (let attempt = 0; attempt < 2; attempt++) {
      const entry = await cache.getEntry<StoredResponse>(key, { namespace }).catch(() => undefined);
      const stored = entry !== undefined && isStoredResponse(entry.value) ? entry.value : undefined;
      if (stored !== undefined && entry!.fresh) return plan.serve(stored, 'HIT');
      const filling = this.fills.get(key);
      if (stored !== undefined) {
        // Stale within grace: served while one request refreshes it (that one keeps it for a 5xx).
        if (filling !== undefined) return plan.serve(stored, 'STALE');
        plan.stale = stored;
        break;
      }
      if (filling === undefined || attempt === 1) break;
      await filling; // one handler run for concurrent misses; then read what it stored
    }
    plan.status = 'MISS';
    if (!this.fills.has(key)) {
      let done!: () => void;
      this.fills.set(key, new Promise<void>((resolve) => (done = resolve)));
      plan.onFilled = () => {
        if (this.fills.get(key) !== undefined) this.fills.delete(key);
        done();
      };
    }
    return undefined;
  }

  /** @internal Stores a response; resolves when the write is done (waiting misses read it then). */
  async store(plan: ResponsePlan, captured: CapturedResponse, headers: Record<string, string | string[]>): Promise<void> {
    const cache = plan.options.cache!;
    const directives = parseCacheControl(headers['cache-control']);
    const fromHeaders = directives.sMaxAge ?? directives.maxAge;
    const ttlMs = cache.ttlMs ?? (fromHeaders !== undefined ? fromHeaders * 1000 : undefined);
    if (ttlMs !== undefined && ttlMs <= 0) return;
    const value: StoredResponse = { status: captured.status, headers, body: captured.body.toString('base64'), storedAt: Date.now() };
    await this.cache()
      .set(plan.key!, value, { namespace: cache.namespace, ...(ttlMs !== undefined && { ttl: ttlMs }), grace: cache.graceMs })
      .catch(() => undefined);
  }
}

/** One request's response decisions; `complete` turns the handler's response into the one sent. */
export class ResponsePlan {
  key: string | undefined;
  bypass = false;
  /** Whether a response may be stored (false on request `Cache-Control: no-store`). */
  store = true;
  status: CacheStatus | undefined;
  stale: StoredResponse | undefined;
  onFilled: (() => void) | undefined;
  /** The X-Cache status actually sent, when it differs from `status` (STALE instead of a 5xx). */
  served: CacheStatus | undefined;
  /** A nested route's plan replaced this one: its capture passes everything through. */
  withdrawn = false;
  /** The semantic cache's part of this request (chat completions routes). */
  semantic: SemanticPlan | undefined;

  constructor(
    private readonly layer: ResponseLayer,
    readonly options: CompiledResponseOptions,
    private readonly req: NeutralRequest,
    private readonly selection: { expression: string; fields: FieldSelection } | undefined,
    private readonly encoding: Encoding | undefined,
  ) {}

  /** Largest body worth buffering for this plan; beyond it the response passes through untouched. */
  get maxBodyBytes(): number {
    return Math.max(
      this.options.cache?.maxBodyBytes ?? 0,
      this.options.compression?.maxBodyBytes ?? 0,
      this.selection ? 8 * 1024 * 1024 : 0,
      this.semantic?.storing ? this.semantic.options.maxBodyBytes : 0,
    );
  }

  /** The X-Cache status of this request's answer (undefined: the route caches nothing for it). */
  get cacheStatus(): CacheStatus | undefined {
    return this.served ?? this.status ?? this.semantic?.status;
  }

  /** Headers a passed-through (streamed) handler response carries: its X-Cache status and why it bypassed. */
  streamHeaders(): Record<string, string> {
    const out: Record<string, string> = {};
    const status = this.cacheStatus;
    if (status !== undefined) out['x-cache'] = status;
    if (this.semantic?.bypassReason !== undefined) out['x-amas-cache-reason'] = this.semantic.bypassReason;
    return out;
  }

  /** Whether a streamed handler response should be copied as it passes, to cache its answer once it completes. */
  get copiesStream(): boolean {
    return this.semantic?.storing === true && !this.withdrawn;
  }

  /** The streamed handler response went out whole (the client received all of it). */
  streamed(status: number, body: Buffer): void {
    if (!this.withdrawn) this.semantic?.storeStream(status, body);
  }

  /** A semantic cache answer as this client wants it (compressed when negotiated). */
  serveSemantic(hit: SemanticAnswer): Promise<FinalResponse> {
    return this.represent(200, hit.headers, hit.body, hit.status, undefined);
  }

  /** The handler's response, complete: store it (when it may be), then filter, encode and answer conditionals. */
  async complete(captured: CapturedResponse): Promise<FinalResponse> {
    try {
      const headers = storedHeaders(captured.headers);
      if (this.stale !== undefined && captured.status >= 500) {
        this.served = 'STALE';
        this.filled();
        return await this.serve(this.stale, 'STALE');
      }
      const storable = this.key !== undefined && this.store && this.storable(captured, headers);
      const cacheControl = this.options.cache?.cacheControl;
      if (cacheControl !== undefined && headers['cache-control'] === undefined) headers['cache-control'] = cacheControl;
      const storing = storable ? this.layer.store(this, captured, headers) : undefined;
      this.semantic?.storeJson(captured.status, captured.body);
      if (this.semantic?.bypassReason !== undefined) headers['x-amas-cache-reason'] = this.semantic.bypassReason;
      const final = await this.represent(captured.status, headers, captured.body, this.status ?? this.semantic?.status, undefined);
      // Waiting misses read the entry once it is written; the response itself does not wait for that.
      if (storing !== undefined) void storing.finally(() => this.filled());
      else this.filled();
      return final;
    } catch (error) {
      this.filled();
      throw error;
    }
  }

  /** The request ended without a complete response (aborted, streamed, too big): release waiting misses. */
  filled(): void {
    const done = this.onFilled;
    this.onFilled = undefined;
    done?.();
  }

  /** A cached response as this client wants it. */
  async serve(stored: StoredResponse, status: CacheStatus): Promise<FinalResponse> {
    let memo = variants.get(stored);
    if (memo === undefined) {
      memo = { body: Buffer.from(stored.body, 'base64'), byRepresentation: new Map() };
      variants.set(stored, memo);
    }
    const age = Math.max(0, Math.floor((Date.now() - stored.storedAt) / 1000));
    const headers = { ...stored.headers, age: String(age) };
    return this.represent(stored.status, headers, memo.body, status, memo.byRepresentation);
  }

  private storable(captured: CapturedResponse, headers: Record<string, string | string[]>): boolean {
    if (this.req.method.toUpperCase() === 'HEAD') return false; // no body to store
    if (captured.body.length > this.options.cache!.maxBodyBytes) return false;
    if (headers['content-encoding'] !== undefined) return false;
    // 201 Created is what NestJS answers to every POST: on a route that opted a POST into caching it is the
    // normal answer, so it is stored like a 200.
    const status = captured.status === 201 && this.req.method.toUpperCase() !== 'GET' ? 200 : captured.status;
    if (!isStorableResponse({ status, headers: captured.headers as Record<string, string | string[] | undefined> }).storable) return false;
    const vary = headers.vary;
    if (vary !== undefined) {
      const allowed = new Set(['accept-encoding', ...this.options.cache!.varyBy]);
      for (const name of String(vary).split(',')) {
        const n = name.trim().toLowerCase();
        if (n && !allowed.has(n)) return false;
      }
    }
    return true;
  }

  /** Filters, encodes (memoized per cached entry) and answers If-None-Match with 304. */
  private async represent(
    status: number,
    headers: Record<string, string | string[]>,
    body: Buffer,
    cacheStatus: CacheStatus | undefined,
    memo: Map<string, Promise<Variant>> | undefined,
  ): Promise<FinalResponse> {
    const out: Record<string, string | string[]> = { ...headers };
    const removeHeaders: string[] = [];
    if (cacheStatus !== undefined) out['x-cache'] = cacheStatus;
    const ok = status >= 200 && status < 300;
    const contentType = String(headers['content-type'] ?? '');
    const alreadyEncoded = headers['content-encoding'] !== undefined;
    const filter = ok && this.selection !== undefined && /\bjson\b/i.test(contentType) && !alreadyEncoded ? this.selection : undefined;
    const compression = this.options.compression;
    const encode = ok && !alreadyEncoded && compression !== undefined;
    const representation = `${filter?.expression ?? ''}\u0000${encode ? (this.encoding ?? '') : ''}`;
    let variant = memo?.get(representation);
    if (variant === undefined) {
      variant = this.variant(body, filter?.fields, encode ? this.encoding : undefined, contentType, compression?.thresholdBytes ?? Infinity, this.key !== undefined || memo !== undefined);
      if (memo !== undefined && memo.size < MAX_VARIANTS) memo.set(representation, variant);
    }
    const v = await variant;
    if (encode) out.vary = appendVary(out.vary, 'accept-encoding');
    if (v.encoding !== undefined) out['content-encoding'] = v.encoding;
    else if (encode) removeHeaders.push('content-encoding');
    if (v.etag) out.etag = v.etag;
    if (ok && v.etag && ifNoneMatch(this.req.headers['if-none-match'], v.etag)) {
      return { status: 304, headers: without304(out), removeHeaders: [...removeHeaders, 'content-type', 'content-length'], body: Buffer.alloc(0) };
    }
    out['content-length'] = String(v.body.length);
    return { status, headers: out, removeHeaders, body: v.body };
  }

  private async variant(body: Buffer, fields: FieldSelection | undefined, encoding: Encoding | undefined, contentType: string, threshold: number, withEtag: boolean): Promise<Variant> {
    let representation = body;
    if (fields !== undefined) {
      try {
        representation = Buffer.from(JSON.stringify(applyFields(JSON.parse(body.toString('utf8')), fields)));
      } catch {
        // Not valid JSON after all: send it unfiltered rather than fail.
      }
    }
    const etag = withEtag ? strongEtag(representation) : '';
    if (encoding !== undefined && shouldCompress(contentType, representation.length, threshold)) {
      // A strong ETag promises identical bytes; an encoded body gets the weak form of the same tag, so
      // If-None-Match (weak comparison) still matches across encodings.
      return { body: await compress(representation, encoding), etag: etag && weakEtag(etag), encoding };
    }
    return { body: representation, etag, encoding: undefined };
  }
}

function storedHeaders(headers: CapturedResponse['headers']): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    const lower = name.toLowerCase();
    if (value === undefined || NOT_STORED.has(lower)) continue;
    out[lower] = Array.isArray(value) ? value.map(String) : String(value);
  }
  return out;
}

function isStoredResponse(value: unknown): value is StoredResponse {
  const v = value as StoredResponse | undefined;
  return typeof v === 'object' && v !== null && typeof v.status === 'number' && typeof v.body === 'string' && typeof v.headers === 'object' && v.headers !== null && typeof v.storedAt === 'number';
}

function appendVary(current: string | string[] | undefined, name: string): string {
  const list = current === undefined ? [] : String(current).split(',').map((s) => s.trim()).filter(Boolean);
  if (list.some((v) => v === '*' || v.toLowerCase() === name)) return list.join(', ');
  return [...list, name === 'accept-encoding' ? 'Accept-Encoding' : name].join(', ');
}

/** A 304 carries the validators and caching headers, not the representation's metadata. */
function without304(headers: Record<string, string | string[]>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name of ['etag', 'cache-control', 'vary', 'expires', 'x-cache', 'age', 'content-location']) if (headers[name] !== undefined) out[name] = headers[name]!;
  return out;
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

/** The first value of a query parameter, decoded; undefined when absent. */
function queryParam(url: string, name: string): string | undefined {
  const q = url.indexOf('?');
  if (q < 0) return undefined;
  try {
    const value = new URLSearchParams(url.slice(q + 1)).get(name);
    return value === null ? undefined : value;
  } catch {
    return undefined;
  }
}
