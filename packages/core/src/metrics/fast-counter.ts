import type { Registry } from 'prom-client';

/**
 * A labelled counter for per-request paths: callers keep the series object and bump `value`, with no label
 * hashing or validation per call (prom-client's Counter does both on every `inc`, measured at a few
 * microseconds). It renders through the same `get()` contract prom-client's metrics use.
 */
export interface CounterSeriesRef {
  value: number;
}

export class FastCounter {
  private readonly series = new Map<string, CounterSeriesRef & { labels: Record<string, string> }>();

  constructor(
    private readonly registry: Registry,
    readonly name: string,
    help: string,
  ) {
    const series = this.series;
    registry.registerMetric({
      name,
      help,
      type: 'counter',
      aggregator: 'sum',
      get: async () => ({
        name,
        help,
        type: 'counter',
        aggregator: 'sum',
        values: [...series.values()].map((s) => ({ labels: s.labels, value: s.value })),
      }),
      reset: () => series.forEach((s) => (s.value = 0)),
    } as never);
  }

  /** The series for a label set, created at 0 on first use. Keep it and bump `value`. */
  seriesFor(labels: Record<string, string>): CounterSeriesRef {
    const key = Object.values(labels).join('\u0000');
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = { labels, value: 0 }));
    return s;
  }

  unregister(): void {
    this.registry.removeSingleMetric(this.name);
  }
}
