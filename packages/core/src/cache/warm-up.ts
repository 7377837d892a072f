import type { CacheSetOptions } from './tiered-cache-options.js';
import type { TieredCache } from './tiered-cache.js';

export interface WarmUpItem<T = unknown> extends CacheSetOptions {
  key: string;
  load: (signal: AbortSignal) => T | Promise<T>;
}

export interface WarmUpOptions {
  /** Loaders running at once. Default 4. */
  concurrency?: number;
  /** Load even keys that are cached and fresh. Default false. */
  force?: boolean;
  signal?: AbortSignal;
}

export interface WarmUpReport {
  loaded: number;
  /** Already cached and fresh (not loaded again). */
  skipped: number;
  failed: Array<{ key: string; error: unknown }>;
}

/**
 * Fills the cache from a list of keys and loaders, at most `concurrency` loaders at a time. A failing loader
 * is reported, never thrown: warm-up is best effort and must not keep a service from starting.
 */
export async function warmUp(cache: TieredCache, items: readonly WarmUpItem[], options: WarmUpOptions = {}): Promise<WarmUpReport> {
  const concurrency = options.concurrency ?? 4;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new TypeError(`warmUp: concurrency must be an integer >= 1, received ${String(concurrency)}`);
  const report: WarmUpReport = { loaded: 0, skipped: 0, failed: [] };
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length && !options.signal?.aborted) {
      const item = items[next++]!;
      const { key, load, ...setOptions } = item;
      try {
        let ran = false;
        await cache.getOrSet(
          key,
          ({ signal }) => {
            ran = true;
            return load(options.signal ? AbortSignal.any([signal, options.signal]) : signal);
          },
          { ...setOptions, forceRefresh: options.force === true, staleWhileRevalidate: false },
        );
        if (ran) report.loaded++;
        else report.skipped++;
      } catch (error) {
        report.failed.push({ key, error });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return report;
}
