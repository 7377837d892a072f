/**
 * The scaling webhook in an Express app, over real HTTP, on a real Redis: an event exporter posts Kubernetes
 * events (HPA and KEDA) to `serveScalingWebhook`, the history lands in the engine's store and the series in
 * the engine's registry (`GET /metrics`). No adapter code is needed: the core handler writes to `res`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import express from 'express';
import { createAmas, ScalingMetrics, serveScalingWebhook, silentLogger, type Amas, type ReceiveScalingReport } from '@amas/core';
import { amasMiddleware } from '@amas/express';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const now = Date.now();
const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** A core/v1 Event as kubernetes-event-exporter's webhook receiver posts it (its labels added). */
const hpaEvent = (uid: string, message: string, at: number, reason = 'SuccessfulRescale') => ({
  metadata: { name: `web.${uid}`, namespace: 'prod', uid, resourceVersion: '1', creationTimestamp: iso(at) },
  reason,
  message,
  source: { component: 'horizontal-pod-autoscaler' },
  firstTimestamp: iso(at),
  lastTimestamp: iso(at),
  count: 1,
  type: reason === 'FailedRescale' ? 'Warning' : 'Normal',
  involvedObject: { kind: 'HorizontalPodAutoscaler', namespace: 'prod', name: 'web', apiVersion: 'autoscaling/v2', labels: { app: 'web' } },
  clusterName: 'prod-eu',
});

describe('scaling webhook in an Express app', () => {
  let amas: Amas;
  let scaling: ScalingMetrics;
  let server: Server;
  let base: string;

  beforeAll(async () => {
    amas = createAmas({ redis: { url: REDIS_URL, prefix: `test:scaling:${randomBytes(4).toString('hex')}:` }, logger: silentLogger });
    await amas.ready(5000);
    // The history in the engine's Redis, the series in the engine's registry.
    scaling = new ScalingMetrics({ store: amas.store, registry: amas.registry, logger: silentLogger });
    const app = express();
    const mw = amasMiddleware(amas);
    app.post('/hooks/kubernetes-events', express.raw({ type: 'application/json', limit: '1mb' }), (req, res, next) => {
      serveScalingWebhook(scaling, req.body, res).catch(next);
    });
    app.get('/metrics', mw.metricsHandler());
    server = app.listen(0, '127.0.0.1');
    await new Promise<void>((r) => server.once('listening', () => r()));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    await scaling.clear();
    await scaling.close();
    await amas.close();
  });

  const post = async (body: string) => {
    const response = await fetch(`${base}/hooks/kubernetes-events`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
    return { status: response.status, json: (await response.json()) as ReceiveScalingReport & { error?: string; message?: string } };
  };

  it('records HPA rescales posted one by one and as a batch; repeats count once', async () => {
    const first = await post(JSON.stringify(hpaEvent('u1', 'New size: 3; reason: cpu resource utilization (percentage of request) above target', now - 20 * 60_000)));
    expect(first).toEqual({ status: 202, json: { received: 1, recorded: 1, duplicates: 0, ignored: 0, rejected: [] } });

    const batch = [
      hpaEvent('u2', 'New size: 6; reason: cpu resource utilization (percentage of request) above target', now - 10 * 60_000),
      hpaEvent('u3', 'New size: 8; reason: cpu resource utilization (percentage of request) above target; error: Operation cannot be fulfilled', now - 5 * 60_000, 'FailedRescale'),
      hpaEvent('u4', 'New size: 4; reason: All metrics below target', now - 60_000),
      { ...hpaEvent('u5', 'failed to get cpu utilization', now), reason: 'FailedGetResourceMetric' },
    ];
    const second = await post(JSON.stringify(batch));
    expect(second).toEqual({ status: 202, json: { received: 4, recorded: 3, duplicates: 0, ignored: 1, rejected: [] } });
    // The exporter retries: nothing new.
    expect((await post(JSON.stringify(batch))).json).toMatchObject({ recorded: 0, duplicates: 3, ignored: 1 });

    const history = await scaling.getHistory('web');
    expect(history.map((e) => [e.action, e.fromReplicas, e.toReplicas])).toEqual([
      ['scale_up', undefined, 3],
      ['scale_up', 3, 6],
      ['failed', 6, 8],
      ['scale_down', 6, 4],
    ]);
    expect(history[2]!.metadata).toMatchObject({ error: 'Operation cannot be fulfilled', namespace: 'prod' });
    const effectiveness = await scaling.getEffectiveness('web', { requestRate: 100 });
    expect(effectiveness).toMatchObject({ events: 4, scaleUps: 2, scaleDowns: 1, failed: 1, successRate: 0.75 });

    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toContain('amas_scaling_events_total{deployment="web",action="scale_up"} 2');
    expect(metrics).toContain('amas_scaling_events_total{deployment="web",action="failed"} 1');
    expect(metrics).toContain('amas_scaling_replicas{deployment="web"} 4');
    expect(metrics).toContain('amas_http_requests_total'); // the engine's own series, same registry
  });

  it('answers 400 with a JSON error for a malformed body or unreadable events', async () => {
    expect(await post('{"items": [')).toEqual({ status: 400, json: { error: 'AMAS_INVALID_REQUEST', message: 'the body is not valid JSON' } });
    expect((await post('42')).status).toBe(400);
    const unreadable = await post(JSON.stringify(hpaEvent('u9', 'resized, probably', now)));
    expect(unreadable.status).toBe(400);
    expect(unreadable.json.rejected[0]!.error).toMatch(/cannot read the new size/);
  });
});
