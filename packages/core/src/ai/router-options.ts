/**
 * Options of the model router, validated once at construction. Validation runs in stages (the router, the
 * shared defaults, each model, each endpoint) so every problem is reported in one InvalidOptionError, with
 * paths that read like the options object: `models.gpt-4o.endpoints[1].weight`, `models.gpt-4o.fallbacks[0]`.
 */
import { z } from 'zod';
import { systemClock, type Clock } from '../clock.js';
import { InvalidOptionError, type OptionIssue } from '../errors.js';
import { consoleLogger, type Logger } from '../logger.js';
import { clockSchema, describe, fn, loggerSchema, parseOptions, positiveInt, timerMs } from '../options/validate.js';
import {
  circuitBreakerOptionsSchema,
  validateCircuitBreakerOptions,
  type CircuitBreaker,
  type CircuitBreakerOptions,
} from '../policies/circuit-breaker.js';
import type { JitterMode } from '../policies/retry.js';
import { BALANCING_STRATEGIES, type BalancingStrategy, type LatencyEwmaOptions } from './balancer.js';
import { healthCheckOptionsSchema, type HealthCheckOptions } from './health-checker.js';
import { outlierDetectionOptionsSchema, type OutlierDetectionOptions } from './outlier-detector.js';
import type { EndpointConfig, ProviderTransport } from './provider-types.js';

const WHERE = 'model router options';

/**
 * When a model's group is exhausted, which failures send the call on to the next model in `fallbacks`:
 * an HTTP status (e.g. 429, or 400 for "context too long -> a bigger model"), '4xx' / '5xx' (HTTP answers
 * only), 'network' (no answer), 'timeout' (the upstream or the transport timed out), 'breaker-open' (every
 * endpoint's breaker is open) and 'no-eligible-endpoint' (ejected, cooling down after Retry-After, ...).
 */
export type FallbackCondition = number | '4xx' | '5xx' | 'network' | 'timeout' | 'breaker-open' | 'no-eligible-endpoint';
export const FALLBACK_CONDITION_NAMES = ['4xx', '5xx', 'network', 'timeout', 'breaker-open', 'no-eligible-endpoint'] as const;
export const DEFAULT_FALLBACK_ON: readonly FallbackCondition[] = Object.freeze([429, '5xx', 'network', 'timeout', 'breaker-open', 'no-eligible-endpoint']);

export interface RouterRetryOptions {
  /** Attempts per model group, the first included (a fallback model gets its own). Default 3. */
  maxAttempts?: number;
  /** Backoff before the first retry. Default 100 ms. */
  baseDelayMs?: number;
  /** Cap on the backoff. Default 2 000 ms. */
  maxDelayMs?: number;
  /** Growth per retry. Default 2. */
  multiplier?: number;
  /** Default 'full'. */
  jitter?: JitterMode;
  /**
   * Which failures are retried (on another endpoint when there is one). Default `isRetryableUpstreamError`:
   * 408, 429, 5xx, network failures, timeouts. A failure that is not retried ends the group at once.
   */
  retryOn?: (error: unknown, attempt: number) => boolean;
  /**
   * Honour Retry-After / retry-after-ms: the endpoint that sent it is not called again (by any request)
   * before the hint passes. Default true.
   */
  respectRetryAfter?: boolean;
  /**
   * Longest a call waits for an endpoint's Retry-After. A longer hint makes the call skip that endpoint (another
   * endpoint, else the fallback model, else the error) instead of sleeping. Default 10 000 ms.
   */
  maxRetryAfterMs?: number;
}

/** Circuit breaker options per endpoint; the router names its breakers and gives them its clock. */
export type RouterBreakerOptions = Omit<CircuitBreakerOptions, 'name' | 'clock'>;

/** Where endpoint breakers come from: BreakerRegistry fits (`get(name, overrides)`), so the engine can name and share them. */
export interface BreakerFactory {
  get(name: string, overrides?: CircuitBreakerOptions): CircuitBreaker;
}

/** Settings a model may set, or inherit from `defaults`. */
export interface ModelRouteSettings {
  /** Default 'round-robin'. */
  strategy?: BalancingStrategy;
  retry?: RouterRetryOptions;
  /** Default DEFAULT_FALLBACK_ON (429, 5xx, network, timeout, breaker-open, no-eligible-endpoint), or a predicate. */
  fallbackOn?: readonly FallbackCondition[] | ((error: unknown) => boolean);
  /** Active health checks; off unless given. */
  healthCheck?: HealthCheckOptions;
  /** Passive outlier ejection; on by default (5 consecutive errors). */
  outlier?: OutlierDetectionOptions;
  /** Per-endpoint circuit breaker. Default: the CircuitBreaker defaults (5 failures in a row, 30 s open). */
  breaker?: RouterBreakerOptions;
  /**
   * Longest one upstream attempt may take, in ms: a JSON call until its whole
   * response, a stream until its first chunk (a stream that has started is never cut). Past it the attempt is
   * aborted and fails as a timeout (504 `AMAS_TIMEOUT`): retried on another endpoint, then the fallbacks, like
   * any timeout. Default: none (the provider client's `headersTimeout` / `bodyTimeout` still apply).
   */
  attemptTimeoutMs?: number;
}

export interface ModelRouteOptions extends ModelRouteSettings {
  /** At least one. */
  endpoints: EndpointConfig[];
  /** Models tried, in order, when this one's group is exhausted (each with its own endpoints and rules; their own fallbacks are not followed). */
  fallbacks?: string[];
}

export interface ModelRouterOptions {
  transport: ProviderTransport;
  /** Model name (what callers put in `body.model`) -> its endpoints and rules. */
  models: Record<string, ModelRouteOptions>;
  /** Settings every model inherits (each section merged key by key under the model's own). */
  defaults?: ModelRouteSettings;
  /** Breaker source (e.g. the engine's BreakerRegistry). Default: the router creates and owns its breakers. */
  breakers?: BreakerFactory;
  clock?: Clock;
  /** Default console. */
  logger?: Logger;
  /** Randomness in [0, 1) for jitter and power-of-two choices. Default Math.random. */
  random?: () => number;
  /** Latency averaging for `latency-aware` (and stats). Default { alpha: 0.3, decayMs: 30 000 }. */
  ewma?: LatencyEwmaOptions;
}

export interface ResolvedEndpoint extends EndpointConfig {
  id: string;
  provider: string;
  weight: number;
}

export interface ResolvedRetry {
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  multiplier: number;
  jitter: JitterMode;
  retryOn: ((error: unknown, attempt: number) => boolean) | undefined;
  respectRetryAfter: boolean;
  maxRetryAfterMs: number;
}

export interface ResolvedModelRoute {
  name: string;
  endpoints: ResolvedEndpoint[];
  strategy: BalancingStrategy;
  fallbacks: string[];
  fallbackOn: readonly FallbackCondition[] | ((error: unknown) => boolean);
  retry: ResolvedRetry;
  /** Undefined when health checks are off. */
  healthCheck: HealthCheckOptions | undefined;
  outlier: OutlierDetectionOptions;
  breaker: RouterBreakerOptions;
  /** Undefined: no per-attempt deadline. */
  attemptTimeoutMs: number | undefined;
}

export interface ResolvedRouterOptions {
  transport: ProviderTransport;
  models: Map<string, ResolvedModelRoute>;
  breakers: BreakerFactory | undefined;
  clock: Clock;
  logger: Logger;
  random: () => number;
  ewma: Required<LatencyEwmaOptions>;
}

// ---- schemas -------------------------------------------------------------------------------------------------

const httpUrl = z.string().refine(
  (v) => {
    try {
      const u = new URL(v);
      return (u.protocol === 'http:' || u.protocol === 'https:') && u.hash === '';
    } catch {
      return false;
    }
  },
  { message: 'an http(s) base URL without a fragment, e.g. "https://api.openai.com"' },
);

export const endpointConfigSchema = z.strictObject({
  id: z.string().min(1).max(200).optional(),
  url: httpUrl,
  provider: z.string().min(1).max(100).optional(),
  apiKey: z.string().optional(),
  headers: z.record(z.string(), z.string()).optional(),
  weight: z.number().finite().positive().optional(),
  model: z.string().min(1).optional(),
});

export const routerRetryOptionsSchema = z.strictObject({
  maxAttempts: positiveInt.max(100).optional(),
  baseDelayMs: timerMs.optional(),
  maxDelayMs: timerMs.optional(),
  multiplier: z.number().finite().min(1).optional(),
  jitter: z.enum(['full', 'equal', 'none']).optional(),
  retryOn: fn.optional(),
  respectRetryAfter: z.boolean().optional(),
  maxRetryAfterMs: timerMs.optional(),
});

const routerBreakerSchema = circuitBreakerOptionsSchema.omit({ name: true, clock: true });

const fallbackOnSchema = z.custom<ModelRouteSettings['fallbackOn']>((v) => typeof v === 'function' || Array.isArray(v), {
  message: `an array of HTTP statuses and ${FALLBACK_CONDITION_NAMES.map((n) => JSON.stringify(n)).join(', ')}, or a function`,
});

const settingsShape = {
  strategy: z.enum(BALANCING_STRATEGIES).optional(),
  retry: routerRetryOptionsSchema.optional(),
  fallbackOn: fallbackOnSchema.optional(),
  healthCheck: healthCheckOptionsSchema.optional(),
  outlier: outlierDetectionOptionsSchema.optional(),
  breaker: routerBreakerSchema.optional(),
  attemptTimeoutMs: timerMs.refine((ms) => ms >= 1, 'a duration of at least 1 ms').optional(),
};

export const modelRouteSettingsSchema = z.strictObject(settingsShape);

/** A model's own keys; endpoints and fallbacks are checked one by one afterwards, for precise paths. */
const modelShellSchema = z.strictObject({
  ...settingsShape,
  endpoints: z.array(z.unknown()).min(1),
  fallbacks: z.array(z.unknown()).optional(),
});

const isTransport = (v: unknown): boolean =>
  typeof v === 'object' &&
  v !== null &&
  typeof (v as { request?: unknown }).request === 'function' &&
  typeof (v as { stream?: unknown }).stream === 'function';

const routerShellSchema = z.strictObject({
  transport: z.custom<ProviderTransport>(isTransport, { message: 'a ProviderTransport ({ request, stream })' }),
  models: z
    .record(z.string().min(1), z.unknown())
    .refine((m) => Object.keys(m).length > 0, { message: 'at least one model' }),
  defaults: z.unknown().optional(),
  breakers: z
    .custom<BreakerFactory>((v) => typeof v === 'object' && v !== null && typeof (v as { get?: unknown }).get === 'function', {
      message: 'a breaker factory with get(name, overrides) (e.g. a BreakerRegistry)',
    })
    .optional(),
  clock: clockSchema.optional(),
  logger: loggerSchema.optional(),
  random: fn.optional(),
  ewma: z
    .strictObject({
      alpha: z.number().gt(0).lte(1).optional(),
      decayMs: timerMs.optional(),
    })
    .optional(),
});

// ---- resolution ----------------------------------------------------------------------------------------------

/** Validates and fills in defaults; throws InvalidOptionError listing every problem. */
export function resolveRouterOptions(input: ModelRouterOptions | unknown): ResolvedRouterOptions {
  const issues: OptionIssue[] = [];
  const check = <S extends z.ZodType>(schema: S, value: unknown, prefix: string): z.output<S> | undefined => {
    try {
      return parseOptions(schema, value, WHERE, prefix);
    } catch (error) {
      if (error instanceof InvalidOptionError) {
        issues.push(...error.issues);
        return undefined;
      }
      throw error;
    }
  };
  const add = (path: string, value: unknown, expected: string): void => {
    issues.push({ path, received: describe(value), expected });
  };

  const top = check(routerShellSchema, input ?? {}, '');
  if (top === undefined) throw new InvalidOptionError(issues, WHERE);

  const defaults: ModelRouteSettings =
    top.defaults === undefined ? {} : ((check(modelRouteSettingsSchema, top.defaults, 'defaults') ?? {}) as ModelRouteSettings);
  if (defaults.fallbackOn !== undefined) checkFallbackOn(defaults.fallbackOn, 'defaults.fallbackOn', add);
  if (defaults.breaker?.shared && top.breakers === undefined) {
    add('defaults.breaker.shared', defaults.breaker.shared, 'a `breakers` factory with a store to share through (none was given)');
  }

  const names = new Set(Object.keys(top.models));
  const models = new Map<string, ResolvedModelRoute>();
  for (const [name, raw] of Object.entries(top.models)) {
    const at = `models.${name}`;
    const shell = check(modelShellSchema, raw, at);
    // When the model's own keys are wrong, still check its endpoints and fallbacks: one report lists everything.
    const loose = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
    const rawEndpoints = shell?.endpoints ?? (Array.isArray(loose.endpoints) ? (loose.endpoints as unknown[]) : []);
    const rawFallbacks = shell?.fallbacks ?? (Array.isArray(loose.fallbacks) ? (loose.fallbacks as unknown[]) : []);
    const rawFallbackOn = shell?.fallbackOn ?? (Array.isArray(loose.fallbackOn) ? (loose.fallbackOn as FallbackCondition[]) : undefined);

    const endpoints: ResolvedEndpoint[] = [];
    const explicit = new Map<string, number>();
    rawEndpoints.forEach((rawEndpoint, i) => {
      const e = check(endpointConfigSchema, rawEndpoint, `${at}.endpoints[${i}]`);
      if (e === undefined) return;
      if (e.id !== undefined) {
        const first = explicit.get(e.id);
        if (first !== undefined) add(`${at}.endpoints[${i}].id`, e.id, `an id unique in the model (endpoints[${first}] has it too)`);
        else explicit.set(e.id, i);
      }
      endpoints.push({ ...(e as EndpointConfig), id: e.id ?? '', provider: e.provider ?? 'openai', weight: e.weight ?? 1 });
    });
    assignDefaultIds(endpoints, new Set(explicit.keys()));

    const fallbacks: string[] = [];
    rawFallbacks.forEach((f, i) => {
      const path = `${at}.fallbacks[${i}]`;
      if (typeof f !== 'string') add(path, f, 'a model name (string)');
      else if (f === name) add(path, f, 'another model than the one falling back');
      else if (!names.has(f)) add(path, f, `a model configured in \`models\` (${[...names].map((n) => JSON.stringify(n)).join(', ')})`);
      else if (fallbacks.includes(f)) add(path, f, 'a model not already listed in fallbacks');
      else fallbacks.push(f);
    });
    if (rawFallbackOn !== undefined) checkFallbackOn(rawFallbackOn, `${at}.fallbackOn`, add);
    if (shell === undefined) continue;

    const breaker = { ...defined(defaults.breaker), ...defined(shell.breaker as RouterBreakerOptions | undefined) } as RouterBreakerOptions;
    if (shell.breaker?.shared && top.breakers === undefined) {
      add(`${at}.breaker.shared`, shell.breaker.shared, 'a `breakers` factory with a store to share through (none was given)');
    }
    try {
      validateCircuitBreakerOptions(breaker, WHERE, `${at}.breaker`);
    } catch (error) {
      if (error instanceof InvalidOptionError) issues.push(...error.issues);
      else throw error;
    }

    const retry = { ...defined(defaults.retry), ...defined(shell.retry as RouterRetryOptions | undefined) };
    const health = { ...defined(defaults.healthCheck), ...defined(shell.healthCheck as HealthCheckOptions | undefined) };
    const healthOn = (defaults.healthCheck !== undefined || shell.healthCheck !== undefined) && health.enabled !== false;

    models.set(name, {
      name,
      endpoints,
      strategy: shell.strategy ?? defaults.strategy ?? 'round-robin',
      fallbacks,
      fallbackOn: (shell.fallbackOn ?? defaults.fallbackOn ?? DEFAULT_FALLBACK_ON) as ResolvedModelRoute['fallbackOn'],
      retry: {
        maxAttempts: retry.maxAttempts ?? 3,
        baseDelayMs: retry.baseDelayMs ?? 100,
        maxDelayMs: retry.maxDelayMs ?? 2_000,
        multiplier: retry.multiplier ?? 2,
        jitter: retry.jitter ?? 'full',
        retryOn: retry.retryOn,
        respectRetryAfter: retry.respectRetryAfter ?? true,
        maxRetryAfterMs: retry.maxRetryAfterMs ?? 10_000,
      },
      healthCheck: healthOn ? health : undefined,
      outlier: { ...defined(defaults.outlier), ...defined(shell.outlier as OutlierDetectionOptions | undefined) },
      breaker,
      attemptTimeoutMs: shell.attemptTimeoutMs ?? defaults.attemptTimeoutMs,
    });
  }

  if (issues.length > 0) throw new InvalidOptionError(issues, WHERE);
  return {
    transport: top.transport,
    models,
    breakers: top.breakers,
    clock: top.clock ?? systemClock,
    logger: top.logger ?? consoleLogger,
    random: (top.random as (() => number) | undefined) ?? Math.random,
    ewma: { alpha: top.ewma?.alpha ?? 0.3, decayMs: top.ewma?.decayMs ?? 30_000 },
  };
}

/** `<provider>:<origin><basePath>`, made unique in the group with `#2`, `#3`... (explicit ids win). */
function assignDefaultIds(endpoints: ResolvedEndpoint[], taken: Set<string>): void {
  for (const e of endpoints) {
    if (e.id !== '') continue;
    const base = `${e.provider}:${displayUrl(e.url)}`;
    let id = base;
    for (let n = 2; taken.has(id); n++) id = `${base}#${n}`;
    taken.add(id);
    e.id = id;
  }
}

/** Origin and base path: never credentials (user:pass@) nor the query (it may carry a key). */
export function displayUrl(url: string): string {
  try {
    const u = new URL(url);
    const path = u.pathname.replace(/\/+$/, '');
    return `${u.origin}${path}`;
  } catch {
    return url;
  }
}

function checkFallbackOn(value: NonNullable<ModelRouteSettings['fallbackOn']>, path: string, add: (path: string, value: unknown, expected: string) => void): void {
  if (typeof value === 'function') return;
  value.forEach((c, i) => {
    const ok =
      (typeof c === 'number' && Number.isInteger(c) && c >= 400 && c <= 599) ||
      (typeof c === 'string' && (FALLBACK_CONDITION_NAMES as readonly string[]).includes(c));
    if (!ok) {
      add(`${path}[${i}]`, c, `an HTTP error status 400..599 or one of ${FALLBACK_CONDITION_NAMES.map((n) => JSON.stringify(n)).join(', ')}`);
    }
  });
}

/** The keys of `o` whose value is not undefined (so a model's `undefined` never erases a default). */
function defined<T extends object>(o: T | undefined): Partial<T> {
  const out: Partial<T> = {};
  if (o === undefined) return out;
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}
