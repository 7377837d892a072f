/**
 * Default price table: US dollars per one million tokens (input, output, cached input) for the models AMAS
 * users call most. A .ts file rather than JSON so tsup bundles it into both builds with no JSON import set-up.
 *
 * Sources and confidence (see `unsure` on the entries whose price is less certain):
 * - OpenAI: the pricing page (platform.openai.com/docs/pricing) list prices, standard tier, no Batch / Flex /
 *   Priority. gpt-4o .. gpt-5 family as published from 2024-05 to 2025-08 (o3 after its 2025-06 cut).
 *   gpt-5.2 / 5.4 / 5.5 from third-party copies of the pricing page dated 2026 (marked unsure).
 *   Fine-tuned inference prices where OpenAI published them (`fineTuned`). Azure OpenAI global deployments
 *   are priced like OpenAI; regional / data-zone deployments cost ~10 % more (override with `azure/<model>`).
 * - Anthropic: docs.anthropic.com pricing; cached input = cache hits (0.1 x input). Cache WRITES (1.25 x input
 *   for 5 minutes, 2 x for 1 hour) and the > 200k-token long-context rates are not modelled by ModelPrice.
 *   Opus 4.6 / Sonnet 4.6 from third-party copies dated 2026 (unsure).
 * - Google Gemini API (ai.google.dev pricing), prompts <= 200k (2.5 Pro) / <= 128k (1.5) tokens; cached
 *   input = context-cache reads (storage per hour not modelled). Gemini 3 from third-party 2026 pages (unsure).
 * - Mistral La Plateforme list prices (several changed in 2025-2026; marked unsure).
 * - Open models "as typically hosted": Together AI serverless list prices, Groq for `groq/` entries,
 *   DeepSeek's own API for deepseek-*. Hosts differ widely: override with `<provider>/<model>` entries.
 */
import type { ModelPrice } from './provider-types.js';

export interface PriceEntry extends ModelPrice {
  /** Who sells it at this price ('openai', 'anthropic', 'google', 'mistral', 'together', 'groq', 'deepseek'). */
  provider: string;
  /** Price of a fine-tuned variant (`ft:<model>:...`), when it differs from the base model. */
  fineTuned?: ModelPrice;
  /** True when the price came from a less certain source or changed recently: check before billing on it. */
  unsure?: boolean;
}

/** When this table was compiled (prices are as of their sources, see the module notes). */
export const PRICE_TABLE_AS_OF = '2026-11-30';

export const PRICE_SOURCES: Readonly<Record<string, string>> = {
  openai: 'https://platform.openai.com/docs/pricing (standard tier); gpt-5.2/5.4/5.5 via third-party copies, 2026',
  anthropic: 'https://docs.anthropic.com/en/docs/about-claude/pricing (cache hits as cachedInput)',
  google: 'https://ai.google.dev/gemini-api/docs/pricing (<= 200k-token prompts)',
  mistral: 'https://mistral.ai/pricing (La Plateforme)',
  together: 'https://www.together.ai/pricing (serverless)',
  groq: 'https://groq.com/pricing',
  deepseek: 'https://api-docs.deepseek.com/quick_start/pricing',
};

const p = (provider: string, input: number, output: number, cachedInput?: number, extra: Partial<PriceEntry> = {}): PriceEntry => ({
  provider,
  input,
  output,
  ...(cachedInput === undefined ? {} : { cachedInput }),
  ...extra,
});
const unsure = { unsure: true } as const;

export const DEFAULT_PRICES: Readonly<Record<string, PriceEntry>> = {
  // OpenAI: GPT-5 family
  'gpt-5.5': p('openai', 5, 30, 0.5, unsure),
  'gpt-5.4': p('openai', 2.5, 15, 0.25, unsure),
  'gpt-5.4-mini': p('openai', 0.75, 4.5, 0.075, unsure),
  'gpt-5.4-nano': p('openai', 0.2, 1.25, 0.02, unsure),
  'gpt-5.2': p('openai', 1.75, 14, 0.175, unsure),
  'gpt-5.1': p('openai', 1.25, 10, 0.125),
  'gpt-5': p('openai', 1.25, 10, 0.125),
  'gpt-5-chat-latest': p('openai', 1.25, 10, 0.125),
  'gpt-5-mini': p('openai', 0.25, 2, 0.025),
  'gpt-5-nano': p('openai', 0.05, 0.4, 0.005),
  'gpt-5-pro': p('openai', 15, 120),
  // OpenAI: GPT-4.1 / GPT-4o
  'gpt-4.1': p('openai', 2, 8, 0.5, { fineTuned: { input: 3, output: 12, cachedInput: 0.75 } }),
  'gpt-4.1-mini': p('openai', 0.4, 1.6, 0.1, { fineTuned: { input: 0.8, output: 3.2, cachedInput: 0.2 } }),
  'gpt-4.1-nano': p('openai', 0.1, 0.4, 0.025, { fineTuned: { input: 0.2, output: 0.8, cachedInput: 0.05 } }),
  'gpt-4o': p('openai', 2.5, 10, 1.25, { fineTuned: { input: 3.75, output: 15, cachedInput: 1.875 } }),
  'gpt-4o-2024-05-13': p('openai', 5, 15),
  'chatgpt-4o-latest': p('openai', 5, 15),
  'gpt-4o-mini': p('openai', 0.15, 0.6, 0.075, { fineTuned: { input: 0.3, output: 1.2, cachedInput: 0.15 } }),
  // OpenAI: reasoning models
  o1: p('openai', 15, 60, 7.5),
  'o1-mini': p('openai', 1.1, 4.4, 0.55),
  'o1-pro': p('openai', 150, 600),
  o3: p('openai', 2, 8, 0.5),
  'o3-pro': p('openai', 20, 80),
  'o3-mini': p('openai', 1.1, 4.4, 0.55),
  'o4-mini': p('openai', 1.1, 4.4, 0.275),
  // OpenAI: legacy
  'gpt-4-turbo': p('openai', 10, 30),
  'gpt-4': p('openai', 30, 60),
  'gpt-4-32k': p('openai', 60, 120),
  'gpt-3.5-turbo': p('openai', 0.5, 1.5, undefined, { fineTuned: { input: 3, output: 6 } }),
  // OpenAI: embeddings (no output tokens)
  'text-embedding-3-small': p('openai', 0.02, 0),
  'text-embedding-3-large': p('openai', 0.13, 0),
  'text-embedding-ada-002': p('openai', 0.1, 0),

  // Anthropic (cachedInput = cache hits)
  'claude-opus-4-6': p('anthropic', 5, 25, 0.5, unsure),
  'claude-opus-4-5': p('anthropic', 5, 25, 0.5),
  'claude-opus-4-1': p('anthropic', 15, 75, 1.5),
  'claude-opus-4': p('anthropic', 15, 75, 1.5),
  'claude-sonnet-4-6': p('anthropic', 3, 15, 0.3, unsure),
  'claude-sonnet-4-5': p('anthropic', 3, 15, 0.3),
  'claude-sonnet-4': p('anthropic', 3, 15, 0.3),
  'claude-3-7-sonnet': p('anthropic', 3, 15, 0.3),
  'claude-3-5-sonnet': p('anthropic', 3, 15, 0.3),
  'claude-haiku-4-5': p('anthropic', 1, 5, 0.1),
  'claude-3-5-haiku': p('anthropic', 0.8, 4, 0.08),
  'claude-3-haiku': p('anthropic', 0.25, 1.25, 0.03),
  'claude-3-opus': p('anthropic', 15, 75, 1.5),

  // Google Gemini API (<= 200k-token prompts for 2.5 / 3 Pro, <= 128k for 1.5)
  'gemini-3-pro': p('google', 2, 12, 0.2, unsure),
  'gemini-3-flash': p('google', 0.5, 3, 0.05, unsure),
  'gemini-2.5-pro': p('google', 1.25, 10, 0.125, unsure),
  'gemini-2.5-flash': p('google', 0.3, 2.5, 0.03, unsure),
  'gemini-2.5-flash-lite': p('google', 0.1, 0.4, 0.01, unsure),
  'gemini-2.0-flash': p('google', 0.1, 0.4, 0.025),
  'gemini-2.0-flash-lite': p('google', 0.075, 0.3),
  'gemini-1.5-pro': p('google', 1.25, 5, 0.3125),
  'gemini-1.5-flash': p('google', 0.075, 0.3, 0.01875),
  'gemini-1.5-flash-8b': p('google', 0.0375, 0.15, 0.01),
  'gemini-embedding-001': p('google', 0.15, 0),

  // Mistral La Plateforme
  'mistral-large-2512': p('mistral', 0.5, 1.5, undefined, unsure), // Mistral Large 3
  'mistral-large': p('mistral', 2, 6), // Mistral Large 2 (2407 / 2411)
  'mistral-medium-3.5': p('mistral', 1.5, 7.5, undefined, unsure),
  'mistral-medium': p('mistral', 0.4, 2, undefined, unsure), // Mistral Medium 3 / 3.1
  'mistral-small': p('mistral', 0.1, 0.3, undefined, unsure),
  'magistral-medium': p('mistral', 2, 5),
  'magistral-small': p('mistral', 0.5, 1.5),
  codestral: p('mistral', 0.3, 0.9),
  'pixtral-large': p('mistral', 2, 6),
  'ministral-8b': p('mistral', 0.1, 0.1),
  'ministral-3b': p('mistral', 0.04, 0.04),
  'open-mistral-nemo': p('mistral', 0.15, 0.15),
  'mistral-embed': p('mistral', 0.1, 0),

  // Open models as typically hosted (Together serverless unless the key names a host)
  'llama-3.3-70b-instruct': p('together', 0.88, 0.88, undefined, unsure),
  'llama-3.1-70b-instruct': p('together', 0.88, 0.88, undefined, unsure),
  'llama-3.1-8b-instruct': p('together', 0.18, 0.18, undefined, unsure),
  'llama-3.1-405b-instruct': p('together', 3.5, 3.5, undefined, unsure),
  'llama-4-maverick': p('together', 0.27, 0.85, undefined, unsure),
  'llama-4-scout': p('together', 0.18, 0.59, undefined, unsure),
  'qwen2.5-72b-instruct': p('together', 1.2, 1.2, undefined, unsure),
  'mixtral-8x7b-instruct': p('together', 0.6, 0.6, undefined, unsure),
  'gpt-oss-120b': p('together', 0.15, 0.6, undefined, unsure),
  'gpt-oss-20b': p('together', 0.05, 0.2, undefined, unsure),
  'groq/llama-3.3-70b-versatile': p('groq', 0.59, 0.79, undefined, unsure),
  'groq/llama-3.1-8b-instant': p('groq', 0.05, 0.08, undefined, unsure),
  'deepseek-chat': p('deepseek', 0.28, 0.42, 0.028, unsure),
  'deepseek-reasoner': p('deepseek', 0.28, 0.42, 0.028, unsure),
  'deepseek-r1': p('together', 3, 7, undefined, unsure),
};

/** Other spellings of the same model (after lower-casing; dates and `-latest` are stripped by rule, not listed). */
export const DEFAULT_ALIASES: Readonly<Record<string, string>> = {
  'gpt-4-turbo-preview': 'gpt-4-turbo',
  'gpt-4-0125-preview': 'gpt-4-turbo',
  'gpt-4-1106-preview': 'gpt-4-turbo',
  'gpt-4-vision-preview': 'gpt-4-turbo',
  'gpt-35-turbo': 'gpt-3.5-turbo', // Azure spelling
  'gpt-35-turbo-16k': 'gpt-3.5-turbo',
  'gpt-3.5-turbo-16k': 'gpt-3.5-turbo',
  'gpt-5.1-chat-latest': 'gpt-5.1',
  'claude-opus-4-0': 'claude-opus-4',
  'claude-sonnet-4-0': 'claude-sonnet-4',
  'claude-3-5-sonnet-v2': 'claude-3-5-sonnet',
  'claude-3-sonnet': 'claude-3-7-sonnet',
  'gemini-3-pro-preview': 'gemini-3-pro',
  'gemini-3-flash-preview': 'gemini-3-flash',
  'mistral-large-latest': 'mistral-large-2512',
  'mistral-large-3': 'mistral-large-2512',
  'mistral-medium-latest': 'mistral-medium-3.5',
  'mistral-small-latest': 'mistral-small',
  'mistral-nemo': 'open-mistral-nemo',
  'ministral-8b-latest': 'ministral-8b',
  'codestral-latest': 'codestral',
  'llama-3.3-70b-instruct-turbo': 'llama-3.3-70b-instruct',
  'meta-llama-3.3-70b-instruct': 'llama-3.3-70b-instruct',
  'llama-3.1-70b-instruct-turbo': 'llama-3.1-70b-instruct',
  'meta-llama-3.1-70b-instruct-turbo': 'llama-3.1-70b-instruct',
  'llama-3.1-8b-instruct-turbo': 'llama-3.1-8b-instruct',
  'meta-llama-3.1-8b-instruct-turbo': 'llama-3.1-8b-instruct',
  'meta-llama-3.1-405b-instruct-turbo': 'llama-3.1-405b-instruct',
  'llama-4-maverick-17b-128e-instruct-fp8': 'llama-4-maverick',
  'llama-4-maverick-17b-128e-instruct': 'llama-4-maverick',
  'llama-4-scout-17b-16e-instruct': 'llama-4-scout',
  'llama-3.3-70b-versatile': 'groq/llama-3.3-70b-versatile',
  'llama-3.1-8b-instant': 'groq/llama-3.1-8b-instant',
  'qwen2.5-72b-instruct-turbo': 'qwen2.5-72b-instruct',
  'mixtral-8x7b-instruct-v0.1': 'mixtral-8x7b-instruct',
  'deepseek-v3': 'deepseek-chat',
};

/**
 * Equivalence groups for recommendations: models in a group can usually stand in for one another on
 * typical workloads (check quality on yours). A model's cheaper equivalents are the other members of its
 * groups with a lower blended price. Groups are tiers, so a flagship lists its cheaper flagships and the
 * strong small models, but a small model is never told to "save" by moving to a weaker one in another tier.
 */
export const DEFAULT_GROUPS: Readonly<Record<string, readonly string[]>> = {
  'openai-flagship': ['gpt-4', 'gpt-4-32k', 'gpt-4-turbo', 'gpt-4o', 'gpt-4o-2024-05-13', 'chatgpt-4o-latest', 'gpt-4.1', 'gpt-5', 'gpt-5.1', 'gpt-5.2', 'gpt-5.4', 'gpt-5.5'],
  'openai-general': ['gpt-4o', 'gpt-4o-2024-05-13', 'chatgpt-4o-latest', 'gpt-4-turbo', 'gpt-4o-mini', 'gpt-4.1-mini', 'gpt-5-mini', 'gpt-5.4-mini'],
  'openai-small': ['gpt-3.5-turbo', 'gpt-4o-mini', 'gpt-4.1-mini', 'gpt-4.1-nano', 'gpt-5-mini', 'gpt-5-nano', 'gpt-5.4-nano'],
  'openai-reasoning': ['o1', 'o1-pro', 'o3', 'o3-pro', 'o1-mini', 'o3-mini', 'o4-mini', 'gpt-5', 'gpt-5-mini', 'gpt-5-pro'],
  'openai-embedding': ['text-embedding-ada-002', 'text-embedding-3-small'],
  'openai-embedding-large': ['text-embedding-3-large', 'text-embedding-3-small'],
  'anthropic-large': ['claude-3-opus', 'claude-opus-4', 'claude-opus-4-1', 'claude-opus-4-5', 'claude-opus-4-6', 'claude-sonnet-4-5', 'claude-sonnet-4-6'],
  'anthropic-mid': ['claude-3-5-sonnet', 'claude-3-7-sonnet', 'claude-sonnet-4', 'claude-sonnet-4-5', 'claude-sonnet-4-6', 'claude-haiku-4-5'],
  'anthropic-small': ['claude-3-haiku', 'claude-3-5-haiku', 'claude-haiku-4-5'],
  'google-pro': ['gemini-1.5-pro', 'gemini-2.5-pro', 'gemini-3-pro', 'gemini-2.5-flash', 'gemini-3-flash'],
  'google-flash': ['gemini-1.5-flash', 'gemini-1.5-flash-8b', 'gemini-2.0-flash', 'gemini-2.0-flash-lite', 'gemini-2.5-flash', 'gemini-2.5-flash-lite'],
  'mistral-large': ['mistral-large', 'pixtral-large', 'mistral-large-2512', 'mistral-medium', 'mistral-medium-3.5'],
  'mistral-small': ['mistral-small', 'open-mistral-nemo', 'ministral-8b', 'mixtral-8x7b-instruct'],
  'open-large': ['llama-3.1-405b-instruct', 'llama-3.3-70b-instruct', 'llama-3.1-70b-instruct', 'llama-4-maverick', 'qwen2.5-72b-instruct', 'deepseek-chat', 'gpt-oss-120b', 'groq/llama-3.3-70b-versatile'],
  'open-small': ['llama-3.1-8b-instruct', 'groq/llama-3.1-8b-instant', 'llama-4-scout', 'gpt-oss-20b'],
};
