import type { Registry } from 'prom-client';

/**
 * The per-request counter and latency histogram, kept in plain numbers and rendered for prom-client only when
 * scraped. prom-client's own `inc`/`observe` hash and validate the label set on every call (several
 * microseconds per request, measured in bench/); here a request costs one Map lookup and a few array writes.
 * The objects registered in the registry implement the same `get()` contract prom-client's metrics do, so
 * the exposition, `registry.getMetricsAsJSON()` and custom registries work unchanged.
 */
interface CounterSeries {
  labels: Record<string, string>;
  value: number;
}

interface HistogramSeries {
  labels: Record<string, string>;
  /** Non-cumulative counts per bucket (made cumulative when rendered); the last slot is +Inf. */
  counts: Float64Array;
  sum: number;
  count: number;
}

export interface RequestLabels {
  route: string;
  method: string;
  status: string;
  outcome: string;
}

interface SeriesPair {
  counter: CounterSeries;
  histogram: HistogramSeries;
}

interface RawCombination {
  method: string;
  status: number;
  outcome: string;
  pair: SeriesPair;
}

export interface RequestMetricsNames {
  requests: string;
  duration: string;
}

export class RequestMetrics {
  private readonly counters = new Map<string, CounterSeries>();
  private readonly histograms = new Map<string, HistogramSeries>();
  /** Raw (unnormalised) label combination -> its two series. Bounded: see `record`. */
  private readonly byKey = new Map<string, SeriesPair>();
  /**
   * The same, looked up without building a key: route -> the combinations seen on it. Routes are the same
   * string objects request after request, and a route sees only a few method/status/outcome combinations.
   */
  private readonly byRoute = new Map<string | undefined, RawCombination[]>();
  private readonly buckets: number[];

  constructor(
    private readonly registry: Registry,
    private readonly names: RequestMetricsNames,
    buckets: number[],
    /** Turns raw values into bounded label values (route cap, method, status); runs once per new combination. */
    private readonly labelsFor: (route: string | undefined, method: string, status: number, outcome: string) => RequestLabels,
  ) {
    this.buckets = [...buckets].sort((a, b) => a - b);
    const counters = this.counters;
    const histograms = this.histograms;
    const sorted = this.buckets;
    const counterMetric = {
      name: names.requests,
      help: 'HTTP requests seen by AMAS, by route pattern, method, status code and outcome',
      type: 'counter',
      aggregator: 'sum',
      get: async () => ({
        name: names.requests,
        help: counterMetric.help,
        type: 'counter',
        aggregator: 'sum',
        values: [...counters.values()].map((s) => ({ labels: s.labels, value: s.value })),
      }),
      reset: () => counters.forEach((s) => (s.value = 0)),
    };
    const histogramMetric = {
      name: names.duration,
      help: 'HTTP request duration from admission to response end, in seconds',
      type: 'histogram',
      aggregator: 'sum',
      get: async () => {
        const values: Array<{ metricName: string; labels: Record<string, string | number>; value: number }> = [];
        for (const s of histograms.values()) {
          let cumulative = 0;
          for (let i = 0; i < sorted.length; i++) {
            cumulative += s.counts[i]!;
            values.push({ metricName: `${names.duration}_bucket`, labels: { le: sorted[i]!, ...s.labels }, value: cumulative });
          }
          cumulative += s.counts[sorted.length]!;
          values.push({ metricName: `${names.duration}_bucket`, labels: { le: '+Inf', ...s.labels }, value: cumulative });
          values.push({ metricName: `${names.duration}_sum`, labels: s.labels, value: s.sum });
          values.push({ metricName: `${names.duration}_count`, labels: s.labels, value: s.count });
        }
        return { name: names.duration, help: histogramMetric.help, type: 'histogram', aggregator: 'sum', values };
      },
      reset: () =>
        histograms.forEach((s) => {
          s.counts.fill(0);
          s.sum = 0;
          s.count = 0;
        }),
    };
    registry.registerMetric(counterMetric as never);
    registry.registerMetric(histogramMetric as never);
  }

  /** Records one request: one Map lookup and a few number writes. */
  record(route: string | undefined, method: string, status: number, outcome: string, seconds: number): void {
    const pair = this.seriesPair(route, method, status, outcome);
    pair.counter.value++;
    const h = pair.histogram;
    h.count++;
    h.sum += seconds;
    const buckets = this.buckets;
    let i = 0;
    while (i < buckets.length && seconds > buckets[i]!) i++;
    h.counts[i]!++;
  }

  private seriesPair(route: string | undefined, method: string, status: number, outcome: string): SeriesPair {
    let seen = this.byRoute.get(route);
    if (seen !== undefined) {
      for (let i = 0; i < seen.length; i++) {
        const c = seen[i]!;
        if (c.status === status && c.method === method && c.outcome === outcome) return c.pair;
      }
    }
    const key = `${route}\u0000${method}\u0000${status}\u0000${outcome}`;
    let pair = this.byKey.get(key);
    if (pair === undefined) {
      const l = this.labelsFor(route, method, status, outcome);
      pair = { counter: this.counterSeries(l), histogram: this.histogramSeries(l) };
      // Raw keys can vary more than normalised labels (routes beyond the cap share `other`): bound the cache.
      if (this.byKey.size < 10_000) this.byKey.set(key, pair);
    }
    // Both caches are bounded: at most 1000 routes, and 32 combinations a route (the rest use byKey).
    if (seen === undefined && this.byRoute.size < 1000) this.byRoute.set(route, (seen = []));
    if (seen !== undefined && seen.length < 32) seen.push({ method, status, outcome, pair });
    return pair;
  }

  /** Removes both metrics from the registry. */
  unregister(): void {
    this.registry.removeSingleMetric(this.names.requests);
    this.registry.removeSingleMetric(this.names.duration);
  }

  private counterSeries(l: RequestLabels): CounterSeries {
    const key = `${l.route}\u0000${l.method}\u0000${l.status}\u0000${l.outcome}`;
    let series = this.counters.get(key);
    if (!series) this.counters.set(key, (series = { labels: { route: l.route, method: l.method, status: l.status, outcome: l.outcome }, value: 0 }));
    return series;
  }

  private histogramSeries(l: RequestLabels): HistogramSeries {
    const key = `${l.route}\u0000${l.method}\u0000${l.outcome}`;
    let series = this.histograms.get(key);
    if (!series) {
      series = { labels: { route: l.route, method: l.method, outcome: l.outcome }, counts: new Float64Array(this.buckets.length + 1), sum: 0, count: 0 };
      this.histograms.set(key, series);
    }
    return series;
  }
}
