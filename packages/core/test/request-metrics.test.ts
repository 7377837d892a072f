import { describe, expect, it } from 'vitest';
import { Counter, Histogram, Registry } from 'prom-client';
import { RequestMetrics } from '../src/metrics/request-metrics.js';
import { FastCounter } from '../src/metrics/fast-counter.js';

const buckets = [0.01, 0.1, 1];

describe('RequestMetrics', () => {
  it('matches prom-client over many interleaved label combinations (more than a route caches) and after a reset', async () => {
    const labels = (route: string | undefined, method: string, status: number, outcome: string) => ({ route: route ?? 'unmatched', method, status: String(status), outcome });
    const ours = new Registry();
    const metrics = new RequestMetrics(ours, { requests: 'y_requests_total', duration: 'y_duration_seconds' }, buckets, labels);
    const theirs = new Registry();
    const counter = new Counter({ name: 'y_requests_total', help: 'HTTP requests seen by AMAS, by route pattern, method, status code and outcome', labelNames: ['route', 'method', 'status', 'outcome'], registers: [theirs] });
    const histogram = new Histogram({ name: 'y_duration_seconds', help: 'HTTP request duration from admission to response end, in seconds', labelNames: ['route', 'method', 'outcome'], buckets, registers: [theirs] });
    const observe = (i: number) => {
      // 3 routes (one undefined) x 2 methods x 25 statuses x 2 outcomes: 100 combinations a route, in a mixed order.
      const route = ['/a', '/b', undefined][i % 3];
      const method = i % 7 < 4 ? 'GET' : 'POST';
      const status = 200 + ((i * 13) % 25);
      const outcome = i % 5 === 0 ? 'server_error' : 'success';
      const seconds = ((i * 37) % 200) / 100;
      metrics.record(route, method, status, outcome, seconds);
      counter.inc(labels(route, method, status, outcome));
      histogram.observe({ route: route ?? 'unmatched', method, outcome }, seconds);
    };
    for (let i = 0; i < 3000; i++) observe(i);
    const sorted = (text: string) => text.split('\n').sort().join('\n');
    expect(sorted(await ours.metrics())).toBe(sorted(await theirs.metrics()));
    ours.resetMetrics();
    theirs.resetMetrics();
    for (let i = 0; i < 500; i++) observe(i * 11);
    // prom-client drops series on reset, ours keeps them at 0: compare the series both have.
    const nonZero = (text: string) => sorted(text.split('\n').filter((line) => !line.startsWith('#') && !/ 0$/.test(line)).join('\n'));
    expect(nonZero(await ours.metrics())).toBe(nonZero(await theirs.metrics()));
    metrics.unregister();
  });

  it('renders exactly what prom-client Counter and Histogram render for the same observations', async () => {
    const ours = new Registry();
    const metrics = new RequestMetrics(ours, { requests: 'x_requests_total', duration: 'x_duration_seconds' }, buckets, (route, method, status, outcome) => ({
      route: route ?? 'unmatched',
      method,
      status: String(status),
      outcome,
    }));
    const theirs = new Registry();
    const counter = new Counter({ name: 'x_requests_total', help: 'HTTP requests seen by AMAS, by route pattern, method, status code and outcome', labelNames: ['route', 'method', 'status', 'outcome'], registers: [theirs] });
    const histogram = new Histogram({ name: 'x_duration_seconds', help: 'HTTP request duration from admission to response end, in seconds', labelNames: ['route', 'method', 'outcome'], buckets, registers: [theirs] });
    const observations: Array<[string | undefined, string, number, string, number]> = [
      ['/a', 'GET', 200, 'success', 0.005],
      ['/a', 'GET', 200, 'success', 0.01],
      ['/a', 'GET', 500, 'server_error', 0.5],
      ['/b', 'POST', 429, 'rate_limited', 2],
      [undefined, 'GET', 404, 'client_error', 0.1],
    ];
    for (const [route, method, status, outcome, seconds] of observations) {
      metrics.record(route, method, status, outcome, seconds);
      counter.inc({ route: route ?? 'unmatched', method, status: String(status), outcome });
      histogram.observe({ route: route ?? 'unmatched', method, outcome }, seconds);
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
    const json = await ours.getMetricsAsJSON();
    expect(json.map((m) => [m.name, m.type])).toEqual([
      ['x_requests_total', 'counter'],
      ['x_duration_seconds', 'histogram'],
    ]);
    ours.resetMetrics();
    expect(await ours.metrics()).toContain('x_requests_total{route="/a",method="GET",status="200",outcome="success"} 0');
    metrics.unregister();
    expect(await ours.metrics()).toBe('\n');
  });

  it('FastCounter renders like a prom-client Counter', async () => {
    const ours = new Registry();
    const counter = new FastCounter(ours, 'y_total', 'help text');
    const theirs = new Registry();
    const reference = new Counter({ name: 'y_total', help: 'help text', labelNames: ['limit', 'outcome'], registers: [theirs] });
    const allowed = counter.seriesFor({ limit: 'a', outcome: 'allowed' });
    allowed.value += 3;
    counter.seriesFor({ limit: 'a', outcome: 'limited' }).value++;
    expect(counter.seriesFor({ limit: 'a', outcome: 'allowed' })).toBe(allowed);
    reference.inc({ limit: 'a', outcome: 'allowed' }, 3);
    reference.inc({ limit: 'a', outcome: 'limited' });
    expect(await ours.metrics()).toBe(await theirs.metrics());
    counter.unregister();
    expect(await ours.metrics()).toBe('\n');
  });
});
