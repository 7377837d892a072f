/**
 * The model router over real HTTP: OpenAI-compatible mock providers (@amas/loadtest) on loopback, reached
 * through two transports: `fetchTransport`, a tiny fetch-based ProviderTransport written here, and the undici
 * ProviderClient (ai/provider-client.ts). Proves balancing across providers, ejection of a provider in an outage and its return, fallback to
 * another model when every endpoint of the first is down, health checks, and Retry-After being honoured (and
 * capped). The router's clock is a ManualClock, so ejection times, backoffs and Retry-After waits are driven
 * by the test; only the HTTP is real. No timed assertions.
 */
import { performance } from 'node:perf_hooks';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BreakerOpenError, createAmas, ManualClock, retryAfterFromError, silentLogger, TimeoutError } from '@amas/core';
import { startMockProvider, type MockProvider } from '@amas/loadtest';
import { startSilentServer } from './support/silent-server.js';
// Not exported from @amas/core's index yet: imported from the sources.
import { ModelRouter, ProviderClient, routeAttemptsOf, UpstreamError, type EndpointConfig, type ModelRouterEvents, type ModelRouterOptions, type ProviderTransport, type UpstreamRequest, type UpstreamStream } from '@amas/core';

/** A minimal ProviderTransport on global fetch, following the ProviderTransport contract (errors as UpstreamError). */
function fetchTransport(): ProviderTransport {
  async function send(endpoint: EndpointConfig, req: UpstreamRequest) {
    const started = performance.now();
    const method = req.method ?? 'POST';
    const headers: Record<string, string> = {
      ...(method === 'POST' ? { 'content-type': 'application/json' } : {}),
      ...(endpoint.apiKey ? { authorization: `Bearer ${endpoint.apiKey}` } : {}),
      ...endpoint.headers,
      ...req.headers,
    };
    let res: Response;
    try {
      res = await fetch(`${endpoint.url}${req.path}`, {
        method,
        headers,
        ...(method === 'POST' ? { body: JSON.stringify(req.body) } : {}),
        ...(req.signal ? { signal: req.signal } : {}),
      });
    } catch (error) {
      if (req.signal?.aborted) throw req.signal.reason;
      throw new UpstreamError(`${endpoint.id}: ${(error as Error).message}`, { status: 502, network: true, endpoint: endpoint.id, cause: error });
    }
    const responseHeaders = Object.fromEntries(res.headers);
    if (!res.ok) {
      const text = await res.text();
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // not JSON
      }
      const retryAfterMs = retryAfterFromError({ headers: responseHeaders });
      throw new UpstreamError(`HTTP ${res.status} from ${endpoint.id}`, {
        status: res.status,
        endpoint: endpoint.id,
        body,
        responseHeaders,
        ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
      });
    }
    return { res, responseHeaders, started };
  }
  return {
    async request(endpoint, req) {
      const { res, responseHeaders, started } = await send(endpoint, req);
      const body = Buffer.from(await res.arrayBuffer());
      return { status: res.status, headers: responseHeaders, body, latencyMs: performance.now() - started };
    },
    async stream(endpoint, req) {
      const { res, responseHeaders, started } = await send(endpoint, req);
      return {
        status: res.status,
        headers: responseHeaders,
        body: res.body as unknown as AsyncIterable<Uint8Array>,
        latencyMs: performance.now() - started,
      };
    },
  };
}

/** Polls (real time) until `check` holds: waiting for real HTTP to settle, not a timing assertion. */
async function waitFor(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function readAll(stream: UpstreamStream): Promise<string> {
  let text = '';
  for await (const chunk of stream.body) text += Buffer.from(chunk).toString('utf8');
  return text;
}

const body = (model: string) => ({ model, messages: [{ role: 'user', content: 'Say hello' }] });
const json = (buffer: Buffer) => JSON.parse(buffer.toString('utf8')) as { model: string; choices: Array<{ message: { content: string } }> };

let providers: MockProvider[] = [];
let routers: ModelRouter[] = [];
let transport: { transport: ProviderTransport; close(): Promise<void> } | undefined;

/** The router runs over both: the fetch stand-in and the real undici ProviderClient. */
const transports: Array<[string, () => { transport: ProviderTransport; close(): Promise<void> }]> = [
  ['fetchTransport', () => ({ transport: fetchTransport(), close: async () => undefined })],
  [
    'ProviderClient',
    () => {
      const client = new ProviderClient();
      return { transport: client, close: () => client.closeAll({ force: true }) };
    },
  ],
];

beforeAll(async () => {
  providers = await Promise.all([1, 2, 3, 4].map((seed) => startMockProvider({ seed })));
});

afterAll(async () => {
  await Promise.all(providers.map((p) => p.close()));
});

beforeEach(() => {
  for (const p of providers) {
    p.setOutage(false);
    p.resetStats();
  }
});

afterEach(async () => {
  for (const r of routers.splice(0)) await r.close();
  await transport?.close();
  transport = undefined;
});

function makeRouter(models: ModelRouterOptions['models'], extra: Partial<ModelRouterOptions> = {}) {
  const clock = new ManualClock();
  const router = new ModelRouter({ transport: transport!.transport, clock, logger: silentLogger, models, ...extra });
  routers.push(router);
  const events: Array<{ type: keyof ModelRouterEvents; event: unknown }> = [];
  for (const type of ['ejected', 'returned', 'fallback', 'healthChange', 'cooldown'] as const) router.on(type, (event) => events.push({ type, event }));
  return { router, clock, events };
}

const endpoint = (i: number, extra: Partial<EndpointConfig> = {}): EndpointConfig => ({ id: `p${i}`, url: providers[i].url, apiKey: 'sk-test', ...extra });

describe.each(transports)('ModelRouter over real HTTP via %s', (_name, makeTransport) => {
  beforeEach(() => {
    transport = makeTransport();
  });

  it('spreads traffic across 3 providers by weight (smooth weighted round-robin: exact over whole cycles)', async () => {
    const { router } = makeRouter({
      'gpt-4o': { strategy: 'weighted', endpoints: [endpoint(0, { weight: 1 }), endpoint(1, { weight: 2 }), endpoint(2, { weight: 3 })] },
    });
    for (let i = 0; i < 60; i++) {
      const result = await router.chat(body('gpt-4o'));
      expect(json(result.response.body).model).toBe('gpt-4o');
    }
    expect(providers.slice(0, 3).map((p) => p.stats().chat)).toEqual([10, 20, 30]);
    expect(router.stats()['gpt-4o'].endpoints.map((e) => e.requests)).toEqual([10, 20, 30]);
    expect(router.stats()['gpt-4o'].endpoints.every((e) => e.ewmaMs !== undefined && e.outstanding === 0)).toBe(true);
  });

  it('ejects a provider in an outage (callers see no error) and brings it back after the ejection time', async () => {
    const { router, clock, events } = makeRouter({
      'gpt-4o': {
        retry: { baseDelayMs: 0 },
        outlier: { consecutiveErrors: 2, baseEjectionMs: 30_000 },
        endpoints: [endpoint(0), endpoint(1), endpoint(2)],
      },
    });
    providers[1].setOutage(true);
    for (let i = 0; i < 30; i++) await router.chat(body('gpt-4o'));
    // Two failed calls ejected it; both were retried on the others.
    expect(providers[1].stats().outageRejections).toBe(2);
    expect(providers[0].stats().chat + providers[2].stats().chat).toBe(30);
    expect(events.filter((e) => e.type === 'ejected').map((e) => (e.event as { endpoint: string }).endpoint)).toEqual(['p1']);
    expect(router.stats()['gpt-4o'].endpoints[1]).toMatchObject({ ejected: true, ejections: 1, errors: 2 });

    providers[1].setOutage(false);
    await clock.advance(30_000);
    expect(events.filter((e) => e.type === 'returned').map((e) => (e.event as { endpoint: string }).endpoint)).toEqual(['p1']);
    for (let i = 0; i < 30; i++) await router.chat(body('gpt-4o'));
    expect(providers[1].stats().byStatus['200']).toBe(10);
    expect(router.stats()['gpt-4o'].endpoints[1]).toMatchObject({ ejected: false });
  });

  it('falls back to another model when every endpoint of the first is down (JSON and stream)', async () => {
    const { router, events } = makeRouter({
      'gpt-4o': { retry: { baseDelayMs: 0 }, fallbacks: ['gpt-4o-mini'], endpoints: [endpoint(0), endpoint(1)] },
      'gpt-4o-mini': { endpoints: [endpoint(2)] },
    });
    providers[0].setOutage(true);
    providers[1].setOutage({ status: 500 });
    const result = await router.chat(body('gpt-4o'));
    expect(result.model).toBe('gpt-4o-mini');
    expect(result.endpoint).toBe('p2');
    expect(json(result.response.body).model).toBe('gpt-4o-mini');
    expect(result.attempts.map((a) => [a.model, a.endpoint, a.status])).toEqual([
      ['gpt-4o', 'p0', 503],
      ['gpt-4o', 'p1', 500],
      ['gpt-4o', 'p0', 503],
      ['gpt-4o-mini', 'p2', 200],
    ]);
    expect(events.filter((e) => e.type === 'fallback')).toHaveLength(1);

    const streamed = await router.chatStream(body('gpt-4o'));
    expect(streamed.model).toBe('gpt-4o-mini');
    const text = await readAll(streamed.response);
    expect(text).toContain('"model":"gpt-4o-mini"');
    expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect(providers[2].stats().streams).toBe(1);
  });

  it('keeps traffic off a provider its health checks (GET /v1/models) mark down, until they mark it up', async () => {
    const { router, clock, events } = makeRouter({
      'gpt-4o': { healthCheck: { intervalMs: 1000, unhealthyThreshold: 1, healthyThreshold: 1 }, endpoints: [endpoint(0), endpoint(1)] },
    });
    providers[1].setOutage(true);
    await waitFor(() => router.stats()['gpt-4o'].endpoints[1].healthy === false, 'p1 to be marked unhealthy');
    for (let i = 0; i < 10; i++) await router.chat(body('gpt-4o'));
    expect(providers[1].stats().chat).toBe(0);
    expect(providers[0].stats().chat).toBe(10);

    providers[1].setOutage(false);
    await clock.advance(1000);
    await waitFor(() => router.stats()['gpt-4o'].endpoints[1].healthy, 'p1 to be marked healthy');
    for (let i = 0; i < 10; i++) await router.chat(body('gpt-4o'));
    expect(providers[1].stats().chat).toBe(5);
    expect(events.filter((e) => e.type === 'healthChange').map((e) => (e.event as { healthy: boolean }).healthy)).toEqual([false, true]);
  });

  it('honours Retry-After: the retry is sent only once the provider\'s delay has passed', async () => {
    const { router, clock } = makeRouter({ 'gpt-4o': { endpoints: [endpoint(3)] } });
    const p = providers[3];
    p.setOutage({ status: 429, retryAfterSeconds: 2 });
    const pending = router.chat(body('gpt-4o'));
    await waitFor(() => p.stats().outageRejections === 1 && clock.pendingTimers > 0, 'the first 429');
    p.setOutage(false);
    await clock.advance(1999);
    // Still waiting on the clock: no second request was sent.
    expect(clock.pendingTimers).toBe(1);
    expect(p.stats().requests).toBe(1);
    await clock.advance(1);
    const result = await pending;
    expect(result.attempts.map((a) => a.status)).toEqual([429, 200]);
    expect(p.stats().byStatus).toEqual({ '200': 1, '429': 1 });
  });

  it('a Retry-After longer than maxRetryAfterMs is not slept on: the call fails (or falls back) at once', async () => {
    const { router, clock } = makeRouter({
      solo: { retry: { maxRetryAfterMs: 5000 }, endpoints: [endpoint(3)] },
      'gpt-4o': { retry: { maxRetryAfterMs: 5000 }, fallbacks: ['gpt-4o-mini'], endpoints: [endpoint(3, { id: 'p3b' })] },
      'gpt-4o-mini': { endpoints: [endpoint(2)] },
    });
    providers[3].setOutage({ status: 429, retryAfterSeconds: 60 });
    let error: unknown;
    await router.chat(body('solo')).catch((e: unknown) => (error = e));
    expect(error).toBeInstanceOf(UpstreamError);
    expect((error as UpstreamError).status).toBe(429);
    expect((error as UpstreamError).retryAfterMs).toBe(60_000);
    expect(routeAttemptsOf(error)).toHaveLength(1);
    expect(clock.pendingTimers).toBe(0);
    // The next call does not even reach the provider while its Retry-After runs.
    await router.chat(body('solo')).catch((e: unknown) => (error = e));
    expect(error).toBeInstanceOf(BreakerOpenError);
    expect(providers[3].stats().requests).toBe(1);

    const fallback = await router.chat(body('gpt-4o'));
    expect(fallback.model).toBe('gpt-4o-mini');
    expect(providers[3].stats().requests).toBe(2);
  });

  it('attemptTimeoutMs aborts a provider that never answers (or never starts its stream) and retries on another', async () => {
    // A real server that takes requests and never answers: silent, or stream headers only (x-stall-stream).
    const silent = await startSilentServer();
    const url = silent.url;
    try {
      const { router, clock } = makeRouter({
        m: { attemptTimeoutMs: 300, retry: { baseDelayMs: 0 }, endpoints: [{ id: 'silent', url }, endpoint(0)] },
        s: { attemptTimeoutMs: 300, retry: { baseDelayMs: 0 }, endpoints: [{ id: 'stalled', url, headers: { 'x-stall-stream': '1' } }, endpoint(1)] },
      });
      const pending = router.chat(body('m'));
      await waitFor(() => silent.held === 1, 'the silent server to hold the request');
      await clock.advance(300);
      const result = await pending;
      expect(result.attempts.map((a) => [a.endpoint, a.error?.constructor.name ?? a.status])).toEqual([
        ['silent', 'TimeoutError'],
        ['p0', 200],
      ]);
      expect(json(result.response.body).model).toBe('m');
      await waitFor(() => silent.abortedByClient === 1, 'the timed-out request to be aborted');

      const streaming = router.chatStream({ ...body('s'), stream: true });
      await waitFor(() => silent.held === 1, 'the stalled stream to start');
      await clock.advance(300);
      const stream = await streaming;
      expect(stream.attempts.map((a) => [a.endpoint, a.error?.constructor.name ?? a.status])).toEqual([
        ['stalled', 'TimeoutError'],
        ['p1', 200],
      ]);
      expect(await readAll(stream.response)).toContain('[DONE]');
      await waitFor(() => silent.abortedByClient === 2, 'the stalled stream to be aborted');
      expect(router.stats().m.endpoints[0]).toMatchObject({ outstanding: 0, errors: 1 });
    } finally {
      await silent.close();
    }
  });
});

describe('amas.ai with a per-call attemptTimeoutMs', () => {
  it('passes it to the router: a provider that never answers fails the call as a 504 timeout, and the request is aborted', async () => {
    const silent = await startSilentServer();
    const url = silent.url;
    const amas = createAmas({ logger: silentLogger, ai: { models: { m: { retry: { maxAttempts: 1 }, endpoints: [{ url, apiKey: 'sk-test' }] } } } });
    try {
      const error = await amas.ai.chat(body('m'), { user: 'alice', attemptTimeoutMs: 100 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(TimeoutError);
      expect((error as TimeoutError).status).toBe(504);
      await waitFor(() => silent.abortedByClient === 1, 'the upstream request to be aborted');
      await expect(amas.ai.chat(body('m'), { attemptTimeoutMs: -5 })).rejects.toThrow(RangeError);
    } finally {
      await amas.close();
      await silent.close();
    }
  });
});
