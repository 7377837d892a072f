/**
 * Usage records: one per tracked call, persisted by a UsageRecordStore (memory by default, Redis or
 * PostgreSQL when configured), plus the per-day aggregates summaries read instead of every record.
 *
 * Aggregates are integer counters per scope (a user, a team, everyone) and UTC day, named by short fields
 * (the same names in memory, in Redis hashes and as the columns of PostgreSQL's GROUP BY):
 *   n requests, i/o/ci input/output/cached-input tokens billed, c cost (nano-dollars), e/ec failed calls
 *   and their cost, h/hs answers served from a cache and what they would have cost, l/lc calls stopped by
 *   max_tokens (finish reason 'length') and their cost, x calls whose model had no price;
 *   `p|<provider>|<n|c|i|o>` per provider and `m|<provider>|<model>|<n|c|i|o|ci>` per model
 *   (names URI-encoded, so '|' never appears inside one).
 * Costs are integer nano-dollars so sums are exact on every store.
 */
import { randomUUID } from 'node:crypto';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import { consoleLogger, type Logger } from '../logger.js';
import { parseOptions } from '../options/validate.js';
import { DAY_MS, memoryUsageRecordsOptionsSchema, type DayInput, type MemoryUsageRecordsOptions, type RecordBatchingOptions } from './cost-options.js';

export type { MemoryUsageRecordsOptions, RecordBatchingOptions, DayInput } from './cost-options.js';

/** One tracked call. */
export interface UsageRecord {
  id: string;
  /** Epoch ms. */
  at: number;
  user: string;
  team?: string;
  provider: string;
  model: string;
  inputTokens: number;
  outputTokens: number;
  /** Input tokens the provider served from its prompt cache. */
  cachedInputTokens: number;
  /** Dollars billed (0 for an answer served from a cache), rounded to the nano-dollar. */
  cost: number;
  /** False when the price table had no price for the model (cost is then 0). */
  costKnown: boolean;
  /** For an answer served from a cache: what the call would have cost. */
  savedCost?: number;
  status: 'ok' | 'error';
  error?: string;
  finishReason?: string;
  /** Answered from a cache (no provider call). */
  cached: boolean;
  promptHash?: string;
  metadata?: Record<string, unknown>;
}

/** Whose aggregates: one user's, one team's, or everyone's. */
export type UsageScope = { kind: 'user'; id: string } | { kind: 'team'; id: string } | { kind: 'all' };

/** Days since the epoch (UTC), both ends included; undefined: unbounded. */
export interface DayRange {
  from?: number;
  to?: number;
}

/** Field -> counter, per day ('YYYY-MM-DD'). */
export type DailyUsage = Map<string, Map<string, number>>;

/** How often a prompt was answered by a provider (not a cache) and what that cost (nano-dollars). */
export interface PromptStat {
  count: number;
  cost: number;
}

export interface RecordQuery {
  user: string;
  range: DayRange;
  /** At most this many, newest first. */
  limit: number;
}

export interface UsageRecordStats {
  /** Records waiting to be written. */
  pending: number;
  /** Records written. */
  written: number;
  /** Writes done (each carries up to batchSize records). */
  flushes: number;
  /** Writes that failed (their records were kept and retried). */
  failedFlushes: number;
  /** Records dropped because maxPending were waiting (logged). */
  dropped: number;
  /** Records that could not be written before close() gave up (logged). */
  lost: number;
}

/** Where records and aggregates live. All reads first write what is pending. */
export interface UsageRecordStore {
  readonly kind: string;
  /** Queues the record (persistent stores write in batches). */
  add(record: UsageRecord): void;
  /** Writes everything pending; rejects when a write fails (the records stay queued for a retry). */
  flush(): Promise<void>;
  /** Per-day aggregates of a scope over the range. */
  daily(scope: UsageScope, range: DayRange): Promise<DailyUsage>;
  /** Calls per prompt hash of a user over the range (billed, successful calls only). */
  prompts(user: string, range: DayRange): Promise<Map<string, PromptStat>>;
  /** The user's records, newest first. */
  list(query: RecordQuery): Promise<UsageRecord[]>;
  stats(): UsageRecordStats;
  /** Writes what is pending and releases timers and connections it created. */
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------------------
// Days

export const NANOS_PER_USD = 1e9;
export const toNanos = (usd: number): number => Math.round(usd * NANOS_PER_USD);
export const fromNanos = (nanos: number): number => nanos / NANOS_PER_USD;

export function dayIndex(ms: number): number {
  return Math.floor(ms / DAY_MS);
}

export function dayString(index: number): string {
  return new Date(index * DAY_MS).toISOString().slice(0, 10);
}

/** The day index of a DayInput: epoch ms or a Date (its UTC day), or 'YYYY-MM-DD'. */
export function toDayIndex(input: DayInput): number {
  if (typeof input === 'number') return dayIndex(input);
  if (input instanceof Date) return dayIndex(input.getTime());
  return dayIndex(Date.parse(`${input}T00:00:00Z`));
}

export function inRange(index: number, range: DayRange): boolean {
  return (range.from === undefined || index >= range.from) && (range.to === undefined || index <= range.to);
}

// ---------------------------------------------------------------------------------------------------------
// Fields

/** The counters of one record or one group of records (costs in nano-dollars). */
export interface UsageSums {
  n: number;
  i: number;
  o: number;
  ci: number;
  c: number;
  e: number;
  ec: number;
  h: number;
  hs: number;
  l: number;
  lc: number;
  x: number;
}

export const SUM_FIELDS = ['n', 'i', 'o', 'ci', 'c', 'e', 'ec', 'h', 'hs', 'l', 'lc', 'x'] as const;
const PROVIDER_FIELDS = ['n', 'c', 'i', 'o'] as const;
const MODEL_FIELDS = ['n', 'c', 'i', 'o', 'ci'] as const;

/**
 * A record's counters. Tokens count what a provider billed: an answer served from a cache adds a request
 * and its would-be cost (`hs`), no tokens. Truncation counts billed calls only.
 */
export function recordSums(r: UsageRecord): UsageSums {
  const billed = !r.cached;
  const c = billed ? toNanos(r.cost) : 0;
  const error = r.status === 'error';
  const truncated = billed && r.finishReason === 'length';
  return {
    n: 1,
    i: billed ? r.inputTokens : 0,
    o: billed ? r.outputTokens : 0,
    ci: billed ? r.cachedInputTokens : 0,
    c,
    e: error ? 1 : 0,
    ec: error ? c : 0,
    h: billed ? 0 : 1,
    hs: billed ? 0 : toNanos(r.savedCost ?? 0),
    l: truncated ? 1 : 0,
    lc: truncated ? c : 0,
    x: r.costKnown ? 0 : 1,
  };
}

/** The aggregate fields a group of records with one provider and model adds (zeros left out). */
export function groupFields(provider: string, model: string, sums: UsageSums): Array<[string, number]> {
  const out: Array<[string, number]> = [];
  for (const f of SUM_FIELDS) if (sums[f] !== 0) out.push([f, sums[f]]);
  const p = `p|${encodeURIComponent(provider)}|`;
  for (const f of PROVIDER_FIELDS) if (sums[f] !== 0) out.push([p + f, sums[f]]);
  const m = `m|${encodeURIComponent(provider)}|${encodeURIComponent(model)}|`;
  for (const f of MODEL_FIELDS) if (sums[f] !== 0) out.push([m + f, sums[f]]);
  return out;
}

export function recordFields(record: UsageRecord): Array<[string, number]> {
  return groupFields(record.provider, record.model, recordSums(record));
}

export function addFields(target: Map<string, number>, fields: Iterable<[string, number]>): void {
  for (const [field, delta] of fields) target.set(field, (target.get(field) ?? 0) + delta);
}

/** Every day's counters added up. */
export function sumDays(daily: DailyUsage): Map<string, number> {
  const total = new Map<string, number>();
  for (const fields of daily.values()) addFields(total, fields);
  return total;
}

/** Per provider and model: the counters in `m|...` fields. */
export function modelSums(fields: Map<string, number>): Array<{ provider: string; model: string; n: number; c: number; i: number; o: number; ci: number }> {
  const models = new Map<string, { provider: string; model: string; n: number; c: number; i: number; o: number; ci: number }>();
  for (const [field, value] of fields) {
    if (!field.startsWith('m|')) continue;
    const [, p, m, f] = field.split('|');
    const key = `${p}|${m}`;
    let entry = models.get(key);
    if (entry === undefined) {
      entry = { provider: decodeURIComponent(p!), model: decodeURIComponent(m!), n: 0, c: 0, i: 0, o: 0, ci: 0 };
      models.set(key, entry);
    }
    if (f === 'n' || f === 'c' || f === 'i' || f === 'o' || f === 'ci') entry[f] += value;
  }
  return [...models.values()];
}

// ---------------------------------------------------------------------------------------------------------
// Summaries

/** Spend and tokens of a group of calls (tokens are what providers billed). */
export interface UsageTotals {
  /** Dollars. */
  cost: number;
  inputTokens: number;
  outputTokens: number;
  cachedInputTokens: number;
  requests: number;
}

export interface UsageSummary extends UsageTotals {
  /** The first and last day counted ('YYYY-MM-DD'), undefined when nothing was. */
  from: string | undefined;
  to: string | undefined;
  /** Failed calls and what they cost. */
  errors: number;
  errorCost: number;
  /** Answers served from a cache and what they would have cost. */
  cacheHits: number;
  cacheSavings: number;
  /** Calls stopped by max_tokens (finish reason 'length'). */
  truncated: number;
  /** Calls whose model had no price (counted at $0). */
  unpriced: number;
  byProvider: Record<string, UsageTotals>;
  /** By model name (a model served by several providers is added up). */
  byModel: Record<string, UsageTotals>;
  /** By UTC day ('YYYY-MM-DD'), days without calls left out. */
  byDay: Record<string, UsageTotals>;
}

function emptyTotals(): UsageTotals {
  return { cost: 0, inputTokens: 0, outputTokens: 0, cachedInputTokens: 0, requests: 0 };
}

function addTotals(t: UsageTotals, f: string, value: number): void {
  if (f === 'n') t.requests += value;
  else if (f === 'c') t.cost += value;
  else if (f === 'i') t.inputTokens += value;
  else if (f === 'o') t.outputTokens += value;
  else if (f === 'ci') t.cachedInputTokens += value;
}

function toDollars(t: UsageTotals): UsageTotals {
  t.cost = fromNanos(t.cost);
  return t;
}

/** Turns per-day aggregates into a summary. Objects keyed by names have no prototype (a model may be called anything). */
export function summarize(daily: DailyUsage): UsageSummary {
  const days = [...daily.keys()].filter((d) => (daily.get(d)?.get('n') ?? 0) > 0).sort();
  const total = emptyTotals();
  const extra = { e: 0, ec: 0, h: 0, hs: 0, l: 0, x: 0 };
  const byProvider: Record<string, UsageTotals> = Object.create(null);
  const byModel: Record<string, UsageTotals> = Object.create(null);
  const byDay: Record<string, UsageTotals> = Object.create(null);
  for (const day of days) {
    const t = emptyTotals();
    for (const [field, value] of daily.get(day)!) {
      if (field.startsWith('p|')) {
        const [, p, f] = field.split('|');
        const name = decodeURIComponent(p!);
        addTotals((byProvider[name] ??= emptyTotals()), f!, value);
      } else if (field.startsWith('m|')) {
        const [, , m, f] = field.split('|');
        const name = decodeURIComponent(m!);
        addTotals((byModel[name] ??= emptyTotals()), f!, value);
      } else {
        addTotals(t, field, value);
        addTotals(total, field, value);
        if (Object.hasOwn(extra, field)) extra[field as keyof typeof extra] += value;
      }
    }
    byDay[day] = toDollars(t);
  }
  for (const t of Object.values(byProvider)) toDollars(t);
  for (const t of Object.values(byModel)) toDollars(t);
  return {
    ...toDollars(total),
    from: days[0],
    to: days[days.length - 1],
    errors: extra.e,
    errorCost: fromNanos(extra.ec),
    cacheHits: extra.h,
    cacheSavings: fromNanos(extra.hs),
    truncated: extra.l,
    unpriced: extra.x,
    byProvider,
    byModel,
    byDay,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Batching for the persistent stores

export interface RecordBatch {
  /** Stable across retries: stores use it to apply a batch once even when a retry follows a timeout. */
  id: string;
  records: UsageRecord[];
}

export interface RecordBufferOptions extends RecordBatchingOptions {
  /** Names the store in logs. */
  label: string;
  write(batch: RecordBatch): Promise<void>;
}

/**
 * Holds records until `batchSize` wait or `flushIntervalMs` passed, then writes them as one batch, one write
 * at a time. A failed batch is kept as it is (same id, retried first, with a doubling delay up to
 * maxRetryDelayMs); nothing is dropped silently: beyond maxPending the oldest records are dropped, counted
 * and logged, and what close() cannot write is counted and logged as lost.
 */
export class RecordBuffer {
  private readonly o: Required<Omit<RecordBufferOptions, 'clock' | 'logger'>> & { clock: Clock; logger: Logger };
  private pending: UsageRecord[] = [];
  /** Batches that failed, oldest first: retried before anything newer. */
  private failed: RecordBatch[] = [];
  private flushing: Promise<void> | undefined;
  private timer: TimerHandle | undefined;
  private retryDelay = 0;
  private failing = false;
  private overflowing = false;
  private closed = false;
  private readonly counters = { written: 0, flushes: 0, failedFlushes: 0, dropped: 0, lost: 0 };

  constructor(options: RecordBufferOptions) {
    this.o = {
      label: options.label,
      write: options.write,
      batchSize: options.batchSize ?? 500,
      flushIntervalMs: options.flushIntervalMs ?? 1000,
      maxPending: options.maxPending ?? 100_000,
      maxRetryDelayMs: options.maxRetryDelayMs ?? 30_000,
      clock: options.clock ?? systemClock,
      logger: options.logger ?? consoleLogger,
    };
  }

  get size(): number {
    return this.pending.length + this.failed.reduce((sum, b) => sum + b.records.length, 0);
  }

  add(record: UsageRecord): void {
    if (this.closed) {
      this.counters.lost++;
      this.o.logger.error(`${this.o.label}: a record arrived after close() and was not written`);
      return;
    }
    this.pending.push(record);
    this.trim();
    if (this.pending.length >= this.o.batchSize && !this.failing) void this.flush().catch(() => undefined);
    else this.schedule(this.failing ? this.retryDelay : this.o.flushIntervalMs);
  }

  /** Writes everything pending, one batch at a time; rejects with the first failure (the batch is kept). */
  flush(): Promise<void> {
    if (this.flushing !== undefined) {
      // Wait for the write in progress, then write what arrived meanwhile.
      return this.flushing.then(() => (this.size > 0 ? this.flush() : undefined));
    }
    if (this.size === 0) return Promise.resolve();
    const run = this.drain().finally(() => {
      if (this.flushing === run) this.flushing = undefined;
    });
    this.flushing = run;
    return run;
  }

  stats(): UsageRecordStats {
    return { pending: this.size, ...this.counters };
  }

  /** Stops the timer and writes what is pending (two attempts); what still fails is counted and logged as lost. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.o.clock.clearTimeout(this.timer);
    this.timer = undefined;
    for (let attempt = 1; attempt <= 2 && this.size > 0; attempt++) {
      try {
        await this.flush();
      } catch {
        // Counted in failedFlushes; tried once more, then given up below.
      }
    }
    const left = this.size;
    if (left > 0) {
      this.counters.lost += left;
      this.pending = [];
      this.failed = [];
      this.o.logger.error(`${this.o.label}: ${left} usage record(s) could not be written before close and are lost`);
    }
  }

  private async drain(): Promise<void> {
    this.o.clock.clearTimeout(this.timer);
    this.timer = undefined;
    while (this.failed.length > 0 || this.pending.length > 0) {
      const batch = this.failed.shift() ?? { id: randomUUID(), records: this.pending.splice(0, this.o.batchSize) };
      try {
        await this.o.write(batch);
      } catch (error) {
        this.failed.unshift(batch);
        this.counters.failedFlushes++;
        this.retryDelay = Math.min(this.o.maxRetryDelayMs, this.retryDelay === 0 ? this.o.flushIntervalMs : this.retryDelay * 2);
        if (!this.failing) {
          this.failing = true;
          this.o.logger.warn(`${this.o.label}: writing ${batch.records.length} usage record(s) failed (${messageOf(error)}); they are kept and retried`);
        }
        if (!this.closed) this.schedule(this.retryDelay);
        throw error;
      }
      this.counters.written += batch.records.length;
      this.counters.flushes++;
      if (this.failing) {
        this.failing = false;
        this.overflowing = false;
        this.o.logger.warn(`${this.o.label}: usage records are written again after ${this.counters.failedFlushes} failed attempt(s) so far`);
      }
      this.retryDelay = 0;
    }
    // Everything is written: a timer set by records that arrived during the write has nothing left to do.
    this.o.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(delayMs: number): void {
    if (this.timer !== undefined || this.closed) return;
    this.timer = this.o.clock.setTimeout(() => {
      this.timer = undefined;
      void this.flush().catch(() => undefined);
    }, Math.max(1, delayMs));
  }

  /** Beyond maxPending, drops the oldest records (failed batches first), counts and logs it. */
  private trim(): void {
    let excess = this.size - this.o.maxPending;
    if (excess <= 0) return;
    this.counters.dropped += excess;
    if (!this.overflowing) {
      this.overflowing = true;
      this.o.logger.error(`${this.o.label}: more than ${this.o.maxPending} usage records wait to be written; the oldest are dropped (stats().dropped counts them)`);
    }
    while (excess > 0 && this.failed.length > 0) {
      const oldest = this.failed[0]!;
      const cut = Math.min(excess, oldest.records.length);
      oldest.records.splice(0, cut);
      excess -= cut;
      if (oldest.records.length === 0) this.failed.shift();
    }
    if (excess > 0) this.pending.splice(0, excess);
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

// ---------------------------------------------------------------------------------------------------------
// Memory

/**
 * Records in this process: per-day aggregates of every user, team and everyone (kept `retentionDays`), the
 * prompt counts of each user and day (at most `maxPromptHashes` distinct ones a day), and a ring of the
 * `maxRecords` most recent records. Writes apply at once; nothing survives a restart.
 */
export class MemoryUsageRecords implements UsageRecordStore {
  readonly kind = 'memory';
  private readonly clock: Clock;
  private readonly maxRecords: number;
  private readonly retentionDays: number;
  private readonly maxPromptHashes: number;
  /** scope key -> day index -> fields. */
  private readonly aggregates = new Map<string, Map<number, Map<string, number>>>();
  /** user -> day index -> prompt hash -> stat. */
  private readonly promptStats = new Map<string, Map<number, Map<string, PromptStat>>>();
  private readonly ring: Array<UsageRecord | undefined>;
  private head = 0;
  private count = 0;
  private prunedThrough = -Infinity;
  private written = 0;
  private promptHashesDropped = 0;

  constructor(options: MemoryUsageRecordsOptions = {}) {
    const o = parseOptions(memoryUsageRecordsOptionsSchema, options ?? {}, 'MemoryUsageRecords options');
    this.clock = o.clock ?? systemClock;
    this.maxRecords = o.maxRecords ?? 10_000;
    this.retentionDays = o.retentionDays ?? 400;
    this.maxPromptHashes = o.maxPromptHashes ?? 10_000;
    this.ring = new Array(this.maxRecords);
  }

  add(record: UsageRecord): void {
    const day = dayIndex(record.at);
    this.prune();
    const fields = recordFields(record);
    for (const scope of scopesOf(record)) {
      let days = this.aggregates.get(scope);
      if (days === undefined) this.aggregates.set(scope, (days = new Map()));
      let target = days.get(day);
      if (target === undefined) days.set(day, (target = new Map()));
      addFields(target, fields);
    }
    if (record.promptHash !== undefined && !record.cached && record.status === 'ok') {
      let days = this.promptStats.get(record.user);
      if (days === undefined) this.promptStats.set(record.user, (days = new Map()));
      let hashes = days.get(day);
      if (hashes === undefined) days.set(day, (hashes = new Map()));
      const stat = hashes.get(record.promptHash);
      if (stat !== undefined) {
        stat.count++;
        stat.cost += toNanos(record.cost);
      } else if (hashes.size < this.maxPromptHashes) hashes.set(record.promptHash, { count: 1, cost: toNanos(record.cost) });
      else this.promptHashesDropped++;
    }
    if (this.maxRecords > 0) {
      this.ring[this.head] = record;
      this.head = (this.head + 1) % this.maxRecords;
      this.count = Math.min(this.count + 1, this.maxRecords);
    }
    this.written++;
  }

  async flush(): Promise<void> {}

  async daily(scope: UsageScope, range: DayRange): Promise<DailyUsage> {
    const out: DailyUsage = new Map();
    const days = this.aggregates.get(scopeKey(scope));
    if (days === undefined) return out;
    for (const [index, fields] of days) if (inRange(index, range)) out.set(dayString(index), new Map(fields));
    return out;
  }

  async prompts(user: string, range: DayRange): Promise<Map<string, PromptStat>> {
    const out = new Map<string, PromptStat>();
    for (const [index, hashes] of this.promptStats.get(user) ?? []) {
      if (!inRange(index, range)) continue;
      for (const [hash, stat] of hashes) {
        const sum = out.get(hash);
        if (sum === undefined) out.set(hash, { ...stat });
        else {
          sum.count += stat.count;
          sum.cost += stat.cost;
        }
      }
    }
    return out;
  }

  async list(query: RecordQuery): Promise<UsageRecord[]> {
    const out: UsageRecord[] = [];
    for (let k = 1; k <= this.count && out.length < query.limit; k++) {
      const record = this.ring[(this.head - k + this.maxRecords) % this.maxRecords]!;
      if (record.user === query.user && inRange(dayIndex(record.at), query.range)) out.push(record);
    }
    return out.sort((a, b) => b.at - a.at);
  }

  stats(): UsageRecordStats & { promptHashesDropped: number } {
    return { pending: 0, written: this.written, flushes: 0, failedFlushes: 0, dropped: 0, lost: 0, promptHashesDropped: this.promptHashesDropped };
  }

  async close(): Promise<void> {}

  /** Drops days older than retentionDays (once a day at most). */
  private prune(): void {
    const oldest = dayIndex(this.clock.now()) - this.retentionDays + 1;
    if (oldest <= this.prunedThrough) return;
    this.prunedThrough = oldest;
    for (const map of [this.aggregates, this.promptStats] as Array<Map<string, Map<number, unknown>>>) {
      for (const [key, days] of map) {
        for (const index of days.keys()) if (index < oldest) days.delete(index);
        if (days.size === 0) map.delete(key);
      }
    }
  }
}

/** The aggregate scopes a record counts in: its user, its team (if any) and everyone. */
export function scopesOf(record: UsageRecord): string[] {
  const out = [scopeKey({ kind: 'user', id: record.user }), scopeKey({ kind: 'all' })];
  if (record.team !== undefined) out.push(scopeKey({ kind: 'team', id: record.team }));
  return out;
}

export function scopeKey(scope: UsageScope): string {
  return scope.kind === 'all' ? 'all' : `${scope.kind === 'user' ? 'u' : 't'}:${encodeURIComponent(scope.id)}`;
}
