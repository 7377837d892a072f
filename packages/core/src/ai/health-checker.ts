/**
 * Active health checks: each endpoint is probed every `intervalMs` (by default `GET /v1/models` through the
 * provider transport, or a user function), and flips to unhealthy after `unhealthyThreshold` failed probes in a
 * row, back to healthy after `healthyThreshold` good ones. Endpoints start healthy, so traffic flows before the
 * first probe answers. Probes of one endpoint never overlap (the next is scheduled when the previous settles).
 * Every timer goes through the injected Clock (unref'd by the system clock); `stop()` clears them and aborts
 * probes in flight.
 */
import { z } from 'zod';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import { Emitter } from '../events.js';
import { consoleLogger, type Logger } from '../logger.js';
import { fn, positiveInt, timerMs } from '../options/validate.js';
import type { EndpointConfig, ProviderTransport } from './provider-types.js';

export type HealthProbe = (endpoint: EndpointConfig, signal: AbortSignal) => Promise<boolean>;

export interface HealthCheckOptions {
  /** Default true (when the option object is given at all). */
  enabled?: boolean;
  /** Path of the default probe, a GET through the transport; any 2xx is healthy. Default '/v1/models'. */
  path?: string;
  /** A custom probe instead of the GET: resolve true when healthy; false, a rejection or a timeout is a failure. */
  probe?: HealthProbe;
  /** Time between the end of one probe and the start of the next. Default 10 000 ms. */
  intervalMs?: number;
  /** A probe slower than this fails (its signal is aborted). Default 2 000 ms. */
  timeoutMs?: number;
  /** Good probes in a row that make an unhealthy endpoint healthy. Default 2. */
  healthyThreshold?: number;
  /** Failed probes in a row that make a healthy endpoint unhealthy. Default 3. */
  unhealthyThreshold?: number;
}

export const healthCheckOptionsSchema = z.strictObject({
  enabled: z.boolean().optional(),
  path: z.string().startsWith('/').optional(),
  probe: fn.optional(),
  intervalMs: timerMs.min(1).optional(),
  timeoutMs: timerMs.min(1).optional(),
  healthyThreshold: positiveInt.optional(),
  unhealthyThreshold: positiveInt.optional(),
});

/** An endpoint as the checker sees it: its config with a resolved id. */
export type CheckedEndpoint = EndpointConfig & { id: string };

export interface HealthCheckerOptions extends HealthCheckOptions {
  endpoints: readonly CheckedEndpoint[];
  /** Needed by the default probe. */
  transport?: ProviderTransport;
  clock?: Clock;
  logger?: Logger;
}

export interface HealthStatus {
  healthy: boolean;
  consecutiveSuccesses: number;
  consecutiveFailures: number;
  probes: number;
  lastProbeAt?: number;
  /** Why the last probe failed, if it did. */
  lastError?: string;
}

export type HealthEvents = {
  change: { endpoint: string; healthy: boolean; reason: string };
  probe: { endpoint: string; ok: boolean; durationMs: number; error?: string };
};

interface ProbeState extends HealthStatus {
  endpoint: CheckedEndpoint;
  timer: TimerHandle | undefined;
  inFlight: AbortController | undefined;
}

export class HealthChecker {
  private readonly probeFn: HealthProbe;
  private readonly intervalMs: number;
  private readonly timeoutMs: number;
  private readonly healthyThreshold: number;
  private readonly unhealthyThreshold: number;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly states = new Map<string, ProbeState>();
  private readonly emitter = new Emitter<HealthEvents>();
  private running = false;
  /** Bumped by stop(): outcomes of probes started before it are dropped. */
  private generation = 0;

  /** `options` are trusted (the router validates them with `healthCheckOptionsSchema`). */
  constructor(options: HealthCheckerOptions) {
    this.intervalMs = options.intervalMs ?? 10_000;
    this.timeoutMs = options.timeoutMs ?? 2_000;
    this.healthyThreshold = options.healthyThreshold ?? 2;
    this.unhealthyThreshold = options.unhealthyThreshold ?? 3;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? consoleLogger;
    if (options.probe) {
      this.probeFn = options.probe;
    } else {
      const transport = options.transport;
      if (transport === undefined) throw new TypeError('HealthChecker: a transport is needed for the default probe (or pass `probe`)');
      const path = options.path ?? '/v1/models';
      this.probeFn = async (endpoint, signal) => {
        await transport.request(endpoint, { path, method: 'GET', signal });
        return true;
      };
    }
    for (const endpoint of options.endpoints) {
      this.states.set(endpoint.id, {
        endpoint,
        healthy: true,
        consecutiveSuccesses: 0,
        consecutiveFailures: 0,
        probes: 0,
        timer: undefined,
        inFlight: undefined,
      });
    }
  }

  on<K extends keyof HealthEvents>(event: K, listener: (e: HealthEvents[K]) => void): () => void {
    return this.emitter.on(event, listener);
  }

  /** Starts probing every endpoint now, then every `intervalMs`. Idempotent. */
  start(): void {
    if (this.running) return;
    this.running = true;
    for (const state of this.states.values()) void this.run(state);
  }

  /** Clears every timer and aborts probes in flight; statuses keep their last value. Idempotent. */
  stop(): void {
    this.running = false;
    this.generation++;
    for (const state of this.states.values()) {
      if (state.timer !== undefined) this.clock.clearTimeout(state.timer);
      state.timer = undefined;
      state.inFlight?.abort(new Error('health checker stopped'));
      state.inFlight = undefined;
    }
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** Unknown ids count as healthy. */
  isHealthy(id: string): boolean {
    return this.states.get(id)?.healthy ?? true;
  }

  status(id: string): HealthStatus | undefined {
    const s = this.states.get(id);
    if (s === undefined) return undefined;
    return {
      healthy: s.healthy,
      consecutiveSuccesses: s.consecutiveSuccesses,
      consecutiveFailures: s.consecutiveFailures,
      probes: s.probes,
      ...(s.lastProbeAt === undefined ? {} : { lastProbeAt: s.lastProbeAt }),
      ...(s.lastError === undefined ? {} : { lastError: s.lastError }),
    };
  }

  /** Probes one endpoint (or all) now, outside the schedule, and records the outcome. */
  async checkNow(id?: string): Promise<void> {
    const targets = id === undefined ? [...this.states.values()] : [this.states.get(id)].filter((s): s is ProbeState => s !== undefined);
    await Promise.all(targets.map((s) => this.probeOnce(s)));
  }

  private async run(state: ProbeState): Promise<void> {
    state.timer = undefined;
    if (!this.running) return;
    await this.probeOnce(state);
    if (!this.running || state.timer !== undefined) return;
    state.timer = this.clock.setTimeout(() => void this.run(state), this.intervalMs);
  }

  private async probeOnce(state: ProbeState): Promise<void> {
    if (state.inFlight !== undefined) return; // never two probes of one endpoint at once
    const controller = new AbortController();
    state.inFlight = controller;
    const generation = this.generation;
    const started = this.clock.now();
    let timer: TimerHandle | undefined;
    let ok = false;
    let error: string | undefined;
    try {
      ok = await new Promise<boolean>((resolve, reject) => {
        timer = this.clock.setTimeout(() => {
          const e = new Error(`probe timed out after ${this.timeoutMs} ms`);
          controller.abort(e);
          reject(e);
        }, this.timeoutMs);
        // stop() aborts: settle now even when the probe ignores its signal, so no timer outlives stop().
        controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true });
        Promise.resolve()
          .then(() => this.probeFn(state.endpoint, controller.signal))
          .then((value) => resolve(value === true), reject);
      });
      if (!ok) error = 'probe returned false';
    } catch (e) {
      error = describeError(e);
    } finally {
      this.clock.clearTimeout(timer);
      if (state.inFlight === controller) state.inFlight = undefined;
    }
    // Stopped while probing: the outcome no longer matters.
    if (generation !== this.generation) return;
    this.record(state, ok, error, this.clock.now() - started);
  }

  private record(state: ProbeState, ok: boolean, error: string | undefined, durationMs: number): void {
    const id = state.endpoint.id;
    state.probes++;
    state.lastProbeAt = this.clock.now();
    if (this.emitter.has('probe')) this.emitter.emit('probe', { endpoint: id, ok, durationMs, ...(error === undefined ? {} : { error }) });
    if (ok) {
      state.consecutiveSuccesses++;
      state.consecutiveFailures = 0;
      state.lastError = undefined;
      if (!state.healthy && state.consecutiveSuccesses >= this.healthyThreshold) {
        state.healthy = true;
        this.emitter.emit('change', { endpoint: id, healthy: true, reason: `${state.consecutiveSuccesses} good probes in a row` });
      }
      return;
    }
    state.consecutiveFailures++;
    state.consecutiveSuccesses = 0;
    state.lastError = error;
    if (state.healthy && state.consecutiveFailures >= this.unhealthyThreshold) {
      state.healthy = false;
      const reason = `${state.consecutiveFailures} failed probes in a row (last: ${error ?? 'failed'})`;
      this.logger.warn(`AI endpoint "${id}" is unhealthy: ${reason}`);
      this.emitter.emit('change', { endpoint: id, healthy: false, reason });
    }
  }
}

function describeError(error: unknown): string {
  if (error instanceof Error) {
    const status = (error as { status?: unknown }).status;
    return typeof status === 'number' ? `${status} ${error.message}` : error.message;
  }
  return String(error);
}
