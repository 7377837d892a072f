/**
 * How well autoscaling works for a deployment: every scale-up, scale-down, no-op and failed rescale (from the
 * HPA/KEDA via a Kubernetes event exporter, see scaling-events.ts, or recorded by your own code), kept as a
 * history, summarised as effectiveness numbers and exported to Prometheus.
 *
 * Storage: with a `store` (RedisStore) the history is shared by every replica and survives restarts (a sorted
 * set per deployment, see scaling-scripts.ts); without one it lives in a MemoryStore of this process. Either
 * way it is bounded: events older than `retention` are dropped, at most `maxEventsPerDeployment` per
 * deployment, and at most `maxDeployments` deployments (or exactly the configured `deployments`).
 *
 * Metrics (names with `prefix`, default `amas_`):
 * - `amas_scaling_events_total{deployment,action}`: counter, incremented by the replica that recorded the
 *   event (sum over pods for the total; an event recorded twice, e.g. a webhook retry with the same id, counts
 *   once);
 * - `amas_scaling_replicas{deployment}`: gauge, replicas after the latest event, read from the store at scrape
 *   (every replica reports the same shared value: aggregate with max, not sum);
 * - `amas_scaling_time_to_scale_seconds{deployment}`: histogram of `durationMs` of scale-ups and scale-downs
 *   that carry one, observed by the replica that recorded the event.
 * `deployment` label values are bounded by the `deployments` option, else capped by `maxDeployments`: an event
 * for one more deployment is refused (InvalidOptionError naming `deployment`) until older ones age out.
 */
import { randomUUID } from 'node:crypto';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { z } from 'zod';
import { systemClock, type Clock } from '../clock.js';
import { InvalidOptionError, type OptionIssue } from '../errors.js';
import { consoleLogger, type Logger } from '../logger.js';
import { durationSchema } from '../options/duration.js';
import { clockSchema, describe, fn, loggerSchema, parseOptions } from '../options/validate.js';
import { MemoryStore } from '../stores/memory-store.js';
import { isStore, type Store } from '../stores/store.js';
import { SCALING_DEPLOYMENTS, SCALING_RANGE, SCALING_RECORD } from './scaling-scripts.js';

export const SCALING_ACTIONS = ['scale_up', 'scale_down', 'no_change', 'failed'] as const;
export type ScalingAction = (typeof SCALING_ACTIONS)[number];

/** A time: epoch milliseconds, a Date, or an ISO 8601 string. */
export type ScalingTime = number | Date | string;

export type ScalingMetadata = Record<string, string | number | boolean | null>;

/** What `recordEvent` takes. */
export interface ScalingEventInput {
  /** The scaled workload: letters, digits, `.`, `_`, `-`, `/` (e.g. 'api' or 'prod/api'). */
  deployment: string;
  /**
   * Optional when `fromReplicas` and `toReplicas` tell it. When `fromReplicas` is omitted (an HPA event only
   * says the new size), the replicas after the previous recorded event are used, and the action (except
   * 'failed') is derived from the numbers; the given action counts only when no earlier event is known.
   */
  action?: ScalingAction;
  fromReplicas?: number;
  /** The new size (for 'failed': the size that could not be reached). */
  toReplicas: number;
  /** What decided: 'hpa', 'keda', 'manual', a metric name... */
  trigger: string;
  /** Why, in words (the HPA's "cpu resource utilization (percentage of request) above target"). */
  reason: string;
  /** Up to 30 small values (strings up to 1000 characters). */
  metadata?: ScalingMetadata;
  /** When it happened. Default: now. Must be within `retention`. */
  at?: ScalingTime;
  /** Time to scale: from the decision (or the load change) to the new replicas serving, when you know it. */
  durationMs?: number;
  /** Idempotency key: an event recorded again with the same id is ignored (webhook retries). Default: random. */
  id?: string;
}

/** A recorded event. */
export interface ScalingEvent {
  id: string;
  deployment: string;
  action: ScalingAction;
  /** Undefined when neither the source nor an earlier event told. */
  fromReplicas?: number;
  toReplicas: number;
  trigger: string;
  reason: string;
  metadata?: ScalingMetadata;
  /** Epoch ms. */
  at: number;
  durationMs?: number;
}

export interface RecordScalingResult {
  /** false: an event with this id was recorded before (nothing changed). */
  recorded: boolean;
  event: ScalingEvent;
}

export interface ScalingWindow {
  from: number;
  to: number;
}

/**
 * Where requests per replica come from: the deployment's request rate (requests per second, all replicas
 * together) over the window, e.g. read from Prometheus (see prometheusRequestRate). undefined: unknown.
 */
export type RequestRateReader = (deployment: string, window: ScalingWindow) => number | undefined | Promise<number | undefined>;

export interface EffectivenessOptions {
  /** Default: `retention` ago. */
  from?: ScalingTime;
  /** Default: now. */
  to?: ScalingTime;
  /** The deployment's request rate over the window (req/s, all replicas); default: the `requestRate` reader. */
  requestRate?: number;
}

export interface ScalingEffectiveness {
  deployment: string;
  from: number;
  to: number;
  /** Events in the window, every action. */
  events: number;
  scaleUps: number;
  scaleDowns: number;
  noChange: number;
  failed: number;
  /** (scale-ups + scale-downs) / (scale-ups + scale-downs + failed); undefined without any attempt. */
  successRate: number | undefined;
  /** Mean `durationMs` of the scale-ups and scale-downs that carry one; undefined when none does. */
  meanTimeToScaleMs: number | undefined;
  /** Replicas averaged over the window, weighted by time (from the events); undefined when unknown. */
  meanReplicas: number | undefined;
  /** The request rate used (req/s, all replicas). */
  requestRate: number | undefined;
  /** requestRate / meanReplicas. */
  requestsPerReplica: number | undefined;
  /** Why the `requestRate` reader gave nothing, when it failed. */
  requestRateError?: string;
}

export interface ScalingMetricsOptions {
  /** Shares the history between replicas and keeps it across restarts (a RedisStore). Default: in memory. */
  store?: Store;
  /** Where the metrics register (e.g. `amas.registry`). Default: a registry of its own (`scaling.registry`). */
  registry?: Registry;
  /** Metric name prefix. Default 'amas_'. */
  prefix?: string;
  /** Separates several histories in one store (key namespace). Default 'default'. */
  name?: string;
  clock?: Clock;
  logger?: Logger;
  /** How long events are kept (ms or '30d'). Default 7 days. */
  retention?: number | string;
  /** Default 10_000. */
  maxEventsPerDeployment?: number;
  /** The deployments accepted (others are refused): bounds the metric labels by configuration. */
  deployments?: string[];
  /** Without `deployments`: how many distinct deployments are tracked at most. Default 100. */
  maxDeployments?: number;
  /** Buckets of the time-to-scale histogram, seconds. */
  buckets?: number[];
  /** Reads a deployment's request rate for `requestsPerReplica` (see RequestRateReader). */
  requestRate?: RequestRateReader;
}

const DAY_MS = 86_400_000;
const DEFAULTS = { retentionMs: 7 * DAY_MS, maxEvents: 10_000, maxDeployments: 100, buckets: [1, 5, 10, 15, 30, 60, 120, 300, 600, 1800] };

const DEPLOYMENT_EXPECTED = 'a deployment name: letters, digits, ".", "_", "-", "/" (e.g. "api" or "prod/api"), 1 to 253 characters, starting and ending with a letter or digit';
export const scalingDeploymentSchema = z.string().regex(/^[A-Za-z0-9](?:[A-Za-z0-9._/-]{0,251}[A-Za-z0-9])?$/, DEPLOYMENT_EXPECTED);
const replicasSchema = z.number().int().min(0).max(1_000_000);
const TIME_EXPECTED = 'a time: epoch milliseconds (number >= 0), a Date or an ISO 8601 string';
const timeSchema = z.custom<ScalingTime>((v) => timeOf(v) !== undefined, { message: TIME_EXPECTED });
const metadataSchema = z
  .record(z.string().min(1).max(100), z.union([z.string().max(1000), z.number().finite(), z.boolean(), z.null()]))
  .refine((m) => Object.keys(m).length <= 30, 'at most 30 entries');

export const scalingEventInputSchema = z
  .strictObject({
    deployment: scalingDeploymentSchema,
    action: z.enum(SCALING_ACTIONS).optional(),
    fromReplicas: replicasSchema.optional(),
    toReplicas: replicasSchema,
    trigger: z.string().min(1).max(100),
    reason: z.string().max(1000),
    metadata: metadataSchema.optional(),
    at: timeSchema.optional(),
    durationMs: z.number().finite().nonnegative().max(366 * DAY_MS).optional(),
    id: z.string().regex(/^[\x21-\x7e]{1,200}$/, 'printable ASCII without spaces, 1 to 200 characters').optional(),
  })
  .superRefine((e, ctx) => {
    if (e.fromReplicas === undefined || e.action === undefined || e.action === 'failed') return;
    if (e.action === directionOf(e.fromReplicas, e.toReplicas)) return;
    const relation = e.action === 'scale_up' ? 'more than' : e.action === 'scale_down' ? 'fewer than' : 'as many as';
    ctx.addIssue({ code: 'custom', path: ['toReplicas'], message: `${relation} fromReplicas (${e.fromReplicas}) for action "${e.action}"` });
  });

const registrySchema = z.custom<Registry>(
  (v) => typeof v === 'object' && v !== null && typeof (v as Registry).registerMetric === 'function' && typeof (v as Registry).getSingleMetric === 'function',
  { message: 'a prom-client Registry' },
);

const optionsSchema = z.strictObject({
  store: z.custom<Store>(isStore, { message: 'a Store (MemoryStore, RedisStore)' }).optional(),
  registry: registrySchema.optional(),
  prefix: z.string().regex(/^([a-zA-Z_:][a-zA-Z0-9_:]*)?$/, 'a metric name prefix (letters, digits, _ and :), e.g. "amas_"').optional(),
  name: z.string().regex(/^[A-Za-z0-9_.-]{1,100}$/, 'letters, digits, _ - . (1 to 100)').optional(),
  clock: clockSchema.optional(),
  logger: loggerSchema.optional(),
  retention: durationSchema.pipe(z.number().min(60_000, 'at least 1 minute').max(3660 * DAY_MS)).optional(),
  maxEventsPerDeployment: z.number().int().min(1).max(1_000_000).optional(),
  deployments: z.array(scalingDeploymentSchema).min(1).max(10_000).optional(),
  maxDeployments: z.number().int().min(1).max(10_000).optional(),
  buckets: z.array(z.number().finite().positive()).min(1).max(50).optional(),
  requestRate: fn.optional(),
});

const WHERE_EVENT = 'scaling event';

export class ScalingMetrics {
  /** Where the history lives (the given store, or a MemoryStore owned by this instance). */
  readonly store: Store;
  /** The registry the metrics are in. */
  readonly registry: Registry;
  readonly retentionMs: number;
  private readonly ownsStore: boolean;
  private readonly tag: string;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly maxEvents: number;
  private readonly maxDeployments: number;
  private readonly allowed: ReadonlySet<string> | undefined;
  private readonly requestRateReader: RequestRateReader | undefined;
  private readonly eventsTotal: Counter<'deployment' | 'action'>;
  private readonly replicas: Gauge<'deployment'>;
  private readonly timeToScale: Histogram<'deployment'>;
  private readonly metricNames: string[];
  /** Latest replicas per deployment recorded by this process: the gauge when the store does not answer. */
  private readonly local = new Map<string, { at: number; replicas: number }>();
  private warnedScrape = false;
  private closed = false;

  constructor(options: ScalingMetricsOptions = {}) {
    const o = parseOptions(optionsSchema, options ?? {}, 'ScalingMetrics options');
    this.clock = o.clock ?? systemClock;
    this.logger = o.logger ?? consoleLogger;
    this.retentionMs = o.retention ?? DEFAULTS.retentionMs;
    this.maxEvents = o.maxEventsPerDeployment ?? DEFAULTS.maxEvents;
    this.allowed = o.deployments === undefined ? undefined : new Set(o.deployments);
    if (this.allowed !== undefined && o.maxDeployments !== undefined) {
      throw new InvalidOptionError([{ path: 'maxDeployments', received: String(o.maxDeployments), expected: 'nothing next to `deployments` (the list is the bound)' }], 'ScalingMetrics options');
    }
    this.maxDeployments = this.allowed?.size ?? o.maxDeployments ?? DEFAULTS.maxDeployments;
    this.requestRateReader = o.requestRate as RequestRateReader | undefined;
    this.tag = `scaling:${o.name ?? 'default'}`;

    this.registry = o.registry ?? new Registry();
    const p = o.prefix ?? 'amas_';
    this.metricNames = [`${p}scaling_events_total`, `${p}scaling_replicas`, `${p}scaling_time_to_scale_seconds`];
    for (const name of this.metricNames) {
      if (this.registry.getSingleMetric(name) !== undefined) {
        throw new InvalidOptionError(
          [{ path: 'registry', received: `a registry that has ${name} already`, expected: 'a registry without it (close the other ScalingMetrics, or use another `prefix`)' }],
          'ScalingMetrics options',
        );
      }
    }
    const registers = [this.registry];
    this.eventsTotal = new Counter({ name: this.metricNames[0]!, help: 'Scaling events recorded by this process, by deployment and action', labelNames: ['deployment', 'action'], registers });
    this.replicas = new Gauge({
      name: this.metricNames[1]!,
      help: 'Replicas after the latest scaling event of each deployment (shared by every replica: aggregate with max)',
      labelNames: ['deployment'],
      registers,
      collect: () => this.collectReplicas(),
    });
    this.timeToScale = new Histogram({
      name: this.metricNames[2]!,
      help: 'Time to scale (decision to new replicas serving) of recorded scale-ups and scale-downs, seconds',
      labelNames: ['deployment'],
      buckets: o.buckets ?? DEFAULTS.buckets,
      registers,
    });
    // Configured deployments start at zero, so rate() and increase() see their first event.
    for (const deployment of this.allowed ?? []) for (const action of SCALING_ACTIONS) this.eventsTotal.inc({ deployment, action }, 0);

    if (o.store !== undefined) {
      this.store = o.store;
      this.ownsStore = false;
    } else {
      this.store = new MemoryStore({ clock: this.clock });
      this.ownsStore = true;
    }
  }

  /**
   * Records one event (validated: a bad field throws InvalidOptionError naming it). Resolves once it is in the
   * store; rejects StoreUnavailableError when the store does not answer (a webhook answers 503, so the sender
   * retries; the same `id` is then recorded once).
   */
  async recordEvent(input: ScalingEventInput): Promise<RecordScalingResult> {
    this.checkOpen();
    const e = parseOptions(scalingEventInputSchema, input, WHERE_EVENT);
    const now = this.clock.now();
    const cutoff = now - this.retentionMs;
    const at = e.at === undefined ? now : Math.round(timeOf(e.at)!);
    if (at < cutoff) {
      throw new InvalidOptionError([{ path: 'at', received: describe(e.at), expected: `a time within the retention (${this.retentionMs} ms): at or after ${new Date(cutoff).toISOString()}` }], WHERE_EVENT);
    }
    if (this.allowed !== undefined && !this.allowed.has(e.deployment)) {
      throw new InvalidOptionError([{ path: 'deployment', received: describe(e.deployment), expected: `one of the configured deployments (${[...this.allowed].join(', ')})` }], WHERE_EVENT);
    }
    let fromReplicas = e.fromReplicas;
    let action = e.action;
    if (fromReplicas === undefined) {
      const [previous] = await this.range(e.deployment, '-inf', String(at), true, 1);
      fromReplicas = previous === undefined ? undefined : replicasAfter(previous);
      if (fromReplicas !== undefined && action !== 'failed') action = directionOf(fromReplicas, e.toReplicas);
    } else if (action === undefined) {
      action = directionOf(fromReplicas, e.toReplicas);
    }
    if (action === undefined) {
      throw new InvalidOptionError(
        [{ path: 'action', received: 'undefined', expected: `one of ${SCALING_ACTIONS.join(', ')} (or fromReplicas: no earlier event of "${e.deployment}" tells it)` }],
        WHERE_EVENT,
      );
    }
    const event: ScalingEvent = {
      id: e.id ?? randomUUID(),
      deployment: e.deployment,
      action,
      ...(fromReplicas !== undefined && { fromReplicas }),
      toReplicas: e.toReplicas,
      trigger: e.trigger,
      reason: e.reason,
      ...(e.metadata !== undefined && { metadata: e.metadata }),
      at,
      ...(e.durationMs !== undefined && { durationMs: e.durationMs }),
    };
    const after = replicasAfter(event);
    const outcome = await this.store.run(
      SCALING_RECORD,
      [this.eventsKey(event.deployment), this.dataKey(event.deployment), this.indexKey()],
      [event.id, JSON.stringify(event), at, cutoff, this.maxEvents, event.deployment, this.maxDeployments, Math.max(1, Math.ceil(this.retentionMs)), after ?? ''],
    );
    if (outcome === 'full') {
      throw new InvalidOptionError(
        [{ path: 'deployment', received: describe(event.deployment), expected: `one of the ${this.maxDeployments} deployments tracked already (maxDeployments; a deployment leaves ${this.retentionMs} ms after its last event)` }],
        WHERE_EVENT,
      );
    }
    if (outcome === 'duplicate') return { recorded: false, event };
    this.eventsTotal.inc({ deployment: event.deployment, action: event.action });
    if (event.durationMs !== undefined && (event.action === 'scale_up' || event.action === 'scale_down')) {
      this.timeToScale.observe({ deployment: event.deployment }, event.durationMs / 1000);
    }
    if (after !== undefined) {
      const known = this.local.get(event.deployment);
      if (known === undefined || known.at <= at) this.local.set(event.deployment, { at, replicas: after });
    }
    return { recorded: true, event };
  }

  /** The deployment's events with `from <= at <= to` (defaults: the whole retention), oldest first. */
  async getHistory(deployment: string, from?: ScalingTime, to?: ScalingTime): Promise<ScalingEvent[]> {
    this.checkOpen();
    const name = parseOptions(scalingDeploymentSchema, deployment, 'scaling history query', 'deployment');
    const window = this.window({ from, to }, 'scaling history query', -Infinity, Infinity);
    const min = Math.max(window.from, this.clock.now() - this.retentionMs);
    if (min > window.to) return [];
    return this.range(name, String(min), window.to === Infinity ? '+inf' : String(window.to), false, 0);
  }

  /** Effectiveness of `deployment`'s scaling over a window (default: the retention up to now). */
  async getEffectiveness(deployment: string, options: EffectivenessOptions = {}): Promise<ScalingEffectiveness> {
    this.checkOpen();
    const name = parseOptions(scalingDeploymentSchema, deployment, 'scaling effectiveness query', 'deployment');
    const now = this.clock.now();
    const opts = parseOptions(
      z.strictObject({ from: timeSchema.optional(), to: timeSchema.optional(), requestRate: z.number().finite().nonnegative().optional() }),
      options ?? {},
      'scaling effectiveness options',
    );
    const { from, to } = this.window(opts, 'scaling effectiveness options', now - this.retentionMs, now);
    const events = await this.getHistory(name, from, to);
    const [before] = await this.range(name, String(Math.max(0, now - this.retentionMs)), `(${from}`, true, 1);

    let scaleUps = 0;
    let scaleDowns = 0;
    let noChange = 0;
    let failed = 0;
    let durations = 0;
    let durationSum = 0;
    for (const e of events) {
      if (e.action === 'scale_up') scaleUps++;
      else if (e.action === 'scale_down') scaleDowns++;
      else if (e.action === 'no_change') noChange++;
      else failed++;
      if (e.durationMs !== undefined && (e.action === 'scale_up' || e.action === 'scale_down')) {
        durations++;
        durationSum += e.durationMs;
      }
    }
    const attempts = scaleUps + scaleDowns + failed;
    const meanReplicas = timeWeightedReplicas(before === undefined ? undefined : replicasAfter(before), events, from, to);

    let requestRate = opts.requestRate;
    let requestRateError: string | undefined;
    if (requestRate === undefined && this.requestRateReader !== undefined) {
      try {
        const rate = await this.requestRateReader(name, { from, to });
        if (rate !== undefined && (typeof rate !== 'number' || !Number.isFinite(rate) || rate < 0)) throw new TypeError(`the requestRate reader returned ${describe(rate)}, not a number >= 0`);
        requestRate = rate;
      } catch (error) {
        requestRateError = error instanceof Error ? error.message : String(error);
      }
    }
    return {
      deployment: name,
      from,
      to,
      events: events.length,
      scaleUps,
      scaleDowns,
      noChange,
      failed,
      successRate: attempts === 0 ? undefined : (scaleUps + scaleDowns) / attempts,
      meanTimeToScaleMs: durations === 0 ? undefined : durationSum / durations,
      meanReplicas,
      requestRate,
      requestsPerReplica: requestRate !== undefined && meanReplicas !== undefined && meanReplicas > 0 ? requestRate / meanReplicas : undefined,
      ...(requestRateError !== undefined && { requestRateError }),
    };
  }

  /** Deployments with an event within the retention: when the latest happened and the replicas after it. */
  async deployments(): Promise<Array<{ deployment: string; at: number; replicas: number | undefined }>> {
    this.checkOpen();
    const list = await this.store.run(SCALING_DEPLOYMENTS, [this.indexKey()], [this.clock.now() - this.retentionMs]);
    return list.sort((a, b) => (a.deployment < b.deployment ? -1 : a.deployment > b.deployment ? 1 : 0));
  }

  /** Deletes the whole history of this `name` (every deployment) from the store. */
  async clear(): Promise<void> {
    this.checkOpen();
    this.local.clear();
    await this.store.deleteByPrefix(this.store.key(this.tag));
  }

  /** Removes the metrics from the registry and closes the store if this instance created it. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const name of this.metricNames) this.registry.removeSingleMetric(name);
    if (this.ownsStore) await this.store.close();
  }

  // ---------------------------------------------------------------------------------------------------------

  private eventsKey(deployment: string): string {
    return this.store.key(this.tag, 'events', deployment);
  }

  private dataKey(deployment: string): string {
    return this.store.key(this.tag, 'data', deployment);
  }

  private indexKey(): string {
    return this.store.key(this.tag, 'deployments');
  }

  private async range(deployment: string, min: string, max: string, reverse: boolean, limit: number): Promise<ScalingEvent[]> {
    const raw = await this.store.run(SCALING_RANGE, [this.eventsKey(deployment), this.dataKey(deployment)], [min, max, reverse ? '1' : '0', limit], limit === 0 ? { slow: true } : undefined);
    const out: ScalingEvent[] = [];
    for (const json of raw) {
      try {
        out.push(JSON.parse(json) as ScalingEvent);
      } catch {
        // Written by this code as JSON: a value that does not parse was not ours; skip it.
      }
    }
    return out;
  }

  private window(input: { from?: ScalingTime; to?: ScalingTime }, where: string, defaultFrom: number, defaultTo: number): ScalingWindow {
    const issues: OptionIssue[] = [];
    const from = input.from === undefined ? defaultFrom : timeOf(input.from);
    const to = input.to === undefined ? defaultTo : timeOf(input.to);
    if (from === undefined) issues.push({ path: 'from', received: describe(input.from), expected: TIME_EXPECTED });
    if (to === undefined) issues.push({ path: 'to', received: describe(input.to), expected: TIME_EXPECTED });
    if (issues.length === 0 && from! > to!) issues.push({ path: 'from', received: describe(input.from ?? from), expected: `a time at or before \`to\` (${to})` });
    if (issues.length > 0) throw new InvalidOptionError(issues, where);
    return { from: from!, to: to! };
  }

  /** At scrape: the shared latest replicas from the store; this process's own when the store does not answer. */
  private async collectReplicas(): Promise<void> {
    let values: Array<{ deployment: string; replicas: number }>;
    try {
      if (this.closed) throw new Error('closed');
      const list = await this.store.run(SCALING_DEPLOYMENTS, [this.indexKey()], [this.clock.now() - this.retentionMs], { timeoutMs: 1000 });
      values = list.filter((d) => d.replicas !== undefined).map((d) => ({ deployment: d.deployment, replicas: d.replicas! }));
      this.warnedScrape = false;
    } catch (error) {
      if (!this.warnedScrape && !this.closed) {
        this.warnedScrape = true;
        this.logger.warn(`scaling metrics: the store did not answer at scrape (${error instanceof Error ? error.message : String(error)}); reporting this process's own replicas`);
      }
      values = [...this.local].map(([deployment, v]) => ({ deployment, replicas: v.replicas }));
    }
    this.replicas.reset();
    for (const { deployment, replicas } of values) this.replicas.set({ deployment }, replicas);
  }

  private checkOpen(): void {
    if (this.closed) throw new InvalidOptionError([{ path: '', received: 'a closed ScalingMetrics', expected: 'an open ScalingMetrics' }], 'ScalingMetrics');
  }
}

/** The replicas once `event` happened: the new size, or the old one when the rescale failed. */
export function replicasAfter(event: Pick<ScalingEvent, 'action' | 'fromReplicas' | 'toReplicas'>): number | undefined {
  return event.action === 'failed' ? event.fromReplicas : event.toReplicas;
}

function directionOf(from: number, to: number): ScalingAction {
  return to > from ? 'scale_up' : to < from ? 'scale_down' : 'no_change';
}

/**
 * Mean replicas over [from, to], weighted by time. Before an event its `fromReplicas` held (no event came
 * between); otherwise the replicas after the previous event. Spans with no known count are left out.
 */
function timeWeightedReplicas(initial: number | undefined, events: readonly ScalingEvent[], from: number, to: number): number | undefined {
  let current = initial;
  let t = from;
  let area = 0;
  let known = 0;
  for (const e of events) {
    const before = e.fromReplicas ?? current;
    if (before !== undefined && e.at > t) {
      area += before * (e.at - t);
      known += e.at - t;
    }
    t = Math.max(t, e.at);
    current = replicasAfter(e) ?? before;
  }
  if (current !== undefined && to > t) {
    area += current * (to - t);
    known += to - t;
  }
  if (known > 0) return area / known;
  return current;
}

/** Epoch ms of a ScalingTime, or undefined when it is not one. */
export function timeOf(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined;
  if (value instanceof Date) {
    const ms = value.getTime();
    return Number.isFinite(ms) && ms >= 0 ? ms : undefined;
  }
  if (typeof value === 'string' && /^\d{4}-\d{2}-\d{2}T/.test(value)) {
    const ms = Date.parse(value);
    return Number.isFinite(ms) && ms >= 0 ? ms : undefined;
  }
  return undefined;
}
