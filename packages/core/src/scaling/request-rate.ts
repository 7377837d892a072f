/**
 * Request rates for ScalingMetrics' `requestsPerReplica`, read from Prometheus (which already scrapes
 * `amas_http_requests_total` from every replica): one instant query at the end of the window, whose range
 * selector spans the window, so the answer is the mean request rate over it.
 */
import { InvalidOptionError } from '../errors.js';
import type { RequestRateReader, ScalingWindow } from './scaling-metrics.js';

export interface PrometheusRequestRateOptions {
  /** Prometheus base URL, e.g. 'http://prometheus.monitoring:9090'. */
  url: string;
  /**
   * PromQL answering the deployment's request rate in requests per second (all replicas together). In a
   * string, `$deployment` is the deployment, `$namespace` / `$name` its parts when it is 'namespace/name',
   * and `$window` the window in seconds as a range ('3600s'), e.g.
   * `sum(rate(amas_http_requests_total{namespace="$namespace",pod=~"$name-.*"}[$window]))`. Or a function.
   */
  query: string | ((deployment: string, window: ScalingWindow) => string);
  /** Per query. Default 2000 ms. */
  timeoutMs?: number;
  /** Sent with each query (e.g. authorization). */
  headers?: Record<string, string>;
}

/** A RequestRateReader querying Prometheus' HTTP API (`/api/v1/query`); a vector answer is summed. */
export function prometheusRequestRate(options: PrometheusRequestRateOptions): RequestRateReader {
  let base: URL;
  try {
    base = new URL(options?.url);
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new Error('not http');
  } catch {
    throw new InvalidOptionError([{ path: 'url', received: JSON.stringify(options?.url), expected: 'an http(s) URL of Prometheus' }], 'prometheusRequestRate options');
  }
  const query = options.query;
  if (typeof query !== 'function' && (typeof query !== 'string' || query.trim() === '')) {
    throw new InvalidOptionError([{ path: 'query', received: JSON.stringify(query), expected: 'a PromQL string or a function returning one' }], 'prometheusRequestRate options');
  }
  const timeoutMs = options.timeoutMs ?? 2000;
  const endpoint = new URL('api/v1/query', base.href.endsWith('/') ? base.href : `${base.href}/`);
  return async (deployment, window) => {
    const promql = typeof query === 'function' ? query(deployment, window) : substitute(query, deployment, window);
    const url = new URL(endpoint);
    url.searchParams.set('query', promql);
    url.searchParams.set('time', String(window.to / 1000));
    const response = await fetch(url, { headers: options.headers, signal: AbortSignal.timeout(timeoutMs) });
    const text = await response.text();
    let body: { status?: string; error?: string; data?: { resultType?: string; result?: unknown } };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      throw new Error(`Prometheus answered ${response.status} without JSON`);
    }
    if (!response.ok || body.status !== 'success') throw new Error(`Prometheus query failed (${response.status}): ${body.error ?? 'no error message'}`);
    const { resultType, result } = body.data ?? {};
    if (resultType === 'scalar') return numberOf((result as unknown[] | undefined)?.[1]);
    if (resultType !== 'vector' || !Array.isArray(result)) throw new Error(`Prometheus answered a ${String(resultType)}, not a vector or scalar`);
    if (result.length === 0) return undefined;
    let sum = 0;
    for (const sample of result as Array<{ value?: unknown[] }>) sum += numberOf(sample.value?.[1]) ?? 0;
    return sum;
  };
}

function substitute(template: string, deployment: string, window: ScalingWindow): string {
  const slash = deployment.indexOf('/');
  const namespace = slash === -1 ? '' : deployment.slice(0, slash);
  const name = slash === -1 ? deployment : deployment.slice(slash + 1);
  const seconds = `${Math.max(1, Math.round((window.to - window.from) / 1000))}s`;
  return template.replaceAll('$deployment', deployment).replaceAll('$namespace', namespace).replaceAll('$name', name).replaceAll('$window', seconds);
}

function numberOf(value: unknown): number | undefined {
  const n = typeof value === 'string' ? Number(value) : typeof value === 'number' ? value : NaN;
  return Number.isFinite(n) ? n : undefined;
}
