/**
 * Shared by the cost tracking tests: a small fake PriceLookup (pricing.ts is built separately), the stores
 * the suites run on (MemoryStore, a real Redis), and a PostgreSQL admin pool with per-run table names.
 */
import pg from 'pg';
import { ManualClock } from '../../src/clock.js';
import type { ModelPrice, PriceLookup, TokenUsage } from '../../src/ai/provider-types.js';
import { MemoryStore } from '../../src/stores/memory-store.js';
import { RedisStore } from '../../src/stores/redis-store.js';
import type { Store } from '../../src/stores/store.js';
import { closeRedisStore, recordingLogger, REDIS_URL, redisStore, uniquePrefix } from '../stores/limiter-fixtures.js';

export { recordingLogger };

/** 2024-05-10T12:00:00Z: mid-day, mid-month. */
export const T0 = Date.UTC(2024, 4, 10, 12, 0, 0);
export const DAY = 86_400_000;

export const PRICES: Record<string, ModelPrice> = {
  'gpt-4o': { input: 2.5, output: 10, cachedInput: 1.25 },
  'gpt-4o-mini': { input: 0.15, output: 0.6, cachedInput: 0.075 },
  'claude-sonnet': { input: 3, output: 15 },
  'claude-haiku': { input: 0.8, output: 4 },
  // Round numbers: 1 000 000 input tokens = $1, output $2.
  flat: { input: 1, output: 2 },
};

const EQUIVALENTS: Record<string, string[]> = {
  'gpt-4o': ['gpt-4o-mini'],
  'claude-sonnet': ['claude-haiku'],
};

/** A PriceLookup over PRICES: inputTokens include cachedInputTokens (OpenAI's meaning). Counts its calls. */
export function fakePrices(): PriceLookup & { calls: number } {
  const lookup = {
    calls: 0,
    priceOf: (model: string) => PRICES[model],
    cost(model: string, usage: TokenUsage) {
      lookup.calls++;
      const price = PRICES[model];
      if (price === undefined) return { cost: 0, known: false };
      const cached = usage.cachedInputTokens ?? 0;
      const cost = ((usage.inputTokens - cached) * price.input + cached * (price.cachedInput ?? price.input) + usage.outputTokens * price.output) / 1e6;
      return { cost, known: true };
    },
    cheaperEquivalents: (model: string) => (EQUIVALENTS[model] ?? []).map((m) => ({ model: m, price: PRICES[m]! })),
  };
  return lookup;
}

/** Dollars of a call on PRICES (for expected values). */
export function costOf(model: string, input: number, output: number, cached = 0): number {
  return fakePrices().cost(model, { inputTokens: input, outputTokens: output, cachedInputTokens: cached }).cost;
}

export interface StoreFixture {
  kind: 'memory' | 'redis';
  store: Store;
  clock: ManualClock;
  /** ms the store keeps `key` (PTTL semantics). */
  ttl(key: string): Promise<number>;
  close(): Promise<void>;
}

export async function memoryFixture(start = T0): Promise<StoreFixture> {
  const clock = new ManualClock(start);
  const store = new MemoryStore({ clock, prefix: uniquePrefix() });
  return { kind: 'memory', store, clock, ttl: async (key) => store.space.ttl(key), close: () => store.close() };
}

/** A RedisStore on 127.0.0.1:6379 (or REDIS_URL) with a fresh prefix; close() deletes its keys. */
export async function redisFixture(start = T0): Promise<StoreFixture & { store: RedisStore }> {
  const clock = new ManualClock(start);
  const store = await redisStore({ clock });
  return { kind: 'redis', store, clock, ttl: (key) => store.connection.pttl(key), close: () => closeRedisStore(store) };
}

/** Another connection on the same prefix (a second replica, or the process after a restart). Closing it keeps the keys. */
export async function redisReplica(of: Store, clock: ManualClock): Promise<RedisStore> {
  const store = new RedisStore({ url: REDIS_URL, prefix: of.prefix, clock, logger: recordingLogger() });
  await store.ready(5000);
  return store;
}

export const STORES: Array<[string, (start?: number) => Promise<StoreFixture>]> = [
  ['MemoryStore', memoryFixture],
  ['RedisStore', redisFixture],
];

export const PG_URL = process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const RUN = `${process.pid}_${Math.random().toString(36).slice(2, 8)}`;

/** Table names unique to this run; `dropTables` removes them. */
export function pgTables(): { fresh(tag: string): string; admin(): pg.Pool; dropTables(): Promise<void> } {
  const names = new Set<string>();
  let pool: pg.Pool | undefined;
  const admin = () => (pool ??= new pg.Pool({ connectionString: PG_URL, max: 3 }));
  return {
    fresh(tag: string) {
      const name = `amas_usage_${tag}_${RUN}`;
      names.add(name);
      return name;
    },
    admin,
    async dropTables() {
      if (pool === undefined && names.size === 0) return;
      for (const name of names) await admin().query(`DROP TABLE IF EXISTS "${name}"`);
      await pool?.end();
      pool = undefined;
    },
  };
}
