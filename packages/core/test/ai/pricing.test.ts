/**
 * The price table: lookups by exact id, provider-qualified id, dated snapshot and fine-tune; costs; cheaper
 * equivalents; option validation. Expected prices are the providers' published list prices (see
 * src/ai/price-data.ts for sources), e.g. gpt-4o $2.50 / $10 / $1.25 cached per 1M tokens.
 */
import { describe, expect, test } from 'vitest';
import { InvalidOptionError } from '../../src/errors.js';
import { blended, costOf, createPriceTable, DEFAULT_ALIASES, DEFAULT_GROUPS, DEFAULT_PRICES, PRICE_TABLE_AS_OF, PriceTable } from '../../src/ai/pricing.js';
import type { PriceLookup } from '../../src/ai/provider-types.js';
import { invalidOption } from '../helpers.js';

const table = createPriceTable();

describe('lookup', () => {
  test('exact ids', () => {
    expect(table.priceOf('gpt-4o')).toEqual({ input: 2.5, output: 10, cachedInput: 1.25 });
    expect(table.priceOf('gpt-4o-mini')).toEqual({ input: 0.15, output: 0.6, cachedInput: 0.075 });
    expect(table.priceOf('gpt-4.1')).toEqual({ input: 2, output: 8, cachedInput: 0.5 });
    expect(table.priceOf('o1')).toEqual({ input: 15, output: 60, cachedInput: 7.5 });
    expect(table.priceOf('gpt-5')).toEqual({ input: 1.25, output: 10, cachedInput: 0.125 });
    expect(table.priceOf('text-embedding-3-small')).toEqual({ input: 0.02, output: 0 });
    expect(table.priceOf('claude-sonnet-4-5')).toEqual({ input: 3, output: 15, cachedInput: 0.3 });
    expect(table.priceOf('GPT-4O')).toEqual(table.priceOf('gpt-4o'));
  });

  test('every model the issue asks for has a price', () => {
    const wanted = [
      'gpt-4o', 'gpt-4o-mini', 'gpt-4.1', 'gpt-4.1-mini', 'gpt-4.1-nano', 'o1', 'o3', 'o3-mini', 'o4-mini', 'gpt-5', 'gpt-5-mini', 'gpt-5-nano',
      'gpt-3.5-turbo', 'text-embedding-3-small', 'text-embedding-3-large',
      'claude-opus-4-1', 'claude-sonnet-4', 'claude-3-5-haiku', 'claude-haiku-4-5',
      'gemini-1.5-pro', 'gemini-1.5-flash', 'gemini-2.0-flash', 'gemini-2.5-pro', 'gemini-2.5-flash',
      'mistral-large-latest', 'mistral-small-latest', 'codestral-latest',
      'meta-llama/Llama-3.3-70B-Instruct-Turbo', 'llama-3.1-8b-instruct', 'deepseek-chat', 'gpt-oss-120b',
    ];
    for (const model of wanted) expect(table.priceOf(model), model).toBeDefined();
  });

  test('dated snapshots resolve to their base; a snapshot with its own price keeps it', () => {
    expect(table.priceOf('gpt-4o-2024-08-06')).toEqual(table.priceOf('gpt-4o'));
    expect(table.priceOf('gpt-4o-2024-11-20')).toEqual(table.priceOf('gpt-4o'));
    expect(table.priceOf('gpt-4o-2024-05-13')).toEqual({ input: 5, output: 15 });
    expect(table.priceOf('gpt-4o-mini-2024-07-18')).toEqual(table.priceOf('gpt-4o-mini'));
    expect(table.priceOf('o3-mini-2025-01-31')).toEqual(table.priceOf('o3-mini'));
    expect(table.priceOf('gpt-4-0613')).toEqual({ input: 30, output: 60 });
    expect(table.priceOf('gpt-3.5-turbo-0125')).toEqual({ input: 0.5, output: 1.5 });
    expect(table.priceOf('gpt-4-0125-preview')).toEqual({ input: 10, output: 30 });
    expect(table.priceOf('gpt-4-turbo-2024-04-09')).toEqual({ input: 10, output: 30 });
    expect(table.resolve('gpt-4o-2024-08-06')?.key).toBe('gpt-4o');
  });

  test('Anthropic, Bedrock and Vertex spellings', () => {
    const sonnet35 = table.priceOf('claude-3-5-sonnet');
    expect(table.priceOf('claude-3-5-sonnet-20241022')).toEqual(sonnet35);
    expect(table.priceOf('claude-3-5-sonnet-latest')).toEqual(sonnet35);
    expect(table.priceOf('anthropic.claude-3-5-sonnet-20241022-v2:0')).toEqual(sonnet35);
    expect(table.priceOf('claude-3-5-sonnet-v2@20241022')).toEqual(sonnet35);
    expect(table.resolve('us.anthropic.claude-sonnet-4-20250514-v1:0')?.key).toBe('claude-sonnet-4');
    expect(table.resolve('claude-sonnet-4-5-20250929')?.key).toBe('claude-sonnet-4-5');
    expect(table.resolve('claude-haiku-4-5-20251001')?.key).toBe('claude-haiku-4-5');
    expect(table.resolve('claude-opus-4-0')?.key).toBe('claude-opus-4');
  });

  test('Gemini, Mistral and hosted open-model spellings', () => {
    expect(table.resolve('gemini-1.5-pro-002')?.key).toBe('gemini-1.5-pro');
    expect(table.resolve('models/gemini-2.5-flash')?.key).toBe('gemini-2.5-flash');
    expect(table.resolve('gemini-2.5-flash-preview-05-20')?.key).toBe('gemini-2.5-flash');
    expect(table.resolve('gemini-2.0-flash-001')?.key).toBe('gemini-2.0-flash');
    expect(table.resolve('mistral-large-2411')?.key).toBe('mistral-large');
    expect(table.resolve('mistral-small-2503')?.key).toBe('mistral-small');
    expect(table.resolve('meta-llama/Llama-3.3-70B-Instruct-Turbo')?.key).toBe('llama-3.3-70b-instruct');
    expect(table.resolve('llama-3.3-70b-versatile')?.key).toBe('groq/llama-3.3-70b-versatile');
    expect(table.resolve('llama-3.3-70b-versatile', 'groq')?.key).toBe('groq/llama-3.3-70b-versatile');
  });

  test('provider-qualified ids: azure/gpt-4o, or the provider argument', () => {
    expect(table.priceOf('azure/gpt-4o')).toEqual(table.priceOf('gpt-4o'));
    expect(table.priceOf('gpt-4o', 'azure')).toEqual(table.priceOf('gpt-4o'));
    expect(table.priceOf('openai/gpt-4o-2024-08-06')).toEqual(table.priceOf('gpt-4o'));
    // A provider-specific override applies to that provider only.
    const custom = createPriceTable({ prices: { 'azure/gpt-4o': { input: 2.75, output: 11 } } });
    expect(custom.priceOf('gpt-4o', 'azure')).toEqual({ input: 2.75, output: 11 });
    expect(custom.priceOf('azure/gpt-4o')).toEqual({ input: 2.75, output: 11 });
    expect(custom.priceOf('gpt-4o', 'openai')).toEqual({ input: 2.5, output: 10, cachedInput: 1.25 });
    expect(custom.priceOf('gpt-4o')).toEqual({ input: 2.5, output: 10, cachedInput: 1.25 });
    expect(custom.entry('azure/gpt-4o')?.provider).toBe('azure');
  });

  test('fine-tunes use the fine-tuned price of their base (OpenAI and Azure ids)', () => {
    const ftMini = { input: 0.3, output: 1.2, cachedInput: 0.15 };
    expect(table.priceOf('ft:gpt-4o-mini-2024-07-18:my-org:custom-suffix:abc123')).toEqual(ftMini);
    expect(table.priceOf('ft:gpt-4o-mini:my-org::abc123')).toEqual(ftMini);
    expect(table.priceOf('gpt-4o-mini-2024-07-18.ft-0123456789abcdef')).toEqual(ftMini);
    expect(table.resolve('ft:gpt-4.1-2025-04-14:org::x')).toMatchObject({ key: 'gpt-4.1', fineTuned: true, price: { input: 3, output: 12, cachedInput: 0.75 } });
    // A base without a fine-tuned price is billed at its base price.
    expect(table.priceOf('ft:o4-mini-2025-04-16:org::x')).toEqual(table.priceOf('o4-mini'));
  });

  test('unknown models are undefined, never a guess by prefix', () => {
    expect(table.priceOf('gpt-4o-realtime-preview')).toBeUndefined();
    expect(table.priceOf('gpt-4o-mini-tts')).toBeUndefined();
    expect(table.priceOf('my-local-model')).toBeUndefined();
    expect(table.priceOf('')).toBeUndefined();
    expect(table.priceOf('ft:')).toBeUndefined();
    expect(table.priceOf(undefined as unknown as string)).toBeUndefined();
  });
});

describe('cost', () => {
  test('uncached input, cached input and output', () => {
    // [OpenAI prompt-caching guide usage example] 2006 prompt tokens of which 1920 cached, 300 completion:
    // (86 x 2.50 + 1920 x 1.25 + 300 x 10) / 1e6 = (215 + 2400 + 3000) / 1e6 = 0.005615
    expect(table.cost('gpt-4o', { inputTokens: 2006, outputTokens: 300, cachedInputTokens: 1920 })).toEqual({ cost: 0.005615, known: true });
    // 1M input + 1M output on gpt-4o-mini: 0.15 + 0.60
    expect(table.cost('gpt-4o-mini-2024-07-18', { inputTokens: 1_000_000, outputTokens: 1_000_000 }).cost).toBe(0.75);
    // 1M tokens embedded with text-embedding-3-small: $0.02
    expect(table.cost('text-embedding-3-small', { inputTokens: 1_000_000, outputTokens: 0 }).cost).toBe(0.02);
    // Anthropic cache hits at 0.1 x input: 1000 x 0.30 + 250 x 3 + 30 x 15 = 300 + 750 + 450 -> 0.0015
    expect(table.cost('claude-sonnet-4-5', { inputTokens: 1250, outputTokens: 30, cachedInputTokens: 1000 }).cost).toBe(0.0015);
  });

  test('a model without a cached price bills cached tokens at the input price', () => {
    // gpt-4: 1000 x 30 / 1e6
    expect(table.cost('gpt-4', { inputTokens: 1000, outputTokens: 0, cachedInputTokens: 600 }).cost).toBe(0.03);
  });

  test('unknown model: 0 and known false; bad usage numbers count as 0', () => {
    expect(table.cost('my-local-model', { inputTokens: 1000, outputTokens: 1000 })).toEqual({ cost: 0, known: false });
    expect(table.cost('gpt-4o', { inputTokens: -5, outputTokens: Number.NaN })).toEqual({ cost: 0, known: true });
    // More cached than input is capped at the input.
    expect(costOf({ input: 2, output: 0, cachedInput: 1 }, { inputTokens: 10, outputTokens: 0, cachedInputTokens: 50 })).toBe(0.00001);
  });

  test('implements PriceLookup', () => {
    const lookup: PriceLookup = table;
    expect(lookup.cost('gpt-4.1-nano', { inputTokens: 1_000_000, outputTokens: 0 }).cost).toBe(0.1);
  });
});

describe('cheaper equivalents', () => {
  test('gpt-4o -> gpt-4o-mini and gpt-4.1-mini among cheaper ones, cheapest first', () => {
    const list = table.cheaperEquivalents('gpt-4o');
    const names = list.map((e) => e.model);
    expect(names).toEqual(expect.arrayContaining(['gpt-4o-mini', 'gpt-4.1-mini', 'gpt-4.1', 'gpt-5']));
    expect(names).not.toContain('gpt-4o');
    const own = blended(table.priceOf('gpt-4o')!);
    for (const entry of list) expect(blended(entry.price)).toBeLessThan(own);
    const costs = list.map((e) => blended(e.price));
    expect(costs).toEqual([...costs].sort((a, b) => a - b));
    // A snapshot id gets its base model's equivalents.
    expect(table.cheaperEquivalents('gpt-4o-2024-08-06')).toEqual(list);
  });

  test('cheaper only, within tiers', () => {
    expect(table.cheaperEquivalents('gpt-4o-mini').map((e) => e.model)).not.toContain('gpt-4o');
    expect(table.cheaperEquivalents('text-embedding-3-large').map((e) => e.model)).toEqual(['text-embedding-3-small']);
    expect(table.cheaperEquivalents('claude-opus-4-1').map((e) => e.model)).toEqual(expect.arrayContaining(['claude-opus-4-5', 'claude-sonnet-4-5']));
    expect(table.cheaperEquivalents('gpt-5-nano')).toEqual([]);
    expect(table.cheaperEquivalents('my-local-model')).toEqual([]);
  });

  test('custom groups', () => {
    const custom = createPriceTable({ prices: { 'house-large': { input: 1, output: 1 }, 'house-small': { input: 0.1, output: 0.1 } }, groups: { house: ['house-large', 'house-small'] } });
    expect(custom.cheaperEquivalents('house-large')).toEqual([{ model: 'house-small', price: { input: 0.1, output: 0.1 } }]);
  });
});

describe('options', () => {
  test('overrides and extensions', () => {
    const custom = createPriceTable({
      prices: { 'gpt-4o': { input: 2, output: 8 }, 'my-model': { input: 1, output: 2, cachedInput: 0.5 } },
      aliases: { 'prod-chat': 'gpt-4o', 'prod-cheap': 'prod-chat' },
    });
    expect(custom.priceOf('gpt-4o')).toEqual({ input: 2, output: 8 });
    expect(custom.priceOf('My-Model')).toEqual({ input: 1, output: 2, cachedInput: 0.5 });
    expect(custom.priceOf('prod-chat')).toEqual({ input: 2, output: 8 });
    expect(custom.priceOf('prod-cheap')).toEqual({ input: 2, output: 8 });
    // Other defaults stay.
    expect(custom.priceOf('gpt-4o-mini')).toEqual(table.priceOf('gpt-4o-mini'));
    // defaults: false starts empty.
    const only = createPriceTable({ defaults: false, prices: { 'my-model': { input: 1, output: 2 } } });
    expect(only.priceOf('gpt-4o')).toBeUndefined();
    expect(only.models()).toEqual(['my-model']);
  });

  test('a bad override throws InvalidOptionError naming the path', () => {
    const cases: Array<[unknown, string]> = [
      [{ prices: { 'gpt-4o': { input: -1, output: 10 } } }, 'prices.gpt-4o.input'],
      [{ prices: { 'gpt-4o': { input: '2.5', output: 10 } } }, 'prices.gpt-4o.input'],
      [{ prices: { 'gpt-4o': { input: 2.5 } } }, 'prices.gpt-4o.output'],
      [{ prices: { 'gpt-4o': { input: 2.5, output: Number.POSITIVE_INFINITY } } }, 'prices.gpt-4o.output'],
      [{ prices: { 'gpt-4o': { input: 2.5, output: 10, cachedInput: -0.1 } } }, 'prices.gpt-4o.cachedInput'],
      [{ prices: { 'gpt-4o': { input: 2.5, output: 10, fineTuned: { input: 1 } } } }, 'prices.gpt-4o.fineTuned.output'],
      [{ prices: { 'gpt-4o': { input: 2.5, output: 10, inputt: 1 } } }, 'prices.gpt-4o'],
      [{ prices: 'cheap' }, 'prices'],
      [{ aliases: { x: 5 } }, 'aliases.x'],
      [{ groups: { g: 'gpt-4o' } }, 'groups.g'],
      [{ pricez: {} }, ''],
    ];
    for (const [options, path] of cases) {
      const error = invalidOption(() => createPriceTable(options as never), JSON.stringify(options));
      expect(error.issues.map((i) => i.path), JSON.stringify(options)).toContain(path);
      expect(error.message).toContain('PriceTable options');
    }
  });

  test('an alias to a model without a price fails at construction', () => {
    const error = invalidOption(() => createPriceTable({ aliases: { 'prod-chat': 'gpt-4o-typo' } }));
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect(error.issues[0]).toMatchObject({ path: 'aliases.prod-chat', received: '"gpt-4o-typo"' });
  });
});

describe('built-in data', () => {
  test('as-of date and sane prices', () => {
    expect(PRICE_TABLE_AS_OF).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(table.asOf).toBe(PRICE_TABLE_AS_OF);
    for (const [key, entry] of Object.entries(DEFAULT_PRICES)) {
      expect(key, key).toBe(key.toLowerCase());
      for (const v of [entry.input, entry.output, entry.cachedInput ?? 0]) expect(Number.isFinite(v) && v >= 0, key).toBe(true);
      expect(entry.cachedInput ?? entry.input, key).toBeLessThanOrEqual(entry.input);
      expect(entry.provider, key).toBeTruthy();
    }
  });

  test('every alias and group member points at a priced model', () => {
    for (const [from, to] of Object.entries(DEFAULT_ALIASES)) expect(table.resolve(to)?.key, `${from} -> ${to}`).toBe(to);
    for (const [group, members] of Object.entries(DEFAULT_GROUPS)) for (const m of members) expect(DEFAULT_PRICES[m], `${group}: ${m}`).toBeDefined();
  });

  test('a PriceTable is a class with its own state', () => {
    expect(new PriceTable()).toBeInstanceOf(PriceTable);
    expect(new PriceTable().models().length).toBe(Object.keys(DEFAULT_PRICES).length);
  });
});
