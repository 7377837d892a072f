import { afterEach, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { InvalidOptionError } from '@amas/core';
import { startMockProvider, type MockProvider, type MockProviderOptions } from '@amas/loadtest';
// @ts-expect-error plain .mjs example without type declarations
import { breakerName, createGateway } from '../gateway.mjs';

const demoPath = fileURLToPath(new URL('../demo.mjs', import.meta.url));
const silent = { warn() {}, error() {} };
const chat = (content: string, extra: Record<string, unknown> = {}) => ({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }], ...extra });

interface Check {
  name: string;
  pass: boolean;
  detail: string;
}

describe('demo.mjs --json (real child process, built packages)', () => {
  it('runs the scripted scenario, every check passes and the numbers add up', async () => {
    const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = execFile(process.execPath, [demoPath, '--json'], { timeout: 25_000 }, (error, stdout, stderr) => {
        resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
      });
      child.stdin?.end();
    });
    expect(stderr).toBe('');
    const report = JSON.parse(stdout);
    expect(report.checks.filter((c: Check) => !c.pass)).toEqual([]);
    expect(report.checks.length).toBeGreaterThanOrEqual(8);
    expect(report.ok).toBe(true);
    expect(code).toBe(0);

    // Limits: only mallory, and the numbers match the requests made.
    expect(report.limitRejections.mallory).toBeGreaterThan(0);
    expect(report.limitRejections).toMatchObject({ alice: 0, bob: 0, carol: 0 });
    expect(report.users.mallory.ok + report.users.mallory.limited).toBe(report.users.mallory.requests);
    expect(report.users.mallory.ok).toBe(report.config.perUserLimit.limit);
    expect(report.requests.byOutcome['rate limited']).toBe(report.limitRejections.mallory);

    // Breaker: closed -> open during the outage, then open -> half-open -> closed in recovery.
    const path = report.breaker.transitions.map((t: { from: string; to: string }) => `${t.from}->${t.to}`);
    expect(path[0]).toBe('closed->open');
    expect(path.slice(-2)).toEqual(['open->half-open', 'half-open->closed']);
    expect(report.breaker.transitions[0].phase).toBe('provider outage');
    expect(report.breaker.finalState).toBe('closed');
    const times = report.breaker.transitions.map((t: { atMs: number }) => t.atMs);
    expect([...times].sort((a, b) => a - b)).toEqual(times);

    // Dedup: identical concurrent prompts shared upstream calls.
    expect(report.dedup.upstreamCalls).toBeLessThan(report.dedup.clientRequests);
    expect(report.dedup.saved).toBe(report.dedup.clientRequests - report.dedup.upstreamCalls);
    expect(report.dedup.saved).toBeGreaterThan(0);
    expect(report.dedup.sharedResponses).toBe(report.dedup.saved);

    // Outage: requests failed fast and the provider saw fewer calls than requests.
    expect(report.outage.failedFast).toBeGreaterThan(0);
    expect(report.outage.upstreamCalls).toBeLessThan(report.outage.clientRequests);
    expect(report.requests.byOutcome['breaker open (fast fail)']).toBe(report.outage.failedFast);
    expect(report.upstream.inFlight).toBe(0);

    // Budgets and spend: dave's second call was refused before reaching the provider; everyone was billed.
    expect(report.budgets.results.map((r: { status: number }) => r.status)).toEqual([200, 429]);
    expect(report.budgets.upstreamCalls).toBe(1);
    expect(report.requests.byOutcome['over budget']).toBe(1);
    for (const user of ['alice', 'bob', 'carol', 'mallory', 'dave']) expect(report.spend[user].costUsd, user).toBeGreaterThan(0);
    expect(report.spend.mallory.requests).toBe(report.users.mallory.ok);
  });
});

describe('createGateway against the mock provider', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function setup(mockOptions: MockProviderOptions = {}, gatewayOptions: Record<string, unknown> = {}) {
    const mock: MockProvider = await startMockProvider({ latencyMs: 0, chunkDelayMs: 1, ...mockOptions });
    cleanups.push(() => mock.close());
    const gateway = createGateway({ providerUrl: mock.url, logger: silent, retry: { baseDelayMs: 1, maxDelayMs: 5 }, ...gatewayOptions });
    cleanups.push(() => gateway.close());
    const url: string = await gateway.listen();
    const post = (user: string | undefined, body: unknown, init: { path?: string; signal?: AbortSignal; headers?: Record<string, string> } = {}) =>
      fetch(url + (init.path ?? '/v1/chat/completions'), {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(user ? { authorization: `Bearer ${user}` } : {}), ...init.headers },
        body: JSON.stringify(body),
        signal: init.signal,
      });
    return { mock, gateway, url, post };
  }

  async function eventually(condition: () => boolean, what: string, ms = 5000) {
    const deadline = Date.now() + ms;
    while (!condition()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  it('passes a stream through chunk by chunk; reassembled it equals the buffered reply', async () => {
    const { mock, post } = await setup();
    const streamed = await post('alice', chat('tell me a story', { stream: true }));
    expect(streamed.status).toBe(200);
    expect(streamed.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(streamed.headers.get('x-response-time')).toBeTruthy();
    const frames = (await streamed.text()).split('\n\n').filter(Boolean);
    expect(frames.at(-1)).toBe('data: [DONE]');
    const content = frames
      .slice(0, -1)
      .map((f) => JSON.parse(f.slice('data: '.length)).choices[0].delta.content ?? '')
      .join('');
    const buffered = await (await post('alice', chat('tell me a story'))).json();
    expect(frames.length).toBeGreaterThan(3);
    expect(content).toBe(buffered.choices[0].message.content);
    expect(mock.stats()).toMatchObject({ chat: 2, streams: 1, inFlight: 0 });
  });

  it('a client that hangs up mid-stream aborts the upstream request', async () => {
    const { mock, post } = await setup({ chunkDelayMs: 100 });
    const controller = new AbortController();
    const res = await post('alice', chat('a long answer please', { stream: true }), { signal: controller.signal });
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toMatch(/^data: /);
    expect(mock.stats().inFlight).toBe(1);
    controller.abort();
    await eventually(() => mock.stats().inFlight === 0, 'the upstream request to end');
    expect(mock.stats().clientAborts).toBe(1);
  });

  it('maps an upstream 500 to an OpenAI-shaped error with that status, after retrying', async () => {
    const { mock, post } = await setup({ failureRate: 1 }, { retry: { maxAttempts: 2, baseDelayMs: 1 } });
    const res = await post('alice', chat('hi'));
    expect(res.status).toBe(500);
    const body = await res.json();
    expect(body.error).toMatchObject({ type: 'server_error', code: 'mock_failure' });
    expect(typeof body.error.message).toBe('string');
    expect(mock.stats().chat).toBe(2);
  });

  it('passes a provider 400 through without retrying or counting it against the breaker', async () => {
    const { mock, gateway, post } = await setup();
    const res = await post('alice', { model: 'gpt-4o-mini' });
    expect(res.status).toBe(400);
    expect((await res.json()).error.code).toBe('missing_required_parameter');
    expect(mock.stats().chat).toBe(1);
    expect(gateway.amas.breaker(breakerName('gpt-4o-mini')).stats().consecutiveFailures).toBe(0);
  });

  it('answers 502 in OpenAI shape when the provider cannot be reached', async () => {
    const dead = await startMockProvider();
    const providerUrl = dead.url;
    await dead.close();
    const gateway = createGateway({ providerUrl, logger: silent, retry: { maxAttempts: 1 } });
    cleanups.push(() => gateway.close());
    const url: string = await gateway.listen();
    const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(chat('hi')) });
    expect(res.status).toBe(502);
    expect((await res.json()).error).toMatchObject({ type: 'server_error', code: 'upstream_unreachable' });
  });

  it('limits per user (Bearer or x-user) with 429, Retry-After and RateLimit headers', async () => {
    const { mock, post } = await setup({}, { amas: { limits: { 'per-user': { limit: 2, window: '1m' } } } });
    expect((await post('alice', chat('1'))).status).toBe(200);
    expect((await post(undefined, chat('2'), { headers: { 'x-user': 'alice' } })).status).toBe(200);
    const limited = await post('alice', chat('3'));
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(limited.headers.get('ratelimit-policy')).toMatch(/q=2;w=60/);
    expect(limited.headers.get('ratelimit')).toMatch(/r=0;t=\d+/);
    expect((await limited.json()).error.code).toBe('AMAS_RATE_LIMITED');
    expect((await post('bob', chat('1'))).status).toBe(200);
    expect(mock.stats().chat).toBe(3);
  });

  it('shares one upstream call among identical concurrent requests of one user, not across users', async () => {
    const { mock, post } = await setup({ latencyMs: 100 });
    const same = chat('the same question');
    const responses = await Promise.all([...Array.from({ length: 5 }, () => post('alice', same)), post('bob', same)]);
    expect(responses.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    const shared = responses.filter((r) => r.headers.get('x-amas-dedup') === 'shared');
    expect(shared).toHaveLength(4);
    const bodies = await Promise.all(responses.map((r) => r.json()));
    expect(new Set(bodies.slice(0, 5).map((b) => b.id)).size).toBe(1);
    expect(mock.stats().chat).toBe(2);
  });

  it('opens the provider breaker on consecutive failures and then fails fast with 503', async () => {
    const { mock, post } = await setup({}, { amas: { breakers: { provider: { failureThreshold: 2, recoveryTimeoutMs: 60_000 } } }, retry: { maxAttempts: 1 } });
    mock.setOutage(true);
    for (let i = 0; i < 2; i++) {
      const res = await post('alice', chat(`q${i}`));
      expect(res.status).toBe(503);
      expect((await res.json()).error.code).toBe('mock_outage');
    }
    const fast = await post('alice', chat('q3'));
    expect(fast.status).toBe(503);
    expect(Number(fast.headers.get('retry-after'))).toBeGreaterThan(0);
    expect((await fast.json()).error.code).toBe('AMAS_BREAKER_OPEN');
    expect(mock.stats().requests).toBe(2);
  });

  it('times out a slow provider with 504 and aborts the upstream call', async () => {
    const { mock, post } = await setup({ latencyMs: 2000 }, { timeoutMs: 100, retry: { maxAttempts: 1 } });
    const res = await post('alice', chat('slow'));
    expect(res.status).toBe(504);
    expect((await res.json()).error.code).toBe('AMAS_TIMEOUT');
    await eventually(() => mock.stats().inFlight === 0, 'the upstream request to be aborted');
  });

  it('serves embeddings, health and metrics; rejects bad JSON and unknown routes in OpenAI shape', async () => {
    const { url, post } = await setup();
    const emb = await post('alice', { model: 'text-embedding-3-small', input: 'hello' }, { path: '/v1/embeddings' });
    expect(emb.status).toBe(200);
    expect((await emb.json()).data[0].embedding.length).toBeGreaterThan(0);
    expect(await (await fetch(`${url}/health`)).json()).toEqual({ status: 'ok', provider: { breaker: 'closed' } });
    expect(await (await fetch(`${url}/metrics`)).text()).toContain('amas_http_requests_total');
    const bad = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{nope' });
    expect(bad.status).toBe(400);
    expect((await bad.json()).error.code).toBe('invalid_json');
    const missing = await fetch(`${url}/v1/nothing`);
    expect(missing.status).toBe(404);
    expect((await missing.json()).error.type).toBe('invalid_request_error');
  });

  it('rejects bad options at construction', () => {
    expect(() => createGateway({ providerUrl: 'not a url' })).toThrow(/providerUrl/);
    expect(() => createGateway({ providerUrl: 'http://127.0.0.1:1', amas: { breakers: { provider: { failureThreshold: -1 } } } })).toThrow(InvalidOptionError);
    expect(() => createGateway({ providerUrl: 'http://127.0.0.1:1', retry: { maxAttempts: 0 } })).toThrow(InvalidOptionError);
  });
});
