/** Turns a scenario's mix into concrete requests: a weighted, seeded draw of entry, user and prompt. */
import { seededRandom } from '@amas/core';
import type { MixEntry, Scenario } from './scenario.js';

export interface PlannedRequest {
  /** Index into scenario.mix. */
  entry: number;
  user: string;
  method: 'POST';
  path: string;
  headers: Record<string, string>;
  body: string;
}

/** The user names for a run: `names` (first `count` of them), else `<prefix>-1..count`. */
export function userNames(users: Scenario['users'], override?: number): string[] {
  const count = override ?? users.count ?? users.names?.length ?? 1;
  if (users.names && count <= users.names.length) return users.names.slice(0, count);
  const names = [...(users.names ?? [])];
  for (let i = names.length + 1; names.length < count; i++) names.push(`${users.prefix}-${i}`);
  return names;
}

function pick<T>(items: readonly T[], rnd: () => number): T {
  return items[Math.min(items.length - 1, Math.floor(rnd() * items.length))]!;
}

/** A prompt entry is one text, or paraphrases of one question: draw the question, then the wording. */
function drawPrompt(prompts: readonly (string | string[])[], rnd: () => number): string {
  const p = pick(prompts, rnd);
  return typeof p === 'string' ? p : pick(p, rnd);
}

export function requestBody(entry: MixEntry, rnd: () => number): Record<string, unknown> {
  if (entry.type === 'embeddings') {
    const inputs = Array.from({ length: entry.batch }, () => drawPrompt(entry.inputs, rnd));
    return { model: entry.model, input: entry.batch === 1 ? inputs[0] : inputs };
  }
  const messages: Array<{ role: string; content: string }> = [];
  if (entry.system !== undefined) messages.push({ role: 'system', content: entry.system });
  messages.push({ role: 'user', content: drawPrompt(entry.prompts, rnd) });
  const body: Record<string, unknown> = { model: entry.model, messages };
  if (entry.temperature !== undefined) body.temperature = entry.temperature;
  if (entry.maxTokens !== undefined) body.max_tokens = entry.maxTokens;
  if (entry.type === 'stream') {
    body.stream = true;
    if (entry.includeUsage) body.stream_options = { include_usage: true };
  }
  return body;
}

/**
 * A seeded generator of requests. Same seed and same call order = same requests, so two runs of a scenario
 * send the same traffic (modulo how many requests fit in the time).
 */
export function createRequestMix(scenario: Scenario, options: { users?: number; seed?: number; basePath?: string } = {}) {
  const rnd = seededRandom(options.seed ?? scenario.seed);
  const users = userNames(scenario.users, options.users);
  const total = scenario.mix.reduce((sum, e) => sum + e.weight, 0);
  const cumulative: number[] = [];
  let acc = 0;
  for (const e of scenario.mix) cumulative.push((acc += e.weight / total));
  const prefix = (options.basePath ?? '').replace(/\/+$/, '');
  let userTurn = 0;

  return {
    users,
    next(): PlannedRequest {
      const r = rnd();
      let entryIndex = cumulative.findIndex((c) => r < c);
      if (entryIndex === -1) entryIndex = scenario.mix.length - 1;
      const entry = scenario.mix[entryIndex]!;
      const user = pick(users, rnd);
      const headers: Record<string, string> = { 'content-type': 'application/json', accept: entry.type === 'stream' ? 'text/event-stream' : 'application/json' };
      const style = scenario.users.header === 'mixed' ? (userTurn++ % 2 === 0 ? 'authorization' : 'x-user') : scenario.users.header;
      if (style === 'authorization') headers.authorization = `Bearer ${user}`;
      else headers['x-user'] = user;
      if (entry.headers) Object.assign(headers, entry.headers);
      return { entry: entryIndex, user, method: 'POST', path: prefix + entry.path, headers, body: JSON.stringify(requestBody(entry, rnd)) };
    },
  };
}
