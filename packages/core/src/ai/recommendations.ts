/**
 * Cost recommendations for one user, computed from the usage aggregates and prompt counts (never from
 * generic advice): each says what was spent, on what, and how much a change would have saved, in dollars.
 *   cheaper-model     spend on a model the price table lists a cheaper equivalent for, and what the same
 *                     tokens would have cost on the cheapest one;
 *   repeated-prompts  calls whose prompt (promptHash) had been answered before: what a response cache
 *                     would have saved;
 *   max-tokens        calls stopped by max_tokens (finish reason 'length'): how many, their share, their cost;
 *   errors            failed calls: the error rate and what they cost.
 * Sorted by estimated saving, largest first; empty when nothing applies.
 */
import { parseOptions } from '../options/validate.js';
import { recommendationOptionsSchema, type RecommendationOptions } from './cost-options.js';
import type { PriceLookup } from './provider-types.js';
import { usd } from './budgets.js';
import { dayIndex, fromNanos, modelSums, sumDays, toDayIndex, toNanos, type DayRange, type PromptStat, type UsageRecordStore } from './usage-records.js';

export type { RecommendationOptions } from './cost-options.js';

interface RecommendationBase {
  /** One sentence with the numbers. */
  message: string;
  /** Dollars a change would have saved over the period (0 when it cannot be estimated). */
  estimatedSaving: number;
}

export interface CheaperModelRecommendation extends RecommendationBase {
  kind: 'cheaper-model';
  provider: string;
  model: string;
  /** The cheapest equivalent the price table lists. */
  alternative: string;
  requests: number;
  /** Dollars spent on `model`. */
  spend: number;
  /** spend / total spend of the user. */
  shareOfSpend: number;
  /** What the same tokens would have cost on `alternative`. */
  alternativeCost: number;
}

export interface RepeatedPromptsRecommendation extends RecommendationBase {
  kind: 'repeated-prompts';
  /** Calls answered by a provider for a prompt it had answered before. */
  repeatedRequests: number;
  /** Prompts answered more than once. */
  distinctPrompts: number;
  /** What the repeats cost (estimatedSaving). */
  wastedCost: number;
  shareOfSpend: number;
}

export interface TruncatedRecommendation extends RecommendationBase {
  kind: 'max-tokens';
  /** Calls stopped by max_tokens. */
  requests: number;
  /** Of all billed calls. */
  share: number;
  /** What those calls cost. */
  cost: number;
}

export interface ErrorsRecommendation extends RecommendationBase {
  kind: 'errors';
  failedRequests: number;
  errorRate: number;
  /** What the failed calls cost (estimatedSaving). */
  wastedCost: number;
}

export type Recommendation = CheaperModelRecommendation | RepeatedPromptsRecommendation | TruncatedRecommendation | ErrorsRecommendation;

/** What recommendations are computed from: one user's aggregate counters and prompt counts over a period. */
export interface UsageFacts {
  totals: Map<string, number>;
  prompts: Map<string, PromptStat>;
}

const pct = (share: number): string => `${(share * 100).toFixed(1)}%`;

/** The recommendations the facts support (see the file comment). */
export function recommend(facts: UsageFacts, prices: PriceLookup, options: Omit<RecommendationOptions, 'from' | 'to' | 'days'> = {}): Recommendation[] {
  const minSaving = toNanos(options.minSavingUsd ?? 0);
  const minTruncatedShare = options.minTruncatedShare ?? 0.01;
  const minErrorRate = options.minErrorRate ?? 0.01;
  const t = facts.totals;
  const totalCost = t.get('c') ?? 0;
  const requests = t.get('n') ?? 0;
  const billed = requests - (t.get('h') ?? 0);
  const out: Recommendation[] = [];

  for (const m of modelSums(t)) {
    if (m.c <= 0) continue;
    const alternative = cheapestPriced(prices, m.model, { inputTokens: m.i, outputTokens: m.o, cachedInputTokens: m.ci });
    if (alternative === undefined) continue;
    const saving = m.c - alternative.cost;
    if (saving <= 0 || saving <= minSaving) continue;
    const share = totalCost > 0 ? m.c / totalCost : 0;
    out.push({
      kind: 'cheaper-model',
      provider: m.provider,
      model: m.model,
      alternative: alternative.model,
      requests: m.n,
      spend: fromNanos(m.c),
      shareOfSpend: share,
      alternativeCost: fromNanos(alternative.cost),
      estimatedSaving: fromNanos(saving),
      message:
        `${pct(share)} of spend (${usd(fromNanos(m.c))} of ${usd(fromNanos(totalCost))}, ${m.n} calls) went to ${m.model} (${m.provider}); ` +
        `the same tokens on ${alternative.model}, listed as its equivalent, would have cost ${usd(fromNanos(alternative.cost))}: about ${usd(fromNanos(saving))} less.`,
    });
  }

  let repeated = 0;
  let distinct = 0;
  let wasted = 0;
  for (const stat of facts.prompts.values()) {
    if (stat.count < 2) continue;
    distinct++;
    repeated += stat.count - 1;
    // Every answer after the first: the mean cost of the prompt's calls times the repeats.
    wasted += (stat.cost * (stat.count - 1)) / stat.count;
  }
  wasted = Math.round(wasted);
  if (repeated > 0 && wasted > minSaving) {
    const share = totalCost > 0 ? wasted / totalCost : 0;
    out.push({
      kind: 'repeated-prompts',
      repeatedRequests: repeated,
      distinctPrompts: distinct,
      wastedCost: fromNanos(wasted),
      shareOfSpend: share,
      estimatedSaving: fromNanos(wasted),
      message:
        `${repeated} call(s) repeated ${distinct} prompt(s) a provider had already answered (same promptHash): ` +
        `a response cache would have saved ${usd(fromNanos(wasted))} (${pct(share)} of spend).`,
    });
  }

  const truncated = t.get('l') ?? 0;
  if (truncated > 0 && billed > 0 && truncated / billed >= minTruncatedShare) {
    const share = truncated / billed;
    const cost = t.get('lc') ?? 0;
    out.push({
      kind: 'max-tokens',
      requests: truncated,
      share,
      cost: fromNanos(cost),
      estimatedSaving: 0,
      message:
        `${truncated} of ${billed} calls (${pct(share)}) stopped at max_tokens (finish_reason 'length') and cost ${usd(fromNanos(cost))}: ` +
        'their answers were cut off; raise max_tokens for them or ask for shorter answers.',
    });
  }

  const failed = t.get('e') ?? 0;
  if (failed > 0 && requests > 0 && failed / requests >= minErrorRate) {
    const rate = failed / requests;
    const cost = t.get('ec') ?? 0;
    out.push({
      kind: 'errors',
      failedRequests: failed,
      errorRate: rate,
      wastedCost: fromNanos(cost),
      estimatedSaving: fromNanos(cost),
      message: `${failed} of ${requests} calls (${pct(rate)}) failed and still cost ${usd(fromNanos(cost))}.`,
    });
  }

  const order = ['cheaper-model', 'repeated-prompts', 'errors', 'max-tokens'];
  return out.sort((a, b) => b.estimatedSaving - a.estimatedSaving || order.indexOf(a.kind) - order.indexOf(b.kind));
}

/** The cheapest listed equivalent the lookup can price, with the cost (nano-dollars) of the given usage there. */
function cheapestPriced(
  prices: PriceLookup,
  model: string,
  usage: { inputTokens: number; outputTokens: number; cachedInputTokens: number },
): { model: string; cost: number } | undefined {
  let best: { model: string; cost: number } | undefined;
  for (const alternative of prices.cheaperEquivalents(model)) {
    const priced = prices.cost(alternative.model, usage);
    if (!priced.known) continue;
    const cost = toNanos(priced.cost);
    if (best === undefined || cost < best.cost) best = { model: alternative.model, cost };
  }
  return best;
}

/** The day range of RecommendationOptions: `from`..`to`, or the `days` (default 30) up to `to` (default today). */
export function recommendationRange(options: RecommendationOptions, now: number): DayRange {
  const to = options.to === undefined ? dayIndex(now) : toDayIndex(options.to);
  const from = options.from === undefined ? to - (options.days ?? 30) + 1 : toDayIndex(options.from);
  return { from, to };
}

/** Reads one user's facts from the record store and computes the recommendations. */
export async function getRecommendations(
  records: UsageRecordStore,
  prices: PriceLookup,
  user: string,
  options: RecommendationOptions = {},
  now: number = Date.now(),
): Promise<Recommendation[]> {
  const o = parseOptions(recommendationOptionsSchema, options ?? {}, 'getRecommendations options');
  const range = recommendationRange(o, now);
  const [daily, prompts] = await Promise.all([records.daily({ kind: 'user', id: user }, range), records.prompts(user, range)]);
  return recommend({ totals: sumDays(daily), prompts }, prices, o);
}
