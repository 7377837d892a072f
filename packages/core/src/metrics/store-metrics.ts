import type { Registry } from 'prom-client';
import { registerCollected, type Sample } from './collected-metric.js';
import { STORE_LATENCY_BUCKETS_MS } from '../stores/store-latency.js';
import type { Store } from '../stores/store.js';
import type { StoreLimiterStats } from '../policies/store-limiter.js';

export interface StoreMetricsSources {
  store(): Store | undefined;
  /** Store-backed limiters by name. */
  limiters(): Iterable<{ name: string; stats(): StoreLimiterStats }>;
}


/**
 * Redis health and limiter fallbacks, read from the store and limiters when scraped (nothing on the
 * per-command path but the store's own plain counters): amas_store_up, amas_store_commands_total,
 * amas_store_errors_total{kind}, amas_store_reconnects_total, amas_store_command_duration_seconds,
 * amas_store_breaker_open, amas_ratelimit_store_decisions_total{limit,source}, amas_ratelimit_on_store{limit}.
 */
export class StoreMetrics {
  private readonly names: string[] = [];

  constructor(
    private readonly registry: Registry,
    prefix: string,
    sources: StoreMetricsSources,
  ) {
    const withStore = (fn: (store: Store) => Sample[]) => () => {
      const store = sources.store();
      return store ? fn(store) : [];
    };
    const label = (store: Store) => ({ store: store.kind });
    this.add(`${prefix}store_up`, 'gauge', 'Whether the shared store answers (1) or features run on local fallbacks (0)', withStore((s) => [{ labels: label(s), value: s.available ? 1 : 0 }]));
    this.add(`${prefix}store_breaker_open`, 'gauge', 'Whether the breaker around the shared store is open (calls fail fast)', withStore((s) => [{ labels: label(s), value: s.health().breaker === 'closed' ? 0 : 1 }]));
    this.add(`${prefix}store_commands_total`, 'counter', 'Commands sent to the shared store', withStore((s) => [{ labels: label(s), value: s.health().commands }]));
    this.add(`${prefix}store_errors_total`, 'counter', 'Shared store commands that failed, by kind (timeout or error)', withStore((s) => {
      const h = s.health();
      return [
        { labels: { ...label(s), kind: 'timeout' }, value: h.timeouts },
        { labels: { ...label(s), kind: 'error' }, value: h.errors - h.timeouts },
      ];
    }));
    this.add(`${prefix}store_reconnects_total`, 'counter', 'Reconnections to the shared store', withStore((s) => [{ labels: label(s), value: s.health().reconnects }]));
    const duration = `${prefix}store_command_duration_seconds`;
    this.add(duration, 'histogram', 'Shared store command latency in seconds', withStore((s) => histogramSamples(duration, s, label(s))));
    this.add(`${prefix}ratelimit_store_decisions_total`, 'counter', 'Decisions of store-backed limits by who decided (store, local fallback, fail_open, fail_closed)', () => {
      const out: Sample[] = [];
      for (const l of sources.limiters()) {
        const st = l.stats();
        out.push({ labels: { limit: l.name, source: 'store' }, value: st.storeDecisions });
        out.push({ labels: { limit: l.name, source: 'local' }, value: st.localDecisions });
        out.push({ labels: { limit: l.name, source: 'fail_open' }, value: st.failOpen });
        out.push({ labels: { limit: l.name, source: 'fail_closed' }, value: st.failClosed });
      }
      return out;
    });
    this.add(`${prefix}ratelimit_on_store`, 'gauge', 'Whether a store-backed limit currently decides on the shared store (1) or on its fallback (0)', () =>
      [...sources.limiters()].map((l) => ({ labels: { limit: l.name }, value: l.stats().onStore ? 1 : 0 })),
    );
  }

  unregister(): void {
    for (const name of this.names) this.registry.removeSingleMetric(name);
  }

  private add(name: string, type: 'gauge' | 'counter' | 'histogram', help: string, values: () => Sample[]): void {
    this.names.push(registerCollected(this.registry, name, type, help, values));
  }

}

interface LatencySource {
  latencyCounts?: Float64Array;
  latencySum?: number;
}

function histogramSamples(name: string, store: Store, labels: Record<string, string>): Sample[] {
  const source = store as unknown as LatencySource;
  const counts = source.latencyCounts;
  if (!counts) return [];
  const bounds = STORE_BOUNDS_SECONDS;
  const out: Sample[] = [];
  let cumulative = 0;
  for (let i = 0; i < bounds.length; i++) {
    cumulative += counts[i]!;
    out.push({ metricName: `${name}_bucket`, labels: { le: bounds[i]!, ...labels }, value: cumulative });
  }
  cumulative += counts[bounds.length]!;
  out.push({ metricName: `${name}_bucket`, labels: { le: '+Inf', ...labels }, value: cumulative });
  out.push({ metricName: `${name}_sum`, labels, value: (source.latencySum ?? 0) / 1000 });
  out.push({ metricName: `${name}_count`, labels, value: cumulative });
  return out;
}

const STORE_BOUNDS_SECONDS = STORE_LATENCY_BUCKETS_MS.map((ms) => ms / 1000);
