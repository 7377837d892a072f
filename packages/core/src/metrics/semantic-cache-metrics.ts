import type { Registry } from 'prom-client';
import { registerCollected, type Sample } from './collected-metric.js';
import type { SemanticCache } from '../semantic/semantic-cache.js';

/**
 * The semantic caches' counters, read from `cache.stats()` when scraped (nothing added to the hot path):
 * amas_semantic_cache_lookups_total{cache,result} (exact_hit, semantic_hit, miss),
 * amas_semantic_cache_vetoed_total{cache} (near-misses the guard refused: each would have been a wrong
 * answer), amas_semantic_cache_entries{cache}, amas_semantic_cache_embeddings_total{cache},
 * amas_semantic_cache_embedding_seconds_total{cache}.
 */
export class SemanticCacheMetrics {
  private readonly caches = new Set<SemanticCache>();
  private readonly names: string[] = [];

  constructor(
    private readonly registry: Registry,
    prefix: string,
  ) {
    // Two caches may share a name (two `amas.semanticCache()` left at the default): their series are summed,
    // so a scrape never carries one label set twice.
    const each = (fn: (cache: SemanticCache, stats: ReturnType<SemanticCache['stats']>) => Sample[]) => () => {
      const summed = new Map<string, Sample>();
      for (const cache of this.caches) {
        for (const sample of fn(cache, cache.stats())) {
          const key = JSON.stringify(sample.labels);
          const seen = summed.get(key);
          if (seen === undefined) summed.set(key, { ...sample });
          else seen.value += sample.value;
        }
      }
      return [...summed.values()];
    };
    this.add(`${prefix}semantic_cache_lookups_total`, 'counter', 'Semantic cache lookups by result', each((c, s) => [
      { labels: { cache: c.name, result: 'exact_hit' }, value: s.exactHits },
      { labels: { cache: c.name, result: 'semantic_hit' }, value: s.semanticHits },
      { labels: { cache: c.name, result: 'miss' }, value: s.misses },
    ]));
    this.add(`${prefix}semantic_cache_vetoed_total`, 'counter', 'Candidates above the threshold the near-miss guard refused', each((c, s) => [{ labels: { cache: c.name }, value: s.vetoedNearMisses }]));
    this.add(`${prefix}semantic_cache_entries`, 'gauge', 'Live entries in the semantic index of this process', each((c, s) => [{ labels: { cache: c.name }, value: s.entries }]));
    this.add(`${prefix}semantic_cache_embeddings_total`, 'counter', 'Prompts embedded by the semantic cache', each((c, s) => [{ labels: { cache: c.name }, value: s.embeddings }]));
    this.add(`${prefix}semantic_cache_embedding_seconds_total`, 'counter', 'Time spent embedding prompts', each((c, s) => [{ labels: { cache: c.name }, value: s.embeddingMs / 1000 }]));
  }

  watch(cache: SemanticCache): void {
    this.caches.add(cache);
  }

  unwatch(cache: SemanticCache): void {
    this.caches.delete(cache);
  }

  unregister(): void {
    for (const name of this.names) this.registry.removeSingleMetric(name);
  }

  private add(name: string, type: 'gauge' | 'counter', help: string, values: () => Sample[]): void {
    this.names.push(registerCollected(this.registry, name, type, help, values));
  }
}
