/**
 * Cost tracking: every AI call becomes a UsageRecord priced through the PriceLookup, persisted by a
 * UsageRecordStore (memory by default; Redis when the tracker is given a RedisStore, or PostgreSQL), counted
 * against the user's and team's budgets, and summarized by provider, model and day from per-day aggregates.
 *
 *   const tracker = new CostTracker({ prices, store: redisStore, budgets: { user: { day: 5, month: 50 } } });
 *   const reservation = await tracker.reserve({ user, model, inputTokens, maxOutputTokens }); // or BudgetExceededError
 *   ... call the provider ...
 *   await tracker.trackRequest({ user, provider, model, inputTokens, outputTokens, reservation });
 *   tracker.on('budgetAlert', (a) => notify(a)); // the first time spend crosses 50%, 80%, 100% of a budget
 */
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { systemClock, type Clock } from '../clock.js';
import { Emitter } from '../events.js';
import { InvalidOptionError } from '../errors.js';
import { consoleLogger, type Logger } from '../logger.js';
import { describe, parseOptions } from '../options/validate.js';
import type { Store } from '../stores/store.js';
import {
  Budgets,
  periodOf,
  type BudgetAlert,
  type BudgetExceededEvent,
  type BudgetPeriod,
  type BudgetReservation,
  type BudgetScope,
  type BudgetSettlement,
  type BudgetStatus,
  type BudgetsStats,
} from './budgets.js';
import {
  budgetPeriodSchema,
  budgetScopeSchema,
  costTrackerOptionsSchema,
  dayInputSchema,
  reserveInputSchema,
  scopeIdSchema,
  summaryQuerySchema,
  trackRequestSchema,
  type BudgetAlertOptions,
  type BudgetRules,
  type DayInput,
  type RecommendationOptions,
} from './cost-options.js';
import type { PriceLookup, TokenUsage } from './provider-types.js';
import { getRecommendations, type Recommendation } from './recommendations.js';
import {
  dayIndex,
  fromNanos,
  MemoryUsageRecords,
  summarize,
  sumDays,
  toDayIndex,
  toNanos,
  type DayRange,
  type UsageRecord,
  type UsageRecordStats,
  type UsageRecordStore,
  type UsageScope,
  type UsageSummary,
} from './usage-records.js';
import { RedisUsageRecords } from './usage-records-redis.js';

export interface CostTrackerOptions {
  /** Prices of models (pricing.ts, or your own PriceLookup). */
  prices: PriceLookup;
  /**
   * Shared state: budgets (and, when it is a RedisStore and `records` is not given, the usage records) live
   * there, so replicas share them. Not closed by close(). Default: this process only.
   */
  store?: Store;
  /**
   * Where records go. Default: RedisUsageRecords on `store` when it is a RedisStore, else MemoryUsageRecords.
   * Handed over: close() closes it (it writes what is pending; a pool or store you gave it stays open).
   */
  records?: UsageRecordStore;
  /** Budget rules (built on `store`), or a Budgets you built (not closed by close()). */
  budgets?: Budgets | BudgetRules;
  /**
   * Shares of a budget that raise `budgetAlert` the first time spend crosses them in a period. Default
   * [0.5, 0.8, 1]; false: none. Only with budget rules (a Budgets instance has its own `alerts`).
   */
  alerts?: BudgetAlertOptions | false;
  /** Called with every budget alert (as `on('budgetAlert')`). */
  onAlert?: (alert: BudgetAlert) => void;
  /** Defaults of getRecommendations (thresholds, `days`). */
  recommendations?: Omit<RecommendationOptions, 'from' | 'to'>;
  clock?: Clock;
  logger?: Logger;
}

/** One call to record. Tokens as the provider reported them (OpenAI meaning: inputTokens includes cached ones). */
export interface TrackRequestInput {
  user: string;
  team?: string;
  provider: string;
  model: string;
  inputTokens: number;
  outputTokens: number;
  cachedInputTokens?: number;
  metadata?: Record<string, unknown>;
  /** Default 'error' when `error` is given, else 'ok'. */
  status?: 'ok' | 'error';
  error?: unknown;
  finishReason?: string;
  /** Answered from a cache: costs nothing; its would-be cost is recorded as `savedCost`. */
  cached?: boolean;
  /** Identifies the prompt (e.g. a hash of model + messages), to find repeats a cache would have served. */
  promptHash?: string;
  /** The reservation made before the call: settled with this call's cost. */
  reservation?: BudgetReservation;
}

/** A reservation by dollars, or by the tokens of the call (input counted, output at most maxOutputTokens). */
export type ReserveInput =
  | { user: string; team?: string; estimatedCost: number }
  | { user: string; team?: string; model: string; provider?: string; inputTokens: number; maxOutputTokens: number };

export interface SummaryQuery {
  user?: string;
  team?: string;
  /** First day counted (UTC day of epoch ms / a Date, or 'YYYY-MM-DD'). Default: the oldest kept. */
  from?: DayInput;
  /** Last day counted, included. Default: the newest. */
  to?: DayInput;
}

export interface ListRecordsQuery {
  user: string;
  from?: DayInput;
  to?: DayInput;
  /** Default 100. */
  limit?: number;
}

export interface CostTrackerEvents {
  /** Spend crossed a configured share of a budget for the first time in the period. */
  budgetAlert: BudgetAlert;
  /** reserve() refused a call. */
  budgetExceeded: BudgetExceededEvent;
  /** A call was tracked. */
  record: UsageRecord;
}

export interface CostTrackerStats {
  tracked: number;
  /** Dollars tracked by this process. */
  cost: number;
  /** Calls whose model had no price. */
  unpriced: number;
  /** Budget updates that failed (the store was unreachable); the records still hold the spend. */
  budgetFailures: number;
  records: UsageRecordStats;
  budgets: BudgetsStats | undefined;
}

const listQuerySchema = z.strictObject({
  user: scopeIdSchema,
  from: dayInputSchema.optional(),
  to: dayInputSchema.optional(),
  limit: z.number().int().min(0).max(10_000).optional(),
});

const MAX_ERROR_TEXT = 1000;
const MAX_WARNED_MODELS = 1000;

export class CostTracker {
  readonly prices: PriceLookup;
  readonly records: UsageRecordStore;
  /** The budgets (undefined when none were configured). */
  readonly budgets: Budgets | undefined;
  private readonly ownsBudgets: boolean;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly recommendationDefaults: Omit<RecommendationOptions, 'from' | 'to'>;
  private readonly events = new Emitter<CostTrackerEvents & Record<string, unknown>>();
  private readonly unsubscribe: Array<() => void> = [];
  private readonly warnedModels = new Set<string>();
  private readonly counters = { tracked: 0, cost: 0, unpriced: 0, budgetFailures: 0 };
  private budgetOutage = false;
  private closed = false;

  constructor(options: CostTrackerOptions) {
    const o = parseOptions(costTrackerOptionsSchema, options, 'CostTracker options');
    const givenBudgets = o.budgets !== undefined && typeof (o.budgets as { reserve?: unknown }).reserve === 'function';
    if (o.alerts !== undefined && (o.budgets === undefined || givenBudgets)) {
      // Alerts are shares of budgets the tracker builds; silently ignoring them would hide a misconfiguration.
      throw new InvalidOptionError(
        [{ path: 'alerts', received: describe(o.alerts), expected: o.budgets === undefined ? 'budgets to alert on (set budgets too)' : 'no value with a Budgets instance (set alerts on it)' }],
        'CostTracker options',
      );
    }
    this.prices = o.prices;
    this.clock = o.clock ?? systemClock;
    this.logger = o.logger ?? consoleLogger;
    this.recommendationDefaults = o.recommendations ?? {};
    this.records =
      (o.records as UsageRecordStore | undefined) ??
      (o.store?.kind === 'redis' ? new RedisUsageRecords({ store: o.store, clock: this.clock, logger: this.logger }) : new MemoryUsageRecords({ clock: this.clock }));
    if (givenBudgets) {
      this.budgets = o.budgets as Budgets;
      this.ownsBudgets = false;
    } else if (o.budgets !== undefined) {
      this.budgets = new Budgets({ ...(o.budgets as BudgetRules), store: o.store, alerts: o.alerts, clock: this.clock, logger: this.logger });
      this.ownsBudgets = true;
    } else {
      this.budgets = undefined;
      this.ownsBudgets = false;
    }
    const onAlert = o.onAlert as ((alert: BudgetAlert) => void) | undefined;
    if (this.budgets !== undefined) {
      this.unsubscribe.push(
        this.budgets.on('alert', (alert) => {
          this.events.emit('budgetAlert', alert);
          if (onAlert !== undefined) {
            try {
              onAlert(alert);
            } catch (error) {
              this.logger.warn(`CostTracker: onAlert threw (${error instanceof Error ? error.message : String(error)})`);
            }
          }
        }),
        this.budgets.on('exceeded', (event) => this.events.emit('budgetExceeded', event)),
      );
    }
  }

  /** Dollars a call may cost: its input tokens plus at most `maxOutputTokens` out; 0 for a model without a price. */
  estimateCost(input: { model: string; provider?: string; inputTokens: number; maxOutputTokens: number }): number {
    return this.price(input.model, { inputTokens: input.inputTokens, outputTokens: input.maxOutputTokens }, input.provider).cost;
  }

  /**
   * Holds the call's estimated cost in the user's (and team's) budgets before the call, or throws
   * BudgetExceededError. Without budgets the reservation holds nothing.
   */
  async reserve(input: ReserveInput): Promise<BudgetReservation> {
    this.checkOpen();
    const i = parseOptions(reserveInputSchema, input, 'CostTracker.reserve input');
    const estimate = 'estimatedCost' in i ? i.estimatedCost : this.estimateCost(i);
    const scope: BudgetScope = i.team === undefined ? { user: i.user } : { user: i.user, team: i.team };
    if (this.budgets !== undefined) return this.budgets.reserve(scope, estimate);
    const now = this.clock.now();
    return Object.freeze({ id: randomUUID(), estimatedCost: estimate, scope: Object.freeze(scope), budgets: Object.freeze([]), createdAt: now, expiresAt: now, unchecked: false });
  }

  /** Replaces a reservation's estimate with the real cost (trackRequest with `reservation` does this). */
  async settle(reservation: BudgetReservation, actualCost: number): Promise<BudgetSettlement> {
    if (this.budgets === undefined) return { alerts: [], held: false };
    return this.budgets.settle(reservation, actualCost);
  }

  /** Gives a reservation back (the call failed before costing anything). */
  async release(reservation: BudgetReservation): Promise<void> {
    await this.budgets?.release(reservation);
  }

  /**
   * Records one call: prices it, queues the record, and charges its cost to the budgets (settling the
   * reservation when given). Resolves with the record. A budget store that cannot be reached is logged and
   * counted, never turned into a failure here.
   */
  async trackRequest(input: TrackRequestInput): Promise<UsageRecord> {
    this.checkOpen();
    const i = parseOptions(trackRequestSchema, input, 'trackRequest input');
    const usage: TokenUsage = { inputTokens: i.inputTokens, outputTokens: i.outputTokens, cachedInputTokens: i.cachedInputTokens ?? 0 };
    const priced = this.price(i.model, usage, i.provider);
    const cached = i.cached === true;
    const cost = fromNanos(toNanos(priced.cost));
    const record: UsageRecord = {
      id: randomUUID(),
      at: this.clock.now(),
      user: i.user,
      provider: i.provider,
      model: i.model,
      inputTokens: i.inputTokens,
      outputTokens: i.outputTokens,
      cachedInputTokens: i.cachedInputTokens ?? 0,
      cost: cached ? 0 : cost,
      costKnown: priced.known,
      status: i.status ?? (i.error !== undefined ? 'error' : 'ok'),
      cached,
    };
    if (i.team !== undefined) record.team = i.team;
    if (cached) record.savedCost = cost;
    if (i.error !== undefined) record.error = errorText(i.error);
    if (i.finishReason !== undefined) record.finishReason = i.finishReason;
    if (i.promptHash !== undefined) record.promptHash = i.promptHash;
    if (i.metadata !== undefined) record.metadata = i.metadata;
    this.records.add(record);
    this.counters.tracked++;
    this.counters.cost += record.cost;
    if (!priced.known) this.counters.unpriced++;
    if (this.events.has('record')) this.events.emit('record', record);
    if (this.budgets !== undefined) await this.charge(record, i.reservation as BudgetReservation | undefined);
    return record;
  }

  /** Spend and tokens of a user, a team or everyone, by provider, model and UTC day, read from per-day aggregates. */
  async getSummary(query: SummaryQuery = {}): Promise<UsageSummary> {
    const q = parseOptions(summaryQuerySchema, query ?? {}, 'getSummary query');
    const scope: UsageScope = q.user !== undefined ? { kind: 'user', id: q.user } : q.team !== undefined ? { kind: 'team', id: q.team } : { kind: 'all' };
    return summarize(await this.records.daily(scope, rangeOf(q.from, q.to)));
  }

  /**
   * A user's (or `{ team }`'s) budget in the current day or month. Without a budget for that period, `limit`
   * is undefined and `remaining` Infinity; without any budget for the scope, `spent` comes from the records.
   */
  async checkBudget(who: string | BudgetScope, period: BudgetPeriod): Promise<BudgetStatus> {
    const scope = typeof who === 'string' ? { user: parseOptions(scopeIdSchema, who, 'checkBudget user') } : parseOptions(budgetScopeSchema, who, 'checkBudget scope');
    if (scope.user !== undefined && scope.team !== undefined) throw new TypeError('checkBudget: give a user or a team, not both');
    const p = parseOptions(budgetPeriodSchema, period, 'checkBudget period');
    // A scope with a budget has both its periods counted on the store.
    const status = await this.budgets?.check(scope, p);
    if (status !== undefined) return status;
    const window = periodOf(p, this.clock.now());
    const kind = scope.user !== undefined ? 'user' : 'team';
    const id = (scope.user ?? scope.team)!;
    const daily = await this.records.daily({ kind, id }, { from: dayIndex(window.start), to: dayIndex(window.end - 1) });
    return {
      scope: kind,
      id,
      period: p,
      periodId: window.id,
      limit: undefined,
      spent: fromNanos(sumDays(daily).get('c') ?? 0),
      reserved: 0,
      remaining: Infinity,
      resetsAt: new Date(window.end),
    };
  }

  /** Concrete ways the user could have spent less (recommendations.ts); empty when nothing applies. */
  async getRecommendations(user: string, options: RecommendationOptions = {}): Promise<Recommendation[]> {
    const id = parseOptions(scopeIdSchema, user, 'getRecommendations user');
    return getRecommendations(this.records, this.prices, id, { ...this.recommendationDefaults, ...options }, this.clock.now());
  }

  /** A user's records, newest first (as far as the record store keeps them). */
  async listRecords(query: ListRecordsQuery): Promise<UsageRecord[]> {
    const q = parseOptions(listQuerySchema, query, 'listRecords query');
    return this.records.list({ user: q.user, range: rangeOf(q.from, q.to), limit: q.limit ?? 100 });
  }

  on<E extends keyof CostTrackerEvents>(event: E, listener: (payload: CostTrackerEvents[E]) => void): () => void {
    return this.events.on(event, listener as never);
  }

  stats(): CostTrackerStats {
    return { ...this.counters, records: this.records.stats(), budgets: this.budgets?.stats() };
  }

  /** Writes pending records now; rejects when the write fails (they stay queued). */
  flush(): Promise<void> {
    return this.records.flush();
  }

  /**
   * Writes pending records and closes the record store, and the budgets when the tracker built them. A
   * `store` you passed stays open.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const off of this.unsubscribe.splice(0)) off();
    await this.records.close();
    if (this.ownsBudgets) await this.budgets?.close();
    this.events.removeAll();
  }

  private async charge(record: UsageRecord, reservation: BudgetReservation | undefined): Promise<void> {
    try {
      if (reservation !== undefined) await this.budgets!.settle(reservation, record.cost);
      else if (record.cost > 0) await this.budgets!.charge(record.team === undefined ? { user: record.user } : { user: record.user, team: record.team }, record.cost);
      if (this.budgetOutage) {
        this.budgetOutage = false;
        this.logger.warn('CostTracker: budgets are updated again');
      }
    } catch (error) {
      this.counters.budgetFailures++;
      if (!this.budgetOutage) {
        this.budgetOutage = true;
        this.logger.error(`CostTracker: a call's cost could not be charged to its budget (${error instanceof Error ? error.message : String(error)}); the record keeps it`);
      }
    }
  }

  /** The lookup's price, or unknown ($0) when it has none or throws (logged once per model). */
  private price(model: string, usage: TokenUsage, provider: string | undefined): { cost: number; known: boolean } {
    let result: { cost: number; known: boolean };
    try {
      result = this.prices.cost(model, usage, provider);
    } catch (error) {
      this.warnModel(model, provider, `the price lookup threw (${error instanceof Error ? error.message : String(error)})`);
      return { cost: 0, known: false };
    }
    if (!result.known || !Number.isFinite(result.cost) || result.cost < 0) {
      this.warnModel(model, provider, result.known ? `the price lookup returned ${describe(result.cost)}` : 'no price is known for it');
      return { cost: 0, known: false };
    }
    return result;
  }

  private warnModel(model: string, provider: string | undefined, why: string): void {
    const key = `${provider ?? ''}\u0000${model}`;
    if (this.warnedModels.has(key) || this.warnedModels.size >= MAX_WARNED_MODELS) return;
    this.warnedModels.add(key);
    this.logger.warn(`CostTracker: model ${JSON.stringify(model)}${provider ? ` (${provider})` : ''} is counted at $0: ${why}`);
  }

  private checkOpen(): void {
    if (this.closed) throw new TypeError('CostTracker is closed');
  }
}

function rangeOf(from: DayInput | undefined, to: DayInput | undefined): DayRange {
  return { from: from === undefined ? undefined : toDayIndex(from), to: to === undefined ? undefined : toDayIndex(to) };
}

function errorText(error: unknown): string {
  const text = error instanceof Error ? `${error.name}: ${error.message}` : typeof error === 'string' ? error : describe(error);
  return text.length > MAX_ERROR_TEXT ? `${text.slice(0, MAX_ERROR_TEXT - 3)}...` : text;
}
