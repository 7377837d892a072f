/**
 * Option and input schemas of cost tracking and budgets (cost-tracker.ts, budgets.ts, usage-records*.ts,
 * recommendations.ts), validated once with `parseOptions`: a bad value throws InvalidOptionError naming its
 * dotted path, what was received and what was expected.
 */
import { z } from 'zod';
import type { Clock } from '../clock.js';
import type { Logger } from '../logger.js';
import { clockSchema, fn, loggerSchema, nonNegativeInt, positiveInt, timerMs } from '../options/validate.js';
import { isStore, type Store } from '../stores/store.js';
import type { PriceLookup } from './provider-types.js';

/** Largest amount in US dollars a budget, an estimate or a call's cost may be (kept exact as integer nano-dollars). */
export const MAX_USD = 1_000_000;
/** One day in ms. */
export const DAY_MS = 86_400_000;

/** Dollars: finite, >= 0, at most MAX_USD. */
export const usdSchema = z.number().finite().nonnegative().max(MAX_USD);
/** A user or team id: 1 to 256 characters (any characters: ids are encoded before they become keys). */
export const scopeIdSchema = z.string().min(1).max(256);
/** Names that become part of store keys and SQL identifiers' neighbours: `[A-Za-z0-9_.-]`, 1 to 64 characters. */
export const costNameSchema = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, "_", "-" or ".", 1 to 64 characters');

export const priceLookupSchema = z.custom<PriceLookup>(
  (v) =>
    typeof v === 'object' &&
    v !== null &&
    typeof (v as PriceLookup).priceOf === 'function' &&
    typeof (v as PriceLookup).cost === 'function' &&
    typeof (v as PriceLookup).cheaperEquivalents === 'function',
  { message: 'a PriceLookup ({ priceOf, cost, cheaperEquivalents })' },
);

export const storeSchema = z.custom<Store>((v) => isStore(v), { message: 'a Store (MemoryStore, RedisStore or your own)' });

// ---------------------------------------------------------------------------------------------------------
// Budgets

/** Budgets of one user or team, in US dollars per UTC calendar day and/or month. */
export interface BudgetLimits {
  day?: number;
  month?: number;
}

export const budgetLimitsSchema = z.strictObject({ day: usdSchema.optional(), month: usdSchema.optional() });

/** Shares of a budget whose first crossing in a period raises a `budgetAlert`, e.g. [0.5, 0.8, 1]. */
export interface BudgetAlertOptions {
  at: number[];
}

export const alertsSchema = z.union([
  z.literal(false),
  z.strictObject({ at: z.array(z.number().finite().gt(0).max(10)).min(1).max(20) }),
]);

/** Who spends and what they may spend: the budget rules (also the `budgets` option of CostTracker). */
export interface BudgetRules {
  /** Budget of every user without an entry in `users`. */
  user?: BudgetLimits;
  /** Budget of every team without an entry in `teams`. */
  team?: BudgetLimits;
  /** Per-user budgets; an entry replaces `user` for that user (`{}`: no budget). */
  users?: Record<string, BudgetLimits>;
  /** Per-team budgets; an entry replaces `team` for that team (`{}`: no budget). */
  teams?: Record<string, BudgetLimits>;
  /** HTTP status of BudgetExceededError: 429 (default) or 402 Payment Required. */
  status?: 429 | 402;
  /**
   * How long a reservation holds budget when it is never settled or released (a crashed replica, a lost
   * promise), ms. Default 600 000 (10 minutes); at most one day.
   */
  reservationTtlMs?: number;
  /**
   * While the store cannot be reached: 'open' (default) admits calls unchecked (counted, logged once per
   * outage), 'closed' rejects reserve() with StoreUnavailableError (503).
   */
  onStoreFailure?: 'open' | 'closed';
  /** Names the store keys (`budget:<name>:...`): replicas sharing budgets must agree on it. Default 'amas'. */
  name?: string;
}

const budgetRulesShape = {
  user: budgetLimitsSchema.optional(),
  team: budgetLimitsSchema.optional(),
  users: z.record(scopeIdSchema, budgetLimitsSchema).optional(),
  teams: z.record(scopeIdSchema, budgetLimitsSchema).optional(),
  status: z.union([z.literal(429), z.literal(402)]).optional(),
  reservationTtlMs: timerMs.min(1).max(DAY_MS).optional(),
  onStoreFailure: z.enum(['open', 'closed']).optional(),
  name: costNameSchema.optional(),
};

export const budgetRulesSchema = z.strictObject(budgetRulesShape);

export interface BudgetsOptions extends BudgetRules {
  /** Where spend and reservations live: a RedisStore shares them between replicas. Default: an own MemoryStore. */
  store?: Store;
  /** Shares of a budget that raise an `alert` the first time spend crosses them in a period. Default [0.5, 0.8, 1]; false: none. */
  alerts?: BudgetAlertOptions | false;
  /** Periods (UTC day and month) are read from it. */
  clock?: Clock;
  logger?: Logger;
}

export const budgetsOptionsSchema = z.strictObject({
  ...budgetRulesShape,
  store: storeSchema.optional(),
  alerts: alertsSchema.optional(),
  clock: clockSchema.optional(),
  logger: loggerSchema.optional(),
});

export const budgetScopeSchema = z
  .strictObject({ user: scopeIdSchema.optional(), team: scopeIdSchema.optional() })
  .refine((s) => s.user !== undefined || s.team !== undefined, { message: 'a user and/or a team' });

export const budgetPeriodSchema = z.enum(['day', 'month']);

// ---------------------------------------------------------------------------------------------------------
// Usage records

/** Batching of the persistent record stores (Redis, PostgreSQL). */
export interface RecordBatchingOptions {
  /** Records per write: a flush starts as soon as this many wait. Default 500. */
  batchSize?: number;
  /** Longest a record waits before it is written, ms. Default 1000. */
  flushIntervalMs?: number;
  /**
   * Records kept in memory while writes fail (e.g. the database is down); beyond it the oldest are dropped,
   * counted (`stats().dropped`) and logged. Default 100 000.
   */
  maxPending?: number;
  /** Longest wait between retries of a failed write, ms (the wait doubles from flushIntervalMs). Default 30 000. */
  maxRetryDelayMs?: number;
  clock?: Clock;
  logger?: Logger;
}

const batchingShape = {
  batchSize: positiveInt.max(100_000).optional(),
  flushIntervalMs: timerMs.min(1).optional(),
  maxPending: positiveInt.optional(),
  maxRetryDelayMs: timerMs.min(1).optional(),
  clock: clockSchema.optional(),
  logger: loggerSchema.optional(),
};

export interface MemoryUsageRecordsOptions {
  /** Recent records kept (a ring; aggregates keep everything else). Default 10 000. */
  maxRecords?: number;
  /** Days of aggregates kept. Default 400. */
  retentionDays?: number;
  /** Distinct prompt hashes counted per user and day (for the repeated-prompt recommendation). Default 10 000. */
  maxPromptHashes?: number;
  clock?: Clock;
}

export const memoryUsageRecordsOptionsSchema = z.strictObject({
  maxRecords: nonNegativeInt.optional(),
  retentionDays: positiveInt.max(3660).optional(),
  maxPromptHashes: nonNegativeInt.optional(),
  clock: clockSchema.optional(),
});

export interface RedisUsageRecordsOptions extends RecordBatchingOptions {
  /** The store (a RedisStore to persist and share; a MemoryStore works too). Not closed by close(). */
  store: Store;
  /** Names the keys (`usage:<name>:...`). Default 'amas'. */
  name?: string;
  /** Days the per-day aggregates are kept after their last write. Default 400. */
  retentionDays?: number;
  /** Days the records themselves (streams) and prompt counts are kept. Default 90. */
  recordRetentionDays?: number;
  /** Records kept per user and day (the stream is trimmed beyond it; aggregates still count everything). Default 100 000. */
  maxRecordsPerUserDay?: number;
}

export const redisUsageRecordsOptionsSchema = z.strictObject({
  ...batchingShape,
  store: storeSchema,
  name: costNameSchema.optional(),
  retentionDays: positiveInt.max(3660).optional(),
  recordRetentionDays: positiveInt.max(3660).optional(),
  maxRecordsPerUserDay: positiveInt.optional(),
});

/** The part of a node-postgres Pool the PostgreSQL record store uses (a `pg.Pool` fits). */
export interface PgQueryable {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[]; rowCount: number | null }>;
}

export interface PostgresUsageRecordsOptions extends RecordBatchingOptions {
  /** `postgres://user@host:5432/db`: the store creates (and on close ends) its own pool. Needs `pg` installed. */
  connectionString?: string;
  /** Your pool (pg.Pool): only queried, never ended. Give this or connectionString. */
  pool?: PgQueryable;
  /** Table, optionally schema-qualified (`billing.usage`): a plain SQL identifier. Default `amas_usage_records`. */
  table?: string;
  /** Connect timeout of the pool the store creates, ms. Default 2000. */
  connectionTimeoutMs?: number;
}

/** Identifiers: letters, digits and `_`; the table part at most 48 characters so index names stay within 63 bytes. */
export const PG_TABLE_PATTERN = /^(?:[A-Za-z_][A-Za-z0-9_]{0,62}\.)?[A-Za-z_][A-Za-z0-9_]{0,47}$/;

export const postgresUsageRecordsOptionsSchema = z.strictObject({
  ...batchingShape,
  // Checked apart (never echoed: it may hold a password).
  connectionString: z.unknown().optional(),
  pool: z
    .custom<PgQueryable>((v) => typeof v === 'object' && v !== null && typeof (v as { query?: unknown }).query === 'function', {
      message: 'a pg.Pool (an object with query(text, values))',
    })
    .optional(),
  table: z.string().regex(PG_TABLE_PATTERN, 'a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]*, at most 48 characters), optionally schema-qualified').optional(),
  connectionTimeoutMs: timerMs.min(1).optional(),
});

// ---------------------------------------------------------------------------------------------------------
// Recommendations

export interface RecommendationOptions {
  /** First day considered (ms, Date or 'YYYY-MM-DD'). Default: `days` before `to`. */
  from?: DayInput;
  /** Last day considered. Default: today (UTC). */
  to?: DayInput;
  /** Days looked at when `from` is not given. Default 30. */
  days?: number;
  /** A model switch or a cache is recommended only when it saves more than this many dollars. Default 0. */
  minSavingUsd?: number;
  /** Share of calls stopped by max_tokens from which it is reported. Default 0.01 (1%). */
  minTruncatedShare?: number;
  /** Error rate from which failed calls are reported. Default 0.01 (1%). */
  minErrorRate?: number;
}

/** A day: epoch ms or a Date (its UTC day), or 'YYYY-MM-DD'. */
export type DayInput = number | Date | string;

export const dayInputSchema = z.union([
  z.number().finite(),
  z.date().refine((d) => Number.isFinite(d.getTime()), 'a valid Date'),
  z.string().refine((s) => {
    if (!/^\d{4}-\d{2}-\d{2}$/.test(s)) return false;
    const ms = Date.parse(`${s}T00:00:00Z`);
    // Rejects 2024-02-30 too (Date.parse would roll it over to March).
    return Number.isFinite(ms) && new Date(ms).toISOString().startsWith(s);
  }, 'a UTC day as YYYY-MM-DD'),
]);

export const recommendationOptionsSchema = z.strictObject({
  from: dayInputSchema.optional(),
  to: dayInputSchema.optional(),
  days: positiveInt.max(3660).optional(),
  minSavingUsd: usdSchema.optional(),
  minTruncatedShare: z.number().min(0).max(1).optional(),
  minErrorRate: z.number().min(0).max(1).optional(),
});

// ---------------------------------------------------------------------------------------------------------
// CostTracker

export const summaryQuerySchema = z
  .strictObject({ user: scopeIdSchema.optional(), team: scopeIdSchema.optional(), from: dayInputSchema.optional(), to: dayInputSchema.optional() })
  .refine((q) => q.user === undefined || q.team === undefined, { message: 'a user or a team, not both', path: ['team'] });

const MAX_TOKENS = 1_000_000_000;
const tokens = nonNegativeInt.max(MAX_TOKENS);
/** Metadata travels with the record into Redis/PostgreSQL: JSON, at most 8 KiB. */
export const MAX_METADATA_BYTES = 8192;

export const trackRequestSchema = z
  .strictObject({
    user: scopeIdSchema,
    team: scopeIdSchema.optional(),
    provider: z.string().min(1).max(100),
    model: z.string().min(1).max(200),
    inputTokens: tokens,
    outputTokens: tokens,
    cachedInputTokens: tokens.optional(),
    metadata: z
      .record(z.string(), z.unknown())
      .refine((m) => {
        try {
          const json = JSON.stringify(m);
          return json !== undefined && Buffer.byteLength(json) <= MAX_METADATA_BYTES;
        } catch {
          return false;
        }
      }, `a JSON-serializable object of at most ${MAX_METADATA_BYTES} bytes`)
      .optional(),
    status: z.enum(['ok', 'error']).optional(),
    error: z.unknown().optional(),
    finishReason: z.string().min(1).max(64).optional(),
    cached: z.boolean().optional(),
    promptHash: z.string().min(1).max(256).optional(),
    /** A reservation from reserve(): settled with this call's cost instead of charging the budgets again. */
    reservation: z.custom<object>((v) => typeof v === 'object' && v !== null && typeof (v as { id?: unknown }).id === 'string', { message: 'a BudgetReservation' }).optional(),
  })
  .refine((r) => r.cachedInputTokens === undefined || r.cachedInputTokens <= r.inputTokens, {
    message: 'cachedInputTokens <= inputTokens',
    path: ['cachedInputTokens'],
  });

export const reserveInputSchema = z.union([
  z.strictObject({ user: scopeIdSchema, team: scopeIdSchema.optional(), estimatedCost: usdSchema }),
  z.strictObject({
    user: scopeIdSchema,
    team: scopeIdSchema.optional(),
    model: z.string().min(1).max(200),
    provider: z.string().min(1).max(100).optional(),
    inputTokens: tokens,
    maxOutputTokens: tokens,
  }),
]);

export const costTrackerOptionsSchema = z.strictObject({
  prices: priceLookupSchema,
  store: storeSchema.optional(),
  records: z
    .custom<object>(
      (v) =>
        typeof v === 'object' &&
        v !== null &&
        typeof (v as { add?: unknown }).add === 'function' &&
        typeof (v as { daily?: unknown }).daily === 'function' &&
        typeof (v as { flush?: unknown }).flush === 'function',
      { message: 'a UsageRecordStore (MemoryUsageRecords, RedisUsageRecords, PostgresUsageRecords or your own)' },
    )
    .optional(),
  budgets: z
    .union([
      z.custom<object>((v) => typeof v === 'object' && v !== null && typeof (v as { reserve?: unknown }).reserve === 'function', { message: 'a Budgets instance' }),
      budgetRulesSchema,
    ])
    .optional(),
  alerts: alertsSchema.optional(),
  onAlert: fn.optional(),
  recommendations: recommendationOptionsSchema.omit({ from: true, to: true }).optional(),
  clock: clockSchema.optional(),
  logger: loggerSchema.optional(),
});
