import type { Registry } from 'prom-client';
import { registerCollected, type Sample } from './collected-metric.js';
import type { TieredCache } from '../cache/tiered-cache.js';


/**
 * The tiered caches' counters, read from `cache.stats()` when scraped (nothing added to the hot path):
 * amas_cache_requests_total{cache,level,result}, amas_cache_errors_total{cache,level},
 * amas_cache_level_up{cache,level}, amas_cache_factory_runs_total{cache}, amas_cache_coalesced_total{cache},
 * amas_cache_stale_served_total{cache,reason}, amas_cache_l1_entries{cache}, amas_cache_l1_bytes{cache},
 * amas_cache_invalidations_total{cache,direction}.
 */
export class CacheMetrics {
  private readonly caches = new Set<TieredCache>();
  private readonly names: string[] = [];

  constructor(
    private readonly registry: Registry,
    prefix: string,
  ) {
    const each = (fn: (cache: TieredCache, stats: ReturnType<TieredCache['stats']>) => Sample[]) => () => [...this.caches].flatMap((c) => fn(c, c.stats()));
    this.add(`${prefix}cache_requests_total`, 'counter', 'Cache lookups by level and result (hit or miss)', each((c, s) =>
      Object.entries(s.levels).flatMap(([level, l]) => [
        { labels: { cache: c.name, level, result: 'hit' }, value: l.hits },
        { labels: { cache: c.name, level, result: 'miss' }, value: l.misses },
      ]),
    ));
    this.add(`${prefix}cache_errors_total`, 'counter', 'Cache level operations that failed (the level is skipped, the call goes on)', each((c, s) =>
      Object.entries(s.levels).map(([level, l]) => ({ labels: { cache: c.name, level }, value: l.errors })),
    ));
    this.add(`${prefix}cache_level_up`, 'gauge', 'Whether a cache level answers (1) or is skipped after a failure (0)', each((c, s) =>
      Object.entries(s.levels).map(([level, l]) => ({ labels: { cache: c.name, level }, value: l.down ? 0 : 1 })),
    ));
    this.add(`${prefix}cache_factory_runs_total`, 'counter', 'getOrSet factory runs (misses and refreshes) in this process', each((c, s) => [{ labels: { cache: c.name }, value: s.factoryRuns }]));
    this.add(`${prefix}cache_coalesced_total`, 'counter', 'getOrSet calls that joined a factory run already in flight', each((c, s) => [{ labels: { cache: c.name }, value: s.coalesced }]));
    this.add(`${prefix}cache_stale_served_total`, 'counter', 'Stale values served, by reason', each((c, s) => [
      { labels: { cache: c.name, reason: 'revalidating' }, value: s.staleServed.revalidating },
      { labels: { cache: c.name, reason: 'error' }, value: s.staleServed.error },
      { labels: { cache: c.name, reason: 'soft_timeout' }, value: s.staleServed.softTimeout },
    ]));
    this.add(`${prefix}cache_l1_entries`, 'gauge', 'Entries in the in-process L1', each((c, s) => (s.l1 ? [{ labels: { cache: c.name }, value: s.l1.entries }] : [])));
    this.add(`${prefix}cache_l1_bytes`, 'gauge', 'Bytes held by the in-process L1 (serialized size)', each((c, s) => (s.l1 ? [{ labels: { cache: c.name }, value: s.l1.bytes }] : [])));
    this.add(`${prefix}cache_invalidations_total`, 'counter', 'L1 invalidations sent to and received from other replicas', each((c, s) => [
      { labels: { cache: c.name, direction: 'sent' }, value: s.invalidations.sent },
      { labels: { cache: c.name, direction: 'received' }, value: s.invalidations.received },
    ]));
  }

  watch(cache: TieredCache): void {
    this.caches.add(cache);
  }

  unregister(): void {
    for (const name of this.names) this.registry.removeSingleMetric(name);
  }

  private add(name: string, type: 'gauge' | 'counter' | 'histogram', help: string, values: () => Sample[]): void {
    this.names.push(registerCollected(this.registry, name, type, help, values));
  }

}
