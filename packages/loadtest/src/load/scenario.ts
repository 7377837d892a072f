/**
 * Load-test scenarios: the schema (zod, through core's parseOptions so every error names the field, the value
 * and what was expected), loading from .json / .mjs files, and the bundled scenarios.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, extname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';
import { InvalidOptionError, durationSchema, parseOptions, type OptionIssue } from '@amas/core';

/** A usage or configuration problem (bad scenario, unreachable target, bad baseline): the CLI exits with 2. */
export class LoadConfigError extends Error {
  readonly code = 'AMAS_LOAD_CONFIG';
  readonly issues: OptionIssue[];
  constructor(message: string, issues: OptionIssue[] = [], options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LoadConfigError';
    this.issues = issues;
  }
}

const name = z.string().min(1);
const httpUrl = z
  .string()
  .refine((v) => /^https?:\/\/[^/\s]+/i.test(v) && URL.canParse(v), { message: 'an http(s) URL such as http://127.0.0.1:8787' });
const path = z.string().regex(/^\//, { message: "a path starting with '/'" });
const headers = z.record(z.string().min(1), z.string());
/** One prompt, or several paraphrases of the same question (one is drawn per request). */
const prompt = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]);
const weight = z.number().positive().finite().default(1);

const chatFields = {
  name: name.optional(),
  weight,
  path: path.default('/v1/chat/completions'),
  model: name.default('gpt-4o-mini'),
  /** Sent as the first message when set. */
  system: z.string().optional(),
  /** Drawn uniformly; an array entry is a group of paraphrases of one question. */
  prompts: z.array(prompt).min(1),
  /** The example gateway caches only temperature 0 (deterministic) completions. */
  temperature: z.number().min(0).max(2).optional(),
  maxTokens: z.number().int().positive().optional(),
  headers: headers.optional(),
};

const chatEntry = z.strictObject({ type: z.literal('chat'), ...chatFields });
const streamEntry = z.strictObject({
  type: z.literal('stream'),
  ...chatFields,
  /** Adds `stream_options: { include_usage: true }`. */
  includeUsage: z.boolean().default(false),
});
const embeddingsEntry = z.strictObject({
  type: z.literal('embeddings'),
  name: name.optional(),
  weight,
  path: path.default('/v1/embeddings'),
  model: name.default('text-embedding-3-small'),
  inputs: z.array(prompt).min(1),
  /** Inputs per request (drawn independently). */
  batch: z.number().int().positive().max(2048).default(1),
  headers: headers.optional(),
});

const mixEntry = z.discriminatedUnion('type', [chatEntry, streamEntry, embeddingsEntry], {
  error: "an entry with type 'chat', 'stream' or 'embeddings'",
});

const latencyTarget = z.number().positive().finite();
const ratio = z.number().min(0).max(1);

export const scenarioSchema = z
  .strictObject({
    /** Ignored: lets editors find a JSON schema. */
    $schema: z.string().optional(),
    name: name.regex(/^[\w.-]+$/, { message: 'letters, digits, _, . and - only' }).optional(),
    description: z.string().default(''),
    /** Base URL of the service under test; `--target` overrides it. */
    target: httpUrl.optional(),
    /** Base URL of the @amas/loadtest mock provider, for `outage`; `--mock` overrides it. */
    mock: httpUrl.optional(),
    duration: durationSchema.refine((ms) => ms >= 100 && ms <= 24 * 3_600_000, { message: 'a duration between 100ms and 24h' }),
    /** Open-ish model: requests per second across all connections (autocannon overallRate). */
    rate: z.number().int().min(1).max(100_000).optional(),
    /** Closed model: this many connections, each sending its next request as soon as the last one is answered. */
    concurrency: z.number().int().min(1).max(10_000).optional(),
    /** Rate mode only: the most connections used to reach `rate` (default min(rate, 64)). */
    connections: z.number().int().min(1).max(10_000).optional(),
    /** Per-request timeout (at least 2s: autocannon counts whole seconds). */
    timeout: durationSchema
      .refine((ms) => ms >= 2000 && ms <= 600_000, { message: 'a duration between 2s and 10m' })
      .default(10_000),
    /** Requests sent before the measured run (one connection, not counted): loads models, warms caches. */
    warmup: z.strictObject({ requests: z.number().int().min(1).max(10_000) }).optional(),
    users: z
      .strictObject({
        /** Distinct simulated users; `--users` overrides it. Default: names.length, else 1. */
        count: z.number().int().min(1).max(100_000).optional(),
        names: z.array(z.string().regex(/^\S+$/, { message: 'a user name without spaces' })).min(1).optional(),
        /** Generated names are `<prefix>-<n>`. */
        prefix: z.string().regex(/^\S+$/, { message: 'a prefix without spaces' }).default('user'),
        /** How the user is sent: `Authorization: Bearer <user>`, `x-user: <user>`, or alternating between both. */
        header: z.enum(['authorization', 'x-user', 'mixed']).default('authorization'),
      })
      .default({ prefix: 'user', header: 'authorization' }),
    mix: z.array(mixEntry).min(1),
    /** Provider outage injected through the mock's `POST /__mock/outage`, relative to the run's start. */
    outage: z
      .strictObject({
        at: durationSchema,
        for: durationSchema.refine((ms) => ms > 0, { message: 'a duration > 0' }),
        status: z.number().int().min(400).max(599).default(503),
        retryAfterSeconds: z.number().min(0).finite().optional(),
      })
      .optional(),
    slo: z
      .strictObject({
        p50: latencyTarget.optional(),
        p90: latencyTarget.optional(),
        p95: latencyTarget.optional(),
        p99: latencyTarget.optional(),
        maxErrorRate: ratio.optional(),
        /** Share of 2xx responses carrying `X-Cache` whose value is HIT or SEMANTIC-HIT. */
        minCacheHitRate: ratio.optional(),
        minRps: z.number().positive().finite().optional(),
      })
      .default({}),
    /** Relative worsening against `--baseline` that counts as a regression (0.1 = 10%). */
    regressionThreshold: z.number().positive().max(100).default(0.1),
    /** Seed for the request mix (which entry, user and prompt each request gets). */
    seed: z.number().int().min(0).max(2 ** 32 - 1).default(1),
  })
  .superRefine((s, ctx) => {
    if (s.rate === undefined && s.concurrency === undefined) {
      ctx.addIssue({ code: 'custom', path: ['rate'], message: 'either `rate` (requests/s) or `concurrency` (connections)', input: undefined });
    } else if (s.rate !== undefined && s.concurrency !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['concurrency'], message: 'not both `rate` and `concurrency`: pick one', input: s.concurrency });
    }
    if (s.connections !== undefined && s.rate === undefined) {
      ctx.addIssue({ code: 'custom', path: ['connections'], message: '`connections` only with `rate` (use `concurrency` alone)', input: s.connections });
    }
    if (s.outage && s.outage.at >= s.duration) {
      ctx.addIssue({ code: 'custom', path: ['outage', 'at'], message: `a time before the end of the run (${s.duration} ms)`, input: s.outage.at });
    }
    if (s.users.names && s.users.count !== undefined && s.users.count > s.users.names.length) {
      ctx.addIssue({ code: 'custom', path: ['users', 'count'], message: `at most names.length (${s.users.names.length}) when names are given`, input: s.users.count });
    }
  });

/** What a scenario file holds (durations as '30s' strings or milliseconds). */
export type ScenarioInput = z.input<typeof scenarioSchema>;
type Parsed = z.output<typeof scenarioSchema>;
export type MixEntry = Parsed['mix'][number] & { name: string };
/** A validated scenario: durations in milliseconds, defaults filled in, every mix entry named. */
export interface Scenario extends Omit<Parsed, 'mix' | 'name'> {
  name: string;
  mix: MixEntry[];
  /** Where it was loaded from, when it came from a file. */
  source?: string;
}

/** Validates a scenario object; throws LoadConfigError naming each bad field. */
export function validateScenario(input: unknown, source?: string): Scenario {
  const where = source ? `scenario ${source}` : 'scenario';
  let parsed: Parsed;
  try {
    parsed = parseOptions(scenarioSchema, input, where);
  } catch (error) {
    if (error instanceof InvalidOptionError) throw new LoadConfigError(error.message, error.issues);
    throw error;
  }
  const fallbackName = source ? basename(source, extname(source)) : 'scenario';
  const used = new Set<string>();
  const mix = parsed.mix.map((entry, i) => {
    let entryName = entry.name ?? entry.type;
    if (used.has(entryName)) entryName = entry.name ? `${entry.name}#${i}` : `${entry.type}#${i}`;
    used.add(entryName);
    return { ...entry, name: entryName };
  });
  const { name: scenarioName, ...rest } = parsed;
  return { ...rest, name: scenarioName ?? fallbackName, mix, ...(source ? { source } : {}) };
}

/** The folder holding the bundled scenarios (packages/loadtest/scenarios), from src/ or dist/. */
export function bundledScenariosDir(): string {
  const here = fileURLToPath(new URL('.', import.meta.url));
  for (const candidate of [join(here, '..', 'scenarios'), join(here, '..', '..', 'scenarios')]) {
    if (existsSync(candidate)) return candidate;
  }
  return join(here, '..', 'scenarios');
}

const SCENARIO_EXTENSIONS = ['.json', '.mjs', '.js'];

export interface ScenarioListing {
  name: string;
  description: string;
  file: string;
}

/** The bundled scenarios, sorted by name, each with its one-line description. */
export async function listScenarios(dir = bundledScenariosDir()): Promise<ScenarioListing[]> {
  if (!existsSync(dir)) return [];
  const files = readdirSync(dir)
    .filter((f) => SCENARIO_EXTENSIONS.includes(extname(f)))
    .sort();
  const out: ScenarioListing[] = [];
  for (const f of files) {
    const scenario = await loadScenario(join(dir, f));
    out.push({ name: scenario.name, description: scenario.description.split('\n')[0] ?? '', file: join(dir, f) });
  }
  return out;
}

/** Reads a scenario file's raw content: JSON, or an ES module whose default (or `scenario`) export is the object or a function returning it. */
export async function readScenarioFile(file: string): Promise<unknown> {
  const ext = extname(file);
  if (ext === '.json') {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new LoadConfigError(`Cannot read scenario ${file}: ${(error as Error).message}`, [], { cause: error });
    }
    try {
      return JSON.parse(text);
    } catch (error) {
      throw new LoadConfigError(`Scenario ${file} is not valid JSON: ${(error as Error).message}`, [], { cause: error });
    }
  }
  if (ext === '.mjs' || ext === '.js') {
    let mod: Record<string, unknown>;
    try {
      mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
    } catch (error) {
      throw new LoadConfigError(`Cannot load scenario module ${file}: ${(error as Error).message}`, [], { cause: error });
    }
    let value = mod.default ?? mod.scenario;
    if (typeof value === 'function') value = await (value as () => unknown)();
    if (value === undefined) {
      throw new LoadConfigError(`Scenario module ${file} must export the scenario object as its default export (or as \`scenario\`).`);
    }
    return value;
  }
  throw new LoadConfigError(`Scenario ${file}: expected a .json, .mjs or .js file.`);
}

/**
 * Loads a scenario: a path to a .json/.mjs/.js file, or the name of a bundled scenario (`amas-load list`).
 * Throws LoadConfigError when it cannot be found or is invalid.
 */
export async function loadScenario(pathOrName: string, dir = bundledScenariosDir()): Promise<Scenario> {
  const asPath = resolve(pathOrName);
  if (existsSync(asPath) && statSync(asPath).isFile()) {
    return validateScenario(await readScenarioFile(asPath), asPath);
  }
  if (/^[\w.-]+$/.test(pathOrName)) {
    for (const ext of SCENARIO_EXTENSIONS) {
      const file = join(dir, pathOrName + ext);
      if (existsSync(file)) return validateScenario(await readScenarioFile(file), file);
    }
  }
  const bundled = existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => SCENARIO_EXTENSIONS.includes(extname(f)))
        .map((f) => basename(f, extname(f)))
        .sort()
    : [];
  throw new LoadConfigError(
    `No scenario file or bundled scenario named ${JSON.stringify(pathOrName)}.` +
      (bundled.length ? ` Bundled scenarios: ${bundled.join(', ')} (see \`amas-load list\`).` : ''),
  );
}
