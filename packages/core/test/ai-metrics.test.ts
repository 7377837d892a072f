import { spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { AiService, type AiOptions } from '../src/ai/ai-service.js';
import { UpstreamError, type EndpointConfig, type ProviderTransport, type UpstreamRequest, type UpstreamResponse, type UpstreamStream } from '../src/ai/provider-types.js';
import { createAmas } from '../src/amas.js';
import { BudgetExceededError } from '../src/errors.js';
import { silentLogger } from '../src/logger.js';
import { AiMetrics } from '../src/metrics/ai-metrics.js';
import { settle } from './helpers.js';

// ---- the exposition text, parsed ------------------------------------------------------------------------------

interface Exposition {
  /** `name{a="x",b="y"}` (labels sorted) -> value. */
  samples: Map<string, number>;
  help: Map<string, string>;
  types: Map<string, string>;
}

function seriesKey(name: string, labels: Record<string, string>): string {
  const inner = Object.keys(labels)
    .sort()
    .map((k) => `${k}="${labels[k]}"`)
    .join(',');
  return inner ? `${name}{${inner}}` : name;
}

function parseExposition(text: string): Exposition {
  const out: Exposition = { samples: new Map(), help: new Map(), types: new Map() };
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (meta) {
      (meta[1] === 'HELP' ? out.help : out.types).set(meta[2]!, meta[3]!);
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!sample) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    const body = sample[2] ?? '';
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/gy;
    let consumed = 0;
    for (let m = re.exec(body); m !== null; m = re.exec(body)) {
      labels[m[1]!] = m[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      consumed = re.lastIndex;
    }
    if (consumed !== body.length) throw new Error(`bad labels: ${line}`);
    const key = seriesKey(sample[1]!, labels);
    if (out.samples.has(key)) throw new Error(`series exposed twice: ${key}`);
    out.samples.set(key, Number(sample[3]));
  }
  return out;
}

async function scrape(registry: Registry): Promise<{ text: string; exp: Exposition; value: (name: string, labels?: Record<string, string>) => number | undefined }> {
  const text = await registry.metrics();
  const exp = parseExposition(text);
  return { text, exp, value: (name, labels = {}) => exp.samples.get(seriesKey(name, labels)) };
}

/** Sum of every series of `name` whose labels include `match`. */
function sumOf(exp: Exposition, name: string, match: Record<string, string> = {}): number {
  let sum = 0;
  for (const [key, v] of exp.samples) {
    if (key !== name && !key.startsWith(`${name}{`)) continue;
    if (Object.entries(match).every(([k, val]) => key.includes(`${k}="${val}"`))) sum += v;
  }
  return sum;
}

// ---- a fake provider -------------------------------------------------------------------------------------------

type Reply = { status: number; latencyMs?: number } | 'hold';

/** Answers by endpoint id: OpenAI-shaped completions with usage (10 in, 4 of them cached, 5 out). */
class FakeTransport implements ProviderTransport {
  readonly replies = new Map<string, Reply>();
  readonly held: Array<() => void> = [];
  calls = 0;

  async request(endpoint: EndpointConfig, request: UpstreamRequest): Promise<UpstreamResponse> {
    this.calls++;
    const reply = this.replies.get(endpoint.id!) ?? { status: 200 };
    if (reply === 'hold') await new Promise<void>((resolve) => this.held.push(resolve));
    const status = reply === 'hold' ? 200 : reply.status;
    if (status >= 400) throw new UpstreamError(`HTTP ${status}`, { status, endpoint: endpoint.id });
    const body = {
      model: (request.body as { model?: string }).model,
      choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'hello' } }],
      usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15, prompt_tokens_details: { cached_tokens: 4 } },
    };
    return { status, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify(body)), latencyMs: reply === 'hold' ? 250 : (reply.latencyMs ?? 250) };
  }

  stream(): Promise<UpstreamStream> {
    return Promise.reject(new Error('not used'));
  }
}

// Ids that must never show up in the exposition.
const SECRETS = ['alice-secret-user-77', 'team-secret-blue', 'budget-user-x9', 'alert-user-q7', 'sk-test-SECRET-key', 'user-typed-model-zzz'];

const chatBody = (model: string, extra: Record<string, unknown> = {}) => ({ model, messages: [{ role: 'user', content: 'hi' }], ...extra });

const services: AiService[] = [];
const servers: Server[] = [];
afterEach(async () => {
  for (const s of services.splice(0)) await s.close();
  for (const s of servers.splice(0)) await new Promise<void>((resolve) => s.close(() => resolve()));
});

function fakeService(transport: FakeTransport): AiService {
  const service = new AiService(
    {
      models: {
        'gpt-4o-mini': { endpoints: [{ id: 'mini-a', url: 'http://mini.test', apiKey: 'sk-test-SECRET-key' }] },
        flaky: {
          endpoints: [
            { id: 'flaky-1', url: 'http://flaky1.test' },
            { id: 'flaky-2', url: 'http://flaky2.test' },
          ],
          retry: { maxAttempts: 2, baseDelayMs: 0 },
          outlier: { consecutiveErrors: 1 },
        },
        broken: { endpoints: [{ id: 'broken-1', url: 'http://broken.test' }], retry: { maxAttempts: 1 } },
        dead: { endpoints: [{ id: 'dead-1', url: 'http://dead.test' }], retry: { maxAttempts: 1 }, fallbacks: ['gpt-4o-mini'] },
      },
      budgets: { users: { 'budget-user-x9': { day: 0.000001 }, 'alert-user-q7': { day: 0.001 } } },
      alerts: { at: [0.001, 0.5] },
    } satisfies AiOptions,
    { transport, logger: silentLogger },
  );
  services.push(service);
  return service;
}

describe('AiMetrics', () => {
  it('exports endpoint, model, fallback, retry, token, cost and budget series from a real AiService', async () => {
    const transport = new FakeTransport();
    transport.replies.set('flaky-1', { status: 500 });
    transport.replies.set('broken-1', { status: 500 });
    transport.replies.set('dead-1', { status: 503 });
    const service = fakeService(transport);
    const registry = new Registry();
    const metrics = new AiMetrics(registry, 'amas_');
    metrics.watch(service);
    metrics.watch(service); // a no-op: nothing is counted twice

    // Before any call: every configured endpoint is exported, up, with nothing in flight.
    let s = await scrape(registry);
    expect(s.value('amas_ai_endpoint_up', { model: 'gpt-4o-mini', endpoint: 'mini-a' })).toBe(1);
    expect(s.value('amas_ai_endpoint_outstanding', { model: 'flaky', endpoint: 'flaky-2' })).toBe(0);
    expect(s.value('amas_ai_requests_total', { model: 'dead', endpoint: 'dead-1', outcome: 'error' })).toBe(0);
    expect(s.value('amas_ai_retries_total', { model: 'flaky' })).toBe(0);
    expect(s.value('amas_ai_tokens_total', { provider: 'openai', model: 'gpt-4o-mini', type: 'output' })).toBe(0);
    expect(s.value('amas_ai_budget_rejections_total', { scope: 'team' })).toBe(0);
    expect(s.value('amas_ai_endpoint_latency_ewma_seconds', { model: 'gpt-4o-mini', endpoint: 'mini-a' })).toBeUndefined();

    const user = { user: 'alice-secret-user-77', team: 'team-secret-blue' };
    const costs: number[] = [];
    // 1. a success
    costs.push((await service.chat(chatBody('gpt-4o-mini'), user)).cost);
    // 2. a 500 on one flaky endpoint, retried on the other (and ejected: consecutiveErrors 1), then a success
    const flaky = [await service.chat(chatBody('flaky'), user), await service.chat(chatBody('flaky'), user)];
    expect(flaky.map((r) => r.endpoint)).toEqual(['flaky-2', 'flaky-2']);
    // 3. a 500 the caller gets (no retry, no fallback)
    expect((await settle(service.chat(chatBody('broken'), user))).error).toBeInstanceOf(UpstreamError);
    // 4. a 503 that falls back to gpt-4o-mini
    const fellBack = await service.chat(chatBody('dead'), user);
    expect(fellBack.model).toBe('gpt-4o-mini');
    costs.push(fellBack.cost);
    // 5. a budget refusal (before any upstream call)
    const before = transport.calls;
    expect((await settle(service.chat(chatBody('gpt-4o-mini'), { user: 'budget-user-x9' }))).error).toBeInstanceOf(BudgetExceededError);
    expect(transport.calls).toBe(before);
    // 6. a call whose spend crosses 0.1% of its user's budget: one alert
    costs.push((await service.chat(chatBody('gpt-4o-mini', { max_tokens: 5 }), { user: 'alert-user-q7' })).cost);
    // 7. a model nobody configured: its name must not become a label
    expect((await settle(service.chat(chatBody('user-typed-model-zzz'), user))).error).toBeDefined();

    // 8. one call in flight: outstanding is 1 while it waits
    transport.replies.set('mini-a', 'hold');
    const pending = service.chat(chatBody('gpt-4o-mini'), user);
    await expect.poll(() => transport.held.length).toBe(1);
    s = await scrape(registry);
    expect(s.value('amas_ai_endpoint_outstanding', { model: 'gpt-4o-mini', endpoint: 'mini-a' })).toBe(1);
    transport.held[0]!();
    costs.push((await pending).cost);

    s = await scrape(registry);
    const { value, exp, text } = s;
    // Attempts per endpoint
    expect(value('amas_ai_requests_total', { model: 'gpt-4o-mini', endpoint: 'mini-a', outcome: 'success' })).toBe(4);
    expect(value('amas_ai_requests_total', { model: 'gpt-4o-mini', endpoint: 'mini-a', outcome: 'error' })).toBe(0);
    expect(value('amas_ai_requests_total', { model: 'flaky', endpoint: 'flaky-1', outcome: 'error' })).toBe(1);
    expect(value('amas_ai_requests_total', { model: 'flaky', endpoint: 'flaky-2', outcome: 'success' })).toBe(2);
    expect(value('amas_ai_requests_total', { model: 'broken', endpoint: 'broken-1', outcome: 'error' })).toBe(1);
    expect(value('amas_ai_requests_total', { model: 'dead', endpoint: 'dead-1', outcome: 'error' })).toBe(1);
    expect(value('amas_ai_endpoint_outstanding', { model: 'gpt-4o-mini', endpoint: 'mini-a' })).toBe(0);
    // Health: flaky-1 was ejected once and is out
    expect(value('amas_ai_endpoint_ejections_total', { model: 'flaky', endpoint: 'flaky-1' })).toBe(1);
    expect(value('amas_ai_endpoint_up', { model: 'flaky', endpoint: 'flaky-1' })).toBe(0);
    expect(value('amas_ai_endpoint_up', { model: 'flaky', endpoint: 'flaky-2' })).toBe(1);
    expect(value('amas_ai_endpoint_ejections_total', { model: 'flaky', endpoint: 'flaky-2' })).toBe(0);
    // Latency: every mini-a answer took 250 ms
    expect(value('amas_ai_endpoint_latency_ewma_seconds', { model: 'gpt-4o-mini', endpoint: 'mini-a' })).toBeCloseTo(0.25, 9);
    // Routed calls, fallbacks, retries
    expect(value('amas_ai_model_requests_total', { model: 'gpt-4o-mini', outcome: 'success' })).toBe(4);
    expect(value('amas_ai_model_requests_total', { model: 'dead', outcome: 'error' })).toBe(1);
    expect(value('amas_ai_model_requests_total', { model: 'broken', outcome: 'error' })).toBe(1);
    expect(value('amas_ai_model_requests_total', { model: 'flaky', outcome: 'success' })).toBe(2);
    expect(value('amas_ai_fallbacks_total', { from: 'dead', to: 'gpt-4o-mini' })).toBe(1);
    expect(sumOf(exp, 'amas_ai_fallbacks_total')).toBe(1);
    expect(value('amas_ai_retries_total', { model: 'flaky' })).toBe(1);
    expect(value('amas_ai_retries_total', { model: 'broken' })).toBe(0);
    // Every upstream call by outcome, and its duration (4 gpt-4o-mini answers of 250 ms each on mini-a)
    expect(value('amas_ai_attempts_total', { model: 'gpt-4o-mini', endpoint: 'mini-a', outcome: 'success' })).toBe(4);
    expect(value('amas_ai_attempts_total', { model: 'flaky', endpoint: 'flaky-1', outcome: 'server_error' })).toBe(1);
    expect(value('amas_ai_attempts_total', { model: 'broken', endpoint: 'broken-1', outcome: 'server_error' })).toBe(1);
    expect(value('amas_ai_request_duration_seconds_count', { model: 'gpt-4o-mini', endpoint: 'mini-a' })).toBe(4);
    expect(value('amas_ai_request_duration_seconds_bucket', { model: 'gpt-4o-mini', endpoint: 'mini-a', le: '0.1' })).toBe(0);
    expect(value('amas_ai_request_duration_seconds_bucket', { model: 'gpt-4o-mini', endpoint: 'mini-a', le: '0.25' })).toBe(4);
    // Tokens: 4 billed gpt-4o-mini calls of 10 in (4 cached) and 5 out; 2 flaky ones
    expect(value('amas_ai_tokens_total', { provider: 'openai', model: 'gpt-4o-mini', type: 'input' })).toBe(24);
    expect(value('amas_ai_tokens_total', { provider: 'openai', model: 'gpt-4o-mini', type: 'cached' })).toBe(16);
    expect(value('amas_ai_tokens_total', { provider: 'openai', model: 'gpt-4o-mini', type: 'output' })).toBe(20);
    expect(value('amas_ai_tokens_total', { provider: 'openai', model: 'flaky', type: 'output' })).toBe(10);
    // Cost: what the calls returned (flaky has no price: counted at $0, and as unpriced)
    const spent = costs.reduce((a, b) => a + b, 0);
    expect(spent).toBeGreaterThan(0);
    expect(value('amas_ai_cost_usd_total', { provider: 'openai', model: 'gpt-4o-mini' })).toBeCloseTo(spent, 12);
    expect(value('amas_ai_cost_usd_total', { provider: 'openai', model: 'flaky' })).toBe(0);
    expect(value('amas_ai_unpriced_requests_total')).toBeGreaterThanOrEqual(2);
    // Budgets
    expect(value('amas_ai_budget_rejections_total', { scope: 'user' })).toBe(1);
    expect(value('amas_ai_budget_rejections_total', { scope: 'team' })).toBe(0);
    expect(value('amas_ai_budget_alerts_total', { share: '0.001' })).toBe(1);
    expect(value('amas_ai_budget_alerts_total', { share: '0.5' })).toBeUndefined();
    expect(value('amas_ai_budget_store_failures_total')).toBe(0);
    // Usage records (memory store)
    expect(value('amas_ai_usage_records_pending')).toBe(0);
    expect(value('amas_ai_usage_records_dropped_total')).toBe(0);
    expect(value('amas_ai_usage_records_lost_total')).toBe(0);
    // A fake transport has no pools
    expect(sumOf(exp, 'amas_ai_pool_connections')).toBe(0);

    // Bounded labels: no user, team, key or unconfigured model; failed calls' provider "unknown" is not a label
    for (const secret of SECRETS) expect(text, secret).not.toContain(secret);
    expect(text).not.toContain('provider="unknown"');
    expect(text).not.toContain('"other"');
    const endpointIds = new Set([...exp.samples.keys()].flatMap((k) => [...k.matchAll(/endpoint="([^"]*)"/g)].map((m) => m[1])));
    expect([...endpointIds].sort()).toEqual(['broken-1', 'dead-1', 'flaky-1', 'flaky-2', 'mini-a']);
    const models = new Set([...exp.samples.keys()].flatMap((k) => [...k.matchAll(/(?:model|from|to)="([^"]*)"/g)].map((m) => m[1])));
    expect([...models].sort()).toEqual(['broken', 'dead', 'flaky', 'gpt-4o-mini']);

    lint(exp);
  });

  it('exports the provider client pools from a real undici client, without credentials', async () => {
    const server = createServer((req, res) => {
      let raw = '';
      req.on('data', (c: Buffer) => (raw += c.toString()));
      req.on('end', () => {
        const body = JSON.parse(raw) as { model: string };
        res.setHeader('content-type', 'application/json');
        if (body.model === 'broken') {
          res.statusCode = 500;
          res.end(JSON.stringify({ error: { message: 'boom' } }));
          return;
        }
        res.end(JSON.stringify({ choices: [{ message: { content: 'ok' }, finish_reason: 'stop' }], usage: { prompt_tokens: 3, completion_tokens: 2 } }));
      });
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const url = `http://svc:pw-SECRET@127.0.0.1:${port}`;
    const service = new AiService(
      {
        models: {
          'gpt-4o-mini': { endpoints: [{ url, apiKey: 'sk-live-SECRET' }] },
          broken: { endpoints: [{ url, apiKey: 'sk-live-SECRET' }], retry: { maxAttempts: 1 } },
        },
      },
      { logger: silentLogger },
    );
    services.push(service);
    const registry = new Registry();
    new AiMetrics(registry, 'amas_').watch(service);

    await service.chat(chatBody('gpt-4o-mini'), { user: 'alice-secret-user-77' });
    expect((await settle(service.chat(chatBody('broken'), { user: 'alice-secret-user-77' }))).error).toBeInstanceOf(UpstreamError);

    const { value, text, exp } = await scrape(registry);
    const origin = `http://127.0.0.1:${port}`;
    expect(value('amas_ai_pool_connections', { origin, state: 'connected' })).toBeGreaterThanOrEqual(1);
    expect(value('amas_ai_pool_connections', { origin, state: 'running' })).toBe(0);
    expect(value('amas_ai_pool_connections', { origin, state: 'pending' })).toBe(0);
    expect(value('amas_ai_pool_connections', { origin, state: 'free' })).toBeGreaterThanOrEqual(0);
    expect(value('amas_ai_pool_requests_total', { origin, outcome: 'success' })).toBe(1);
    expect(value('amas_ai_pool_requests_total', { origin, outcome: 'http_error' })).toBe(1);
    expect(value('amas_ai_pool_requests_total', { origin, outcome: 'network' })).toBe(0);
    const endpoint = `openai:${origin}`;
    expect(value('amas_ai_requests_total', { model: 'gpt-4o-mini', endpoint, outcome: 'success' })).toBe(1);
    expect(value('amas_ai_requests_total', { model: 'broken', endpoint, outcome: 'error' })).toBe(1);
    expect(value('amas_ai_tokens_total', { provider: 'openai', model: 'gpt-4o-mini', type: 'input' })).toBe(3);
    for (const secret of ['pw-SECRET', 'sk-live-SECRET', 'svc:', 'alice-secret-user-77']) expect(text, secret).not.toContain(secret);
    lint(exp);
  });

  it('unwatch and unregister detach from the service and remove every series', async () => {
    const transport = new FakeTransport();
    const service = fakeService(transport);
    const registry = new Registry();
    const metrics = new AiMetrics(registry, 'svc_');
    metrics.watch(service);
    await service.chat(chatBody('gpt-4o-mini'), { user: 'u1' });
    let s = await scrape(registry);
    expect(s.value('svc_ai_tokens_total', { provider: 'openai', model: 'gpt-4o-mini', type: 'output' })).toBe(5);

    metrics.unwatch(service);
    await service.chat(chatBody('gpt-4o-mini'), { user: 'u1' });
    s = await scrape(registry);
    expect(s.value('svc_ai_tokens_total', { provider: 'openai', model: 'gpt-4o-mini', type: 'output' })).toBe(5); // not counted any more
    expect(s.value('svc_ai_endpoint_up', { model: 'gpt-4o-mini', endpoint: 'mini-a' })).toBeUndefined(); // not read any more

    metrics.unregister();
    expect(await registry.metrics()).not.toContain('svc_ai_');
    // The names are free again: a new AiMetrics registers on the same registry.
    new AiMetrics(registry, 'svc_').watch(service);
    expect(await registry.metrics()).toContain('svc_ai_endpoint_up{model="gpt-4o-mini",endpoint="mini-a"} 1');
  });

  it('the engine exports its AI layer (buildAi watches it) and removes it from a registry it was given at close', async () => {
    const registry = new Registry();
    const amas = createAmas({
      metrics: { registry, prefix: 'eng_' },
      logger: silentLogger,
      ai: { models: { 'gpt-4o-mini': { endpoints: [{ id: 'primary', url: 'http://127.0.0.1:9', apiKey: 'sk-engine-SECRET' }] } } },
    } as Parameters<typeof createAmas>[0]);
    const { value, text } = await scrape(registry);
    expect(value('eng_ai_endpoint_up', { model: 'gpt-4o-mini', endpoint: 'primary' })).toBe(1);
    expect(value('eng_ai_endpoint_outstanding', { model: 'gpt-4o-mini', endpoint: 'primary' })).toBe(0);
    expect(value('eng_ai_usage_records_pending')).toBe(0);
    expect(text).not.toContain('sk-engine-SECRET');
    await amas.close();
    expect(await registry.metrics()).not.toContain('eng_ai_');
  });

  const promtool = spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0;
  it.skipIf(!promtool)(
    promtool ? 'promtool check metrics accepts the exposition' : 'promtool check metrics (SKIPPED: promtool is not on PATH; the Debian package `prometheus` ships it)',
    async () => {
      const transport = new FakeTransport();
      transport.replies.set('dead-1', { status: 503 });
      const service = fakeService(transport);
      const registry = new Registry();
      new AiMetrics(registry, 'amas_').watch(service);
      await service.chat(chatBody('dead'), { user: 'alice-secret-user-77' });
      const checked = spawnSync('promtool', ['check', 'metrics'], { input: await registry.metrics(), encoding: 'utf8' });
      expect(`${checked.stdout}${checked.stderr}`.trim()).toBe('');
      expect(checked.status).toBe(0);
    },
  );
});

/** The parts of `promtool check metrics` we can check without it: HELP and TYPE on every family, counter/unit naming. */
function lint(exp: Exposition): void {
  const families = new Set([...exp.samples.keys()].map((k) => k.replace(/\{.*$/, '')));
  for (const name of [...exp.types.keys()].filter((n) => n.includes('_ai_'))) {
    const type = exp.types.get(name);
    expect(exp.help.get(name), `HELP of ${name}`).toBeTruthy();
    if (type === 'counter') expect(name, `${name} is a counter`).toMatch(/_total$/);
    else expect(name, `${name} is a ${type}`).not.toMatch(/_total$/);
    expect(name).toMatch(/^[a-z][a-z0-9_]*$/);
    expect(name).not.toMatch(/_(ms|milliseconds|dollars)(_|$)/);
  }
  for (const family of families) {
    if (!family.includes('_ai_')) continue;
    // A histogram's series carry _bucket, _sum and _count on the family's name.
    const base = family.replace(/_(bucket|sum|count)$/, '');
    const typed = exp.types.has(family) || (base !== family && exp.types.get(base) === 'histogram');
    expect(typed, `TYPE of ${family}`).toBe(true);
  }
}
