import { performance } from 'node:perf_hooks';
import { BreakerOpenError, InvalidFieldsError, InvalidRequestError, RateLimitedError, StoreUnavailableError, isAmasError, type AmasError } from '../errors.js';
import type { BreakerPermit, CircuitBreaker } from '../policies/circuit-breaker.js';
import type { LimitDecision } from '../policies/limit-decision.js';
import { checkLimits, refundQuietly, type CheckableLimiter, type LimitsOutcome } from '../policies/limit-check.js';
import { parseOptions } from '../options/validate.js';
import { routeOptionsSchema, type RouteOptions } from '../options/schema.js';
import { stableKey } from '../util/stable-key.js';
import { formatMs } from '../util/format-ms.js';
import { resolveIdentity, type IdentityFn } from './identity.js';
import type { NeutralRequest } from './neutral-request.js';
import { rateLimitHeaders, type RateLimitHeaderMode } from './rate-limit-headers.js';
import { defaultRejectionBody, renderRejection, type Rejection, type RejectionBodyRenderer } from './rejection.js';
import type { AmasMetrics } from '../metrics/amas-metrics.js';
import { PER_RESPONSE_HEADERS } from './per-response-headers.js';
import type { TieredCache } from '../cache/tiered-cache.js';
import type { SemanticCache } from '../semantic/semantic-cache.js';
import type { Logger } from '../logger.js';
import { ResponseLayer, type CompiledResponseOptions, type FinalResponse, type ResponsePlan } from './response-layer.js';

/** What the pipeline needs from the engine (kept narrow so the pipeline is testable alone). */
export interface PipelineHost {
  readonly metrics: AmasMetrics;
  breaker(name: string, overrides?: Record<string, unknown>): CircuitBreaker;
  /** A named limiter from `limits`, or one built from an inline spec (cached per spec). */
  resolveLimiter(ref: unknown, where: string): CheckableLimiter;
  /** The cross-replica flight for `http.dedup.shared` (one per distinct options); throws InvalidOptionError without a store. */
  sharedFlight(options: unknown, where: string): SharedFlight;
  readonly httpOptions: ResolvedHttpOptions;
  /** The engine's tiered cache (HTTP response caching stores there). */
  readonly cache: TieredCache;
  /** The engine's semantic cache (routes with `semanticCache: true`), built on first use. */
  readonly semantic: SemanticCache;
  readonly logger: Logger;
}

export interface ResolvedHttpOptions {
  limit?: unknown;
  breaker?: unknown;
  dedup?: boolean | { key?: (req: NeutralRequest) => string; shared?: unknown };
  identity?: IdentityFn;
  trustProxy: boolean | number;
  rateLimitHeaders: RateLimitHeaderMode;
  responseTime: boolean;
  observeBreakers: boolean;
  isFailureStatus: (status: number) => boolean;
  rejectionBody: RejectionBodyRenderer;
  maxSharedBodyBytes: number;
  cache?: unknown;
  compression?: unknown;
  fields?: unknown;
}

/** A route's options, validated and resolved to live limiters and breakers once, at start-up. */
export interface CompiledRoute {
  readonly pattern: string | undefined;
  readonly skip: boolean;
  readonly limiters: readonly CheckableLimiter[];
  /** An enforcing breaker: rejects with 503 while open. */
  readonly breaker: CircuitBreaker | undefined;
  readonly observe: boolean;
  readonly dedup: false | { key?: (req: NeutralRequest) => string; shared?: SharedFlight };
  readonly identity: IdentityFn | undefined;
  /**
   * Runs inside another admission of the same request (Express: `app.use(amas)` plus `amas.route({...})`):
   * only this route's own limits, breaker and dedup apply; timing, metrics and watch-only breakers are the
   * outer admission's job.
   */
  readonly nested: boolean;
  /**
   * Which options the route set itself. A nested admission uses them to take the outer admission's
   * decision back for those parts (`withdraw`), so per-route options override global ones there too.
   */
  readonly overrides: { limit: boolean; breaker: boolean; dedup: boolean; response: boolean };
  /** Response caching, compression and field filtering (undefined: none of them). */
  readonly response: CompiledResponseOptions | undefined;
}

/** A response a dedup leader produced, replayed to its followers. */
export interface SharedResponse {
  status: number;
  headers: Record<string, string | string[]>;
  body: Buffer;
  /** 'cache': an HTTP cache answer (its headers carry X-Cache); default: a dedup leader's response. */
  source?: 'dedup' | 'cache';
}

export interface Outcome {
  status: number;
  /** Response headers at the end (used to share the response with dedup followers). */
  headers?: Record<string, string | string[] | number | undefined>;
  /** The full body, when the adapter captured it (dedup leaders). */
  body?: Buffer;
  /** The handler threw (and the framework turned it into `status`). */
  error?: unknown;
  /** The client went away before the response was complete. */
  aborted?: boolean;
  /** The route pattern, when the framework only knows it after routing (Express app-level middleware). */
  route?: string;
}

/** What the response step decided (see HttpPipeline.respond). */
export type ResponseStep = { action: 'pass' } | { action: 'replay'; response: SharedResponse } | { action: 'reject'; rejection: Rejection };
const PASS: ResponseStep = { action: 'pass' };

export type Admission =
  | { action: 'skip' }
  | { action: 'pass'; ticket: RequestTicket }
  | { action: 'replay'; ticket: RequestTicket; response: SharedResponse }
  | { action: 'reject'; ticket: RequestTicket; rejection: Rejection };



/**
 * The framework-neutral request pipeline: limit -> dedup -> breaker -> (handler) -> record.
 * `admit` answers synchronously unless the request waits for an identical in-flight one.
 */
export class HttpPipeline {
  /** In-flight dedup leaders by key; followers wait on the leader's ticket. */
  private readonly flights = new Map<string, RequestTicket>();
  private readonly observers = new Map<string, CircuitBreaker>();
  private readonly responses: ResponseLayer;

  constructor(private readonly host: PipelineHost) {
    this.responses = new ResponseLayer(
      () => host.cache,
      host.logger,
      () => host.semantic,
    );
  }

  /** Validates and resolves route options at start-up; throws InvalidOptionError with the option's path. */
  compile(options: RouteOptions | undefined, pattern?: string, compileOptions: { nested?: boolean } = {}): CompiledRoute {
    const where = pattern ? `AMAS route options for ${pattern}` : 'AMAS route options';
    const route = parseOptions(routeOptionsSchema, options ?? {}, where);
    const nested = compileOptions.nested === true;
    // Nested admissions inherit nothing: the outer admission already applied the global options.
    const http: Pick<ResolvedHttpOptions, 'limit' | 'breaker' | 'dedup' | 'identity' | 'observeBreakers'> = nested
      ? { limit: undefined, breaker: undefined, dedup: undefined, identity: this.host.httpOptions.identity, observeBreakers: false }
      : this.host.httpOptions;
    const limitRef = route.limit !== undefined ? route.limit : http.limit;
    const refs = limitRef === undefined || limitRef === false ? [] : Array.isArray(limitRef) ? limitRef : [limitRef];
    const limiters = refs.map((ref, i) => this.host.resolveLimiter(ref, `${where}: limit${refs.length > 1 ? `[${i}]` : ''}`));
    const breakerRef = route.breaker !== undefined ? route.breaker : http.breaker;
    let breaker: CircuitBreaker | undefined;
    if (typeof breakerRef === 'string') breaker = this.host.breaker(breakerRef);
    else if (breakerRef && typeof breakerRef === 'object') {
      const { name, ...overrides } = breakerRef as { name: string } & Record<string, unknown>;
      breaker = this.host.breaker(name, overrides);
    }
    const dedupOpt = route.dedup !== undefined ? route.dedup : http.dedup;
    const dedup = !dedupOpt
      ? false
      : dedupOpt === true
        ? {}
        : {
            key: dedupOpt.key as ((req: NeutralRequest) => string) | undefined,
            shared: dedupOpt.shared ? this.host.sharedFlight(dedupOpt.shared, `${where}: dedup.shared`) : undefined,
          };
    return {
      pattern,
      skip: route.skip === true,
      limiters,
      breaker,
      observe: !breaker && http.observeBreakers,
      dedup,
      identity: (route.identity as IdentityFn | undefined) ?? http.identity,
      nested,
      overrides: {
        limit: route.limit !== undefined,
        breaker: route.breaker !== undefined,
        dedup: route.dedup !== undefined,
        response: route.cache !== undefined || route.compression !== undefined || route.fields !== undefined || route.semanticCache !== undefined,
      },
      // A nested route's own response options replace the outer admission's (global ones still fill the gaps).
      response: this.responses.compile(route, this.host.httpOptions, where),
    };
  }

  admit(req: NeutralRequest, route: CompiledRoute): Admission | Promise<Admission> {
    if (route.skip) return { action: 'skip' };
    const started = performance.now();
    const pattern = route.pattern ?? req.route;

    // 1. Limits: every limiter must allow. Headers describe every window of every limit.
    if (route.limiters.length > 0) {
      const identity = resolveIdentity(req, { identity: route.identity, trustProxy: this.host.httpOptions.trustProxy });
      const checked = checkLimits(route.limiters, identity, 1, this.observeDecision);
      if (isPromise(checked)) {
        return checked.then(
          (outcome) => this.afterLimits(req, route, started, pattern, identity, outcome),
          (error: unknown) => this.limitFailure(req, route, started, error),
        );
      }
      return this.afterLimits(req, route, started, pattern, identity, checked);
    }
    return this.dedupThenPass(req, route, started, pattern, undefined, undefined);
  }

  /**
   * A limiter that failed instead of deciding (store-backed limiters normally fall back, so this is a bug or
   * a user's fail-closed choice surfacing as an error): the request gets a clear 503, never a hung promise.
   */
  private limitFailure(req: NeutralRequest, route: CompiledRoute, started: number, error: unknown): Admission {
    const amasError = isAmasError(error)
      ? (error as AmasError)
      : new StoreUnavailableError('Rate limit could not be checked', { cause: error, retryAfterMs: 1000 });
    const ticket = new RequestTicket(this, route, req, started, undefined, undefined, 'rate_limited');
    return { action: 'reject', ticket, rejection: this.reject(amasError, {}, ticket) };
  }

  private readonly observeDecision = (limiter: CheckableLimiter, decision: LimitDecision): void => {
    this.host.metrics.recordRateLimit(limiter.name, decision.allowed);
  };

  private afterLimits(
    req: NeutralRequest,
    route: CompiledRoute,
    started: number,
    pattern: string | undefined,
    identity: string,
    outcome: LimitsOutcome,
  ): Admission | Promise<Admission> {
    const http = this.host.httpOptions;
    const { decisions, denied } = outcome;
    if (denied) {
      const decision = decisions[decisions.length - 1]!;
      const error = new RateLimitedError(`Rate limit "${denied.name}" exceeded; retry in ${Math.ceil(decision.retryAfterMs / 1000)}s`, {
        retryAfterMs: decision.retryAfterMs,
        details: { limit: denied.name },
      });
      const ticket = new RequestTicket(this, route, req, started, undefined, undefined, 'rate_limited');
      return { action: 'reject', ticket, rejection: this.reject(error, rateLimitHeaders(merge(decisions, false), http.rateLimitHeaders), ticket) };
    }
    return this.dedupThenPass(req, route, started, pattern, rateLimitHeaders(merge(decisions, true), http.rateLimitHeaders), identity);
  }

  /**
   * 2. The response layer: a malformed `?fields=` or cache control header is a 400; a cached response answers
   * here (HIT, STALE while another request refreshes it, SEMANTIC-HIT from the semantic cache); otherwise
   * the request goes on with its plan (MISS, BYPASS).
   */
  private dedupThenPass(
    req: NeutralRequest,
    route: CompiledRoute,
    started: number,
    pattern: string | undefined,
    limitHeaders: Record<string, string> | undefined,
    chargedIdentity: string | undefined,
  ): Admission | Promise<Admission> {
    if (route.response === undefined) return this.dedupStep(req, route, started, pattern, limitHeaders, chargedIdentity, undefined);
    const identity = chargedIdentity ?? resolveIdentity(req, { identity: route.identity, trustProxy: this.host.httpOptions.trustProxy });
    let plan: ResponsePlan;
    try {
      plan = this.responses.plan(req, route.response, identity);
    } catch (error) {
      if (!(error instanceof InvalidFieldsError) && !(error instanceof InvalidRequestError)) throw error;
      const ticket = new RequestTicket(this, route, req, started, undefined, undefined, 'bad_request');
      return { action: 'reject', ticket, rejection: this.reject(error, limitHeaders ?? {}, ticket) };
    }
    if (plan.key === undefined && plan.semantic === undefined) return this.dedupStep(req, route, started, pattern, limitHeaders, chargedIdentity, plan);
    return this.responses.lookup(plan).then(
      (answer) => {
        if (answer === undefined) return this.dedupStep(req, route, started, pattern, limitHeaders, chargedIdentity, plan);
        return this.cached(answer, req, route, started, pattern, limitHeaders);
      },
      // The cache failed in a way its own fallbacks did not absorb: serve from the handler, uncached.
      () => this.dedupStep(req, route, started, pattern, limitHeaders, chargedIdentity, undefined),
    );
  }

  /**
   * The response step on its own, after admission, for adapters that must run it after their own guards
   * (Nest: an interceptor, so the cache key sees the user an auth guard set). `ticket` is the request's
   * admission ticket; on 'pass' it carries the plan for `applyResponsePlan`. A cached answer takes back the
   * ticket's breaker permit and dedup lead (the handler will not run).
   */
  respond(req: NeutralRequest, route: CompiledRoute, ticket: RequestTicket): ResponseStep | Promise<ResponseStep> {
    if (route.response === undefined) return PASS;
    const identity = resolveIdentity(req, { identity: route.identity, trustProxy: this.host.httpOptions.trustProxy });
    let plan: ResponsePlan;
    try {
      plan = this.responses.plan(req, route.response, identity);
    } catch (error) {
      if (!(error instanceof InvalidFieldsError) && !(error instanceof InvalidRequestError)) throw error;
      ticket.withdraw({ limit: false, breaker: true, dedup: true, response: false });
      return { action: 'reject', rejection: this.reject(error, {}, ticket) };
    }
    const pass = (): ResponseStep => {
      ticket.plan = plan;
      return PASS;
    };
    if (plan.key === undefined && plan.semantic === undefined) return pass();
    return this.responses.lookup(plan).then(
      (answer) => {
        if (answer === undefined) return pass();
        ticket.withdraw({ limit: false, breaker: true, dedup: true, response: false });
        ticket.answeredFromCache();
        const status = answer.headers['x-cache'];
        ticket.servedFromCache = typeof status === 'string' ? status : 'HIT';
        this.host.metrics.recordHttpCache(route.pattern ?? req.route, typeof status === 'string' ? status : 'HIT');
        return { action: 'replay', response: { status: answer.status, headers: answer.headers, body: answer.body, source: 'cache' } };
      },
      () => PASS,
    );
  }

  private cached(answer: FinalResponse, req: NeutralRequest, route: CompiledRoute, started: number, pattern: string | undefined, limitHeaders: Record<string, string> | undefined): Admission {
    const status = answer.headers['x-cache'];
    this.host.metrics.recordHttpCache(pattern, typeof status === 'string' ? status : 'HIT');
    const ticket = new RequestTicket(this, route, req, started, undefined, limitHeaders, 'cached');
    ticket.servedFromCache = typeof status === 'string' ? status : 'HIT';
    return { action: 'replay', ticket, response: { status: answer.status, headers: answer.headers, body: answer.body, source: 'cache' } };
  }

  /** 3. Dedup: an identical request in flight answers this one too. */
  private dedupStep(
    req: NeutralRequest,
    route: CompiledRoute,
    started: number,
    pattern: string | undefined,
    limitHeaders: Record<string, string> | undefined,
    chargedIdentity: string | undefined,
    plan: ResponsePlan | undefined,
  ): Admission | Promise<Admission> {
    let leaderKey: string | undefined;
    if (route.dedup) {
      const identity = chargedIdentity ?? resolveIdentity(req, { identity: route.identity, trustProxy: this.host.httpOptions.trustProxy });
      const key = this.dedupKey(req, route, identity);
      if (route.dedup.shared) return this.sharedDedup(route.dedup.shared, key, req, route, started, pattern, limitHeaders, chargedIdentity, plan);
      const leader = this.flights.get(key);
      const wait = leader?.waitForShare();
      if (wait !== undefined) return this.follow(wait, req, route, started, limitHeaders, pattern, chargedIdentity, plan);
      // No leader, or one whose response can no longer be shared (it already started writing): lead.
      leaderKey = key;
    }
    return this.pass(req, route, started, limitHeaders, chargedIdentity, leaderKey, plan);
  }

  /**
   * 2b. Dedup across replicas: the shared flight (leases in the store) picks one request, on any replica, to
   * run; it captures its whole response, and every identical request (this replica's included) replays it.
   * A leader whose response cannot be shared (aborted, too big, streaming) hands its followers nothing, and
   * they run themselves.
   */
  private sharedDedup(
    flight: SharedFlight,
    key: string,
    req: NeutralRequest,
    route: CompiledRoute,
    started: number,
    pattern: string | undefined,
    limitHeaders: Record<string, string> | undefined,
    chargedIdentity: string | undefined,
    plan: ResponsePlan | undefined,
  ): Promise<Admission> {
    return new Promise<Admission>((admit) => {
      let leads = false;
      const lead = (): Promise<SharedResponse | undefined> | undefined => {
        leads = true;
        const admission = this.pass(req, route, started, limitHeaders, chargedIdentity, undefined, plan);
        admit(admission);
        if (admission.action !== 'pass') return undefined; // an open breaker: nothing ran, nothing to share
        return new Promise((resolve) => admission.ticket.leadRemote(resolve));
      };
      flight.do(key, lead).then(
        (shared) => {
          if (leads) return;
          if (!shared) return admit(this.pass(req, route, started, limitHeaders, chargedIdentity, undefined, plan));
          plan?.filled();
          this.host.metrics.recordDedupShared(pattern);
          const ticket = new RequestTicket(this, route, req, started, undefined, limitHeaders, 'shared');
          admit({ action: 'replay', ticket, response: reviveShared(shared) });
        },
        // The leader's run failed in a way the flight reports as an error: run this request itself.
        () => {
          if (!leads) admit(this.pass(req, route, started, limitHeaders, chargedIdentity, undefined, plan));
        },
      );
    });
  }

  /** 4. Breaker: an open enforcing breaker rejects fast; otherwise the request holds a permit and passes. */
  private pass(
    req: NeutralRequest,
    route: CompiledRoute,
    started: number,
    limitHeaders: Record<string, string> | undefined,
    chargedIdentity: string | undefined,
    leaderKey: string | undefined,
    plan?: ResponsePlan,
  ): Admission {
    let permit: BreakerPermit | undefined;
    if (route.breaker) {
      const acquired = route.breaker.tryAcquire();
      if (isAmasError(acquired)) {
        plan?.filled();
        if (chargedIdentity !== undefined) for (const limiter of route.limiters) refundQuietly(limiter, chargedIdentity, 1);
        const ticket = new RequestTicket(this, route, req, started, undefined, undefined, 'breaker_open');
        return { action: 'reject', ticket, rejection: this.reject(acquired as BreakerOpenError, limitHeaders ?? {}, ticket) };
      }
      permit = acquired as BreakerPermit;
    }

    const ticket = new RequestTicket(this, route, req, started, permit, limitHeaders, undefined);
    ticket.plan = plan;
    if (chargedIdentity !== undefined) ticket.charged = { limiters: route.limiters, identity: chargedIdentity };
    if (leaderKey !== undefined) ticket.lead(leaderKey, this.flights);
    return { action: 'pass', ticket };
  }

  /** Renders an AMAS error thrown inside a handler (e.g. an open breaker around an upstream call). */
  rejectionFor(error: unknown): Rejection | undefined {
    if (!isAmasError(error)) return undefined;
    return renderRejection(error, {}, this.host.httpOptions.rejectionBody);
  }

  /** @internal */
  get options(): ResolvedHttpOptions {
    return this.host.httpOptions;
  }

  /** @internal */
  get metrics(): AmasMetrics {
    return this.host.metrics;
  }

  private reject(error: AmasError, headers: Record<string, string>, ticket: RequestTicket): Rejection {
    return renderRejection(error, { ...headers, ...ticket.timingHeaders() }, this.host.httpOptions.rejectionBody);
  }

  private dedupKey(req: NeutralRequest, route: CompiledRoute, identity: string): string {
    const custom = route.dedup && route.dedup.key;
    if (custom) {
      try {
        const key = custom(req);
        if (typeof key === 'string' && key) return `${identity}\n${key}`;
      } catch {
        // Fall through to the default key: a broken key function must not fail the request.
      }
    }
    const body = req.body === undefined || req.body === null || (typeof req.body === 'object' && !Buffer.isBuffer(req.body) && Object.keys(req.body as object).length === 0) ? '' : safeKey(req.body);
    return `${identity}\n${req.method.toUpperCase()} ${req.url}\n${body}`;
  }

  private async follow(
    flight: Promise<SharedResponse | undefined>,
    req: NeutralRequest,
    route: CompiledRoute,
    started: number,
    limitHeaders: Record<string, string> | undefined,
    pattern: string | undefined,
    chargedIdentity: string | undefined,
    plan: ResponsePlan | undefined,
  ): Promise<Admission> {
    const shared = await flight;
    if (!shared) {
      // The leader produced nothing shareable (aborted, too big, already streaming): run this one itself,
      // without charging its limits a second time.
      return this.pass(req, route, started, limitHeaders, chargedIdentity, undefined, plan);
    }
    plan?.filled();
    this.host.metrics.recordDedupShared(pattern);
    const ticket = new RequestTicket(this, route, req, started, undefined, limitHeaders, 'shared');
    return { action: 'replay', ticket, response: shared };
  }

  /** @internal The watch-only breaker of one route (created on first use). */
  observer(method: string, pattern: string): CircuitBreaker {
    const label = `${method.toUpperCase()} ${this.host.metrics.routeLabel(pattern)}`;
    let breaker = this.observers.get(label);
    if (!breaker) {
      breaker = this.host.breaker(`http:${label}`);
      this.observers.set(label, breaker);
    }
    return breaker;
  }

  /** @internal */
  static shareable(outcome: Outcome, maxBytes: number): SharedResponse | undefined {
    if (outcome.aborted || !outcome.body || outcome.body.length > maxBytes) return undefined;
    const headers: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(outcome.headers ?? {})) {
      const lower = name.toLowerCase();
      if (value === undefined || PER_RESPONSE_HEADERS.has(lower)) continue;
      headers[lower] = Array.isArray(value) ? value.map(String) : String(value);
    }
    return { status: outcome.status, headers, body: outcome.body };
  }
}

/** Starts capturing a dedup leader's response (`target`: what the adapter layer captures, e.g. a ServerResponse). */
export type CaptureStart = (ticket: RequestTicket, target: unknown, maxBytes: number) => boolean;

/** One request's passage through the pipeline; `finish` is called exactly once by the adapter. */
export class RequestTicket {
  private finished = false;
  /** Set while this ticket leads a dedup flight. */
  private flightKey: string | undefined;
  private flights: Map<string, RequestTicket> | undefined;
  /** Followers waiting for this leader's response; created on the first follower only (most leaders have none). */
  private waiters: Array<(shared: SharedResponse | undefined) => void> | undefined;
  /** Set when this leader's response goes to a cross-replica flight: it is captured from the start. */
  private remote: ((shared: SharedResponse | undefined) => void) | undefined;
  /** How to start capturing this leader's response, and what to capture (see `captureWith`). */
  private captureStart: CaptureStart | undefined;
  private captureTarget: unknown;
  private captureMaxBytes = 0;

  constructor(
    private readonly pipeline: HttpPipeline,
    private readonly route: CompiledRoute,
    private readonly req: NeutralRequest,
    private readonly started: number,
    private permit: BreakerPermit | undefined,
    /** Rate-limit headers to set on the response before it is written. */
    public headers: Record<string, string> | undefined,
    private fixedOutcome: 'rate_limited' | 'breaker_open' | 'shared' | 'cached' | 'bad_request' | undefined,
  ) {}

  /** @internal The X-Cache status of a response answered from a cache before the handler (HIT, STALE, SEMANTIC-HIT). */
  servedFromCache: string | undefined;

  /** @internal The rate-limit headers are added when the response's headers are written (node-response.ts). */
  limitHeadersAtWriteHead = false;

  /** @internal The response step answered this admitted request from the cache: no upstream outcome to record. */
  answeredFromCache(): void {
    this.fixedOutcome = 'cached';
  }

  /** @internal The response plan (caching, compression, fields) the adapter applies to this request's response. */
  plan: ResponsePlan | undefined;

  /** @internal The limiters this admission charged, and for whom (so a route-level override can refund them). */
  charged: { limiters: readonly CheckableLimiter[]; identity: string } | undefined;

  /**
   * Takes back this (outer) admission's decision for the parts a nested route sets itself: refunds its limit
   * charges, releases its breaker permit, stops leading its dedup flight (waiting followers run themselves).
   * Returns the names of the limit headers it had added, for the adapter to remove from the response.
   */
  withdraw(overrides: CompiledRoute['overrides']): string[] {
    const removed: string[] = [];
    if (overrides.limit && this.charged) {
      for (const limiter of this.charged.limiters) refundQuietly(limiter, this.charged.identity, 1);
      this.charged = undefined;
      if (this.headers) removed.push(...Object.keys(this.headers));
      this.headers = undefined;
    }
    if (overrides.breaker && this.permit) {
      this.permit.release();
      this.permit = undefined;
    }
    if (overrides.dedup && (this.flightKey !== undefined || this.remote !== undefined)) this.share({ status: 0, aborted: true });
    if (overrides.response && this.plan !== undefined) {
      // The route's own plan replaces this one: the outer capture passes everything through.
      this.plan.withdrawn = true;
      this.plan.filled();
    }
    return removed;
  }

  /** True while this ticket leads a dedup flight (its response may be shared with followers). */
  get leads(): boolean {
    return this.flightKey !== undefined || this.remote !== undefined;
  }

  /** @internal Leads a cross-replica flight: `resolve` receives the shareable response (or undefined) once. */
  leadRemote(resolve: (shared: SharedResponse | undefined) => void): void {
    this.remote = resolve;
  }

  /** True while followers are waiting, i.e. when the captured response is worth assembling. */
  get hasFollowers(): boolean {
    return this.waiters !== undefined;
  }

  /**
   * Set by the adapter layer: `start(ticket, target, maxBytes)` starts capturing the leader's response when
   * the first follower arrives, and says whether it could (false once the leader has started writing: that
   * follower then runs itself). Leaders without followers, the common case, pay nothing for capture.
   * A plain function plus its target rather than a closure: every dedup leader sets one, and a per-request
   * closure held by the ticket measured about 170 bytes a request promoted to V8's old generation under load
   * (Fastify bench server, --trace-gc-nvp), i.e. more frequent full collections.
   */
  captureWith(start: CaptureStart, target: unknown, maxBytes: number): void {
    this.captureStart = start;
    this.captureTarget = target;
    this.captureMaxBytes = maxBytes;
    // Followers on other replicas are never seen arriving: a remote leader captures from the start.
    if (this.remote !== undefined && !start(this, target, maxBytes)) this.shareRemote(undefined);
  }

  /** @internal */
  lead(key: string, flights: Map<string, RequestTicket>): void {
    this.flightKey = key;
    this.flights = flights;
    flights.set(key, this);
  }

  /**
   * @internal A follower's wait for this leader's response (resolving to undefined when there turns out to be
   * nothing to share). Returns undefined at once when the leader can no longer share (its response already
   * started), and stops leading, so the caller becomes the new leader without waiting.
   */
  waitForShare(): Promise<SharedResponse | undefined> | undefined {
    // Without a capture the adapter hands the body to finish() itself.
    const start = this.captureStart;
    if (this.waiters === undefined && start !== undefined && !start(this, this.captureTarget, this.captureMaxBytes)) {
      if (this.flightKey !== undefined) {
        this.flights!.delete(this.flightKey);
        this.flightKey = undefined;
      }
      return undefined;
    }
    return new Promise((resolve) => (this.waiters ??= []).push(resolve));
  }

  /** `X-Response-Time` and `Server-Timing`, measured now (call just before headers are written). */
  timingHeaders(): Record<string, string> {
    if (!this.timed) return {};
    const ms = formatMs(performance.now() - this.started);
    return { 'x-response-time': `${ms}ms`, 'server-timing': `total;dur=${ms}` };
  }

  /** True when this ticket adds timing headers (the option is on and this is not a nested admission). */
  get timed(): boolean {
    return this.pipeline.options.responseTime && !this.route.nested;
  }

  /** Milliseconds since admission, formatted as the timing headers carry it (e.g. `12.345`). */
  elapsedMs(): string {
    return formatMs(performance.now() - this.started);
  }

  /** Sets the timing headers on a response directly (the hot path: no intermediate object). */
  setTimingHeaders(res: { setHeader(name: string, value: string): unknown }): void {
    const ms = this.elapsedMs();
    res.setHeader('x-response-time', `${ms}ms`);
    res.setHeader('server-timing', `total;dur=${ms}`);
  }

  /**
   * Hands the complete response to dedup followers as soon as the body is known (the adapter calls this
   * when the handler ends the response), so they need not wait for it to be flushed to the leader's socket.
   */
  share(outcome: Outcome): void {
    if (this.remote !== undefined) this.shareRemote(HttpPipeline.shareable(outcome, this.pipeline.options.maxSharedBodyBytes));
    if (this.flightKey === undefined) return;
    this.flights!.delete(this.flightKey);
    this.flightKey = undefined;
    const waiters = this.waiters;
    if (!waiters) return;
    this.waiters = undefined;
    const shared = HttpPipeline.shareable(outcome, this.pipeline.options.maxSharedBodyBytes);
    for (const resolve of waiters) resolve(shared);
  }

  private shareRemote(shared: SharedResponse | undefined): void {
    const resolve = this.remote;
    this.remote = undefined;
    resolve?.(shared);
  }

  /** Records the outcome for breakers, metrics and dedup followers. Later calls are ignored. */
  finish(outcome: Outcome): void {
    if (this.finished) return;
    this.finished = true;
    const options = this.pipeline.options;
    const failed = outcome.aborted ? false : options.isFailureStatus(outcome.status) && !isLocalRejection(outcome);
    if (this.permit) {
      if (outcome.aborted) this.permit.release();
      else if (failed) this.permit.failure(outcome.error ?? new Error(`HTTP ${outcome.status}`));
      else this.permit.success();
    } else if (this.route.observe && !this.fixedOutcome && !outcome.aborted) {
      // Watch-only breakers record at the end, when the route pattern is surely known (Express app-level
      // middleware runs before routing). They never reject: while open they simply record nothing.
      const pattern = outcome.route ?? this.route.pattern ?? this.req.route;
      if (pattern) {
        const permit = this.pipeline.observer(this.req.method, pattern).tryAcquire();
        if (!isAmasError(permit)) {
          if (failed) (permit as BreakerPermit).failure(outcome.error ?? new Error(`HTTP ${outcome.status}`));
          else (permit as BreakerPermit).success();
        }
      }
    }
    if (this.flightKey !== undefined || this.remote !== undefined) this.share(outcome);
    const plan = this.plan;
    if (plan !== undefined) {
      plan.filled();
      const status = plan.cacheStatus;
      if (status !== undefined && !plan.withdrawn) {
        this.pipeline.metrics.recordHttpCache(outcome.route ?? this.route.pattern ?? this.req.route, status);
        if (this.servedFromCache === undefined) this.pipeline.metrics.observeHttpCacheDuration(outcome.route ?? this.route.pattern ?? this.req.route, status, (performance.now() - this.started) / 1000);
      }
    }
    // Nested admissions (Express route-level options) answer from the cache themselves: observed here too.
    if (this.servedFromCache !== undefined) this.pipeline.metrics.observeHttpCacheDuration(outcome.route ?? this.route.pattern ?? this.req.route, this.servedFromCache, (performance.now() - this.started) / 1000);
    if (this.route.nested) return;
    const fixed = this.fixedOutcome === 'cached' || this.fixedOutcome === 'bad_request' ? undefined : this.fixedOutcome;
    const result = fixed ?? (outcome.aborted ? 'aborted' : outcome.status >= 500 ? 'server_error' : outcome.status >= 400 ? 'client_error' : 'success');
    const metrics = this.pipeline.metrics;
    if (metrics.userLabels) {
      const identity = this.charged?.identity ?? resolveIdentity(this.req, { identity: this.route.identity, trustProxy: this.pipeline.options.trustProxy });
      metrics.recordUserRequest(identity, result);
    }
    this.pipeline.metrics.recordRequest(
      outcome.route ?? this.route.pattern ?? this.req.route,
      this.req.method,
      outcome.status,
      result,
      (performance.now() - this.started) / 1000,
    );
  }
}

/**
 * A 429/503 AMAS produced itself (an inner limit, bulkhead or open breaker) is not a new upstream failure
 * of this route; an AMAS timeout is (the upstream was too slow).
 */
function isLocalRejection(outcome: Outcome): boolean {
  return isAmasError(outcome.error) && outcome.error.code !== 'AMAS_TIMEOUT';
}

/** All windows of all decisions, so the headers describe every limit; a denied decision lists only its own. */
function merge(decisions: LimitDecision[], allowed: boolean): LimitDecision {
  if (decisions.length === 1) return decisions[0]!;
  const last = decisions[decisions.length - 1]!;
  if (!allowed) return last;
  return { allowed, cost: last.cost, retryAfterMs: 0, windows: decisions.flatMap((d) => d.windows) };
}

/** What the pipeline needs from a cross-replica flight (SharedSingleFlight). */
export interface SharedFlight {
  do<T>(key: string, fn: () => Promise<T> | T): Promise<T>;
}

/** A shared response that crossed the store comes back as plain data: make sure the body is a Buffer again. */
function reviveShared(shared: SharedResponse): SharedResponse {
  const body = shared.body as unknown;
  return Buffer.isBuffer(body) ? shared : { ...shared, body: Buffer.from(body as Uint8Array) };
}

function isPromise<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

function safeKey(body: unknown): string {
  try {
    return Buffer.isBuffer(body) ? `b:${body.toString('base64')}` : typeof body === 'string' ? `s:${body}` : stableKey(body);
  } catch {
    return `unkeyable:${Math.random()}`; // a circular body: never share it
  }
}

export { defaultRejectionBody, PER_RESPONSE_HEADERS };
