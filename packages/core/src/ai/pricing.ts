/**
 * The price table (PriceLookup): what a call cost, and which cheaper models could do the same job.
 *
 * Lookup of `priceOf(model, provider?)`, case-insensitive, first hit wins:
 * 1. `<provider>/<model>` (e.g. a `groq/llama-3.3-70b-versatile` or `azure/gpt-4o` override), then the id as
 *    given (which may itself be provider-qualified: `azure/gpt-4o`), then the id without its prefix
 *    (`azure/gpt-4o` -> `gpt-4o`, `meta-llama/Llama-3.3-70B-Instruct-Turbo` -> `llama-3.3-70b-instruct-turbo`,
 *    `models/gemini-2.5-pro` -> `gemini-2.5-pro`);
 * 2. at each step the exact key, then an alias; then the id is shortened one rule at a time and tried again:
 *    Bedrock / Vertex wrappers (`anthropic.claude-3-5-sonnet-20241022-v2:0`, `claude-sonnet-4@20250514`),
 *    dated snapshots (`gpt-4o-2024-08-06`, `claude-3-5-sonnet-20241022`, `gpt-4-0613`, `mistral-large-2411`,
 *    `gemini-1.5-pro-002`), `-latest`, `-preview[-MM-DD]`, `-exp[-MMDD]`. An explicit entry for a snapshot
 *    (`gpt-4o-2024-05-13`, priced differently) is found before its base.
 * 3. Fine-tunes (`ft:gpt-4o-mini-2024-07-18:org::id`, Azure's `gpt-4o-mini-2024-07-18.ft-abc`) resolve to the
 *    base model's `fineTuned` price when the table has one, else the base price.
 *
 * "Cheaper" compares blended prices, (3 x input + output) / 4: a 3:1 input-to-output mix, the usual blend.
 */
import { z } from 'zod';
import { InvalidOptionError } from '../errors.js';
import { parseOptions } from '../options/validate.js';
import { DEFAULT_ALIASES, DEFAULT_GROUPS, DEFAULT_PRICES, PRICE_TABLE_AS_OF, PRICE_SOURCES, type PriceEntry } from './price-data.js';
import type { ModelPrice, PriceLookup, TokenUsage } from './provider-types.js';

export { DEFAULT_PRICES, DEFAULT_ALIASES, DEFAULT_GROUPS, PRICE_TABLE_AS_OF, PRICE_SOURCES, type PriceEntry } from './price-data.js';

const usd = z.number().finite().nonnegative();
const modelPriceSchema = z.strictObject({
  input: usd,
  output: usd,
  cachedInput: usd.optional(),
});
const priceEntrySchema = z.strictObject({
  input: usd,
  output: usd,
  cachedInput: usd.optional(),
  provider: z.string().min(1).optional(),
  fineTuned: modelPriceSchema.optional(),
  unsure: z.boolean().optional(),
});

export const priceTableOptionsSchema = z.strictObject({
  /** Added to (or replacing) the default entries, keyed by model id or `<provider>/<model>`. */
  prices: z.record(z.string().min(1), priceEntrySchema).optional(),
  /** Other names -> a key of the table (or another alias). */
  aliases: z.record(z.string().min(1), z.string().min(1)).optional(),
  /** Equivalence groups for recommendations; a group with a default's name replaces it. */
  groups: z.record(z.string().min(1), z.array(z.string().min(1))).optional(),
  /** Start from the built-in prices, aliases and groups. Default true. */
  defaults: z.boolean().optional(),
});

export type PriceOverride = z.input<typeof priceEntrySchema>;

export interface PriceTableOptions {
  prices?: Record<string, PriceOverride>;
  aliases?: Record<string, string>;
  groups?: Record<string, string[]>;
  defaults?: boolean;
}

export interface ResolvedPrice {
  /** The table key that priced the model. */
  key: string;
  price: ModelPrice;
  /** The model was a fine-tune (priced with the entry's `fineTuned` price when it has one). */
  fineTuned: boolean;
  /** The entry's price is marked as less certain. */
  unsure: boolean;
}

const MAX_ALIAS_DEPTH = 8;

/** Shortening rules, tried one at a time (first that changes the id). */
const SHORTEN: Array<[RegExp, string]> = [
  [/^(?:[a-z]{2}\.)?(?:anthropic|meta|mistral|amazon|cohere|ai21|deepseek|qwen)\./, ''], // Bedrock
  [/-v\d+:\d+$/, ''], // Bedrock version
  [/@[\w.-]+$/, ''], // Vertex `@20241022` / `@001`
  [/-\d{4}-\d{2}-\d{2}$/, ''],
  [/-\d{8}$/, ''],
  [/-\d{3,4}$/, ''],
  [/-latest$/, ''],
  [/-preview(?:-\d{2}-\d{2})?$/, ''],
  [/-exp(?:-\d{4})?$/, ''],
];

export class PriceTable implements PriceLookup {
  /** When the built-in prices were compiled. */
  readonly asOf = PRICE_TABLE_AS_OF;
  readonly sources = PRICE_SOURCES;
  private readonly entries = new Map<string, PriceEntry>();
  private readonly aliases = new Map<string, string>();
  private readonly groups = new Map<string, string[]>();
  private readonly memo = new Map<string, ResolvedPrice | null>();

  constructor(options: PriceTableOptions = {}) {
    const o = parseOptions(priceTableOptionsSchema, options ?? {}, 'PriceTable options');
    const defaults = o.defaults !== false;
    if (defaults) {
      for (const [key, entry] of Object.entries(DEFAULT_PRICES)) this.entries.set(key, entry);
      for (const [from, to] of Object.entries(DEFAULT_ALIASES)) this.aliases.set(from, to);
      for (const [name, members] of Object.entries(DEFAULT_GROUPS)) this.groups.set(name, [...members]);
    }
    for (const [key, entry] of Object.entries(o.prices ?? {})) {
      const k = key.trim().toLowerCase();
      this.entries.set(k, { provider: entry.provider ?? (k.includes('/') ? k.slice(0, k.indexOf('/')) : 'custom'), ...entry });
      // An explicit price beats a default alias of the same name.
      this.aliases.delete(k);
    }
    for (const [from, to] of Object.entries(o.aliases ?? {})) this.aliases.set(from.trim().toLowerCase(), to.trim().toLowerCase());
    for (const [name, members] of Object.entries(o.groups ?? {})) this.groups.set(name, members.map((m) => m.trim().toLowerCase()));

    // Every user alias must lead to a price: a typo fails at start-up, not as "unknown model" at request time.
    const issues = Object.keys(o.aliases ?? {})
      .filter((from) => this.followAlias(from.trim().toLowerCase()) === undefined)
      .map((from) => ({ path: `aliases.${from}`, received: JSON.stringify(o.aliases![from]), expected: 'a model id with a price in the table (or an alias of one)' }));
    if (issues.length > 0) throw new InvalidOptionError(issues, 'PriceTable options');
  }

  /** Price of `model` (see the module notes for how ids are matched), or undefined. */
  priceOf(model: string, provider?: string): ModelPrice | undefined {
    return this.resolve(model, provider)?.price;
  }

  /** Dollars for `usage` on `model`; 0 and `known: false` when the model has no price. */
  cost(model: string, usage: TokenUsage, provider?: string): { cost: number; known: boolean } {
    const price = this.priceOf(model, provider);
    if (!price) return { cost: 0, known: false };
    return { cost: costOf(price, usage), known: true };
  }

  /** Cheaper models listed with `model` in an equivalence group, cheapest (blended) first. */
  cheaperEquivalents(model: string): Array<{ model: string; price: ModelPrice }> {
    const resolved = this.resolve(model);
    if (!resolved) return [];
    const own = blended(resolved.price);
    const seen = new Set<string>([resolved.key]);
    const out: Array<{ model: string; price: ModelPrice }> = [];
    for (const members of this.groups.values()) {
      if (!members.includes(resolved.key)) continue;
      for (const member of members) {
        if (seen.has(member)) continue;
        seen.add(member);
        const entry = this.entries.get(member);
        if (entry && blended(entry) < own) out.push({ model: member, price: plain(entry) });
      }
    }
    return out.sort((a, b) => blended(a.price) - blended(b.price) || a.model.localeCompare(b.model));
  }

  /** How `model` was priced: the key, the price, whether it was a fine-tune; undefined when unknown. */
  resolve(model: string, provider?: string): ResolvedPrice | undefined {
    if (typeof model !== 'string' || model.trim() === '') return undefined;
    const memoKey = `${provider ?? ''}\u0000${model}`;
    const hit = this.memo.get(memoKey);
    if (hit !== undefined) return hit ?? undefined;
    const result = this.lookup(model, provider);
    if (this.memo.size >= 5000) this.memo.clear();
    this.memo.set(memoKey, result ?? null);
    return result;
  }

  /** Keys of the table (model ids and provider-qualified ids). */
  models(): string[] {
    return [...this.entries.keys()];
  }

  /** The entry stored under `key` (no matching rules), with its provider and `unsure` flag. */
  entry(key: string): PriceEntry | undefined {
    return this.entries.get(key.toLowerCase());
  }

  private lookup(model: string, provider: string | undefined): ResolvedPrice | undefined {
    let id = model.trim().toLowerCase();
    let fineTuned = false;
    if (id.startsWith('ft:')) {
      fineTuned = true;
      id = id.split(':')[1] ?? '';
    }
    const azureFt = /\.ft-[\w-]+$/.exec(id);
    if (azureFt) {
      fineTuned = true;
      id = id.slice(0, azureFt.index);
    }
    if (id === '') return undefined;
    const prov = provider?.trim().toLowerCase();
    const slash = id.lastIndexOf('/');
    const bare = slash >= 0 ? id.slice(slash + 1) : id;
    const candidates = [...(prov ? [`${prov}/${bare}`] : []), id, bare];
    for (const candidate of new Set(candidates)) {
      const key = this.match(candidate);
      if (key === undefined) continue;
      const entry = this.entries.get(key)!;
      const price = fineTuned && entry.fineTuned ? entry.fineTuned : plain(entry);
      return { key, price, fineTuned, unsure: entry.unsure === true };
    }
    return undefined;
  }

  /** The table key for `id`: exact, alias, then shortened step by step. */
  private match(id: string): string | undefined {
    let current = id;
    for (let step = 0; step < 12; step++) {
      const key = this.followAlias(current);
      if (key !== undefined) return key;
      const rule = SHORTEN.find(([re]) => re.test(current));
      if (!rule) return undefined;
      const next = current.replace(rule[0], rule[1]);
      if (next === current || next === '') return undefined;
      current = next;
    }
    return undefined;
  }

  private followAlias(id: string): string | undefined {
    let current = id;
    for (let depth = 0; depth <= MAX_ALIAS_DEPTH; depth++) {
      if (this.entries.has(current)) return current;
      const next = this.aliases.get(current);
      if (next === undefined) return undefined;
      current = next;
    }
    return undefined;
  }
}

/** A PriceLookup over the built-in prices plus `options` (validated; a bad override throws InvalidOptionError). */
export function createPriceTable(options: PriceTableOptions = {}): PriceTable {
  return new PriceTable(options);
}

/** Dollars for `usage` at `price`: uncached input, cached input (at `cachedInput`, default `input`) and output. */
export function costOf(price: ModelPrice, usage: TokenUsage): number {
  const input = count(usage?.inputTokens);
  const cached = Math.min(count(usage?.cachedInputTokens), input);
  const output = count(usage?.outputTokens);
  const dollars = ((input - cached) * price.input + cached * (price.cachedInput ?? price.input) + output * price.output) / 1_000_000;
  // Float noise (0.1 + 0.2) would make equal costs compare unequal in reports: keep 12 significant digits.
  return Number(dollars.toPrecision(12));
}

/** (3 x input + output) / 4. */
export function blended(price: ModelPrice): number {
  return (3 * price.input + price.output) / 4;
}

function count(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : 0;
}

function plain(entry: ModelPrice): ModelPrice {
  return { input: entry.input, output: entry.output, ...(entry.cachedInput === undefined ? {} : { cachedInput: entry.cachedInput }) };
}
