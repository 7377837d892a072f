/**
 * Spend budgets per user and per team, per UTC calendar day and/or month, in US dollars, enforced before
 * the call: `reserve` holds the call's estimated cost (or throws BudgetExceededError), `settle` replaces the
 * estimate with the real cost, `release` gives it back when the call failed. Every decision is one script on
 * the store (budget-scripts.ts), so concurrent reservations never overspend, on one process (MemoryStore)
 * or across replicas (RedisStore). Reservations never settled expire after `reservationTtlMs`.
 *
 * A scope with a user and a team is checked against both budgets; they live under different hash tags
 * (a script never spans Cluster slots), so the two are reserved side by side and, when one refuses, the
 * other's hold is released: a budget is never exceeded, and another call may briefly see the released hold
 * (it is refused conservatively, never wrongly admitted).
 */
import { randomUUID } from 'node:crypto';
import { systemClock, type Clock } from '../clock.js';
import { BudgetExceededError, StoreUnavailableError } from '../errors.js';
import { Emitter } from '../events.js';
import { consoleLogger, type Logger } from '../logger.js';
import { describe, parseOptions } from '../options/validate.js';
import { MemoryStore } from '../stores/memory-store.js';
import type { ScriptArg, Store, StoreScript } from '../stores/store.js';
import { BUDGET_RESERVE, BUDGET_SETTLE, BUDGET_STATUS, type PeriodTotals, type ReserveReply, type SettleReply } from './budget-scripts.js';
import {
  budgetPeriodSchema,
  budgetScopeSchema,
  budgetsOptionsSchema,
  DAY_MS,
  MAX_USD,
  scopeIdSchema,
  type BudgetLimits,
  type BudgetsOptions,
} from './cost-options.js';

export type { BudgetLimits, BudgetRules, BudgetsOptions, BudgetAlertOptions } from './cost-options.js';

export type BudgetPeriod = 'day' | 'month';
export type BudgetScopeKind = 'user' | 'team';

/** Who a call is charged to: a user, a team, or both (then both budgets must afford it). */
export interface BudgetScope {
  user?: string;
  team?: string;
}

/** A UTC calendar period: its id ('2024-05-01' or '2024-05') and [start, end) in epoch ms. */
export interface PeriodWindow {
  period: BudgetPeriod;
  id: string;
  start: number;
  end: number;
}

/** The UTC day or month that contains `ms`. */
export function periodOf(period: BudgetPeriod, ms: number): PeriodWindow {
  const date = new Date(ms);
  if (period === 'day') {
    const start = Math.floor(ms / DAY_MS) * DAY_MS;
    return { period, id: new Date(start).toISOString().slice(0, 10), start, end: start + DAY_MS };
  }
  const year = date.getUTCFullYear();
  const month = date.getUTCMonth();
  return { period, id: `${String(year).padStart(4, '0')}-${String(month + 1).padStart(2, '0')}`, start: Date.UTC(year, month, 1), end: Date.UTC(year, month + 1, 1) };
}

/** One budget a reservation holds an amount in: the scope and the periods it was reserved in. */
export interface ReservedBudget {
  kind: BudgetScopeKind;
  id: string;
  /** The day and month the hold was made in (a settle after midnight still settles those). */
  day: string;
  month: string;
  dayEnd: number;
  monthEnd: number;
}

/**
 * What `reserve` returns: pass it to `settle` (or CostTracker.trackRequest's `reservation`) with the real
 * cost, or to `release` when the call failed. A plain object, so it may be settled by another replica.
 */
export interface BudgetReservation {
  readonly id: string;
  /** Dollars held. */
  readonly estimatedCost: number;
  readonly scope: Readonly<BudgetScope>;
  /** The budgets holding the amount (empty when no budget applies to the scope). */
  readonly budgets: readonly ReservedBudget[];
  readonly createdAt: number;
  /** When the hold frees itself if never settled (this process's clock). */
  readonly expiresAt: number;
  /** True when the store could not be reached and the call was admitted unchecked (onStoreFailure 'open'). */
  readonly unchecked: boolean;
}

/** A budget's state in the current period. */
export interface BudgetStatus {
  scope: BudgetScopeKind;
  id: string;
  period: BudgetPeriod;
  /** '2024-05-01' or '2024-05'. */
  periodId: string;
  /** Dollars; undefined when no budget is set for this period (remaining is then Infinity). */
  limit: number | undefined;
  spent: number;
  /** Held by calls in flight. */
  reserved: number;
  /** limit - spent - reserved, never below 0. */
  remaining: number;
  resetsAt: Date;
}

/** Spend crossed `share` of a budget for the first time in this period (once per share, across replicas). */
export interface BudgetAlert {
  scope: BudgetScopeKind;
  id: string;
  period: BudgetPeriod;
  periodId: string;
  share: number;
  /** Dollars. */
  limit: number;
  spent: number;
  at: number;
}

/** A call refused: the numbers behind the BudgetExceededError. */
export interface BudgetExceededEvent {
  scope: BudgetScopeKind;
  id: string;
  period: BudgetPeriod;
  limit: number;
  spent: number;
  reserved: number;
  requested: number;
}

export interface BudgetSettlement {
  /** Alerts that fired because of this spend. */
  alerts: BudgetAlert[];
  /** False when the hold had already expired (the real cost was still charged). */
  held: boolean;
}

export interface BudgetsEvents {
  alert: BudgetAlert;
  exceeded: BudgetExceededEvent;
}

export interface BudgetsStats {
  reserved: number;
  denied: number;
  settled: number;
  released: number;
  charged: number;
  /** Store calls that failed (the store was unreachable). */
  storeFailures: number;
  /** Calls admitted without a check while the store was unreachable (onStoreFailure 'open'). */
  unchecked: number;
  /** Settlements or charges that could not reach the store (the records still hold the spend). */
  lostCharges: number;
}

const NANOS = 1e9;
const toNanos = (usd: number): number => Math.round(usd * NANOS);
const fromNanos = (nanos: number): number => nanos / NANOS;
/** When reservations in flight (not spend) block a call, it may try again after this long. */
const RESERVATION_RETRY_MS = 1000;
const DEFAULT_SHARES = [0.5, 0.8, 1];
const WHERE = 'Budgets options';

interface Target {
  kind: BudgetScopeKind;
  id: string;
  limits: BudgetLimits;
}

const STORE_DOWN = Symbol('store-down');

export class Budgets {
  readonly name: string;
  private readonly store: Store;
  private readonly ownsStore: boolean;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly status: 429 | 402;
  private readonly reservationTtlMs: number;
  private readonly graceMs: number;
  private readonly failureMode: 'open' | 'closed';
  private readonly userDefault: BudgetLimits | undefined;
  private readonly teamDefault: BudgetLimits | undefined;
  private readonly users: Map<string, BudgetLimits>;
  private readonly teams: Map<string, BudgetLimits>;
  /** '0.5,0.8,1' for the scripts ('' for none); the numbers by their text. */
  private readonly sharesArg: string;
  private readonly shares = new Map<string, number>();
  private readonly events = new Emitter<BudgetsEvents & Record<string, unknown>>();
  /** Reservations this process settled or released (a second settle is a no-op, never a double charge). */
  private readonly finished = new WeakSet<BudgetReservation>();
  private readonly counters: BudgetsStats = { reserved: 0, denied: 0, settled: 0, released: 0, charged: 0, storeFailures: 0, unchecked: 0, lostCharges: 0 };
  private outage = false;
  private closed = false;

  constructor(options: BudgetsOptions = {}) {
    const o = parseOptions(budgetsOptionsSchema, options ?? {}, WHERE);
    this.name = o.name ?? 'amas';
    this.clock = o.clock ?? systemClock;
    this.logger = o.logger ?? consoleLogger;
    this.ownsStore = o.store === undefined;
    this.store = o.store ?? new MemoryStore({ clock: this.clock });
    this.status = o.status ?? 429;
    this.reservationTtlMs = o.reservationTtlMs ?? 600_000;
    this.graceMs = Math.max(DAY_MS, this.reservationTtlMs);
    this.failureMode = o.onStoreFailure ?? 'open';
    this.userDefault = nonEmpty(o.user);
    this.teamDefault = nonEmpty(o.team);
    this.users = new Map(Object.entries(o.users ?? {}));
    this.teams = new Map(Object.entries(o.teams ?? {}));
    const shares = o.alerts === false ? [] : [...new Set(o.alerts?.at ?? DEFAULT_SHARES)].sort((a, b) => a - b);
    for (const share of shares) this.shares.set(String(share), share);
    this.sharesArg = [...this.shares.keys()].join(',');
  }

  /** The budget that applies to a user or team (undefined: none). */
  limitsOf(kind: BudgetScopeKind, id: string): BudgetLimits | undefined {
    const own = kind === 'user' ? this.users.get(id) : this.teams.get(id);
    return nonEmpty(own ?? (kind === 'user' ? this.userDefault : this.teamDefault));
  }

  /** True when some budget applies to the scope (reserve and settle then reach the store). */
  applies(scope: BudgetScope | string): boolean {
    return this.targets(normalizeScope(scope)).length > 0;
  }

  /**
   * Holds `estimatedCost` dollars in every budget of the scope, or throws BudgetExceededError (429, or 402 when
   * configured) naming the budget, what is spent and reserved, and when it resets. A scope without budgets
   * gets a reservation that holds nothing.
   */
  async reserve(scope: BudgetScope | string, estimatedCost: number): Promise<BudgetReservation> {
    this.checkOpen();
    const s = normalizeScope(scope);
    checkAmount(estimatedCost, 'reserve() estimatedCost');
    const now = this.clock.now();
    const day = periodOf('day', now);
    const month = periodOf('month', now);
    const targets = this.targets(s);
    const id = randomUUID();
    const amount = toNanos(estimatedCost);
    const replies = await Promise.all(
      targets.map((t) =>
        this.run(BUDGET_RESERVE, this.keys(t, day.id, month.id), [
          id,
          amount,
          limitNanos(t.limits.day),
          limitNanos(t.limits.month),
          this.reservationTtlMs,
          this.keyTtl(day.end, now),
          this.keyTtl(month.end, now),
        ]),
      ),
    );
    const held = targets.filter((_, i) => replies[i] !== STORE_DOWN && (replies[i] as ReserveReply).allowed);
    const denied = replies.findIndex((r) => r !== STORE_DOWN && !r.allowed);
    const down = replies.includes(STORE_DOWN);
    const budgets = held.map((t) => ({ kind: t.kind, id: t.id, day: day.id, month: month.id, dayEnd: day.end, monthEnd: month.end }));
    if (denied >= 0 || (down && this.failureMode === 'closed')) {
      // Best effort: a hold that cannot be released now expires with its TTL. (A release touches no key
      // expiry: the TTL arguments are unused when the cost is '0'.)
      await Promise.all(budgets.map((b) => this.run(BUDGET_SETTLE, this.keysOf(b), [id, '0', -1, -1, 1, 1, ''])));
      if (denied >= 0) {
        this.counters.denied++;
        throw this.exceeded(targets[denied]!, replies[denied] as ReserveReply, amount, now);
      }
      const who = targets.map((t) => `${t.kind} ${JSON.stringify(t.id)}`).join(' and ');
      throw new StoreUnavailableError(`Budgets: the store is unreachable, so the budget of ${who} cannot be checked (onStoreFailure: 'closed')`);
    }
    if (down) this.counters.unchecked++;
    this.counters.reserved++;
    return Object.freeze({
      id,
      estimatedCost: fromNanos(amount),
      scope: Object.freeze({ ...s }),
      budgets: Object.freeze(budgets.map((b) => Object.freeze(b))),
      createdAt: now,
      expiresAt: now + this.reservationTtlMs,
      unchecked: down,
    });
  }

  /**
   * Replaces the reservation's estimate with `actualCost` dollars (which may be more or less) in the periods
   * it was made in. When the hold already expired the cost is charged all the same. Settling or releasing a
   * reservation a second time does nothing.
   */
  async settle(reservation: BudgetReservation, actualCost: number): Promise<BudgetSettlement> {
    checkReservation(reservation);
    checkAmount(actualCost, 'settle() actualCost');
    if (this.finished.has(reservation)) return { alerts: [], held: false };
    this.finished.add(reservation);
    this.counters.settled++;
    const settled = await this.apply(reservation.budgets, reservation.id, toNanos(actualCost));
    if (!reservation.unchecked || actualCost === 0 || this.closed) return settled;
    // Admitted while the store was unreachable: the budgets it could not hold are charged now (the store may be back).
    const missing = this.targets(reservation.scope).filter((t) => !reservation.budgets.some((b) => b.kind === t.kind && b.id === t.id));
    if (missing.length === 0) return settled;
    const charged = await this.apply(this.current(missing), '', toNanos(actualCost));
    return { alerts: [...settled.alerts, ...charged.alerts], held: settled.held };
  }

  /** Gives the reservation's hold back (the call failed or was never made). */
  async release(reservation: BudgetReservation): Promise<void> {
    checkReservation(reservation);
    if (this.finished.has(reservation)) return;
    this.finished.add(reservation);
    this.counters.released++;
    await Promise.all(
      reservation.budgets.map(async (b) => {
        const reply = await this.run(BUDGET_SETTLE, this.keysOf(b), [reservation.id, '0', -1, -1, 1, 1, '']);
        if (reply === STORE_DOWN) this.counters.lostCharges++;
      }),
    );
  }

  /** Adds spend that had no reservation (a call tracked after the fact) to the scope's budgets. */
  async charge(scope: BudgetScope | string, cost: number): Promise<BudgetAlert[]> {
    this.checkOpen();
    const s = normalizeScope(scope);
    checkAmount(cost, 'charge() cost');
    const targets = this.targets(s);
    if (targets.length === 0 || cost === 0) return [];
    this.counters.charged++;
    return (await this.apply(this.current(targets), '', toNanos(cost))).alerts;
  }

  /** The targets' budgets in the current day and month. */
  private current(targets: Target[]): ReservedBudget[] {
    const now = this.clock.now();
    const day = periodOf('day', now);
    const month = periodOf('month', now);
    return targets.map((t) => ({ kind: t.kind, id: t.id, day: day.id, month: month.id, dayEnd: day.end, monthEnd: month.end }));
  }

  /**
   * The budget of one user or team in the current `period`; undefined when none applies to it. Frees
   * expired reservations on the way. Rejects StoreUnavailableError when the store cannot be reached.
   */
  async check(scope: BudgetScope | string, period: BudgetPeriod): Promise<BudgetStatus | undefined> {
    this.checkOpen();
    const s = normalizeScope(scope);
    if (s.user !== undefined && s.team !== undefined) throw new TypeError('Budgets.check: give a user or a team, not both');
    const p = parseOptions(budgetPeriodSchema, period, 'Budgets.check period');
    const [target] = this.targets(s);
    if (target === undefined) return undefined;
    const now = this.clock.now();
    const day = periodOf('day', now);
    const month = periodOf('month', now);
    const totals: PeriodTotals = await this.store.run(BUDGET_STATUS, this.keys(target, day.id, month.id), []);
    const window = p === 'day' ? day : month;
    const limit = target.limits[p];
    const spent = fromNanos(p === 'day' ? totals.daySpent : totals.monthSpent);
    const reserved = fromNanos(Math.max(0, p === 'day' ? totals.dayReserved : totals.monthReserved));
    return {
      scope: target.kind,
      id: target.id,
      period: p,
      periodId: window.id,
      limit,
      spent,
      reserved,
      remaining: limit === undefined ? Infinity : Math.max(0, fromNanos(toNanos(limit) - toNanos(spent) - toNanos(reserved))),
      resetsAt: new Date(window.end),
    };
  }

  on<E extends keyof BudgetsEvents>(event: E, listener: (payload: BudgetsEvents[E]) => void): () => void {
    return this.events.on(event, listener as never);
  }

  stats(): BudgetsStats {
    return { ...this.counters };
  }

  /** Drops listeners and closes the store when the budgets created it (a store you passed stays open). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.events.removeAll();
    if (this.ownsStore) await this.store.close();
  }

  private async apply(budgets: readonly ReservedBudget[], id: string, nanos: number): Promise<BudgetSettlement> {
    let held = budgets.length > 0;
    const alerts: BudgetAlert[] = [];
    const now = this.clock.now();
    await Promise.all(
      budgets.map(async (b) => {
        const limits = this.limitsOf(b.kind, b.id) ?? {};
        const reply = await this.run(BUDGET_SETTLE, this.keysOf(b), [
          id,
          nanos,
          limitNanos(limits.day),
          limitNanos(limits.month),
          this.keyTtl(b.dayEnd, now),
          this.keyTtl(b.monthEnd, now),
          nanos > 0 ? this.sharesArg : '',
        ]);
        if (reply === STORE_DOWN) {
          this.counters.lostCharges++;
          held = false;
          return;
        }
        if (!reply.found) held = false;
        for (const fired of reply.alerts) alerts.push(this.alert(b, fired, limits, reply, now));
      }),
    );
    for (const alert of alerts) this.events.emit('alert', alert);
    return { alerts, held: id !== '' && held };
  }

  private alert(b: ReservedBudget, fired: string, limits: BudgetLimits, reply: SettleReply, now: number): BudgetAlert {
    const period: BudgetPeriod = fired.startsWith('d:') ? 'day' : 'month';
    const share = fired.slice(2);
    return {
      scope: b.kind,
      id: b.id,
      period,
      periodId: period === 'day' ? b.day : b.month,
      share: this.shares.get(share) ?? Number(share),
      limit: limits[period] ?? 0,
      spent: fromNanos(period === 'day' ? reply.daySpent : reply.monthSpent),
      at: now,
    };
  }

  private exceeded(target: Target, reply: ReserveReply, amount: number, now: number): BudgetExceededError {
    const period = reply.deniedBy ?? 'day';
    const window = periodOf(period, now);
    const limit = target.limits[period]!;
    const limitN = toNanos(limit);
    const spentN = period === 'day' ? reply.daySpent : reply.monthSpent;
    const reservedN = Math.max(0, period === 'day' ? reply.dayReserved : reply.monthReserved);
    const event: BudgetExceededEvent = { scope: target.kind, id: target.id, period, limit, spent: fromNanos(spentN), reserved: fromNanos(reservedN), requested: fromNanos(amount) };
    this.events.emit('exceeded', event);
    // Spend alone blocks until the period resets; holds of calls in flight may free sooner.
    const bySpend = spentN >= limitN || spentN + amount > limitN;
    const retryAfterMs = bySpend ? window.end - now : Math.min(RESERVATION_RETRY_MS, window.end - now);
    const left = Math.max(0, limitN - spentN - reservedN);
    const message =
      `Budget exceeded: ${target.kind} ${JSON.stringify(target.id)} has a ${period === 'day' ? 'daily' : 'monthly'} budget of ${usd(limit)} ` +
      `(${window.id}); ${usd(event.spent)} spent and ${usd(event.reserved)} held by calls in flight leave ${usd(fromNanos(left))}, ` +
      `and this call needs an estimated ${usd(event.requested)}. ` +
      (bySpend ? `The budget resets at ${new Date(window.end).toISOString()}.` : 'Retry when calls in flight finish.');
    return new BudgetExceededError(message, {
      status: this.status,
      retryAfterMs,
      details: { ...event, periodId: window.id, remaining: fromNanos(left), resetsAt: new Date(window.end).toISOString() },
    });
  }

  private targets(scope: BudgetScope): Target[] {
    const out: Target[] = [];
    if (scope.user !== undefined) {
      const limits = this.limitsOf('user', scope.user);
      if (limits) out.push({ kind: 'user', id: scope.user, limits });
    }
    if (scope.team !== undefined) {
      const limits = this.limitsOf('team', scope.team);
      if (limits) out.push({ kind: 'team', id: scope.team, limits });
    }
    return out;
  }

  private tag(kind: BudgetScopeKind, id: string): string {
    return `budget:${this.name}:${kind === 'user' ? 'u' : 't'}:${encodeURIComponent(id)}`;
  }

  private keys(t: { kind: BudgetScopeKind; id: string }, day: string, month: string): string[] {
    const tag = this.tag(t.kind, t.id);
    return [this.store.key(tag, 'd', day), this.store.key(tag, 'd', day, 'r'), this.store.key(tag, 'm', month), this.store.key(tag, 'm', month, 'r')];
  }

  private keysOf(b: ReservedBudget): string[] {
    return this.keys(b, b.day, b.month);
  }

  /** Period keys outlive their period by a grace (a late settle still finds its hold), never less. */
  private keyTtl(end: number, now: number): number {
    return Math.max(0, Math.ceil(end - now)) + this.graceMs;
  }

  /** Runs a script; a store that cannot answer gives STORE_DOWN (counted, logged once per outage). */
  private async run<R>(script: StoreScript<R>, keys: string[], args: ScriptArg[]): Promise<R | typeof STORE_DOWN> {
    try {
      const result = await this.store.run(script, keys, args);
      if (this.outage) {
        this.outage = false;
        this.logger.warn('Budgets: the store answers again; budgets are enforced again');
      }
      return result;
    } catch (error) {
      if (!isStoreFailure(error)) throw error;
      this.counters.storeFailures++;
      if (!this.outage) {
        this.outage = true;
        this.logger.error(
          `Budgets: the store is unreachable (${error instanceof Error ? error.message : String(error)}); ` +
            (this.failureMode === 'open' ? 'calls are admitted unchecked until it answers' : 'calls are refused until it answers'),
        );
      }
      return STORE_DOWN;
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new StoreUnavailableError('Budgets is closed');
  }
}

function nonEmpty(limits: BudgetLimits | undefined): BudgetLimits | undefined {
  return limits === undefined || (limits.day === undefined && limits.month === undefined) ? undefined : limits;
}

function limitNanos(limit: number | undefined): number {
  return limit === undefined ? -1 : toNanos(limit);
}

function normalizeScope(scope: BudgetScope | string): BudgetScope {
  if (typeof scope === 'string') return { user: parseOptions(scopeIdSchema, scope, 'budget scope (a user id)') };
  return parseOptions(budgetScopeSchema, scope, 'budget scope');
}

function checkAmount(value: unknown, what: string): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > MAX_USD) {
    throw new RangeError(`Budgets: ${what} must be a number of dollars from 0 to ${MAX_USD}, received ${describe(value)}`);
  }
}

function checkReservation(value: unknown): void {
  const r = value as Partial<BudgetReservation> | null;
  if (typeof r !== 'object' || r === null || typeof r.id !== 'string' || !Array.isArray(r.budgets)) {
    throw new TypeError(`Budgets: expected a reservation from reserve(), received ${describe(value)}`);
  }
}

/** Redis answered with an error (a bug, a wrong command): not an outage, so it is not hidden. */
function isStoreFailure(error: unknown): boolean {
  if (error instanceof StoreUnavailableError) return true;
  return !(error instanceof Error && error.name === 'ReplyError');
}

/** Dollars for messages: `$12.50`, `$0.015`, `$0.0075`, `$0.00045` (small amounts keep their digits). */
export function usd(value: number): string {
  if (value === 0) return '$0.00';
  const abs = Math.abs(value);
  if (abs >= 100) return `$${value.toFixed(2)}`;
  // Two significant digits, never in exponent notation.
  if (abs < 0.01) return `$${value.toFixed(Math.min(20, 1 - Math.floor(Math.log10(abs)))).replace(/(\.\d*?[1-9])0+$/, '$1')}`;
  return `$${value.toFixed(4).replace(/0{1,2}$/, '')}`;
}
