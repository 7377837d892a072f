/**
 * Runs a scenario with autocannon (the load generator: its HTTP/1.1 clients, pacing and timeouts) and records
 * every response in HDR histograms. Injects the scenario's provider outage through the mock's admin endpoint.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { setMaxListeners } from 'node:events';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';
import { InvalidOptionError, parseDuration } from '@amas/core';
import { Recorder, type TransportErrorKind } from './recorder.js';
import { createRequestMix } from './request-mix.js';
import {
  compareWithBaseline,
  evaluateSlos,
  parseBaseline,
  readBaseline,
  type Baseline,
  type LoadReport,
  type OutageReport,
} from './report.js';
import { LoadConfigError, bundledScenariosDir, loadScenario, validateScenario, type Scenario, type ScenarioInput } from './scenario.js';

/** Where `amas-load` points when neither --target nor the scenario names a target: the example gateway's server.mjs. */
export const DEFAULT_TARGET = 'http://127.0.0.1:8787';
/** Rate mode: connections used to reach the rate when the scenario does not say. */
export const DEFAULT_MAX_CONNECTIONS = 64;
/** Stop early after this many connection errors / timeouts (a target that went away mid-run). */
export const BAILOUT_ERRORS = 1000;

export interface RunProgress {
  elapsedMs: number;
  durationMs: number;
  requests: number;
  errors: number;
  /** Completions over the last second. */
  rps: number;
  /** p95 so far, ms. */
  p95: number | null;
  outageActive: boolean;
  phase: 'warmup' | 'run';
}

export interface RunOptions {
  /** Base URL of the service under test (overrides the scenario's `target`). */
  target?: string;
  /** Mock provider base URL for the outage (overrides the scenario's `mock`). */
  mock?: string;
  /** Overrides the scenario's duration: '30s', '2m' or milliseconds. */
  duration?: string | number;
  /** Overrides the number of simulated users. */
  users?: number;
  /** Switches to rate mode with this many requests/s. */
  rate?: number;
  /** Switches to concurrency mode with this many connections. */
  concurrency?: number;
  seed?: number;
  /** A baseline (object or file written by --save-baseline) to compare with; a regression fails the run. */
  baseline?: Baseline | string;
  /** Overrides the scenario's regressionThreshold. */
  regressionThreshold?: number;
  /** Called about five times a second while the run lasts. */
  onProgress?: (progress: RunProgress) => void;
  /** Aborting stops the run early; the report covers what was measured and has `interrupted: true`. */
  signal?: AbortSignal;
  /** Non-fatal problems (an outage request that failed, a baseline for another scenario). Default: ignored. */
  onWarning?: (message: string) => void;
}

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(join(dirname(bundledScenariosDir()), 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

function autocannonVersion(): string {
  try {
    return (createRequire(import.meta.url)('autocannon/package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function configError(flag: string, value: unknown, expected: string): LoadConfigError {
  return new LoadConfigError(`Invalid ${flag}: expected ${expected}, received ${JSON.stringify(value)}`, [
    { path: flag, received: JSON.stringify(value), expected },
  ]);
}

function checkUrl(flag: string, value: string): string {
  if (!/^https?:\/\/[^/\s]+/i.test(value) || !URL.canParse(value)) throw configError(flag, value, 'an http(s) URL such as http://127.0.0.1:8787');
  return value.replace(/\/+$/, '');
}

function positiveInt(flag: string, value: number | undefined, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || value < 1 || value > max) throw configError(flag, value, `an integer between 1 and ${max}`);
  return value;
}

/** Applies run options over the scenario; throws LoadConfigError naming the option at fault. */
export function applyRunOptions(scenario: Scenario, options: RunOptions): { scenario: Scenario; target: string; mock?: string; users?: number } {
  const s: Scenario = { ...scenario, users: { ...scenario.users } };
  if (options.duration !== undefined) {
    try {
      s.duration = parseDuration(options.duration, 'duration');
    } catch (error) {
      if (error instanceof InvalidOptionError) throw configError('duration', options.duration, "a duration such as '30s', '2m' or '1500ms'");
      throw error;
    }
    if (s.duration < 100) throw configError('duration', options.duration, 'a duration of at least 100ms');
  }
  const rate = positiveInt('rate', options.rate, 100_000);
  const concurrency = positiveInt('concurrency', options.concurrency, 10_000);
  if (rate !== undefined && concurrency !== undefined) throw configError('concurrency', concurrency, 'not both rate and concurrency');
  if (rate !== undefined) {
    s.rate = rate;
    delete s.concurrency;
  }
  if (concurrency !== undefined) {
    s.concurrency = concurrency;
    delete s.rate;
    delete s.connections;
  }
  const users = positiveInt('users', options.users, 100_000);
  if (options.seed !== undefined) {
    if (!Number.isInteger(options.seed) || options.seed < 0 || options.seed > 2 ** 32 - 1) throw configError('seed', options.seed, 'an integer >= 0');
    s.seed = options.seed;
  }
  if (options.regressionThreshold !== undefined) {
    const t = options.regressionThreshold;
    if (!(typeof t === 'number' && Number.isFinite(t) && t > 0 && t <= 100)) throw configError('regression-threshold', t, 'a number > 0, e.g. 0.1 for 10%');
    s.regressionThreshold = t;
  }
  if (s.outage && s.outage.at >= s.duration) {
    throw new LoadConfigError(`The outage starts at ${s.outage.at} ms, after the end of the run (${s.duration} ms): lengthen --duration or move outage.at.`);
  }
  const target = checkUrl('target', options.target ?? s.target ?? DEFAULT_TARGET);
  const mockRaw = options.mock ?? s.mock;
  const mock = mockRaw === undefined ? undefined : checkUrl('mock', mockRaw);
  if (s.outage && !mock) {
    throw new LoadConfigError('The scenario injects a provider outage but names no mock provider: pass --mock URL (the @amas/loadtest mock) or set `mock` in the scenario.');
  }
  return { scenario: s, target, ...(mock ? { mock } : {}), ...(users ? { users } : {}) };
}

/** Resolves when a TCP connection to the URL's host and port opens; LoadConfigError otherwise. */
export function checkReachable(url: string, what: string, timeoutMs = 3000): Promise<void> {
  const u = new URL(url);
  const port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
  const host = u.hostname.replace(/^\[|\]$/g, '');
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    const fail = (reason: string) => {
      socket.destroy();
      reject(new LoadConfigError(`Cannot reach the ${what} at ${url}: ${reason}. Is it running?`));
    };
    socket.setTimeout(timeoutMs, () => fail(`no connection after ${timeoutMs} ms`));
    socket.once('error', (error: NodeJS.ErrnoException) => fail(error.code ?? error.message));
    socket.once('connect', () => {
      socket.destroy();
      resolve();
    });
  });
}

async function mockAdmin(mock: string, path: string, body?: unknown): Promise<Response> {
  return fetch(mock + path, {
    method: body === undefined ? 'GET' : 'POST',
    headers: body === undefined ? undefined : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(3000),
  });
}

async function checkMock(mock: string): Promise<void> {
  await checkReachable(mock, 'mock provider');
  let ok = false;
  try {
    const res = await mockAdmin(mock, '/__mock/stats');
    ok = res.ok && typeof ((await res.json()) as { requests?: unknown }).requests === 'number';
  } catch {
    ok = false;
  }
  if (!ok) throw new LoadConfigError(`${mock} does not answer GET /__mock/stats like the @amas/loadtest mock provider; --mock must point at it.`);
}

function classifyTransportError(error: unknown): TransportErrorKind {
  const message = error instanceof Error ? error.message : String(error);
  return /timed out/i.test(message) ? 'timeout' : 'connection';
}

function headerValue(headers: Record<string, unknown> | undefined, name: string): string | undefined {
  if (!headers) return undefined;
  for (const key of Object.keys(headers)) {
    if (key.toLowerCase() !== name) continue;
    const v = headers[key];
    return Array.isArray(v) ? String(v[0]) : v === undefined ? undefined : String(v);
  }
  return undefined;
}

const STREAM_ERROR = /^data: \{"error"/m;

interface Pending {
  entry: number;
  status: number;
  cache?: string;
  streamIncomplete: boolean;
}

type RequestMix = ReturnType<typeof createRequestMix>;

interface RunOnceOptions {
  target: string;
  scenario: Scenario;
  mix: RequestMix;
  connections: number;
  rate?: number;
  durationMs?: number;
  amount?: number;
  onResponse?: (p: Pending, latencyMs: number, bytes: number) => void;
  onTransportError?: (kind: TransportErrorKind) => void;
  signal?: AbortSignal;
}

/** One autocannon instance over the scenario's request mix. */
function runAutocannon(o: RunOnceOptions): Promise<{ transportErrors: number }> {
  let pending: Pending | undefined;
  let transportErrors = 0;
  const requests: autocannon.Request[] = [
    {
      setupRequest: (req, context) => {
        const r = o.mix.next();
        (context as { entry?: number }).entry = r.entry;
        return { ...req, method: r.method, path: r.path, headers: r.headers, body: r.body };
      },
      // Called synchronously right before autocannon's 'response' event for the same response.
      onResponse: (status, body, context, headers) => {
        const entry = (context as { entry?: number }).entry ?? -1;
        const cache = headerValue(headers as Record<string, unknown>, 'x-cache')?.trim().toUpperCase();
        const isStream = o.scenario.mix[entry]?.type === 'stream';
        const ok = status >= 200 && status < 300;
        const streamIncomplete = isStream && ok && (!body.includes('data: [DONE]') || STREAM_ERROR.test(body));
        pending = { entry, status, ...(cache ? { cache } : {}), streamIncomplete };
      },
    },
  ];
  return new Promise((resolve, reject) => {
    let settled = false;
    const instance = autocannon(
      {
        url: o.target,
        connections: o.connections,
        ...(o.rate ? { overallRate: o.rate } : {}),
        ...(o.amount ? { amount: o.amount } : { duration: (o.durationMs ?? 1000) / 1000 }),
        timeout: Math.max(2, Math.ceil(o.scenario.timeout / 1000)),
        pipelining: 1,
        // Stop checks run every sampleInt: keep the run's end close to the duration.
        sampleInt: 100,
        bailout: BAILOUT_ERRORS,
        requests,
      } as autocannon.Options,
      (error) => {
        settled = true;
        o.signal?.removeEventListener('abort', stop);
        if (error) reject(error instanceof Error ? error : new Error(String(error)));
        else resolve({ transportErrors });
      },
    );
    const stop = () => {
      if (!settled) instance.stop();
    };
    if (o.signal?.aborted) stop();
    else o.signal?.addEventListener('abort', stop, { once: true });
    instance.on('response', (_client, statusCode, resBytes, responseTime) => {
      const p = pending ?? { entry: -1, status: statusCode, streamIncomplete: false };
      pending = undefined;
      o.onResponse?.(p, responseTime, resBytes);
    });
    instance.on('reqError', (error) => {
      transportErrors++;
      o.onTransportError?.(classifyTransportError(error));
    });
  });
}

/** Rate mode spreads arrivals over this many evenly offset slots per second (at most). */
export const RATE_SLOTS_PER_SECOND = 10;

/** n split into k near-equal integer parts (the first ones get the remainder). */
function split(n: number, k: number): number[] {
  return Array.from({ length: k }, (_, i) => Math.floor(n / k) + (i < n % k ? 1 : 0));
}

/**
 * The measured run. Concurrency mode is one autocannon instance. In rate mode autocannon paces each connection
 * per second (its share goes out at the start of every second), so the rate is split over up to
 * RATE_SLOTS_PER_SECOND instances started at evenly spaced offsets within the first second: arrivals come every
 * 1000/slots ms instead of in one burst a second.
 */
async function runMeasured(o: Omit<RunOnceOptions, 'rate' | 'connections' | 'amount'> & { durationMs: number; rate?: number; connections: number }): Promise<{ transportErrors: number }> {
  if (!o.rate) return runAutocannon(o);
  // One signal of our own for the slices (each listens to it), linked to the caller's.
  const inner = new AbortController();
  setMaxListeners(4 * RATE_SLOTS_PER_SECOND + 10, inner.signal);
  const relay = () => inner.abort();
  if (o.signal?.aborted) inner.abort();
  else o.signal?.addEventListener('abort', relay, { once: true });
  try {
    return await runSlices({ ...o, signal: inner.signal }, o.rate);
  } finally {
    o.signal?.removeEventListener('abort', relay);
  }
}

async function runSlices(o: Omit<RunOnceOptions, 'rate' | 'amount'> & { durationMs: number }, rate: number): Promise<{ transportErrors: number }> {
  const slots = Math.max(1, Math.min(RATE_SLOTS_PER_SECOND, rate, o.connections));
  const rates = split(rate, slots);
  const conns = split(o.connections, slots);
  const runs: Array<Promise<{ transportErrors: number }>> = [];
  const timers: NodeJS.Timeout[] = [];
  for (let i = 0; i < slots; i++) {
    const offset = Math.round((i * 1000) / slots);
    if (offset >= o.durationMs) break;
    const slice = { ...o, rate: rates[i]!, connections: Math.max(1, Math.min(conns[i]!, rates[i]!)), durationMs: o.durationMs - offset };
    runs.push(
      offset === 0
        ? runAutocannon(slice)
        : new Promise((resolve, reject) => {
            const timer = setTimeout(() => {
              if (o.signal?.aborted) resolve({ transportErrors: 0 });
              else runAutocannon(slice).then(resolve, reject);
            }, offset);
            timers.push(timer);
            o.signal?.addEventListener(
              'abort',
              () => {
                clearTimeout(timer);
                resolve({ transportErrors: 0 });
              },
              { once: true },
            );
          }),
    );
  }
  const results = await Promise.all(runs);
  for (const t of timers) clearTimeout(t);
  return { transportErrors: results.reduce((n, r) => n + r.transportErrors, 0) };
}

/**
 * Runs a scenario against a target and returns the report. `scenario` is a validated scenario, a scenario
 * object as written in a file, or a file path / bundled scenario name. Throws LoadConfigError for a bad
 * scenario or option, an unreachable target or mock, or an unreadable baseline.
 */
export async function runScenario(scenario: Scenario | ScenarioInput | string, options: RunOptions = {}): Promise<LoadReport> {
  let loaded: Scenario;
  if (typeof scenario === 'string') loaded = await loadScenario(scenario);
  else {
    const { source, ...rest } = scenario as Scenario;
    loaded = validateScenario(rest, source);
  }
  const { scenario: s, target, mock, users } = applyRunOptions(loaded, options);
  const warn = options.onWarning ?? (() => {});

  let baseline: Baseline | undefined;
  let baselineFile: string | undefined;
  if (typeof options.baseline === 'string') {
    baselineFile = options.baseline;
    baseline = readBaseline(options.baseline);
  } else if (options.baseline !== undefined) baseline = parseBaseline(options.baseline);

  await checkReachable(target, 'target');
  if (s.outage && mock) await checkMock(mock);

  const mode = s.rate !== undefined ? 'rate' : 'concurrency';
  const connections = mode === 'rate' ? Math.min(s.rate!, s.connections ?? DEFAULT_MAX_CONNECTIONS) : s.concurrency!;
  const userCount = users ?? s.users.count ?? s.users.names?.length ?? 1;

  if (s.warmup && !options.signal?.aborted) {
    options.onProgress?.({ elapsedMs: 0, durationMs: s.duration, requests: 0, errors: 0, rps: 0, p95: null, outageActive: false, phase: 'warmup' });
    const warmupMix = createRequestMix(s, { users, seed: (s.seed ^ 0x5bd1e995) >>> 0, basePath: new URL(target).pathname });
    await runAutocannon({ target, scenario: s, mix: warmupMix, connections: 1, amount: s.warmup.requests, signal: options.signal });
  }

  const recorder = new Recorder(s.mix);
  const startedAt = new Date();
  const t0 = performance.now();
  const since = () => performance.now() - t0;

  // The outage: switched on and off through the mock's admin endpoint, relative to the start.
  let outage: OutageReport | undefined;
  let outageOn = false;
  const timers: NodeJS.Timeout[] = [];
  const setOutage = async (on: boolean) => {
    if (!outage || !mock) return;
    try {
      const res = await mockAdmin(mock, '/__mock/outage', on ? { on: true, status: s.outage!.status, ...(s.outage!.retryAfterSeconds !== undefined ? { retryAfterSeconds: s.outage!.retryAfterSeconds } : {}) } : { on: false });
      if (!res.ok) throw new Error(`the mock answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
      outageOn = on;
      if (on) outage.appliedAtMs = Math.round(since());
      else outage.clearedAtMs = Math.round(since());
    } catch (error) {
      const message = `could not switch the outage ${on ? 'on' : 'off'} at ${mock}/__mock/outage: ${(error as Error).message}`;
      outage.error = outage.error ? `${outage.error}; ${message}` : message;
      warn(message);
    }
  };
  let pendingOutage: Promise<void> = Promise.resolve();
  if (s.outage && mock) {
    outage = { at: s.outage.at, for: s.outage.for, status: s.outage.status, mock };
    timers.push(setTimeout(() => (pendingOutage = setOutage(true)), s.outage.at));
    timers.push(setTimeout(() => (pendingOutage = pendingOutage.then(() => setOutage(false))), s.outage.at + s.outage.for));
  }

  const progress = options.onProgress
    ? setInterval(() => {
        const elapsedMs = since();
        options.onProgress!({
          elapsedMs,
          durationMs: s.duration,
          requests: recorder.requests,
          errors: recorder.errors,
          rps: recorder.recentRps(elapsedMs),
          p95: recorder.latency().p95,
          outageActive: outageOn,
          phase: 'run',
        });
      }, 200)
    : undefined;

  let bailedOut = false;
  let endedAt = 0;
  try {
    const { transportErrors } = await runMeasured({
      target,
      scenario: s,
      mix: createRequestMix(s, { users, seed: s.seed, basePath: new URL(target).pathname }),
      connections,
      ...(mode === 'rate' ? { rate: s.rate } : {}),
      durationMs: s.duration,
      signal: options.signal,
      onResponse: (p, latencyMs, bytes) => {
        const at = since();
        // autocannon stops at its next sample tick after the duration: drop requests sent after the planned end.
        if (at - latencyMs >= s.duration) return;
        recorder.response({ entry: p.entry, status: p.status, ...(p.cache ? { cache: p.cache } : {}), streamIncomplete: p.streamIncomplete, latencyMs, bytes, atMs: at });
      },
      onTransportError: (kind) => {
        const at = since();
        if (at < s.duration + s.timeout) recorder.transportError(kind, at);
      },
    });
    endedAt = since();
    bailedOut = transportErrors >= BAILOUT_ERRORS;
  } finally {
    for (const t of timers) clearTimeout(t);
    if (progress) clearInterval(progress);
    await pendingOutage;
    if (outageOn) await setOutage(false);
  }
  const durationMs = endedAt;
  const finishedAt = new Date();

  const latencyMs = recorder.latency();
  const requests = recorder.requests;
  const totals = {
    requests,
    responses: recorder.responses,
    ok: recorder.ok,
    errors: recorder.errors,
    errorRate: requests ? recorder.errors / requests : 0,
    // Only requests sent within the planned duration are counted, so that is the time base (unless cut short).
    rps: Math.round((recorder.responses / (Math.min(durationMs, s.duration) / 1000)) * 100) / 100,
    bytes: recorder.bytes,
  };
  const cache = recorder.cache();
  const slo = evaluateSlos(s.slo, { latencyMs, totals, cache });
  const report: LoadReport = {
    reportVersion: 1,
    tool: `@amas/loadtest ${packageVersion()}`,
    scenario: { name: s.name, description: s.description, ...(s.source ? { source: s.source } : {}) },
    target,
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    durationMs: Math.round(durationMs),
    interrupted: options.signal?.aborted ?? false,
    bailedOut,
    config: {
      mode,
      ...(mode === 'rate' ? { rate: s.rate } : { concurrency: s.concurrency }),
      connections: mode === 'rate' ? Math.min(connections, s.rate!) : connections,
      plannedDurationMs: s.duration,
      timeoutMs: Math.max(2, Math.ceil(s.timeout / 1000)) * 1000,
      users: userCount,
      seed: s.seed,
      warmupRequests: s.warmup?.requests ?? 0,
      loadGenerator: `autocannon ${autocannonVersion()}`,
    },
    totals,
    latencyMs,
    statuses: { ...recorder.statuses },
    errors: { ...recorder.errorKinds },
    cache,
    entries: recorder.entryReports(),
    timeline: recorder.timeline(Math.min(durationMs, s.duration)),
    ...(outage ? { outage } : {}),
    slo,
    pass: slo.pass,
  };
  if (baseline) {
    report.baseline = compareWithBaseline(report, baseline, s.regressionThreshold, baselineFile);
    for (const w of report.baseline.warnings) warn(w);
    report.pass = report.pass && report.baseline.pass;
  }
  return report;
}
