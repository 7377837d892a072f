/**
 * ScalingMetrics: history, effectiveness and metrics of scaling events, in memory and on a real Redis
 * (127.0.0.1:6379 or REDIS_URL; a fresh key prefix per run, deleted afterwards), plus the Kubernetes event
 * receiver and the webhook on a real loopback HTTP server.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { InvalidOptionError, InvalidRequestError } from '../src/errors.js';
import { silentLogger } from '../src/logger.js';
import { prometheusRequestRate } from '../src/scaling/request-rate.js';
import { receiveScalingEvents, scalingEventFromKubernetes, serveScalingWebhook } from '../src/scaling/scaling-events.js';
import { ScalingMetrics, type ScalingEventInput, type ScalingMetricsOptions } from '../src/scaling/scaling-metrics.js';
import { MemoryStore } from '../src/stores/memory-store.js';
import { RedisStore } from '../src/stores/redis-store.js';
import type { Store } from '../src/stores/store.js';
import { freePort, REDIS_URL, uniquePrefix } from './stores/limiter-fixtures.js';

const T0 = Date.parse('2025-03-10T12:00:00Z');
const MIN = 60_000;

const open: Array<{ close(): Promise<void> }> = [];
const redisPrefixes: string[] = [];
afterEach(async () => {
  for (const item of open.splice(0).reverse()) await item.close();
});
afterAll(async () => {
  if (redisPrefixes.length === 0) return;
  const cleaner = new RedisStore({ url: REDIS_URL, logger: silentLogger });
  await cleaner.ready(5000);
  for (const prefix of redisPrefixes) await cleaner.connection.eval(`for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end return 1`, 0, `${prefix}*`);
  await cleaner.close();
});

interface Fixture {
  clock: ManualClock;
  /** A store for a new ScalingMetrics; the same data on every call (a restart). */
  store(): Promise<Store | undefined>;
}

function memoryFixture(): Fixture {
  return { clock: new ManualClock(T0), store: async () => undefined };
}

function redisFixture(): Fixture {
  const prefix = uniquePrefix();
  redisPrefixes.push(prefix);
  return {
    clock: new ManualClock(T0),
    async store() {
      const store = new RedisStore({ url: REDIS_URL, prefix, logger: silentLogger });
      await store.ready(5000);
      open.push(store);
      return store;
    },
  };
}

async function scalingOn(fixture: Fixture, options: ScalingMetricsOptions = {}): Promise<ScalingMetrics> {
  const store = await fixture.store();
  const scaling = new ScalingMetrics({ clock: fixture.clock, logger: silentLogger, ...(store && { store }), ...options });
  open.push(scaling);
  return scaling;
}

const event = (overrides: Partial<ScalingEventInput> = {}): ScalingEventInput => ({
  deployment: 'api',
  action: 'scale_up',
  fromReplicas: 2,
  toReplicas: 4,
  trigger: 'hpa',
  reason: 'cpu resource utilization (percentage of request) above target',
  ...overrides,
});

/** The scenario both stores run: up 2->4, down 4->3, a failed 3->5, a no-op, over 40 minutes. */
async function recordScenario(scaling: ScalingMetrics): Promise<void> {
  await scaling.recordEvent(event({ at: T0, durationMs: 30_000, id: 'e1', metadata: { namespace: 'prod' } }));
  await scaling.recordEvent(event({ action: 'scale_down', fromReplicas: 4, toReplicas: 3, at: T0 + 10 * MIN, durationMs: 60_000, reason: 'All metrics below target', id: 'e2' }));
  await scaling.recordEvent(event({ action: 'failed', fromReplicas: 3, toReplicas: 5, at: T0 + 20 * MIN, reason: 'quota exceeded', id: 'e3' }));
  await scaling.recordEvent(event({ action: 'no_change', fromReplicas: 3, toReplicas: 3, at: new Date(T0 + 25 * MIN), trigger: 'keda', reason: 'steady', id: 'e4' }));
}

describe.each([
  ['in memory', memoryFixture],
  ['on Redis', redisFixture],
])('ScalingMetrics %s', (_label, makeFixture) => {
  it('keeps the history in order and computes exact effectiveness numbers', async () => {
    const fixture = makeFixture();
    fixture.clock.set(T0 + 30 * MIN);
    const scaling = await scalingOn(fixture);
    await recordScenario(scaling);

    const history = await scaling.getHistory('api');
    expect(history.map((e) => [e.id, e.action, e.fromReplicas, e.toReplicas])).toEqual([
      ['e1', 'scale_up', 2, 4],
      ['e2', 'scale_down', 4, 3],
      ['e3', 'failed', 3, 5],
      ['e4', 'no_change', 3, 3],
    ]);
    expect(history[0]).toEqual({
      id: 'e1',
      deployment: 'api',
      action: 'scale_up',
      fromReplicas: 2,
      toReplicas: 4,
      trigger: 'hpa',
      reason: 'cpu resource utilization (percentage of request) above target',
      metadata: { namespace: 'prod' },
      at: T0,
      durationMs: 30_000,
    });
    expect((await scaling.getHistory('api', T0 + 5 * MIN, new Date(T0 + 20 * MIN))).map((e) => e.id)).toEqual(['e2', 'e3']);
    expect(await scaling.getHistory('other')).toEqual([]);

    // Window: 10 min before the first event to now (40 min). Replicas: 2 (10 min), 4 (10), 3 (20) = 120 / 40 = 3.
    const effectiveness = await scaling.getEffectiveness('api', { from: T0 - 10 * MIN, requestRate: 90 });
    expect(effectiveness).toEqual({
      deployment: 'api',
      from: T0 - 10 * MIN,
      to: T0 + 30 * MIN,
      events: 4,
      scaleUps: 1,
      scaleDowns: 1,
      noChange: 1,
      failed: 1,
      successRate: 2 / 3,
      meanTimeToScaleMs: 45_000,
      meanReplicas: 3,
      requestRate: 90,
      requestsPerReplica: 30,
    });
    // A window after the scale-up starts from the replicas that event left: 4 for 5 min, 3 for 5 min.
    const later = await scaling.getEffectiveness('api', { from: T0 + 5 * MIN, to: T0 + 15 * MIN, requestRate: 35 });
    expect(later).toMatchObject({ events: 1, scaleDowns: 1, successRate: 1, meanTimeToScaleMs: 60_000, meanReplicas: 3.5, requestsPerReplica: 10 });
    // Nothing in the window: no attempts, no durations; the replicas carry over from before.
    expect(await scaling.getEffectiveness('api', { from: T0 + 26 * MIN })).toMatchObject({ events: 0, successRate: undefined, meanTimeToScaleMs: undefined, meanReplicas: 3, requestsPerReplica: undefined });
  });

  it('exports the series: events by action, replicas, time to scale', async () => {
    const fixture = makeFixture();
    fixture.clock.set(T0 + 30 * MIN);
    const registry = new Registry();
    const scaling = await scalingOn(fixture, { registry });
    await recordScenario(scaling);
    const text = await registry.metrics();
    expect(text).toContain('# TYPE amas_scaling_events_total counter');
    for (const action of ['scale_up', 'scale_down', 'failed', 'no_change']) expect(text).toContain(`amas_scaling_events_total{deployment="api",action="${action}"} 1`);
    expect(text).toContain('# TYPE amas_scaling_replicas gauge');
    expect(text).toContain('amas_scaling_replicas{deployment="api"} 3');
    expect(text).toContain('# TYPE amas_scaling_time_to_scale_seconds histogram');
    expect(text).toContain('amas_scaling_time_to_scale_seconds_bucket{le="30",deployment="api"} 1');
    expect(text).toContain('amas_scaling_time_to_scale_seconds_bucket{le="60",deployment="api"} 2');
    expect(text).toContain('amas_scaling_time_to_scale_seconds_sum{deployment="api"} 90');
    expect(text).toContain('amas_scaling_time_to_scale_seconds_count{deployment="api"} 2');
    await scaling.close();
    expect(await registry.metrics()).not.toContain('amas_scaling_');
  });

  it('records an event id once (retries), and fills fromReplicas and the action from the previous event', async () => {
    const fixture = makeFixture();
    const scaling = await scalingOn(fixture);
    expect((await scaling.recordEvent(event({ id: 'k8s:abc:1', at: T0 - 5 * MIN }))).recorded).toBe(true);
    expect((await scaling.recordEvent(event({ id: 'k8s:abc:1', at: T0 - 5 * MIN }))).recorded).toBe(false);
    // HPA-style: only the new size. The previous event left 4 replicas: 4 -> 6 is a scale-up.
    const { event: filled } = await scaling.recordEvent({ deployment: 'api', toReplicas: 6, trigger: 'hpa', reason: 'x', at: T0 - 2 * MIN });
    expect(filled).toMatchObject({ action: 'scale_up', fromReplicas: 4, toReplicas: 6 });
    // The numbers win over a guessed action when the old size comes from the history.
    const { event: down } = await scaling.recordEvent({ deployment: 'api', action: 'scale_up', toReplicas: 5, trigger: 'hpa', reason: 'x', at: T0 - MIN });
    expect(down).toMatchObject({ action: 'scale_down', fromReplicas: 6 });
    // No history: the given action stands, the old size stays unknown.
    const { event: first } = await scaling.recordEvent({ deployment: 'worker', action: 'scale_up', toReplicas: 3, trigger: 'keda', reason: 'queue', at: T0 - MIN });
    expect(first.fromReplicas).toBeUndefined();
    expect(first.action).toBe('scale_up');
    const error = await scaling.recordEvent({ deployment: 'fresh', toReplicas: 3, trigger: 'hpa', reason: 'x' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect((error as InvalidOptionError).issues[0]!.path).toBe('action');
    expect((await scaling.getHistory('api')).length).toBe(3);
  });

  it('is bounded: retention, events per deployment, deployments', async () => {
    const fixture = makeFixture();
    const scaling = await scalingOn(fixture, { retention: '1h', maxEventsPerDeployment: 3, maxDeployments: 2 });
    for (let i = 0; i < 5; i++) await scaling.recordEvent(event({ id: `e${i}`, fromReplicas: i + 1, toReplicas: i + 2, at: T0 - 50 * MIN + i * MIN }));
    expect((await scaling.getHistory('api')).map((e) => e.id)).toEqual(['e2', 'e3', 'e4']);
    await scaling.recordEvent(event({ deployment: 'worker' }));
    const full = await scaling.recordEvent(event({ deployment: 'third' })).catch((e: unknown) => e);
    expect(full).toBeInstanceOf(InvalidOptionError);
    expect((full as InvalidOptionError).issues[0]).toMatchObject({ path: 'deployment', received: '"third"' });
    expect((full as Error).message).toMatch(/one of the 2 deployments tracked already \(maxDeployments/);
    const old = await scaling.recordEvent(event({ at: T0 - 61 * MIN })).catch((e: unknown) => e);
    expect((old as InvalidOptionError).issues[0]!.path).toBe('at');

    // An hour later 'api' is past retention: its events are gone and 'third' takes its place.
    await fixture.clock.advance(50 * MIN);
    expect((await scaling.getHistory('api')).map((e) => e.id)).toEqual([]);
    await scaling.recordEvent(event({ deployment: 'third' }));
    expect((await scaling.deployments()).map((d) => d.deployment)).toEqual(['third', 'worker']);
  });
});

describe('ScalingMetrics on Redis', () => {
  it('keeps the history across a restart, in hash-tagged keys, and the replicas gauge reads it', async () => {
    const fixture = redisFixture();
    fixture.clock.set(T0 + 30 * MIN);
    const first = await scalingOn(fixture);
    await recordScenario(first);
    const before = await first.getEffectiveness('api', { from: T0 - 10 * MIN, requestRate: 90 });
    await first.close();

    const store = (await fixture.store()) as RedisStore;
    const keys = (await store.connection.keys(`${store.prefix}*`)).sort();
    expect(keys).toEqual([`${store.prefix}{scaling:default}:data:api`, `${store.prefix}{scaling:default}:deployments`, `${store.prefix}{scaling:default}:events:api`]);
    const ttl = await store.connection.pttl(keys[0]!);
    expect(ttl).toBeGreaterThan(6 * 86_400_000);

    const registry = new Registry();
    const second = new ScalingMetrics({ store, registry, clock: fixture.clock, logger: silentLogger });
    open.push(second);
    expect((await second.getHistory('api')).map((e) => e.id)).toEqual(['e1', 'e2', 'e3', 'e4']);
    expect(await second.getEffectiveness('api', { from: T0 - 10 * MIN, requestRate: 90 })).toEqual(before);
    // The gauge comes from the store: this process recorded nothing, yet it knows the replicas.
    expect(await registry.metrics()).toContain('amas_scaling_replicas{deployment="api"} 3');
    // Another `name` is another history in the same store.
    const other = new ScalingMetrics({ store, name: 'staging', clock: fixture.clock, logger: silentLogger });
    open.push(other);
    expect(await other.getHistory('api')).toEqual([]);
    await second.clear();
    expect(await second.getHistory('api')).toEqual([]);
  });

  it('rejects with StoreUnavailableError when Redis does not answer; the gauge falls back to this process', async () => {
    const port = await freePort();
    const store = new RedisStore({ url: `redis://127.0.0.1:${port}`, connectTimeoutMs: 200, logger: silentLogger });
    open.push(store);
    await store.ready(1000).catch(() => undefined);
    const registry = new Registry();
    const scaling = new ScalingMetrics({ store, registry, logger: silentLogger });
    open.push(scaling);
    await expect(scaling.recordEvent(event())).rejects.toMatchObject({ code: 'AMAS_STORE_UNAVAILABLE' });
    const text = await registry.metrics();
    expect(text).toContain('# TYPE amas_scaling_replicas gauge');
    expect(text).not.toContain('amas_scaling_replicas{');
  });
});

describe('ScalingMetrics input and options', () => {
  it('bad events fail with an error naming the field', async () => {
    const clock = new ManualClock(T0);
    const scaling = new ScalingMetrics({ clock, logger: silentLogger, deployments: ['api', 'worker'] });
    open.push(scaling);
    const cases: Array<[unknown, string, RegExp?]> = [
      [{ ...event(), deployment: '' }, 'deployment', /a deployment name/],
      [{ ...event(), deployment: 'a b' }, 'deployment'],
      [{ ...event(), deployment: 'x{tag}' }, 'deployment'],
      [{ ...event(), deployment: 'billing' }, 'deployment', /one of the configured deployments \(api, worker\)/],
      [{ ...event(), action: 'scale_sideways' }, 'action', /one of "scale_up", "scale_down", "no_change", "failed"/],
      [{ ...event(), toReplicas: 2 }, 'toReplicas', /more than fromReplicas \(2\) for action "scale_up"/],
      [{ ...event(), action: 'scale_down' }, 'toReplicas', /fewer than fromReplicas/],
      [{ ...event(), action: 'no_change' }, 'toReplicas', /as many as fromReplicas/],
      [{ ...event(), fromReplicas: -1 }, 'fromReplicas'],
      [{ ...event(), toReplicas: 2.5 }, 'toReplicas'],
      [{ ...event(), toReplicas: '4' }, 'toReplicas', /expected number/],
      [{ ...event(), trigger: '' }, 'trigger'],
      [{ ...event(), reason: 'x'.repeat(1001) }, 'reason'],
      [{ ...event(), at: 'yesterday' }, 'at', /epoch milliseconds/],
      [{ ...event(), at: -5 }, 'at'],
      [{ ...event(), durationMs: -1 }, 'durationMs'],
      [{ ...event(), metadata: { nested: { a: 1 } } }, 'metadata.nested'],
      [{ ...event(), id: 'has space' }, 'id'],
      [{ ...event(), replicas: 3 }, '', /unknown: replicas/],
      [null, '', /object/],
    ];
    for (const [input, path, message] of cases) {
      const error = await scaling.recordEvent(input as ScalingEventInput).catch((e: unknown) => e);
      expect(error, JSON.stringify(input)).toBeInstanceOf(InvalidOptionError);
      expect((error as InvalidOptionError).issues[0]!.path, JSON.stringify(input)).toBe(path);
      expect((error as Error).message).toMatch(/^Invalid scaling event:/);
      if (message) expect((error as Error).message).toMatch(message);
    }
    expect(await scaling.getHistory('api')).toEqual([]);
    // Queries validate too.
    await expect(scaling.getHistory('bad name')).rejects.toThrow(/deployment: expected a deployment name/);
    await expect(scaling.getHistory('api', 'soon')).rejects.toThrow(/from: expected a time/);
    await expect(scaling.getEffectiveness('api', { from: T0, to: T0 - 1 })).rejects.toThrow(/from: expected a time at or before `to`/);
    await expect(scaling.getEffectiveness('api', { requestRate: -1 })).rejects.toThrow(/requestRate/);
  });

  it('configured deployments start at zero in the metrics', async () => {
    const registry = new Registry();
    const scaling = new ScalingMetrics({ registry, deployments: ['api'], logger: silentLogger });
    open.push(scaling);
    expect(await registry.metrics()).toContain('amas_scaling_events_total{deployment="api",action="failed"} 0');
  });

  it('bad options fail at construction, naming the option', () => {
    const registry = new Registry();
    const taken = new ScalingMetrics({ registry });
    open.push(taken);
    const cases: Array<[ScalingMetricsOptions, string]> = [
      [{ retention: 'forever' }, 'retention'],
      [{ retention: 1000 }, 'retention'],
      [{ maxEventsPerDeployment: 0 }, 'maxEventsPerDeployment'],
      [{ maxDeployments: 1.5 }, 'maxDeployments'],
      [{ deployments: ['api'], maxDeployments: 5 }, 'maxDeployments'],
      [{ deployments: ['ok', 'not ok'] }, 'deployments.1'],
      [{ prefix: 'amas-' }, 'prefix'],
      [{ name: 'a:b' }, 'name'],
      [{ store: {} as Store }, 'store'],
      [{ registry: {} as Registry }, 'registry'],
      [{ registry }, 'registry'],
      [{ requestRate: 5 as never }, 'requestRate'],
      [{ buckets: [] }, 'buckets'],
      [{ typo: 1 } as never, ''],
    ];
    for (const [options, path] of cases) {
      let error: unknown;
      try {
        open.push(new ScalingMetrics(options));
      } catch (e) {
        error = e;
      }
      expect(error, JSON.stringify(Object.keys(options))).toBeInstanceOf(InvalidOptionError);
      expect((error as InvalidOptionError).issues[0]!.path).toBe(path);
    }
    // The same registry takes a second instance under another prefix.
    open.push(new ScalingMetrics({ registry, prefix: 'other_' }));
  });

  it('a closed instance refuses work; an owned MemoryStore is closed with it', async () => {
    const scaling = new ScalingMetrics();
    await scaling.close();
    await scaling.close();
    await expect(scaling.recordEvent(event())).rejects.toBeInstanceOf(InvalidOptionError);
    const store = new MemoryStore();
    const shared = new ScalingMetrics({ store });
    await shared.close();
    expect(await store.run({ name: 'x', lua: '', memory: () => 1, decode: Number }, [], [])).toBe(1);
    await store.close();
  });
});

// --------------------------------------------------------------------------------------------------------
// Kubernetes events, as kubernetes-event-exporter's webhook posts them

const hpaEvent = (overrides: Record<string, unknown> = {}) => ({
  metadata: {
    name: 'web.17fb4c2a9c5e1d3b',
    namespace: 'prod',
    uid: '5b0c3f62-7c1e-4b8e-9a55-0d2c1e9a7f41',
    resourceVersion: '918273',
    creationTimestamp: '2025-03-10T11:58:00Z',
  },
  reason: 'SuccessfulRescale',
  message: 'New size: 4; reason: cpu resource utilization (percentage of request) above target',
  source: { component: 'horizontal-pod-autoscaler' },
  firstTimestamp: '2025-03-10T11:58:00Z',
  lastTimestamp: '2025-03-10T11:58:00Z',
  count: 1,
  type: 'Normal',
  eventTime: null,
  reportingComponent: '',
  reportingInstance: '',
  involvedObject: {
    kind: 'HorizontalPodAutoscaler',
    namespace: 'prod',
    name: 'web',
    uid: '0f9a8b7c-6d5e-4f3a-8b2c-1d0e9f8a7b6c',
    apiVersion: 'autoscaling/v2',
    resourceVersion: '918001',
    labels: { app: 'web' },
  },
  ...overrides,
});

const kedaEvent = (reason: string, message: string, extra: Record<string, unknown> = {}) => ({
  metadata: { name: `worker.${reason}`, namespace: 'prod', uid: `uid-${reason}`, creationTimestamp: '2025-03-10T11:50:00Z' },
  reason,
  message,
  source: { component: 'keda-operator' },
  firstTimestamp: '2025-03-10T11:50:00Z',
  lastTimestamp: '2025-03-10T11:50:00Z',
  count: 1,
  type: 'Normal',
  involvedObject: { kind: 'ScaledObject', namespace: 'prod', name: 'worker', apiVersion: 'keda.sh/v1alpha1', uid: 'so-uid' },
  ...extra,
});

describe('scalingEventFromKubernetes', () => {
  it('reads HPA SuccessfulRescale and FailedRescale', () => {
    expect(scalingEventFromKubernetes(hpaEvent())).toEqual({
      deployment: 'web',
      action: 'scale_up',
      toReplicas: 4,
      trigger: 'hpa',
      reason: 'cpu resource utilization (percentage of request) above target',
      metadata: { source: 'kubernetes', namespace: 'prod', kind: 'HorizontalPodAutoscaler', object: 'web', eventType: 'Normal', component: 'horizontal-pod-autoscaler' },
      at: Date.parse('2025-03-10T11:58:00Z'),
      id: 'k8s:5b0c3f62-7c1e-4b8e-9a55-0d2c1e9a7f41:1',
    });
    expect(scalingEventFromKubernetes(hpaEvent({ message: 'New size: 2; reason: All metrics below target', count: 3, lastTimestamp: '2025-03-10T12:20:00Z' }))).toMatchObject({
      action: 'scale_down',
      toReplicas: 2,
      reason: 'All metrics below target',
      at: Date.parse('2025-03-10T12:20:00Z'),
      id: 'k8s:5b0c3f62-7c1e-4b8e-9a55-0d2c1e9a7f41:3',
    });
    expect(scalingEventFromKubernetes(hpaEvent({ message: 'New size: 10; reason: Current number of replicas above Spec.MaxReplicas' }))!.action).toBe('scale_down');
    const failed = scalingEventFromKubernetes(
      hpaEvent({
        reason: 'FailedRescale',
        type: 'Warning',
        message: 'New size: 6; reason: cpu resource utilization (percentage of request) above target; error: Operation cannot be fulfilled on deployments.apps "web": the object has been modified',
      }),
    );
    expect(failed).toMatchObject({
      action: 'failed',
      toReplicas: 6,
      reason: 'cpu resource utilization (percentage of request) above target',
      metadata: { eventType: 'Warning', error: 'Operation cannot be fulfilled on deployments.apps "web": the object has been modified' },
    });
    // A reason whose direction the text does not tell: left to the history.
    expect(scalingEventFromKubernetes(hpaEvent({ message: 'New size: 3; reason: external metric queue_depth(nil) above target' }))!.action).toBe('scale_up');
    expect(scalingEventFromKubernetes(hpaEvent({ message: 'New size: 3; reason: something new' }))!.action).toBeUndefined();
    // The namespace may be made part of the name.
    expect(scalingEventFromKubernetes(hpaEvent(), { deploymentName: ({ namespace, name }) => `${namespace}/${name}` })!.deployment).toBe('prod/web');
  });

  it('reads KEDA: its HPA (keda-hpa-*) and scale-to/from-zero events; ignores the rest', () => {
    const viaHpa = scalingEventFromKubernetes(
      hpaEvent({ message: 'New size: 7; reason: external metric s0-rabbitmq-orders(&LabelSelector{MatchLabels:map[string]string{scaledobject.keda.sh/name: worker,},}) above target', involvedObject: { kind: 'HorizontalPodAutoscaler', namespace: 'prod', name: 'keda-hpa-worker', labels: { 'app.kubernetes.io/managed-by': 'keda-operator', 'scaledobject.keda.sh/name': 'worker' } } }),
    );
    expect(viaHpa).toMatchObject({ deployment: 'worker', trigger: 'keda', action: 'scale_up', toReplicas: 7 });
    expect(scalingEventFromKubernetes(kedaEvent('KEDAScaleTargetActivated', 'Scaled apps/v1.Deployment prod/worker from 0 to 1'))).toMatchObject({
      deployment: 'worker',
      action: 'scale_up',
      fromReplicas: 0,
      toReplicas: 1,
      trigger: 'keda',
      reason: 'activated by KEDA (scaled from zero)',
      metadata: { targetKind: 'apps/v1.Deployment', kind: 'ScaledObject' },
    });
    expect(scalingEventFromKubernetes(kedaEvent('KEDAScaleTargetDeactivated', 'Deactivated apps/v1.Deployment prod/worker from 1 to 0'))).toMatchObject({ action: 'scale_down', fromReplicas: 1, toReplicas: 0 });
    expect(scalingEventFromKubernetes(kedaEvent('KEDAScaleTargetActivationFailed', 'Failed to scaled apps/v1.Deployment prod/worker from 0 to 1', { type: 'Warning' }))).toMatchObject({ action: 'failed', fromReplicas: 0, toReplicas: 1 });
    for (const [reason, message] of [
      ['KEDAScalersStarted', 'Started scalers watch'],
      ['ScaledObjectReady', 'ScaledObject is ready for scaling'],
      ['KEDAScalerFailed', 'rabbitmq: connection refused'],
    ]) {
      expect(scalingEventFromKubernetes(kedaEvent(reason!, message!))).toBeUndefined();
    }
    expect(scalingEventFromKubernetes(hpaEvent({ reason: 'FailedGetResourceMetric', message: 'failed to get cpu utilization' }))).toBeUndefined();
    expect(scalingEventFromKubernetes({ reason: 'Pulled', message: 'Container image pulled', involvedObject: { kind: 'Pod', name: 'web-1' } })).toBeUndefined();
  });

  it('reads events.k8s.io/v1 events (regarding, note, series)', () => {
    const parsed = scalingEventFromKubernetes({
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: 'web.1', namespace: 'prod', uid: 'new-api-uid' },
      eventTime: '2025-03-10T11:00:00.000000Z',
      series: { count: 2, lastObservedTime: '2025-03-10T11:30:00.000000Z' },
      reportingController: 'horizontal-pod-autoscaler',
      reason: 'SuccessfulRescale',
      regarding: { kind: 'HorizontalPodAutoscaler', namespace: 'prod', name: 'web' },
      note: 'New size: 5; reason: memory resource utilization (percentage of request) above target',
      type: 'Normal',
    });
    expect(parsed).toMatchObject({ deployment: 'web', toReplicas: 5, at: Date.parse('2025-03-10T11:30:00Z'), id: 'k8s:new-api-uid:2', metadata: { component: 'horizontal-pod-autoscaler' } });
  });

  it('a scaling event it cannot read is an error; a non-object is an error', () => {
    expect(() => scalingEventFromKubernetes(hpaEvent({ message: 'Scaled somehow' }))).toThrow(InvalidRequestError);
    expect(() => scalingEventFromKubernetes(hpaEvent({ message: 'Scaled somehow' }))).toThrow(/SuccessfulRescale event: cannot read the new size/);
    expect(() => scalingEventFromKubernetes(kedaEvent('KEDAScaleTargetActivated', 'Scaled'))).toThrow(/cannot read the sizes/);
    expect(() => scalingEventFromKubernetes('x')).toThrow(/expected a Kubernetes Event object/);
    expect(() => scalingEventFromKubernetes(null)).toThrow(InvalidRequestError);
  });
});

describe('receiveScalingEvents and serveScalingWebhook', () => {
  it('records a list: KEDA activation, then the HPA takes it on (old size from history); repeats are duplicates', async () => {
    const clock = new ManualClock(T0);
    const scaling = new ScalingMetrics({ clock, logger: silentLogger });
    open.push(scaling);
    const list = {
      apiVersion: 'v1',
      kind: 'EventList',
      items: [
        kedaEvent('KEDAScalersStarted', 'Started scalers watch'),
        kedaEvent('KEDAScaleTargetActivated', 'Scaled apps/v1.Deployment prod/worker from 0 to 1'),
        hpaEvent({ message: 'New size: 4; reason: external metric s0-rabbitmq-orders above target', involvedObject: { kind: 'HorizontalPodAutoscaler', namespace: 'prod', name: 'keda-hpa-worker' } }),
        hpaEvent({ message: 'garbage', metadata: { uid: 'other' } }),
        { deployment: 'api', action: 'scale_up', fromReplicas: 1, toReplicas: 2, trigger: 'manual', reason: 'launch', at: T0 - MIN },
      ],
    };
    const report = await receiveScalingEvents(scaling, list);
    expect(report).toEqual({ received: 5, recorded: 3, duplicates: 0, ignored: 1, rejected: [{ index: 3, error: expect.stringMatching(/cannot read the new size/) }] });
    const history = await scaling.getHistory('worker');
    expect(history.map((e) => [e.action, e.fromReplicas, e.toReplicas, e.trigger])).toEqual([
      ['scale_up', 0, 1, 'keda'],
      ['scale_up', 1, 4, 'keda'],
    ]);
    expect(await receiveScalingEvents(scaling, list.items[2])).toMatchObject({ received: 1, recorded: 0, duplicates: 1 });
    expect(await receiveScalingEvents(scaling, [list.items[1]])).toMatchObject({ duplicates: 1 });
    await expect(receiveScalingEvents(scaling, 'nope')).rejects.toThrow(InvalidRequestError);
    await expect(receiveScalingEvents(scaling, [], { maxItems: 0 })).resolves.toMatchObject({ received: 0 });
    await expect(receiveScalingEvents(scaling, [1, 2], { maxItems: 1 })).rejects.toThrow(/too many events/);
  });

  it('serves 202 / 400 / 503 over real HTTP', async () => {
    const scaling = new ScalingMetrics({ clock: new ManualClock(T0), logger: silentLogger });
    open.push(scaling);
    const port = await freePort();
    const unreachable = new RedisStore({ url: `redis://127.0.0.1:${port}`, connectTimeoutMs: 200, logger: silentLogger });
    open.push(unreachable);
    await unreachable.ready(1000).catch(() => undefined);
    const down = new ScalingMetrics({ store: unreachable, logger: silentLogger });
    open.push(down);
    const server: Server = createServer((req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => void serveScalingWebhook(req.url === '/down' ? down : scaling, Buffer.concat(chunks), res));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    open.push({ close: () => new Promise<void>((r) => server.close(() => r())) });
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const post = async (path: string, body: string) => {
      const response = await fetch(base + path, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
      return { status: response.status, headers: response.headers, json: (await response.json()) as Record<string, unknown> };
    };

    const ok = await post('/', JSON.stringify([hpaEvent(), kedaEvent('ScaledObjectReady', 'ScaledObject is ready for scaling')]));
    expect(ok.status).toBe(202);
    expect(ok.json).toEqual({ received: 2, recorded: 1, duplicates: 0, ignored: 1, rejected: [] });
    expect(ok.headers.get('content-type')).toMatch(/application\/json/);

    const bad = await post('/', '{not json');
    expect(bad).toMatchObject({ status: 400, json: { error: 'AMAS_INVALID_REQUEST', message: 'the body is not valid JSON' } });
    const empty = await post('/', '');
    expect(empty.status).toBe(400);
    const allRejected = await post('/', JSON.stringify({ deployment: 'api', toReplicas: -1, trigger: 'x', reason: 'y' }));
    expect(allRejected.status).toBe(400);
    expect(allRejected.json).toMatchObject({ error: 'AMAS_INVALID_REQUEST', recorded: 0, rejected: [{ index: 0, error: expect.stringMatching(/toReplicas: expected a number >= 0, received -1/) }] });
    expect(await scaling.getHistory('api')).toEqual([]);

    const now = new Date().toISOString();
    const unavailable = await post('/down', JSON.stringify(hpaEvent({ firstTimestamp: now, lastTimestamp: now })));
    expect(unavailable.status).toBe(503);
    expect(unavailable.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(unavailable.json).toMatchObject({ error: 'AMAS_STORE_UNAVAILABLE' });
  });
});

describe('prometheusRequestRate', () => {
  it('queries Prometheus at the end of the window; requestsPerReplica = rate / mean replicas', async () => {
    const queries: URLSearchParams[] = [];
    let answer: unknown = { status: 'success', data: { resultType: 'vector', result: [{ metric: { pod: 'web-1' }, value: [0, '40'] }, { metric: { pod: 'web-2' }, value: [0, '50'] }] } };
    const server = createServer((req, res) => {
      queries.push(new URL(req.url!, 'http://x').searchParams);
      res.writeHead(req.url!.startsWith('/api/v1/query') ? 200 : 404, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    open.push({ close: () => new Promise<void>((r) => server.close(() => r())) });
    const clock = new ManualClock(T0 + 30 * MIN);
    const scaling = new ScalingMetrics({
      clock,
      logger: silentLogger,
      requestRate: prometheusRequestRate({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        query: 'sum(rate(amas_http_requests_total{namespace="$namespace",pod=~"$name-.*"}[$window]))',
      }),
    });
    open.push(scaling);
    await recordScenario(scaling);
    const result = await scaling.getEffectiveness('api', { from: T0 - 10 * MIN });
    expect(result).toMatchObject({ meanReplicas: 3, requestRate: 90, requestsPerReplica: 30 });
    expect(queries[0]!.get('query')).toBe('sum(rate(amas_http_requests_total{namespace="",pod=~"api-.*"}[2400s]))');
    expect(queries[0]!.get('time')).toBe(String((T0 + 30 * MIN) / 1000));

    answer = { status: 'error', errorType: 'bad_data', error: 'parse error at char 5' };
    const failed = await scaling.getEffectiveness('api', { from: T0 - 10 * MIN });
    expect(failed.requestsPerReplica).toBeUndefined();
    expect(failed.requestRateError).toMatch(/Prometheus query failed \(200\): parse error at char 5/);
    answer = { status: 'success', data: { resultType: 'vector', result: [] } };
    expect((await scaling.getEffectiveness('api')).requestRate).toBeUndefined();

    expect(() => prometheusRequestRate({ url: 'ftp://x', query: 'up' })).toThrow(/url: expected an http\(s\) URL/);
    expect(() => prometheusRequestRate({ url: 'http://x', query: '' })).toThrow(/query: expected a PromQL string/);
  });
});
