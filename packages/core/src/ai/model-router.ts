/**
 * The model router: a model name maps to a group of endpoints (keys, regions, deployments, providers); each call
 * goes to one eligible endpoint chosen by the group's strategy, is retried on another endpoint when it fails in a
 * way worth retrying, and moves on to the model's fallbacks once the group is exhausted.
 *
 * An endpoint is eligible when it is not ejected by outlier detection, its circuit breaker is not open, it is
 * not cooling down after a Retry-After, and it passes its health checks (when every endpoint fails them the
 * checks are ignored, Envoy's "panic" routing, since the breakers still protect a dead group). Every endpoint has
 * its own breaker, so a group of one endpoint that dies costs `failureThreshold` calls plus one probe per
 * recovery period, never a retry storm: once the breaker is open, calls fail fast (or fall back) without waiting.
 *
 * Streams are retried and fall back only until the first byte: the router waits for the first chunk of the body
 * before handing the stream over, so a provider that answers 200 and then dies at once is retried like any other
 * failure. After that the caller owns the stream.
 */
import { sleep as clockSleep, type Clock, type TimerHandle } from '../clock.js';
import { AbortedError, BreakerOpenError, InvalidRequestError, isAmasError, TimeoutError } from '../errors.js';
import { Emitter } from '../events.js';
import { describe, MAX_TIMER_MS } from '../options/validate.js';
import type { Logger } from '../logger.js';
import { CircuitBreaker, type BreakerPermit, type BreakerState } from '../policies/circuit-breaker.js';
import { isRetryableError } from '../policies/retry.js';
import { retryAfterFromError } from '../policies/retry-after.js';
import { createBalancer, LatencyEwma, type Balancer, type BalancerCandidate, type BalancingStrategy } from './balancer.js';
import { HealthChecker } from './health-checker.js';
import { OutlierDetector, type EjectionReason } from './outlier-detector.js';
import {
  UpstreamError,
  type ProviderTransport,
  type UpstreamRequest,
  type UpstreamResponse,
  type UpstreamStream,
} from './provider-types.js';
import {
  displayUrl,
  resolveRouterOptions,
  type BreakerFactory,
  type FallbackCondition,
  type ModelRouterOptions,
  type ResolvedEndpoint,
  type ResolvedModelRoute,
} from './router-options.js';

export type { ModelRouterOptions } from './router-options.js';

/** One upstream call made for a routed request (aborted ones included). */
export interface RouteAttempt {
  endpoint: string;
  /** The model group the attempt belonged to (the fallback's name for fallback attempts). */
  model: string;
  /** The HTTP status, when an answer arrived. */
  status?: number;
  /** Why it failed; absent for the successful attempt. */
  error?: unknown;
  latencyMs: number;
}

export interface RouteResult<R> {
  response: R;
  /** The model that answered (the requested one, or a fallback). */
  model: string;
  /** Id of the endpoint that answered. */
  endpoint: string;
  /** Every upstream call made, in order, the successful one last. */
  attempts: RouteAttempt[];
}

export interface RouteCallOptions {
  signal?: AbortSignal;
  /** Extra headers for this call (on top of the endpoint's). */
  headers?: Record<string, string>;
  /** This call's deadline per attempt, in ms, instead of its model's `attemptTimeoutMs` (fallback models too). */
  attemptTimeoutMs?: number;
}

export interface ChatCallOptions extends RouteCallOptions {
  /** The model group to route to. Default `body.model`. */
  model?: string;
}

export interface RouterEndpointStats {
  id: string;
  /** Origin and base path (never credentials). */
  url: string;
  provider: string;
  /** The model name sent to this deployment. */
  model: string;
  weight: number;
  /** Upstream calls sent. */
  requests: number;
  successes: number;
  /** Failed calls (aborted ones excluded; a stream that broke after its first byte included). */
  errors: number;
  outstanding: number;
  /** Latency EWMA, ms (undefined before the first answer). */
  ewmaMs: number | undefined;
  ejected: boolean;
  ejectedUntil?: number;
  ejections: number;
  /** Epoch ms until which a Retry-After keeps this endpoint out. */
  cooldownUntil?: number;
  breaker: BreakerState;
  /** From active health checks (true when they are off). */
  healthy: boolean;
  lastError?: string;
}

export interface RouterModelStats {
  model: string;
  strategy: BalancingStrategy;
  /** Calls routed to this model (as the requested model or as a fallback). */
  requests: number;
  successes: number;
  failures: number;
  /** Times this model's group was exhausted and the call moved on to a fallback. */
  fellBack: number;
  endpoints: RouterEndpointStats[];
}

export type ModelRouterEvents = {
  ejected: { model: string; endpoint: string; reason: EjectionReason; ejections: number; durationMs: number; until: number };
  returned: { model: string; endpoint: string; ejectedForMs: number };
  healthChange: { model: string; endpoint: string; healthy: boolean; reason: string };
  fallback: { from: string; to: string; error: unknown; attempts: number };
  retry: { model: string; endpoint: string; attempt: number; delayMs: number; error: unknown };
  cooldown: { model: string; endpoint: string; retryAfterMs: number; until: number };
  breakerStateChange: { model: string; endpoint: string; breaker: string; from: BreakerState; to: BreakerState; reason: string };
  /** Every upstream call, when it ends (for metrics): how it went and how long it took. */
  attempt: { model: string; endpoint: string; outcome: AttemptOutcomeClass; status?: number; latencyMs: number; stream: boolean };
};

/** How one upstream call ended, in classes bounded enough to be metric labels. */
export type AttemptOutcomeClass = 'success' | 'client_error' | 'rate_limited' | 'server_error' | 'network' | 'timeout' | 'aborted' | 'other';

type FailureKind = 'abort' | 'http' | 'network' | 'timeout' | 'breaker-open' | 'no-eligible-endpoint' | 'other';

/** How the router reads a failure. Network errors are never 'http', even though the transport gives them 502/504. */
function failureKind(error: unknown): { kind: FailureKind; status?: number } {
  if (error instanceof UpstreamError) {
    if (error.network) return { kind: error.status === 504 ? 'timeout' : 'network', status: error.status };
    return { kind: 'http', status: error.status };
  }
  if (error instanceof BreakerOpenError) {
    return { kind: (error.details as { reason?: unknown }).reason === 'no-eligible-endpoint' ? 'no-eligible-endpoint' : 'breaker-open' };
  }
  if (error instanceof AbortedError) return { kind: 'abort' };
  if (typeof error !== 'object' || error === null) return { kind: 'other' };
  const e = error as { name?: unknown; code?: unknown; status?: unknown };
  if (e.code === 'AMAS_TIMEOUT' || e.name === 'TimeoutError') return { kind: 'timeout' };
  if (e.name === 'AbortError') return { kind: 'abort' };
  if (!isAmasError(error) && typeof e.status === 'number') return { kind: 'http', status: e.status };
  if (isRetryableError(error)) return { kind: 'network' };
  return { kind: 'other' };
}

function outcomeClass(kind: FailureKind, status: number | undefined): AttemptOutcomeClass {
  if (kind === 'http' && status !== undefined) return status === 429 ? 'rate_limited' : status >= 500 ? 'server_error' : status >= 400 ? 'client_error' : 'other';
  if (kind === 'network' || kind === 'timeout') return kind;
  if (kind === 'abort') return 'aborted';
  return 'other';
}

/** The router's default retry test: 408, 429, 5xx, network failures and timeouts. */
export function isRetryableUpstreamError(error: unknown): boolean {
  const { kind, status } = failureKind(error);
  if (kind === 'network' || kind === 'timeout') return true;
  return kind === 'http' && status !== undefined && (status === 408 || status === 429 || status >= 500);
}

/** Whether `error` is one of `conditions` (see FallbackCondition). */
export function matchesFallback(conditions: readonly FallbackCondition[] | ((error: unknown) => boolean), error: unknown): boolean {
  if (typeof conditions === 'function') {
    try {
      return conditions(error) === true;
    } catch {
      return false;
    }
  }
  const { kind, status } = failureKind(error);
  switch (kind) {
    case 'http':
      return (
        status !== undefined &&
        (conditions.includes(status) || (status >= 400 && status < 500 && conditions.includes('4xx')) || (status >= 500 && conditions.includes('5xx')))
      );
    case 'network':
    case 'timeout':
    case 'breaker-open':
    case 'no-eligible-endpoint':
      return conditions.includes(kind);
    default:
      return false;
  }
}

const ATTEMPTS = Symbol.for('amas.routeAttempts');

/** The attempts of a routed call that failed, from the error it rejected with. */
export function routeAttemptsOf(error: unknown): RouteAttempt[] | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  return (error as Record<symbol, RouteAttempt[] | undefined>)[ATTEMPTS];
}

function tagAttempts(error: unknown, attempts: RouteAttempt[]): void {
  if (typeof error !== 'object' || error === null || !Object.isExtensible(error)) return;
  try {
    Object.defineProperty(error, ATTEMPTS, { value: attempts, configurable: true, enumerable: false });
  } catch {
    // A proxy or an exotic object: the attempts are only a convenience.
  }
}

function abortedBy(signal: AbortSignal): AbortedError {
  return new AbortedError(undefined, { cause: signal.reason });
}

/** Settles like `promise`, or rejects with AbortedError as soon as `signal` aborts. */
function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(abortedBy(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortedBy(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

function describeError(error: unknown): string {
  if (error instanceof Error) {
    const status = (error as { status?: unknown }).status;
    return typeof status === 'number' ? `${status} ${error.message}` : error.message;
  }
  return String(error);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !Buffer.isBuffer(value);
}

/** One endpoint of one model group, with everything balancing and eligibility read. */
class EndpointState implements BalancerCandidate {
  readonly id: string;
  readonly weight: number;
  outstanding = 0;
  /** Set from the EWMA just before each pick. */
  latencyMs: number | undefined = undefined;
  cooldownUntil = 0;
  requests = 0;
  successes = 0;
  errors = 0;
  lastError: string | undefined;
  readonly ewma: LatencyEwma;

  constructor(
    readonly index: number,
    readonly config: ResolvedEndpoint,
    readonly breaker: CircuitBreaker,
    ewma: { alpha: number; decayMs: number },
  ) {
    this.id = config.id;
    this.weight = config.weight;
    this.ewma = new LatencyEwma(ewma);
  }
}

class ModelGroup {
  requests = 0;
  successes = 0;
  failures = 0;
  fellBack = 0;
  fallbackGroups: ModelGroup[] = [];

  constructor(
    readonly name: string,
    readonly route: ResolvedModelRoute,
    readonly endpoints: EndpointState[],
    readonly balancer: Balancer,
    readonly outlier: OutlierDetector,
    readonly health: HealthChecker | undefined,
  ) {}
}

type Choice = { endpoint: EndpointState; waitMs: 0 } | { endpoint?: undefined; waitMs: number } | { endpoint?: undefined; none: BreakerOpenError };

type AttemptOutcome<R> = { ok: true; response: R } | { ok: false; error: unknown; retryable: boolean };

type GroupOutcome<R> = { ok: true; response: R; endpoint: string } | { ok: false; error: unknown; failures: unknown[] };

export class ModelRouter {
  private readonly transport: ProviderTransport;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly random: () => number;
  private readonly groups = new Map<string, ModelGroup>();
  private readonly emitter = new Emitter<ModelRouterEvents>();
  private readonly ownsBreakers: boolean;
  private readonly detach: Array<() => void> = [];
  private readonly sleepers = new Set<(error: unknown) => void>();
  private closed = false;

  constructor(options: ModelRouterOptions) {
    const o = resolveRouterOptions(options);
    this.transport = o.transport;
    this.clock = o.clock;
    this.logger = o.logger;
    this.random = o.random;
    this.ownsBreakers = o.breakers === undefined;
    for (const route of o.models.values()) this.groups.set(route.name, this.buildGroup(route, o.breakers, o.ewma));
    for (const group of this.groups.values()) group.fallbackGroups = group.route.fallbacks.map((name) => this.groups.get(name)!);
    for (const group of this.groups.values()) group.health?.start();
  }

  on<K extends keyof ModelRouterEvents>(event: K, listener: (e: ModelRouterEvents[K]) => void): () => void {
    return this.emitter.on(event, listener);
  }

  /** Names of the configured models. */
  models(): string[] {
    return [...this.groups.keys()];
  }

  /** POST /v1/chat/completions to `opts.model ?? body.model`. */
  async chat(body: Record<string, unknown>, opts: ChatCallOptions = {}): Promise<RouteResult<UpstreamResponse>> {
    return this.call(this.modelOf(body, opts), '/v1/chat/completions', body, opts);
  }

  /** Streamed chat completion (`stream: true` is set in the body). Retries and fallbacks end at the first byte. */
  async chatStream(body: Record<string, unknown>, opts: ChatCallOptions = {}): Promise<RouteResult<UpstreamStream>> {
    const model = this.modelOf(body, opts);
    return this.callStream(model, '/v1/chat/completions', isPlainObject(body) ? { ...body, stream: true } : body, opts);
  }

  /** POST /v1/embeddings to `opts.model ?? body.model`. */
  async embeddings(body: Record<string, unknown>, opts: ChatCallOptions = {}): Promise<RouteResult<UpstreamResponse>> {
    return this.call(this.modelOf(body, opts), '/v1/embeddings', body, opts);
  }

  /**
   * POSTs `body` to `path` on one of `model`'s endpoints, with the router's retries and fallbacks. `body.model`
   * (for an object body) is set to the model of the group serving it, or to `endpoint.model` when given.
   */
  call(model: string, path: string, body: unknown, opts: RouteCallOptions = {}): Promise<RouteResult<UpstreamResponse>> {
    return this.route<UpstreamResponse>(model, path, body, false, opts);
  }

  /** Like call(), streamed. */
  callStream(model: string, path: string, body: unknown, opts: RouteCallOptions = {}): Promise<RouteResult<UpstreamStream>> {
    return this.route<UpstreamStream>(model, path, body, true, opts);
  }

  stats(): Record<string, RouterModelStats> {
    const out: Record<string, RouterModelStats> = {};
    for (const g of this.groups.values()) {
      out[g.name] = {
        model: g.name,
        strategy: g.route.strategy,
        requests: g.requests,
        successes: g.successes,
        failures: g.failures,
        fellBack: g.fellBack,
        endpoints: g.endpoints.map((ep) => this.endpointStats(g, ep)),
      };
    }
    return out;
  }

  /**
   * Stops health checks and ejection timers, wakes calls waiting out a backoff (they reject with AbortedError),
   * and detaches from the breakers (disposing them when the router created them). Calls after close() reject.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const g of this.groups.values()) {
      g.health?.stop();
      g.outlier.stop();
    }
    const closing = new AbortedError('The model router was closed');
    for (const wake of [...this.sleepers]) wake(closing);
    this.sleepers.clear();
    for (const off of this.detach.splice(0)) off();
    if (this.ownsBreakers) for (const g of this.groups.values()) for (const ep of g.endpoints) ep.breaker.dispose();
    this.emitter.removeAll();
  }

  // ---- construction ----------------------------------------------------------------------------------------

  private buildGroup(route: ResolvedModelRoute, factory: BreakerFactory | undefined, ewma: { alpha: number; decayMs: number }): ModelGroup {
    const endpoints = route.endpoints.map((config, index) => {
      const name = `ai:${route.name}/${config.id}`;
      const settings = { ...route.breaker, clock: this.clock };
      const breaker = factory ? factory.get(name, settings) : new CircuitBreaker({ ...settings, name });
      const ep = new EndpointState(index, config, breaker, ewma);
      this.detach.push(
        breaker.on('stateChange', (e) => {
          this.emitter.emit('breakerStateChange', { model: route.name, endpoint: ep.id, breaker: name, from: e.from, to: e.to, reason: e.reason });
        }),
      );
      return ep;
    });
    const outlier = new OutlierDetector(
      endpoints.map((e) => e.id),
      route.outlier,
      this.clock,
    );
    outlier.on('ejected', (e) => {
      this.logger.warn(`AI endpoint "${e.endpoint}" of model "${route.name}" ejected for ${e.durationMs} ms (${e.reason}, ejection #${e.ejections})`);
      this.emitter.emit('ejected', { model: route.name, ...e });
    });
    outlier.on('returned', (e) => this.emitter.emit('returned', { model: route.name, ...e }));
    let health: HealthChecker | undefined;
    if (route.healthCheck !== undefined) {
      health = new HealthChecker({ ...route.healthCheck, endpoints: route.endpoints, transport: this.transport, clock: this.clock, logger: this.logger });
      health.on('change', (e) => this.emitter.emit('healthChange', { model: route.name, ...e }));
    }
    const balancer = createBalancer(route.strategy, { random: this.random });
    return new ModelGroup(route.name, route, endpoints, balancer, outlier, health);
  }

  // ---- routing -----------------------------------------------------------------------------------------------

  private modelOf(body: Record<string, unknown>, opts: ChatCallOptions): string {
    const model = opts.model ?? (isPlainObject(body) ? body.model : undefined);
    if (typeof model !== 'string' || model === '') {
      throw new InvalidRequestError('The request body needs a `model`', { details: { parameter: 'model' } });
    }
    return model;
  }

  private async route<R extends UpstreamResponse | UpstreamStream>(
    model: string,
    path: string,
    body: unknown,
    stream: boolean,
    opts: RouteCallOptions,
  ): Promise<RouteResult<R>> {
    if (this.closed) throw new AbortedError('The model router is closed');
    const first = this.groups.get(model);
    if (first === undefined) {
      throw new InvalidRequestError(`The model "${model}" does not exist here`, { status: 404, details: { parameter: 'model', model } });
    }
    const signal = opts.signal;
    if (signal?.aborted) throw abortedBy(signal);
    const timeout = opts.attemptTimeoutMs;
    if (timeout !== undefined && !(typeof timeout === 'number' && timeout >= 1 && timeout <= MAX_TIMER_MS)) {
      throw new RangeError(`ModelRouter: attemptTimeoutMs must be a number of ms from 1 to ${MAX_TIMER_MS}, received ${describe(timeout)}`);
    }
    const attempts: RouteAttempt[] = [];
    const chain = [first, ...first.fallbackGroups];
    let lastError: unknown;
    try {
      for (let i = 0; i < chain.length; i++) {
        const group = chain[i];
        group.requests++;
        const outcome = await this.runGroup<R>(group, path, body, stream, opts, attempts);
        if (outcome.ok) {
          group.successes++;
          return { response: outcome.response, model: group.name, endpoint: outcome.endpoint, attempts };
        }
        group.failures++;
        lastError = outcome.error;
        const next = chain[i + 1];
        if (next === undefined || !outcome.failures.every((f) => matchesFallback(group.route.fallbackOn, f))) break;
        group.fellBack++;
        this.emitter.emit('fallback', { from: group.name, to: next.name, error: outcome.error, attempts: attempts.length });
      }
    } catch (error) {
      tagAttempts(error, attempts);
      throw error;
    }
    tagAttempts(lastError, attempts);
    throw lastError;
  }

  /** Up to `retry.maxAttempts` calls on one model's endpoints. Rejects only when aborted. */
  private async runGroup<R extends UpstreamResponse | UpstreamStream>(
    g: ModelGroup,
    path: string,
    body: unknown,
    stream: boolean,
    opts: RouteCallOptions,
    attempts: RouteAttempt[],
  ): Promise<GroupOutcome<R>> {
    const { retry } = g.route;
    const signal = opts.signal;
    const tried = new Set<EndpointState>();
    const busy = new Set<EndpointState>(); // half-open breakers whose probe slots were taken
    const failures: unknown[] = [];
    let lastError: unknown;
    let previous: EndpointState | undefined;

    for (let attempt = 1; attempt <= retry.maxAttempts; attempt++) {
      if (attempt > 1) {
        // Nothing left to retry on (breakers open, Retry-After beyond the cap...): stop now rather than back off.
        const survey = this.survey(g, busy);
        if ('none' in survey) {
          failures.push(survey.none);
          return { ok: false, error: lastError, failures };
        }
        const delayMs = this.backoff(g, attempt - 1);
        if (this.emitter.has('retry')) this.emitter.emit('retry', { model: g.name, endpoint: previous!.id, attempt, delayMs, error: lastError });
        await this.sleep(delayMs, signal);
      }
      // Find an endpoint: waiting out a short Retry-After does not use up an attempt.
      let endpoint: EndpointState | undefined;
      let permit: BreakerPermit | undefined;
      for (let guard = 0; endpoint === undefined && guard < 2 * g.endpoints.length + 4; guard++) {
        const choice = this.choose(g, tried, busy);
        if ('none' in choice) {
          failures.push(choice.none);
          return { ok: false, error: lastError ?? choice.none, failures };
        }
        if (choice.endpoint === undefined) {
          await this.sleep(choice.waitMs, signal);
          continue;
        }
        const p = choice.endpoint.breaker.tryAcquire();
        if (p instanceof BreakerOpenError) {
          busy.add(choice.endpoint);
          continue;
        }
        endpoint = choice.endpoint;
        permit = p;
      }
      if (endpoint === undefined || permit === undefined) break;
      tried.add(endpoint);
      previous = endpoint;
      const outcome = await this.attempt<R>(g, endpoint, permit, path, body, stream, opts, attempts, attempt);
      if (outcome.ok) return { ok: true, response: outcome.response, endpoint: endpoint.id };
      lastError = outcome.error;
      failures.push(outcome.error);
      if (!outcome.retryable) break;
    }
    if (lastError === undefined) {
      const none = this.noEligible(g, 'no-eligible-endpoint', 1000, 'no endpoint could be reserved');
      return { ok: false, error: none, failures: [none] };
    }
    return { ok: false, error: lastError, failures };
  }

  /**
   * The endpoint for the next attempt: among eligible endpoints (healthy ones if any), those not cooling down
   * after a Retry-After, preferring ones this call has not tried yet. When all are cooling down, the wait for the
   * first to come back if it is within `maxRetryAfterMs`, else none.
   */
  private choose(g: ModelGroup, tried: Set<EndpointState>, busy: Set<EndpointState>): Choice {
    const survey = this.survey(g, busy);
    if ('none' in survey) return survey;
    const now = this.clock.now();
    let ready = survey.candidates.filter((ep) => ep.cooldownUntil <= now);
    if (ready.length === 0) return { waitMs: Math.min(...survey.candidates.map((ep) => ep.cooldownUntil)) - now };
    const fresh = ready.filter((ep) => !tried.has(ep));
    if (fresh.length > 0) ready = fresh;
    for (const ep of ready) ep.latencyMs = ep.ewma.estimate(now);
    return { endpoint: g.balancer.pick(ready)!, waitMs: 0 };
  }

  /**
   * The endpoints that may take a call now or after a Retry-After within `maxRetryAfterMs` (no balancer state is
   * touched), or why there are none: the rejection to fail or fall back with, its retryAfterMs when the first
   * blocked endpoint comes back.
   */
  private survey(g: ModelGroup, busy: Set<EndpointState>): { candidates: EndpointState[] } | { none: BreakerOpenError } {
    const now = this.clock.now();
    const pool: EndpointState[] = [];
    const healthy: EndpointState[] = [];
    let breakerBlocked = 0;
    let otherBlocked = 0;
    let readyInMs = Infinity;
    for (const ep of g.endpoints) {
      if (busy.has(ep)) {
        breakerBlocked++;
        readyInMs = Math.min(readyInMs, 1000);
        continue;
      }
      const until = g.outlier.ejectedUntil(ep.id);
      if (until !== undefined) {
        otherBlocked++;
        readyInMs = Math.min(readyInMs, until - now);
        continue;
      }
      const state = ep.breaker.getState();
      if (state === 'open' || state === 'isolated') {
        breakerBlocked++;
        const next = state === 'open' ? ep.breaker.stats().nextAttemptAt : undefined;
        if (next !== undefined) readyInMs = Math.min(readyInMs, next - now);
        continue;
      }
      pool.push(ep);
      if (g.health === undefined || g.health.isHealthy(ep.id)) healthy.push(ep);
    }
    const candidates = healthy.length > 0 ? healthy : pool;
    if (candidates.length > 0) {
      const waitMs = Math.min(...candidates.map((ep) => ep.cooldownUntil)) - now;
      if (waitMs <= g.route.retry.maxRetryAfterMs) return { candidates };
      otherBlocked += candidates.length;
      readyInMs = Math.min(readyInMs, waitMs);
    }
    const reason = otherBlocked === 0 && breakerBlocked > 0 ? 'breaker-open' : 'no-eligible-endpoint';
    const detail = [breakerBlocked ? `${breakerBlocked} with an open breaker` : '', otherBlocked ? `${otherBlocked} ejected or cooling down` : '']
      .filter(Boolean)
      .join(', ');
    return { none: this.noEligible(g, reason, Number.isFinite(readyInMs) ? readyInMs : 1000, detail) };
  }

  private noEligible(g: ModelGroup, reason: 'breaker-open' | 'no-eligible-endpoint', retryAfterMs: number, detail: string): BreakerOpenError {
    return new BreakerOpenError(`No eligible endpoint for model "${g.name}"${detail ? ` (${detail})` : ''}`, {
      retryAfterMs: Math.max(0, retryAfterMs),
      details: { model: g.name, reason },
    });
  }

  /** One upstream call on `ep`, with all its bookkeeping. Rejects only when aborted. */
  private async attempt<R extends UpstreamResponse | UpstreamStream>(
    g: ModelGroup,
    ep: EndpointState,
    permit: BreakerPermit,
    path: string,
    body: unknown,
    stream: boolean,
    opts: RouteCallOptions,
    attempts: RouteAttempt[],
    attemptNo: number,
  ): Promise<AttemptOutcome<R>> {
    const signal = opts.signal;
    // The attempt's own deadline: its signal aborts the upstream call when either the caller or the timer does.
    // Not TimeoutPolicy: that one stops following the caller's signal once it settles, and a stream's upstream
    // request must keep following it after the deadline is cleared at the first chunk.
    const timeoutMs = opts.attemptTimeoutMs ?? g.route.attemptTimeoutMs;
    let timer: TimerHandle | undefined;
    let timedOut: TimeoutError | undefined;
    let attemptSignal = signal;
    if (timeoutMs !== undefined) {
      const deadline = new AbortController();
      timer = this.clock.setTimeout(() => {
        timedOut = new TimeoutError(`"${ep.id}" did not ${stream ? 'start streaming' : 'answer'} within ${timeoutMs}ms (attemptTimeoutMs)`, {
          details: { model: g.name, endpoint: ep.id, timeoutMs },
        });
        deadline.abort(timedOut);
      }, timeoutMs);
      attemptSignal = signal === undefined ? deadline.signal : AbortSignal.any([signal, deadline.signal]);
    }
    const request: UpstreamRequest = {
      path,
      method: 'POST',
      body: isPlainObject(body) ? { ...body, model: ep.config.model ?? g.name } : body,
      ...(opts.headers === undefined ? {} : { headers: opts.headers }),
      ...(attemptSignal === undefined ? {} : { signal: attemptSignal }),
    };
    const start = this.clock.now();
    ep.outstanding++;
    ep.requests++;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      ep.outstanding--;
    };
    let abandoned = false;
    let pending: Promise<UpstreamResponse | UpstreamStream>;
    try {
      pending = Promise.resolve(stream ? this.transport.stream(ep.config, request) : this.transport.request(ep.config, request));
    } catch (error) {
      pending = Promise.reject(error);
    }
    // The endpoint is busy until the call settles, even when this router stopped waiting for it (abort).
    if (stream) {
      pending.then(
        (s) => {
          if (abandoned) {
            release();
            closeBody(s as UpstreamStream);
          }
        },
        release,
      );
    } else {
      pending.then(release, release);
    }

    let response: UpstreamResponse | UpstreamStream;
    try {
      response = await raceAbort(pending, attemptSignal);
      if (stream) response = await this.firstChunk(g, ep, response as UpstreamStream, attemptSignal, release);
      this.clock.clearTimeout(timer);
    } catch (caught) {
      this.clock.clearTimeout(timer);
      abandoned = true;
      const latencyMs = this.clock.now() - start;
      // Our deadline aborted the call: it failed as a timeout (unless the caller gave up at the same moment).
      const error = timedOut !== undefined && !signal?.aborted ? timedOut : caught;
      if (signal?.aborted) {
        permit.release();
        const aborted = error instanceof AbortedError ? error : abortedBy(signal);
        attempts.push({ endpoint: ep.id, model: g.name, error: aborted, latencyMs });
        if (this.emitter.has('attempt')) this.emitter.emit('attempt', { model: g.name, endpoint: ep.id, outcome: 'aborted', latencyMs, stream });
        throw aborted;
      }
      const outcome = this.failed(g, ep, permit, error, latencyMs, attempts, attemptNo);
      if (this.emitter.has('attempt')) {
        const { kind, status } = failureKind(error);
        this.emitter.emit('attempt', { model: g.name, endpoint: ep.id, outcome: outcomeClass(kind, status), ...(status !== undefined && { status }), latencyMs, stream });
      }
      return outcome;
    }

    const measured = this.clock.now() - start;
    const latencyMs = stream ? Math.max(response.latencyMs ?? 0, measured) : typeof response.latencyMs === 'number' ? response.latencyMs : measured;
    permit.success();
    g.outlier.success(ep.id);
    ep.ewma.record(latencyMs, this.clock.now());
    ep.successes++;
    attempts.push({ endpoint: ep.id, model: g.name, status: response.status, latencyMs });
    if (this.emitter.has('attempt')) this.emitter.emit('attempt', { model: g.name, endpoint: ep.id, outcome: 'success', status: response.status, latencyMs, stream });
    return { ok: true, response: response as R };
  }

  /** Bookkeeping of a failed (not aborted) attempt. */
  private failed(
    g: ModelGroup,
    ep: EndpointState,
    permit: BreakerPermit,
    error: unknown,
    latencyMs: number,
    attempts: RouteAttempt[],
    attemptNo: number,
  ): AttemptOutcome<never> {
    const { kind, status } = failureKind(error);
    const now = this.clock.now();
    ep.errors++;
    ep.lastError = describeError(error);
    const clientError = kind === 'http' && status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429;
    // A request the caller got wrong says the endpoint is alive; everything else counts against it.
    if (clientError) permit.success();
    else permit.failure(error);
    const endpointFault = kind === 'network' || kind === 'timeout' || (kind === 'http' && status !== undefined && status >= 500);
    if (endpointFault || (status === 429 && g.outlier.countRateLimited)) g.outlier.failure(ep.id);
    else if (kind === 'http' && status !== 429) g.outlier.success(ep.id);
    if (endpointFault) ep.ewma.penalize(latencyMs, now);

    const { retry } = g.route;
    if (retry.respectRetryAfter) {
      const hint = retryAfterOf(error, now);
      if (hint !== undefined && hint > 0) {
        const until = now + hint;
        if (until > ep.cooldownUntil) {
          ep.cooldownUntil = until;
          if (this.emitter.has('cooldown')) this.emitter.emit('cooldown', { model: g.name, endpoint: ep.id, retryAfterMs: hint, until });
        }
      }
    }
    let retryable: boolean;
    try {
      retryable = retry.retryOn ? retry.retryOn(error, attemptNo) === true : isRetryableUpstreamError(error);
    } catch {
      retryable = false;
    }
    attempts.push({ endpoint: ep.id, model: g.name, ...(status === undefined || kind !== 'http' ? {} : { status }), error, latencyMs });
    return { ok: false, error, retryable };
  }

  /**
   * Waits for the first chunk of a stream, so a stream that breaks before its first byte is retried. Resolves
   * with a stream whose body replays that chunk, then the rest; the endpoint stays outstanding until the body ends,
   * is returned early, or the caller's signal aborts.
   */
  private async firstChunk(
    g: ModelGroup,
    ep: EndpointState,
    upstream: UpstreamStream,
    signal: AbortSignal | undefined,
    release: () => void,
  ): Promise<UpstreamStream> {
    const iterator = upstream.body[Symbol.asyncIterator]();
    let first: IteratorResult<Uint8Array>;
    try {
      first = await raceAbort(Promise.resolve().then(() => iterator.next()), signal);
    } catch (error) {
      release();
      void Promise.resolve()
        .then(() => iterator.return?.())
        .catch(() => undefined);
      if (signal?.aborted || error instanceof UpstreamError) throw error;
      throw new UpstreamError(`The stream from "${ep.id}" failed before its first byte: ${describeError(error)}`, {
        status: 502,
        network: true,
        endpoint: ep.id,
        cause: error,
      });
    }
    let finished = false;
    let pendingFirst: Uint8Array | undefined = first.done ? undefined : first.value;
    const finish = (error?: unknown): void => {
      if (finished) return;
      finished = true;
      signal?.removeEventListener('abort', onAbort);
      release();
      if (error !== undefined && !signal?.aborted) {
        // Broke after the first byte: too late to retry, but it still says something about the endpoint.
        ep.errors++;
        ep.lastError = describeError(error);
        g.outlier.failure(ep.id);
      }
    };
    const onAbort = (): void => {
      finish();
      void Promise.resolve()
        .then(() => iterator.return?.())
        .catch(() => undefined);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    if (first.done) finish();
    const wrapped: AsyncIterator<Uint8Array> = {
      async next(): Promise<IteratorResult<Uint8Array>> {
        if (pendingFirst !== undefined) {
          const value = pendingFirst;
          pendingFirst = undefined;
          return { done: false, value };
        }
        if (finished) return { done: true, value: undefined };
        try {
          const result = await iterator.next();
          if (result.done) finish();
          return result;
        } catch (error) {
          finish(error);
          throw error;
        }
      },
      async return(): Promise<IteratorResult<Uint8Array>> {
        pendingFirst = undefined;
        if (!finished) {
          finish();
          await iterator.return?.();
        }
        return { done: true, value: undefined };
      },
    };
    return {
      status: upstream.status,
      headers: upstream.headers,
      latencyMs: upstream.latencyMs,
      body: { [Symbol.asyncIterator]: () => wrapped },
    };
  }

  private backoff(g: ModelGroup, retryNo: number): number {
    const { baseDelayMs, maxDelayMs, multiplier, jitter } = g.route.retry;
    const ceiling = baseDelayMs === 0 ? 0 : Math.min(maxDelayMs, baseDelayMs * Math.pow(multiplier, Math.max(0, retryNo - 1)));
    switch (jitter) {
      case 'none':
        return ceiling;
      case 'equal':
        return ceiling / 2 + this.random() * (ceiling / 2);
      default:
        return this.random() * ceiling;
    }
  }

  /** Waits on the clock; rejects with AbortedError when the signal aborts or the router closes. */
  private sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortedBy(signal));
    if (this.closed) return Promise.reject(new AbortedError('The model router was closed'));
    if (!(ms > 0)) return Promise.resolve();
    const controller = new AbortController();
    const wake = (error: unknown): void => controller.abort(error);
    this.sleepers.add(wake);
    const onAbort = (): void => controller.abort(abortedBy(signal!));
    signal?.addEventListener('abort', onAbort, { once: true });
    return clockSleep(ms, this.clock, controller.signal).finally(() => {
      this.sleepers.delete(wake);
      signal?.removeEventListener('abort', onAbort);
    });
  }

  private endpointStats(g: ModelGroup, ep: EndpointState): RouterEndpointStats {
    const outlier = g.outlier.stats(ep.id)!;
    const now = this.clock.now();
    return {
      id: ep.id,
      url: displayUrl(ep.config.url),
      provider: ep.config.provider,
      model: ep.config.model ?? g.name,
      weight: ep.weight,
      requests: ep.requests,
      successes: ep.successes,
      errors: ep.errors,
      outstanding: ep.outstanding,
      ewmaMs: ep.ewma.value,
      ejected: outlier.ejected,
      ...(outlier.ejectedUntil === undefined ? {} : { ejectedUntil: outlier.ejectedUntil }),
      ejections: outlier.ejections,
      ...(ep.cooldownUntil > now ? { cooldownUntil: ep.cooldownUntil } : {}),
      breaker: ep.breaker.getState(),
      healthy: g.health?.isHealthy(ep.id) ?? true,
      ...(ep.lastError === undefined ? {} : { lastError: ep.lastError }),
    };
  }
}

/** The Retry-After an upstream failure carried: `retryAfterMs`, else its response headers. */
function retryAfterOf(error: unknown, now: number): number | undefined {
  if (error instanceof UpstreamError) {
    if (error.retryAfterMs !== undefined) return error.retryAfterMs;
    return retryAfterFromError({ headers: error.responseHeaders }, now);
  }
  return retryAfterFromError(error, now);
}

/** Releases a stream nobody will read (it resolved after the caller gave up). */
function closeBody(stream: UpstreamStream): void {
  try {
    const iterator = stream.body[Symbol.asyncIterator]();
    void Promise.resolve()
      .then(() => iterator.return?.())
      .catch(() => undefined);
  } catch {
    // nothing to release
  }
}
