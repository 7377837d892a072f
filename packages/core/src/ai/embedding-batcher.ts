/**
 * Concurrent `/v1/embeddings` calls for the same model and parameters go upstream as one call: their inputs
 * are concatenated, and each caller gets back its own vectors (renumbered from 0) and its share of the usage,
 * in a response body of its own. The window adapts to load (MicroBatcher): a lone call leaves at once.
 * Inputs that are not text (token arrays) are sent alone, as they came.
 */
import { z } from 'zod';
import type { Clock } from '../clock.js';
import { parseOptions, positiveInt, timerMs } from '../options/validate.js';
import { MicroBatcher } from '../policies/micro-batcher.js';
import type { RouteAttempt, RouteResult } from './model-router.js';
import type { TokenUsage, UpstreamResponse } from './provider-types.js';
import { usageFromResponse } from './token-counter.js';

export interface EmbeddingBatchOptions {
  /** Most callers in one upstream call. Default 64. */
  maxCallers?: number;
  /** Most input texts in one upstream call (OpenAI accepts 2048). Default 2048. */
  maxInputs?: number;
  /** Longest wait for more callers under load, ms. Default 5. */
  maxWaitMs?: number;
  clock?: Clock;
}

const optionsSchema = z.strictObject({
  maxCallers: positiveInt.optional(),
  maxInputs: positiveInt.max(100_000).optional(),
  maxWaitMs: timerMs.optional(),
  clock: z.unknown().optional(),
});

export interface EmbeddingAnswer {
  response: UpstreamResponse;
  model: string;
  endpoint: string;
  attempts: RouteAttempt[];
  usage: TokenUsage | undefined;
}

type Send = (body: Record<string, unknown>, signal: AbortSignal | undefined) => Promise<RouteResult<UpstreamResponse>>;

interface Item {
  texts: string[];
}

export class EmbeddingBatcher {
  private readonly batchers = new Map<string, MicroBatcher<Item, EmbeddingAnswer>>();
  private readonly options: { maxCallers: number; maxInputs: number; maxWaitMs: number; clock: Clock | undefined };

  constructor(
    private readonly send: Send,
    options: EmbeddingBatchOptions = {},
  ) {
    const o = parseOptions(optionsSchema, options, 'embedding batch options');
    this.options = { maxCallers: o.maxCallers ?? 64, maxInputs: o.maxInputs ?? 2048, maxWaitMs: o.maxWaitMs ?? 5, clock: options.clock };
  }

  async embed(body: Record<string, unknown>, signal: AbortSignal | undefined): Promise<EmbeddingAnswer> {
    const input = body.input;
    const texts = typeof input === 'string' ? [input] : Array.isArray(input) && input.length > 0 && input.every((t) => typeof t === 'string') ? (input as string[]) : undefined;
    if (texts === undefined || texts.length > this.options.maxInputs) {
      const routed = await this.send(body, signal);
      return { ...routed, usage: usageFromResponse(routed.response.body) };
    }
    const { input: _input, user: _user, ...params } = body;
    const key = JSON.stringify(Object.entries(params).sort(([a], [b]) => a.localeCompare(b)));
    let batcher = this.batchers.get(key);
    if (batcher === undefined) {
      batcher = new MicroBatcher<Item, EmbeddingAnswer>({
        name: `embeddings ${String(params.model)}`,
        maxBatchSize: this.options.maxCallers,
        maxBatchWeight: this.options.maxInputs,
        weight: (item) => item.texts.length,
        maxWaitMs: this.options.maxWaitMs,
        ...(this.options.clock !== undefined && { clock: this.options.clock }),
        run: (items, { signal: batchSignal }) => this.run(params, items, batchSignal),
      });
      this.batchers.set(key, batcher);
    }
    return batcher.add({ texts }, { ...(signal !== undefined && { signal }) });
  }

  async close(): Promise<void> {
    await Promise.all([...this.batchers.values()].map((b) => b.close()));
    this.batchers.clear();
  }

  /** One upstream call for every caller of the batch; the answer split back per caller. */
  private async run(params: Record<string, unknown>, items: Item[], signal: AbortSignal): Promise<EmbeddingAnswer[]> {
    const all = items.flatMap((item) => item.texts);
    const routed = await this.send({ ...params, input: all }, signal);
    const json = JSON.parse(routed.response.body.toString('utf8')) as { data?: Array<{ index?: number }>; usage?: unknown } & Record<string, unknown>;
    const data = Array.isArray(json.data) ? json.data : [];
    if (data.length !== all.length) throw new Error(`the provider returned ${data.length} embeddings for ${all.length} inputs`);
    const byIndex = [...data].sort((a, b) => (a.index ?? 0) - (b.index ?? 0));
    const usage = usageFromResponse(json);
    // Usage is shared out by characters: the provider reports one total for the batch.
    const totalChars = all.reduce((n, t) => n + t.length, 0) || 1;
    const answers: EmbeddingAnswer[] = [];
    let offset = 0;
    let tokensLeft = usage?.inputTokens ?? 0;
    items.forEach((item, i) => {
      const own = byIndex.slice(offset, offset + item.texts.length).map((d, j) => ({ ...d, index: j }));
      offset += item.texts.length;
      const chars = item.texts.reduce((n, t) => n + t.length, 0);
      const share = i === items.length - 1 ? tokensLeft : Math.round(((usage?.inputTokens ?? 0) * chars) / totalChars);
      tokensLeft -= share;
      const ownUsage = usage === undefined ? undefined : { inputTokens: share, outputTokens: 0 };
      const body = Buffer.from(JSON.stringify({ ...json, data: own, ...(ownUsage && { usage: { prompt_tokens: share, total_tokens: share } }) }));
      answers.push({ response: { ...routed.response, body }, model: routed.model, endpoint: routed.endpoint, attempts: routed.attempts, usage: ownUsage });
    });
    return answers;
  }
}
