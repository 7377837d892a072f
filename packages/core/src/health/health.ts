/**
 * Liveness and readiness of an engine, for Kubernetes probes and load balancers.
 *
 * - Liveness (`kind: 'live'`) answers "should this process be restarted?": 'ok' unless the engine was closed.
 *   It never touches a dependency, so a Redis outage can never get every pod killed at once.
 * - Readiness (`kind: 'ready'`) reports every dependency the engine has: the shared store (a PING with a short
 *   deadline), the tiered cache levels, the AI provider endpoints, open circuit breakers and the semantic
 *   cache. AMAS falls back when a dependency fails (in-memory limits, L1-only cache, other endpoints), so a
 *   failing dependency makes the report 'degraded' (HTTP 200, with details), and 'down' (HTTP 503) only when
 *   the user marked it `required`.
 *
 * Checks run concurrently, each with a deadline (default 1 s), and checkHealth never throws: a check that
 * fails or does not answer in time is reported 'down' with the reason.
 */
import type { ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import type { Amas } from '../amas.js';
import type { TieredCache } from '../cache/tiered-cache.js';
import type { SemanticCache } from '../semantic/semantic-cache.js';
import { parseOptions } from '../options/validate.js';
import type { Store, StoreScript } from '../stores/store.js';
import type { RouterModelStats } from '../ai/model-router.js';

export type HealthKind = 'live' | 'ready';
/** 'ok': all good; 'degraded': something failed and AMAS runs on a fallback; 'down': not usable. */
export type HealthState = 'ok' | 'degraded' | 'down';

export interface HealthCheckResult {
  status: HealthState;
  /** What failed and what AMAS does about it, or a short summary when all is well. */
  detail?: string;
  /** Round trip of the probe, for checks that reach a dependency (the store's PING). */
  latencyMs?: number;
}

export interface HealthReport {
  status: HealthState;
  checks: Record<string, HealthCheckResult>;
}

export interface CheckHealthOptions {
  /** Default 'ready'. */
  kind?: HealthKind;
  /**
   * Checks whose failure makes readiness 'down' (HTTP 503) instead of 'degraded'. A name covers the check of
   * that name and every check below it: 'redis' (or 'store' for a non-Redis store), 'cache' ('cache.l2',
   * 'cache.l3'), 'ai' (every 'ai.<model>') or one 'ai.<model>', 'breakers', 'semantic'. A required name the
   * engine has no check for is reported 'down' (a required dependency that is not configured is a mistake).
   */
  required?: string[];
  /** Deadline of each check, ms. Default 1000. */
  timeoutMs?: number;
}

export const checkHealthOptionsSchema = z.strictObject({
  kind: z.enum(['live', 'ready']).optional(),
  required: z.array(z.string().min(1).max(200)).max(100).optional(),
  timeoutMs: z.number().finite().positive().max(60_000).optional(),
});

/** Validates health options (adapters call it once, when their handler is created, so a typo fails at start-up). */
export function parseHealthOptions(options: CheckHealthOptions | undefined, where = 'health check options'): CheckHealthOptions {
  return parseOptions(checkHealthOptionsSchema, options ?? {}, where) as CheckHealthOptions;
}

const DEFAULT_TIMEOUT_MS = 1000;

/** PING through the store's own command path (deadline, breaker, accounting), on Redis and in memory alike. */
const HEALTH_PING: StoreScript<boolean> = {
  name: 'health-ping',
  lua: `return redis.call('PING')`,
  memory: () => 'PONG',
  decode: (raw) => String(raw) === 'PONG',
};

type Check = () => HealthCheckResult | Promise<HealthCheckResult>;

/** The engine's health. Never throws (a bad `options` value is reported as a 'down' check named 'options'). */
export async function checkHealth(amas: Amas, options: CheckHealthOptions = {}): Promise<HealthReport> {
  let o: CheckHealthOptions;
  try {
    o = parseHealthOptions(options);
  } catch (error) {
    return { status: 'down', checks: { options: { status: 'down', detail: messageOf(error) } } };
  }
  const kind = o.kind ?? 'ready';
  const closed = isClosed(amas);
  const engine: HealthCheckResult = closed ? { status: 'down', detail: 'the engine is closed' } : { status: 'ok' };
  if (kind === 'live' || closed) return { status: engine.status, checks: { engine } };

  const timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const checks = new Map<string, Check>();
  try {
    collectChecks(amas, checks, timeoutMs);
  } catch (error) {
    // Reading the engine's parts failed (it should not): say so instead of throwing at a probe.
    checks.set('engine', () => ({ status: 'degraded', detail: `could not list the engine's dependencies: ${messageOf(error)}` }));
  }
  const names = [...checks.keys()];
  const results = await Promise.all(names.map((name) => runCheck(checks.get(name)!, timeoutMs)));
  const out: Record<string, HealthCheckResult> = { engine };
  names.forEach((name, i) => (out[name] = results[i]!));

  let status: HealthState = 'ok';
  for (const name of o.required ?? []) {
    if (Object.keys(out).some((check) => covers(name, check))) continue;
    out[name] = { status: 'down', detail: `required, but this engine has no such dependency (checks: ${Object.keys(out).join(', ')})` };
  }
  for (const [name, result] of Object.entries(out)) {
    if (result.status === 'ok') continue;
    const required = (o.required ?? []).some((r) => covers(r, name));
    if (required && result.status === 'down') status = 'down';
    else if (status === 'ok') status = 'degraded';
  }
  return { status, checks: out };
}

/** 200 for 'ok' and 'degraded' (AMAS serves on its fallbacks), 503 for 'down'. */
export function healthStatusCode(report: HealthReport): 200 | 503 {
  return report.status === 'down' ? 503 : 200;
}

export interface HealthHttpResponse {
  statusCode: 200 | 503;
  headers: Record<string, string>;
  /** The report as JSON. */
  body: string;
  report: HealthReport;
}

/** The HTTP answer for a probe: status code, headers (JSON, never cached) and body. Never throws. */
export async function healthResponse(amas: Amas, options: CheckHealthOptions = {}): Promise<HealthHttpResponse> {
  const report = await checkHealth(amas, options);
  return {
    statusCode: healthStatusCode(report),
    headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' },
    body: JSON.stringify(report),
    report,
  };
}

/** Writes the probe's answer to a Node response (Express's `res`, Fastify's `reply.raw`). */
export async function serveHealth(amas: Amas, options: CheckHealthOptions, res: ServerResponse): Promise<void> {
  const answer = await healthResponse(amas, options);
  if (res.headersSent || res.writableEnded) return;
  res.writeHead(answer.statusCode, { ...answer.headers, 'content-length': String(Buffer.byteLength(answer.body)) });
  res.end(answer.body);
}

// ---------------------------------------------------------------------------------------------------------

/** `name` (a required entry) covers `check` when equal, or when `check` is below it ('ai' covers 'ai.gpt-4o'). */
function covers(name: string, check: string): boolean {
  return check === name || check.startsWith(`${name}.`);
}

function isClosed(amas: Amas): boolean {
  try {
    return amas.isClosed;
  } catch {
    return true;
  }
}

/**
 * A part the engine built already (the cache and the semantic cache are built on first use): health must
 * report what exists, never build a cache (or load an embedding model) to report on it.
 */
function builtPart<T>(amas: Amas, field: 'tieredCache' | 'defaultSemantic'): T | undefined {
  return (amas as unknown as Record<string, T | undefined>)[field];
}

function collectChecks(amas: Amas, checks: Map<string, Check>, timeoutMs: number): void {
  const store = amas.store;
  if (store !== undefined) checks.set(storeCheckName(store), () => pingStore(store, timeoutMs));

  const cache = builtPart<TieredCache>(amas, 'tieredCache');
  if (cache !== undefined) {
    const levels = cache.stats().levels;
    for (const level of Object.keys(levels)) checks.set(`cache.${level}`, () => cacheLevelCheck(amas, cache, level));
  }

  // `amas.ai` throws when the `ai` option was not given: then there is nothing to report.
  let router: { stats(): Record<string, RouterModelStats> } | undefined;
  try {
    router = amas.ai.router;
  } catch {
    router = undefined;
  }
  if (router !== undefined) {
    const models = router.stats();
    for (const model of Object.keys(models)) checks.set(`ai.${model}`, () => aiModelCheck(amas, router!.stats()[model]));
  }

  checks.set('breakers', () => breakersCheck(amas));

  const semantic = builtPart<SemanticCache>(amas, 'defaultSemantic');
  if (semantic !== undefined) checks.set('semantic', () => semanticCheck(semantic, store));
}

function storeCheckName(store: Store): string {
  return store.kind === 'redis' ? 'redis' : 'store';
}

async function pingStore(store: Store, timeoutMs: number): Promise<HealthCheckResult> {
  const started = performance.now();
  try {
    const pong = await store.run(HEALTH_PING, [], [], { timeoutMs });
    const latencyMs = round(performance.now() - started);
    if (!pong) return { status: 'down', detail: 'PING did not answer PONG', latencyMs };
    const breaker = store.health().breaker;
    return breaker === 'closed' ? { status: 'ok', latencyMs } : { status: 'degraded', detail: `answers, its breaker is ${breaker}`, latencyMs };
  } catch (error) {
    return {
      status: 'down',
      detail: `${messageOf(error)}; limits, breakers and dedup run on their local fallbacks`,
      latencyMs: round(performance.now() - started),
    };
  }
}

function cacheLevelCheck(amas: Amas, cache: TieredCache, level: string): HealthCheckResult {
  const s = cache.stats().levels[level];
  if (s === undefined) return { status: 'down', detail: 'the level is gone' };
  const kind = levelKind(amas, level);
  const activity = `${s.operations} operations, ${s.errors} errors, mean ${round(s.meanLatencyMs)} ms`;
  if (level === 'l1') {
    const l1 = cache.stats().l1;
    return { status: 'ok', detail: `${kind}: ${l1?.entries ?? 0} entries` };
  }
  if (level === 'l2' && amas.store !== undefined && !amas.store.available) {
    return { status: 'down', detail: `${kind}: the store is unavailable; the cache serves from L1 (and L3) meanwhile (${activity})` };
  }
  if (s.down) return { status: 'down', detail: `${kind}: failing, skipped until it answers again; the other levels serve meanwhile (${activity})` };
  return { status: 'ok', detail: `${kind}: ${activity}` };
}

function levelKind(amas: Amas, level: string): string {
  if (level === 'l1') return 'memory';
  if (level === 'l2') return 'Redis';
  const l3 = (amas.options.cache as { l3?: unknown } | undefined)?.l3;
  if (typeof l3 === 'object' && l3 !== null) {
    if ('postgres' in l3) return 'PostgreSQL';
    if ('file' in l3) return 'file';
    const name = (l3 as { name?: unknown }).name;
    if (typeof name === 'string') return name;
  }
  return level;
}

function aiModelCheck(amas: Amas, model: RouterModelStats | undefined): HealthCheckResult {
  if (model === undefined) return { status: 'down', detail: 'the model is gone from the router' };
  const now = amas.clock.now();
  const problems: string[] = [];
  let available = 0;
  for (const ep of model.endpoints) {
    const why: string[] = [];
    if (ep.ejected) why.push('ejected');
    if (!ep.healthy) why.push('failing health checks');
    if (ep.breaker === 'open' || ep.breaker === 'isolated') why.push(`breaker ${ep.breaker}`);
    if (ep.cooldownUntil !== undefined && ep.cooldownUntil > now) why.push('cooling down after Retry-After');
    if (why.length === 0) available++;
    else problems.push(`${ep.id} ${why.join(', ')}`);
  }
  const total = model.endpoints.length;
  const summary = `${available}/${total} endpoints available`;
  if (available === total) return { status: 'ok', detail: summary };
  const detail = `${summary}: ${problems.join('; ')}`;
  if (available > 0) return { status: 'degraded', detail: `${detail}; calls go to the others` };
  return { status: 'down', detail: `${detail}; calls fall back to other models where configured` };
}

function breakersCheck(amas: Amas): HealthCheckResult {
  const open: string[] = [];
  const halfOpen: string[] = [];
  const all = amas.breakers.all();
  for (const breaker of all) {
    const state = breaker.getState();
    if (state === 'open' || state === 'isolated') open.push(breaker.name);
    else if (state === 'half-open') halfOpen.push(breaker.name);
  }
  const probing = halfOpen.length > 0 ? `; half-open (probing): ${halfOpen.join(', ')}` : '';
  if (open.length > 0) return { status: 'degraded', detail: `open: ${open.join(', ')}${probing}` };
  return { status: 'ok', detail: `${all.length} breakers, none open${probing}` };
}

function semanticCheck(semantic: SemanticCache, store: Store | undefined): HealthCheckResult {
  const entries = semantic.stats().entries;
  if (store !== undefined && !store.available) {
    return { status: 'degraded', detail: `${entries} entries; the store is unavailable: entries are not shared with other replicas meanwhile` };
  }
  return { status: 'ok', detail: `${entries} entries${store !== undefined ? `, shared through the ${store.kind} store` : ''}` };
}

/** Runs one check with a deadline; a throw or a timeout becomes a 'down' result. */
async function runCheck(check: Check, timeoutMs: number): Promise<HealthCheckResult> {
  let timer: NodeJS.Timeout | undefined;
  const started = performance.now();
  const deadline = new Promise<HealthCheckResult>((resolve) => {
    timer = setTimeout(() => resolve({ status: 'down', detail: `no answer within ${timeoutMs} ms`, latencyMs: round(performance.now() - started) }), timeoutMs);
    timer.unref?.();
  });
  try {
    return await Promise.race([Promise.resolve().then(check), deadline]);
  } catch (error) {
    return { status: 'down', detail: messageOf(error) };
  } finally {
    clearTimeout(timer);
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
