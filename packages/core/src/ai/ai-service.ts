/**
 * The engine's AI provider layer (`amas.ai`): one call = budget reserved from the request's estimated cost
 * -> routed to an endpoint of the model (balancing, health, breakers, retries, fallbacks) -> tokens read from
 * the provider's usage (or counted) -> cost settled against the reservation and recorded. A failed call
 * releases its reservation and is recorded as an error (what recommendations call error-rate waste).
 *
 * Concurrent embedding calls for the same model and parameters go upstream as one batch (MicroBatcher): each
 * caller gets its own vectors back, renumbered, with its share of the usage.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { systemClock, type Clock } from '../clock.js';
import { InvalidOptionError, InvalidRequestError } from '../errors.js';
import { consoleLogger, type Logger } from '../logger.js';
import { parseOptions } from '../options/validate.js';
import type { Store } from '../stores/store.js';
import type { BudgetPeriod, BudgetReservation, BudgetRules, BudgetStatus } from './budgets.js';
import type { BudgetAlertOptions } from './cost-options.js';
import { CostTracker, type SummaryQuery } from './cost-tracker.js';
import { EmbeddingBatcher, type EmbeddingBatchOptions } from './embedding-batcher.js';
import { ModelRouter, type RouteAttempt } from './model-router.js';
import { createPriceTable, type PriceTableOptions } from './pricing.js';
import { ProviderClient, type ProviderClientOptions } from './provider-client.js';
import type { ProviderTransport, TokenUsage, UpstreamResponse, UpstreamStream } from './provider-types.js';
import type { Recommendation } from './recommendations.js';
import { resolveRouterOptions, type BreakerFactory, type ModelRouteOptions, type ModelRouteSettings } from './router-options.js';
import { watchStreamUsage, type StreamOutcome } from './stream-usage.js';
import { countTextTokens, estimateRequestTokens, preloadEncodings, usageFromResponse } from './token-counter.js';
import { PostgresUsageRecords } from './usage-records-postgres.js';
import type { UsageRecordStore, UsageSummary } from './usage-records.js';
import type { PostgresUsageRecordsOptions } from './cost-options.js';

export interface AiOptions {
  /** Model name (what callers put in `body.model`) -> its endpoints, strategy, fallbacks, retry, health, outlier and breaker rules. */
  models: Record<string, ModelRouteOptions>;
  /** Settings every model inherits. */
  defaults?: ModelRouteSettings;
  /** The undici client: connections per host, timeouts, HTTP/2, DNS cache TTL. */
  client?: ProviderClientOptions;
  /** Price overrides and additions (USD per 1M tokens), aliases, equivalence groups. */
  prices?: PriceTableOptions;
  /** Budgets per user or team, per day and/or month, enforced before each call. */
  budgets?: BudgetRules;
  /** Shares of a budget that raise `budgetAlert` (default [0.5, 0.8, 1]). */
  alerts?: BudgetAlertOptions | false;
  /**
   * Where usage records persist: on the engine's store (Redis) when it has one, else in memory; or
   * `{ postgres: { connectionString | pool, table? } }`.
   */
  records?: { postgres: PostgresUsageRecordsOptions };
  /** Output tokens reserved for a request that sets no `max_tokens` (its worst case is unknown). Default 1024. */
  reserveOutputTokens?: number;
  /** Batching of concurrent embedding calls; false to send each alone. */
  embeddingBatch?: EmbeddingBatchOptions | false;
}

/** Who a call is for (budgets, records) and how to stop it. */
export interface AiCallOptions {
  /** Default 'anonymous'. */
  user?: string;
  team?: string;
  signal?: AbortSignal;
  metadata?: Record<string, unknown>;
  /** chat / chatStream: this call's deadline per upstream attempt (ms), instead of the model's `attemptTimeoutMs`. */
  attemptTimeoutMs?: number;
}

export interface AiCallResult {
  response: UpstreamResponse;
  /** The model that answered (the requested one or a fallback). */
  model: string;
  endpoint: string;
  provider: string;
  attempts: RouteAttempt[];
  usage: TokenUsage;
  /** USD. */
  cost: number;
}

export interface AiStreamResult {
  status: number;
  headers: Record<string, string>;
  /** The provider's events as they arrive (iterate it to the end, or return early / abort the signal). */
  body: AsyncIterable<Uint8Array>;
  model: string;
  endpoint: string;
  provider: string;
  attempts: RouteAttempt[];
  /** Settles when the stream ends (completed, aborted or broken): the tokens billed and their cost. */
  done: Promise<StreamOutcome & { cost: number }>;
}

const aiOptionsSchema = z.strictObject({
  models: z.record(z.string(), z.unknown()),
  defaults: z.record(z.string(), z.unknown()).optional(),
  client: z.record(z.string(), z.unknown()).optional(),
  prices: z.record(z.string(), z.unknown()).optional(),
  budgets: z.record(z.string(), z.unknown()).optional(),
  alerts: z.unknown().optional(),
  records: z.strictObject({ postgres: z.record(z.string(), z.unknown()) }).optional(),
  reserveOutputTokens: z.number().int().nonnegative().max(10_000_000).optional(),
  embeddingBatch: z.union([z.literal(false), z.record(z.string(), z.unknown())]).optional(),
});

export interface AiServiceDeps {
  store?: Store;
  breakers?: BreakerFactory;
  clock?: Clock;
  logger?: Logger;
  /** A transport of your own instead of the undici client (tests, proxies). */
  transport?: ProviderTransport;
}

export class AiService {
  readonly client: ProviderClient | undefined;
  readonly router: ModelRouter;
  readonly costs: CostTracker;
  private readonly providers = new Map<string, string>();
  private readonly reserveOutputTokens: number;
  private readonly embeddingBatcher: EmbeddingBatcher | undefined;
  private readonly logger: Logger;
  private closed = false;

  constructor(options: AiOptions, deps: AiServiceDeps = {}) {
    const o = parseOptions(aiOptionsSchema, options, 'AMAS ai options');
    const clock = deps.clock ?? systemClock;
    this.logger = deps.logger ?? consoleLogger;
    this.reserveOutputTokens = o.reserveOutputTokens ?? 1024;
    const built: Array<{ close(): Promise<void> | void }> = [];
    try {
      this.client = deps.transport === undefined ? within('client', () => new ProviderClient({ ...(o.client as ProviderClientOptions | undefined), clock })) : undefined;
      if (this.client !== undefined) built.push({ close: () => this.client!.closeAll() });
      const transport = deps.transport ?? this.client!;
      const routerOptions = { transport, models: o.models as Record<string, ModelRouteOptions>, defaults: o.defaults as ModelRouteSettings | undefined, breakers: deps.breakers, clock, logger: this.logger };
      // Endpoint id -> provider, for prices and records (resolved the way the router resolves them).
      for (const route of resolveRouterOptions(routerOptions).models.values()) for (const e of route.endpoints) this.providers.set(e.id, e.provider);
      this.router = new ModelRouter(routerOptions);
      built.push(this.router);
      const prices = within('prices', () => createPriceTable(o.prices as PriceTableOptions | undefined));
      const records: UsageRecordStore | undefined = o.records ? within('records.postgres', () => new PostgresUsageRecords({ ...(o.records!.postgres as PostgresUsageRecordsOptions), clock, logger: this.logger } as PostgresUsageRecordsOptions)) : undefined;
      this.costs = within('', () =>
        new CostTracker({
          prices,
          ...(deps.store !== undefined && { store: deps.store }),
          ...(records !== undefined && { records }),
          ...(o.budgets !== undefined && { budgets: o.budgets as BudgetRules }),
          ...(o.alerts !== undefined && { alerts: o.alerts as BudgetAlertOptions | false }),
          clock,
          logger: this.logger,
        }),
      );
      this.embeddingBatcher =
        o.embeddingBatch === false ? undefined : within('embeddingBatch', () => new EmbeddingBatcher((body, signal) => this.router.embeddings(body, { signal }), { ...(o.embeddingBatch as EmbeddingBatchOptions | undefined), clock }));
    } catch (error) {
      for (const part of built) void Promise.resolve(part.close()).catch(() => undefined);
      throw error;
    }
  }

  /** A chat completion (not streamed). Throws BudgetExceededError before any upstream call when over budget. */
  async chat(body: Record<string, unknown>, options: AiCallOptions = {}): Promise<AiCallResult> {
    const model = modelOf(body);
    const estimate = estimateRequestTokens(model, body, { kind: 'chat', defaultMaxOutputTokens: this.reserveOutputTokens });
    const reservation = await this.reserve(model, estimate.inputTokens, estimate.maxOutputTokens, options);
    let routed;
    try {
      routed = await this.router.chat(body, { signal: options.signal, attemptTimeoutMs: options.attemptTimeoutMs });
    } catch (error) {
      await this.failed(model, error, reservation, options);
      throw error;
    }
    const json = parseJson(routed.response.body);
    const choice = (json as { choices?: Array<{ finish_reason?: unknown; message?: { content?: unknown } }> } | undefined)?.choices?.[0];
    const usage = usageFromResponse(json) ?? { inputTokens: estimate.inputTokens, outputTokens: typeof choice?.message?.content === 'string' ? countTextTokens(routed.model, choice.message.content).tokens : 0 };
    const provider = this.providers.get(routed.endpoint) ?? 'openai';
    const cost = await this.track(routed.model, provider, usage, reservation, options, { finishReason: typeof choice?.finish_reason === 'string' ? choice.finish_reason : undefined, promptHash: promptHash(body) });
    return { response: routed.response, model: routed.model, endpoint: routed.endpoint, provider, attempts: routed.attempts, usage, cost };
  }

  /**
   * A streamed chat completion: resolves when the first bytes are in (retries and fallbacks happen before).
   * The provider's usage chunk is asked for and, unless the caller asked for it too, kept from the caller.
   */
  async chatStream(body: Record<string, unknown>, options: AiCallOptions = {}): Promise<AiStreamResult> {
    const model = modelOf(body);
    const estimate = estimateRequestTokens(model, body, { kind: 'chat', defaultMaxOutputTokens: this.reserveOutputTokens });
    const reservation = await this.reserve(model, estimate.inputTokens, estimate.maxOutputTokens, options);
    const callerAsked = (body.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true;
    const upstreamBody = { ...body, stream: true, stream_options: { ...(body.stream_options as object | undefined), include_usage: true } };
    let routed;
    try {
      routed = await this.router.chatStream(upstreamBody, { signal: options.signal, attemptTimeoutMs: options.attemptTimeoutMs });
    } catch (error) {
      await this.failed(model, error, reservation, options);
      throw error;
    }
    const provider = this.providers.get(routed.endpoint) ?? 'openai';
    const watched = watchStreamUsage(routed.response.body, { count: { model: routed.model, inputTokens: estimate.inputTokens }, stripUsageChunk: !callerAsked });
    const done = watched.outcome.then(async (outcome) => {
      const cost = await this.track(routed.model, provider, outcome.usage, reservation, options, {
        finishReason: outcome.finishReason ?? (outcome.completed ? undefined : 'aborted'),
        promptHash: promptHash(body),
      }).catch(() => 0);
      return { ...outcome, cost };
    });
    const stream: UpstreamStream = routed.response;
    return { status: stream.status, headers: stream.headers, body: watched.body, model: routed.model, endpoint: routed.endpoint, provider, attempts: routed.attempts, done };
  }

  /** Embeddings; concurrent calls for the same model and parameters share one upstream batch. */
  async embeddings(body: Record<string, unknown>, options: AiCallOptions = {}): Promise<AiCallResult> {
    const model = modelOf(body);
    const estimate = estimateRequestTokens(model, body, { kind: 'embeddings' });
    const reservation = await this.reserve(model, estimate.inputTokens, 0, options);
    let answer;
    try {
      answer = this.embeddingBatcher !== undefined ? await this.embeddingBatcher.embed(body, options.signal) : await this.router.embeddings(body, { signal: options.signal }).then((r) => ({ ...r, usage: usageFromResponse(r.response.body) }));
    } catch (error) {
      await this.failed(model, error, reservation, options);
      throw error;
    }
    const usage = answer.usage ?? { inputTokens: estimate.inputTokens, outputTokens: 0 };
    const provider = this.providers.get(answer.endpoint) ?? 'openai';
    const cost = await this.track(answer.model, provider, usage, reservation, options, {});
    return { response: answer.response, model: answer.model, endpoint: answer.endpoint, provider, attempts: answer.attempts, usage, cost };
  }

  /**
   * Loads the tokenizer tables the configured models need (0.1-0.4 s each), so the first request does not
   * pay for it. Call it at start-up.
   */
  warmUp(): void {
    preloadEncodings(this.router.models());
  }

  /** Spend and tokens of a user (or team, or everyone) over a range of UTC days, by provider, model and day. */
  usage(query: SummaryQuery = {}): Promise<UsageSummary> {
    return this.costs.getSummary(query);
  }

  budget(user: string, period: BudgetPeriod): Promise<BudgetStatus> {
    return this.costs.checkBudget(user, period);
  }

  recommendations(user: string): Promise<Recommendation[]> {
    return this.costs.getRecommendations(user);
  }

  stats(): { client: ReturnType<ProviderClient['stats']> | undefined; router: ReturnType<ModelRouter['stats']>; costs: ReturnType<CostTracker['stats']> } {
    return { client: this.client?.stats(), router: this.router.stats(), costs: this.costs.stats() };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.embeddingBatcher?.close();
    this.router.close();
    await this.costs.close().catch((error: unknown) => this.logger.warn('AMAS ai: usage records could not be written at close', error));
    await this.client?.closeAll();
  }

  // ---------------------------------------------------------------------------------------------------------

  private reserve(model: string, inputTokens: number, maxOutputTokens: number, options: AiCallOptions): Promise<BudgetReservation | undefined> {
    if (this.costs.budgets === undefined) return Promise.resolve(undefined);
    return this.costs.reserve({ user: userOf(options), ...(options.team !== undefined && { team: options.team }), model, inputTokens, maxOutputTokens });
  }

  private async track(model: string, provider: string, usage: TokenUsage, reservation: BudgetReservation | undefined, options: AiCallOptions, extra: { finishReason?: string; promptHash?: string }): Promise<number> {
    const record = await this.costs.trackRequest({
      user: userOf(options),
      ...(options.team !== undefined && { team: options.team }),
      provider,
      model,
      inputTokens: usage.inputTokens,
      outputTokens: usage.outputTokens,
      ...(usage.cachedInputTokens !== undefined && { cachedInputTokens: usage.cachedInputTokens }),
      ...(options.metadata !== undefined && { metadata: options.metadata }),
      ...(extra.finishReason !== undefined && { finishReason: extra.finishReason }),
      ...(extra.promptHash !== undefined && { promptHash: extra.promptHash }),
      ...(reservation !== undefined && { reservation }),
    });
    return record.cost;
  }

  /** A call that failed: its reservation is released and the failure recorded (no tokens were billed). */
  private async failed(model: string, error: unknown, reservation: BudgetReservation | undefined, options: AiCallOptions): Promise<void> {
    if (reservation !== undefined) await this.costs.release(reservation).catch(() => undefined);
    if (options.signal?.aborted) return; // the caller left before anything was produced
    await this.costs
      .trackRequest({ user: userOf(options), ...(options.team !== undefined && { team: options.team }), provider: 'unknown', model, inputTokens: 0, outputTokens: 0, error })
      .catch(() => undefined);
  }
}

function within<T>(path: string, build: () => T): T {
  try {
    return build();
  } catch (error) {
    if (!(error instanceof InvalidOptionError)) throw error;
    throw new InvalidOptionError(error.issues.map((i) => ({ ...i, path: [path, i.path].filter(Boolean).join('.') })), 'AMAS ai options');
  }
}

function modelOf(body: Record<string, unknown>): string {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new InvalidRequestError('The request body must be a JSON object.');
  if (typeof body.model !== 'string' || body.model === '') throw new InvalidRequestError('The request body needs a "model" (a string).', { details: { param: 'model' } });
  return body.model;
}

function userOf(options: AiCallOptions): string {
  return options.user !== undefined && options.user !== '' ? options.user : 'anonymous';
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}

/** Identifies a prompt (model + messages + sampling) so repeated ones show up in recommendations. */
function promptHash(body: Record<string, unknown>): string | undefined {
  try {
    return createHash('sha256').update(JSON.stringify([body.model, body.messages, body.temperature, body.tools])).digest('base64url').slice(0, 22);
  } catch {
    return undefined;
  }
}

