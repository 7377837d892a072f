/**
 * Recommendations: concrete numbers (dollars, counts, shares) for a cheaper equivalent model, repeated
 * prompts a cache would have served, calls cut off by max_tokens and failed calls; nothing when nothing
 * applies; the same answers whichever store keeps the records.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { CostTracker, type TrackRequestInput } from '../../src/ai/cost-tracker.js';
import { getRecommendations, recommend, type Recommendation } from '../../src/ai/recommendations.js';
import { MemoryUsageRecords, type UsageRecordStore } from '../../src/ai/usage-records.js';
import { RedisUsageRecords } from '../../src/ai/usage-records-redis.js';
import { PostgresUsageRecords } from '../../src/ai/usage-records-postgres.js';
import type { PriceLookup } from '../../src/ai/provider-types.js';
import { costOf, DAY, fakePrices, PG_URL, pgTables, recordingLogger, redisFixture, T0 } from './cost-fixtures.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
const tables = pgTables();
afterAll(() => tables.dropTables());

function tracker(records?: UsageRecordStore, clock = new ManualClock(T0), prices: PriceLookup = fakePrices()): CostTracker {
  const t = new CostTracker({ prices, records, clock, logger: recordingLogger() });
  cleanups.push(() => t.close());
  return t;
}

const call = (over: Partial<TrackRequestInput>): TrackRequestInput => ({ user: 'alice', provider: 'openai', model: 'gpt-4o', inputTokens: 1000, outputTokens: 500, ...over });

/**
 * alice: 10 gpt-4o calls (prompts a a a b b c d e f g), 4 claude-sonnet calls (2 cut off by max_tokens,
 * 1 failed), 1 answer served from a cache.
 */
async function aliceMonth(t: CostTracker): Promise<void> {
  for (const hash of ['a', 'a', 'a', 'b', 'b', 'c', 'd', 'e', 'f', 'g']) await t.trackRequest(call({ promptHash: hash }));
  const sonnet = call({ provider: 'anthropic', model: 'claude-sonnet', inputTokens: 2000, outputTokens: 1000 });
  await t.trackRequest({ ...sonnet, finishReason: 'length' });
  await t.trackRequest({ ...sonnet, finishReason: 'length' });
  await t.trackRequest({ ...sonnet, status: 'error', error: new Error('upstream 500') });
  await t.trackRequest({ ...sonnet, finishReason: 'stop' });
  await t.trackRequest(call({ model: 'gpt-4o-mini', cached: true, promptHash: 'a' }));
}

const GPT4O = 10 * costOf('gpt-4o', 1000, 500); // 0.075
const MINI = 10 * costOf('gpt-4o-mini', 1000, 500); // 0.0045
const SONNET = 4 * costOf('claude-sonnet', 2000, 1000); // 0.084
const HAIKU = 4 * costOf('claude-haiku', 2000, 1000); // 0.0224
const TOTAL = GPT4O + SONNET; // 0.159

describe('getRecommendations', () => {
  it('puts numbers on every way alice could have spent less, largest saving first', async () => {
    const t = tracker();
    await aliceMonth(t);
    const recs = await t.getRecommendations('alice');
    expect(recs.map((r) => r.kind)).toEqual(['cheaper-model', 'cheaper-model', 'repeated-prompts', 'errors', 'max-tokens']);
    const [gpt, sonnet, repeated, errors, truncated] = recs as [
      Extract<Recommendation, { kind: 'cheaper-model' }>,
      Extract<Recommendation, { kind: 'cheaper-model' }>,
      Extract<Recommendation, { kind: 'repeated-prompts' }>,
      Extract<Recommendation, { kind: 'errors' }>,
      Extract<Recommendation, { kind: 'max-tokens' }>,
    ];
    expect(gpt).toMatchObject({ provider: 'openai', model: 'gpt-4o', alternative: 'gpt-4o-mini', requests: 10 });
    expect(gpt.spend).toBeCloseTo(GPT4O, 12);
    expect(gpt.alternativeCost).toBeCloseTo(MINI, 12);
    expect(gpt.estimatedSaving).toBeCloseTo(GPT4O - MINI, 12); // $0.0705
    expect(gpt.shareOfSpend).toBeCloseTo(GPT4O / TOTAL, 12);
    expect(gpt.message).toBe(
      '47.2% of spend ($0.075 of $0.159, 10 calls) went to gpt-4o (openai); the same tokens on gpt-4o-mini, listed as its equivalent, would have cost $0.0045: about $0.0705 less.',
    );

    expect(sonnet).toMatchObject({ provider: 'anthropic', model: 'claude-sonnet', alternative: 'claude-haiku', requests: 4 });
    expect(sonnet.estimatedSaving).toBeCloseTo(SONNET - HAIKU, 12); // $0.0616

    // a: 3 calls (2 repeats), b: 2 calls (1 repeat); the cached answer is not a repeat a cache could save.
    expect(repeated).toMatchObject({ repeatedRequests: 3, distinctPrompts: 2 });
    expect(repeated.wastedCost).toBeCloseTo(3 * costOf('gpt-4o', 1000, 500), 12); // $0.0225
    expect(repeated.estimatedSaving).toBe(repeated.wastedCost);
    expect(repeated.shareOfSpend).toBeCloseTo(0.0225 / TOTAL, 12);
    expect(repeated.message).toBe(
      '3 call(s) repeated 2 prompt(s) a provider had already answered (same promptHash): a response cache would have saved $0.0225 (14.2% of spend).',
    );

    expect(errors).toMatchObject({ failedRequests: 1, errorRate: 1 / 15 });
    expect(errors.wastedCost).toBeCloseTo(costOf('claude-sonnet', 2000, 1000), 12);
    expect(errors.message).toBe('1 of 15 calls (6.7%) failed and still cost $0.021.');

    expect(truncated).toMatchObject({ requests: 2, share: 2 / 14, estimatedSaving: 0 });
    expect(truncated.cost).toBeCloseTo(2 * costOf('claude-sonnet', 2000, 1000), 12);
    expect(truncated.message).toMatch(/^2 of 14 calls \(14\.3%\) stopped at max_tokens \(finish_reason 'length'\) and cost \$0\.042: their answers were cut off/);
  });

  it('is empty when nothing applies', async () => {
    const t = tracker();
    for (const hash of ['a', 'b', 'c']) await t.trackRequest(call({ model: 'gpt-4o-mini', promptHash: hash }));
    await t.trackRequest(call({ model: 'unknown-model' }));
    expect(await t.getRecommendations('alice')).toEqual([]);
    expect(await t.getRecommendations('nobody')).toEqual([]);
  });

  it('applies the thresholds', async () => {
    const t = tracker();
    await aliceMonth(t);
    const recs = await t.getRecommendations('alice', { minSavingUsd: 0.065, minTruncatedShare: 0.2, minErrorRate: 0.1 });
    expect(recs.map((r) => (r.kind === 'cheaper-model' ? r.model : r.kind))).toEqual(['gpt-4o']);
    const defaults = tracker(undefined, new ManualClock(T0));
    await aliceMonth(defaults);
    const strict = new CostTracker({ prices: fakePrices(), records: defaults.records, clock: new ManualClock(T0), recommendations: { minErrorRate: 0.5 } });
    expect((await strict.getRecommendations('alice')).map((r) => r.kind)).not.toContain('errors');
  });

  it('looks at the last 30 days unless told otherwise', async () => {
    const clock = new ManualClock(T0 - 40 * DAY);
    const t = tracker(undefined, clock);
    await t.trackRequest(call({}));
    await clock.advance(40 * DAY);
    expect(await t.getRecommendations('alice')).toEqual([]);
    expect((await t.getRecommendations('alice', { days: 41 })).map((r) => r.kind)).toEqual(['cheaper-model']);
    expect((await t.getRecommendations('alice', { from: '2024-03-31', to: new Date(T0 - 39 * DAY) })).map((r) => r.kind)).toEqual(['cheaper-model']);
    await expect(t.getRecommendations('alice', { days: 0 })).rejects.toMatchObject({ issues: [{ path: 'days' }] });
  });

  it('skips an equivalent the price table cannot price', () => {
    const prices = fakePrices();
    const broken: PriceLookup = { ...prices, cheaperEquivalents: () => [{ model: 'ghost', price: { input: 0, output: 0 } }] };
    const totals = new Map([
      ['n', 1],
      ['c', 7_500_000],
      ['m|openai|gpt-4o|n', 1],
      ['m|openai|gpt-4o|c', 7_500_000],
      ['m|openai|gpt-4o|i', 1000],
      ['m|openai|gpt-4o|o', 500],
    ]);
    expect(recommend({ totals, prompts: new Map() }, broken)).toEqual([]);
    expect(recommend({ totals, prompts: new Map() }, prices).map((r) => r.estimatedSaving)).toEqual([0.0075 - 0.00045]);
  });

  it('rejects bad options naming them', async () => {
    const records = new MemoryUsageRecords();
    await expect(getRecommendations(records, fakePrices(), 'alice', { minErrorRate: 2 })).rejects.toMatchObject({ issues: [{ path: 'minErrorRate' }] });
    await expect(getRecommendations(records, fakePrices(), 'alice', { from: '2024-13-45' })).rejects.toMatchObject({ issues: [{ path: 'from' }] });
    await expect(tracker().getRecommendations('')).rejects.toMatchObject({ code: 'AMAS_INVALID_OPTION' });
  });

  it('gives the same answers from records on Redis and in PostgreSQL', async () => {
    const reference = tracker();
    await aliceMonth(reference);
    const expected = await reference.getRecommendations('alice');

    const f = await redisFixture(T0);
    cleanups.push(() => f.close());
    const onRedis = tracker(new RedisUsageRecords({ store: f.store, clock: f.clock }), f.clock);
    await aliceMonth(onRedis);
    expect(await onRedis.getRecommendations('alice')).toEqual(expected);

    const table = tables.fresh('recs');
    const onPostgres = tracker(new PostgresUsageRecords({ connectionString: PG_URL, table }));
    await aliceMonth(onPostgres);
    expect(await onPostgres.getRecommendations('alice')).toEqual(expected);
  });
});
