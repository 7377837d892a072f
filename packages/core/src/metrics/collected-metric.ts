import type { Registry } from 'prom-client';

export interface Sample {
  metricName?: string;
  labels: Record<string, string | number>;
  value: number;
}

/**
 * Registers a metric whose samples are computed when Prometheus scrapes (from counters a component keeps
 * anyway), so the hot path pays nothing for it. Returns the name, for unregistering.
 */
export function registerCollected(registry: Registry, name: string, type: 'gauge' | 'counter' | 'histogram', help: string, values: () => Sample[]): string {
  registry.registerMetric({
    name,
    help,
    type,
    aggregator: 'sum',
    get: async () => ({ name, help, type, aggregator: 'sum', values: values() }),
    reset: () => undefined,
  } as never);
  return name;
}
