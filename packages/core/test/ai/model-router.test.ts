import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { AbortedError, BreakerOpenError, InvalidOptionError, InvalidRequestError, TimeoutError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import { BreakerRegistry } from '../../src/policies/breaker-registry.js';
import {
  isRetryableUpstreamError,
  matchesFallback,
  ModelRouter,
  routeAttemptsOf,
  type ModelRouterEvents,
  type ModelRouterOptions,
} from '../../src/ai/model-router.js';
import { UpstreamError, type EndpointConfig, type ProviderTransport, type UpstreamRequest, type UpstreamResponse, type UpstreamStream } from '../../src/ai/provider-types.js';
import { invalidOption, seededRandom, settle } from '../helpers.js';

// ---- a fake in-memory transport -----------------------------------------------------------------------------

interface Reply {
  status?: number;
  latencyMs?: number;
  headers?: Record<string, string>;
  body?: unknown;
  /** No answer at all: an UpstreamError with network: true (502). */
  network?: boolean;
  /** Stream chunks (streams only). */
  chunks?: string[];
  /** The stream body throws after this many chunks (streams only). */
  breakAfter?: number;
  /** Streams only: headers arrive, the first chunk never does (until the request's signal aborts). */
  stallFirstChunk?: boolean;
}

type Behaviour = (request: UpstreamRequest, endpoint: EndpointConfig) => Reply | 'hang' | Promise<Reply | 'hang'>;

interface Call {
  endpoint: string;
  url: string;
  path: string;
  method: string;
  body: Record<string, unknown> | undefined;
  stream: boolean;
}

/** Answers by endpoint url; records every call. 'hang' settles only when the request's signal aborts (or release()). */
class FakeTransport implements ProviderTransport {
  readonly calls: Call[] = [];
  private readonly behaviours = new Map<string, Behaviour>();
  private readonly hanging = new Set<() => void>();

  set(url: string, behaviour: Behaviour | Reply | 'hang'): this {
    this.behaviours.set(url, typeof behaviour === 'function' ? behaviour : () => behaviour);
    return this;
  }

  /** Lets every hanging call answer 200. */
  releaseAll(): void {
    for (const release of [...this.hanging]) release();
  }

  callsTo(url: string): Call[] {
    return this.calls.filter((c) => c.url === url);
  }

  async request(endpoint: EndpointConfig, request: UpstreamRequest): Promise<UpstreamResponse> {
    const reply = await this.answer(endpoint, request, false);
    return {
      status: reply.status ?? 200,
      headers: reply.headers ?? {},
      body: Buffer.from(JSON.stringify(reply.body ?? { ok: true, model: (request.body as { model?: string } | undefined)?.model })),
      latencyMs: reply.latencyMs ?? 1,
    };
  }

  async stream(endpoint: EndpointConfig, request: UpstreamRequest): Promise<UpstreamStream> {
    const reply = await this.answer(endpoint, request, true);
    const chunks = reply.chunks ?? ['data: a\n\n', 'data: b\n\n', 'data: [DONE]\n\n'];
    const breakAfter = reply.breakAfter;
    const signal = request.signal;
    const stall = reply.stallFirstChunk === true;
    async function* body(): AsyncGenerator<Uint8Array> {
      if (stall) {
        await new Promise<void>((_, reject) => {
          if (signal?.aborted) reject(signal.reason);
          signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
        });
      }
      for (let i = 0; i < chunks.length; i++) {
        if (breakAfter !== undefined && i >= breakAfter) throw new Error('socket hang up');
        yield Buffer.from(chunks[i]);
      }
      if (breakAfter !== undefined && breakAfter >= chunks.length) throw new Error('socket hang up');
    }
    return { status: reply.status ?? 200, headers: reply.headers ?? {}, body: body(), latencyMs: reply.latencyMs ?? 1 };
  }

  private async answer(endpoint: EndpointConfig, request: UpstreamRequest, stream: boolean): Promise<Reply> {
    this.calls.push({
      endpoint: endpoint.id!,
      url: endpoint.url,
      path: request.path,
      method: request.method ?? 'POST',
      body: request.body as Record<string, unknown> | undefined,
      stream,
    });
    const behaviour = this.behaviours.get(endpoint.url) ?? (() => ({}));
    const scripted = await behaviour(request, endpoint);
    let reply: Reply;
    if (scripted !== 'hang') reply = scripted;
    else {
      reply = await new Promise<Reply>((resolve, reject) => {
        const release = () => {
          this.hanging.delete(release);
          resolve({});
        };
        this.hanging.add(release);
        request.signal?.addEventListener('abort', () => {
          this.hanging.delete(release);
          reject(request.signal!.reason);
        });
      });
    }
    if (reply.network) throw new UpstreamError('connect ECONNREFUSED', { status: 502, network: true, endpoint: endpoint.id });
    const status = reply.status ?? 200;
    if (status >= 400) {
      const retryAfter = reply.headers?.['retry-after-ms'] ?? (reply.headers?.['retry-after'] ? String(Number(reply.headers['retry-after']) * 1000) : undefined);
      throw new UpstreamError(`HTTP ${status}`, {
        status,
        endpoint: endpoint.id,
        responseHeaders: reply.headers ?? {},
        ...(retryAfter === undefined ? {} : { retryAfterMs: Number(retryAfter) }),
      });
    }
    return reply;
  }
}

const A = 'http://127.0.0.1:1001';
const B = 'http://127.0.0.1:1002';
const C = 'http://127.0.0.1:1003';
const D = 'http://127.0.0.1:1004';

const routers: ModelRouter[] = [];
afterEach(async () => {
  for (const r of routers.splice(0)) await r.close();
});

function setup(options: Partial<ModelRouterOptions> & { models: ModelRouterOptions['models'] }, transport = new FakeTransport()) {
  const clock = new ManualClock(0);
  const router = new ModelRouter({ transport, clock, logger: silentLogger, random: seededRandom(42), ...options });
  routers.push(router);
  const events: Array<{ type: keyof ModelRouterEvents; event: unknown }> = [];
  for (const type of ['ejected', 'returned', 'healthChange', 'fallback', 'retry', 'cooldown', 'breakerStateChange'] as const) {
    router.on(type, (event) => events.push({ type, event }));
  }
  return { clock, router, transport, events };
}

const chatBody = (model = 'gpt-4o') => ({ model, messages: [{ role: 'user', content: 'hi' }] });
const noDelay = { baseDelayMs: 0 } as const;

function json(response: UpstreamResponse): Record<string, unknown> {
  return JSON.parse(response.body.toString('utf8')) as Record<string, unknown>;
}

// ---- options ------------------------------------------------------------------------------------------------

describe('ModelRouter options', () => {
  const transport = new FakeTransport();

  it('names the path of a bad endpoint option, with array indices', () => {
    const error = invalidOption(
      () =>
        new ModelRouter({
          transport,
          models: { 'gpt-4o': { endpoints: [{ url: A }, { url: B, weight: -1 }] } },
        }),
    );
    expect(error.issues).toEqual([{ path: 'models.gpt-4o.endpoints[1].weight', received: '-1', expected: 'a number > 0' }]);
    expect(error.message).toContain('models.gpt-4o.endpoints[1].weight');
  });

  it('reports every problem at once: unknown strategy, bad URL, unknown fallback, bad fallbackOn, unknown keys', () => {
    const error = invalidOption(
      () =>
        new ModelRouter({
          transport,
          models: {
            'gpt-4o': {
              endpoints: [{ url: 'ftp://x' }],
              strategy: 'random' as never,
              fallbacks: ['gpt-5', 'gpt-4o'],
              fallbackOn: [503, 'sometimes' as never],
            },
            mini: { endpoints: [{ url: A, colour: 'red' } as never] },
          },
        }),
    );
    const paths = error.issues.map((i) => i.path);
    expect(paths).toEqual([
      'models.gpt-4o.strategy',
      'models.gpt-4o.endpoints[0].url',
      'models.gpt-4o.fallbacks[0]',
      'models.gpt-4o.fallbacks[1]',
      'models.gpt-4o.fallbackOn[1]',
      'models.mini.endpoints[0]',
    ]);
    expect(error.issues[2].expected).toContain('a model configured in `models`');
    expect(error.issues[3].expected).toBe('another model than the one falling back');
  });

  it('rejects a missing transport, no models, an empty endpoint list, duplicate ids, and shared breakers without a factory', () => {
    expect(invalidOption(() => new ModelRouter({ models: { m: { endpoints: [{ url: A }] } } } as never)).issues[0].path).toBe('transport');
    expect(invalidOption(() => new ModelRouter({ transport, models: {} })).issues[0].path).toBe('models');
    expect(invalidOption(() => new ModelRouter({ transport, models: { m: { endpoints: [] } } })).issues[0].path).toBe('models.m.endpoints');
    expect(
      invalidOption(() => new ModelRouter({ transport, models: { m: { endpoints: [{ url: A, id: 'x' }, { url: B, id: 'x' }] } } })).issues[0].path,
    ).toBe('models.m.endpoints[1].id');
    expect(
      invalidOption(() => new ModelRouter({ transport, models: { m: { endpoints: [{ url: A }], breaker: { shared: true } } } })).issues[0].path,
    ).toBe('models.m.breaker.shared');
    expect(
      invalidOption(() => new ModelRouter({ transport, models: { m: { endpoints: [{ url: A }], retry: { maxAttempts: 0 } } } })).issues[0].path,
    ).toBe('models.m.retry.maxAttempts');
    expect(
      invalidOption(() => new ModelRouter({ transport, models: { m: { endpoints: [{ url: A }] } }, defaults: { outlier: { maxEjectionPercent: 150 } } }))
        .issues[0].path,
    ).toBe('defaults.outlier.maxEjectionPercent');
  });

  it('default endpoint ids are <provider>:<origin><basePath>, unique in the group, without credentials', () => {
    const { router } = setup({
      models: {
        m: { endpoints: [{ url: 'https://u:secret@api.example.com/openai/' }, { url: 'https://api.example.com/openai' }, { url: A, id: 'mine', provider: 'vllm' }] },
      },
    });
    expect(router.stats().m.endpoints.map((e) => [e.id, e.url, e.provider])).toEqual([
      ['openai:https://api.example.com/openai', 'https://api.example.com/openai', 'openai'],
      ['openai:https://api.example.com/openai#2', 'https://api.example.com/openai', 'openai'],
      ['mine', A, 'vllm'],
    ]);
    expect(JSON.stringify(router.stats())).not.toContain('secret');
  });
});

// ---- routing ------------------------------------------------------------------------------------------------

describe('ModelRouter routing', () => {
  it('round-robin spreads calls exactly; endpoint.model rewrites the body for that deployment', async () => {
    const { router, transport } = setup({
      models: { 'gpt-4o': { endpoints: [{ url: A }, { url: B, model: 'gpt-4o-2024-08-06' }, { url: C }] } },
    });
    for (let i = 0; i < 30; i++) await router.chat(chatBody());
    expect([A, B, C].map((u) => transport.callsTo(u).length)).toEqual([10, 10, 10]);
    expect(transport.callsTo(B)[0].body!.model).toBe('gpt-4o-2024-08-06');
    expect(transport.callsTo(A)[0].body!.model).toBe('gpt-4o');
    expect(transport.callsTo(A)[0].path).toBe('/v1/chat/completions');
    expect(transport.callsTo(A)[0].body!.messages).toEqual(chatBody().messages);
  });

  it('resolves with the response, the model and endpoint that answered, and the attempts', async () => {
    const { router } = setup({ models: { 'gpt-4o': { endpoints: [{ url: A, id: 'a' }] } } }, new FakeTransport().set(A, { latencyMs: 12 }));
    const result = await router.chat(chatBody());
    expect(result.model).toBe('gpt-4o');
    expect(result.endpoint).toBe('a');
    expect(result.attempts).toEqual([{ endpoint: 'a', model: 'gpt-4o', status: 200, latencyMs: 12 }]);
    expect(json(result.response)).toEqual({ ok: true, model: 'gpt-4o' });
  });

  it('weighted strategy follows the weights exactly over whole cycles', async () => {
    const { router, transport } = setup({
      models: { m: { strategy: 'weighted', endpoints: [{ url: A, weight: 1 }, { url: B, weight: 2 }, { url: C, weight: 3 }] } },
    });
    for (let i = 0; i < 60; i++) await router.call('m', '/v1/embeddings', { model: 'm', input: 'x' });
    expect([A, B, C].map((u) => transport.callsTo(u).length)).toEqual([10, 20, 30]);
  });

  it('least-outstanding sends new calls away from endpoints with calls in flight', async () => {
    const transport = new FakeTransport().set(A, 'hang');
    const { router } = setup({ models: { m: { strategy: 'least-outstanding', endpoints: [{ url: A }, { url: B }, { url: C }] } } }, transport);
    const slow = router.chat(chatBody('m')); // goes to A (all idle, first in order) and hangs
    await Promise.resolve();
    for (let i = 0; i < 10; i++) await router.chat(chatBody('m'));
    expect(transport.callsTo(A)).toHaveLength(1);
    expect(transport.callsTo(B).length + transport.callsTo(C).length).toBe(10);
    expect(router.stats().m.endpoints[0].outstanding).toBe(1);
    transport.releaseAll();
    await slow;
    expect(router.stats().m.endpoints[0].outstanding).toBe(0);
  });

  it('latency-aware prefers the fast endpoint once latencies are known', async () => {
    const transport = new FakeTransport().set(A, { latencyMs: 200 }).set(B, { latencyMs: 20 }).set(C, { latencyMs: 80 });
    const { router } = setup({ models: { m: { strategy: 'latency-aware', endpoints: [{ url: A }, { url: B }, { url: C }] } } }, transport);
    for (let i = 0; i < 300; i++) await router.chat(chatBody('m'));
    const [a, b, c] = [A, B, C].map((u) => transport.callsTo(u).length);
    expect(b).toBeGreaterThan(180);
    expect(b).toBeGreaterThan(c);
    expect(a).toBeLessThan(10);
    expect(router.stats().m.endpoints.map((e) => e.ewmaMs)).toEqual([200, 20, 80]);
  });

  it('rejects an unknown model (404) and a body without a model (400), as rejections', async () => {
    const { router } = setup({ models: { m: { endpoints: [{ url: A }] } } });
    const unknown = await settle(router.chat(chatBody('nope')));
    expect(unknown.error).toBeInstanceOf(InvalidRequestError);
    expect((unknown.error as InvalidRequestError).status).toBe(404);
    const missing = await settle(router.chat({ messages: [] }));
    expect((missing.error as InvalidRequestError).status).toBe(400);
    // opts.model routes a body without one.
    await expect(router.chat({ messages: [] }, { model: 'm' })).resolves.toMatchObject({ model: 'm' });
  });
});

// ---- retries ------------------------------------------------------------------------------------------------

describe('ModelRouter retries', () => {
  it('retries a 5xx on another endpoint', async () => {
    const transport = new FakeTransport().set(A, { status: 503 });
    const { router, events } = setup({ models: { m: { retry: noDelay, endpoints: [{ url: A, id: 'a' }, { url: B, id: 'b' }] } } }, transport);
    const result = await router.chat(chatBody('m'));
    expect(result.endpoint).toBe('b');
    expect(result.attempts.map((a) => [a.endpoint, a.status])).toEqual([
      ['a', 503],
      ['b', 200],
    ]);
    expect(result.attempts[0].error).toBeInstanceOf(UpstreamError);
    expect(events.filter((e) => e.type === 'retry')).toHaveLength(1);
  });

  it('retries network failures and timeouts too, never the same endpoint while another is untried', async () => {
    const transport = new FakeTransport().set(A, { network: true }).set(B, { status: 504 }).set(C, {});
    const { router } = setup({ models: { m: { retry: noDelay, endpoints: [{ url: A, id: 'a' }, { url: B, id: 'b' }, { url: C, id: 'c' }] } } }, transport);
    const result = await router.chat(chatBody('m'));
    expect(result.attempts.map((a) => a.endpoint)).toEqual(['a', 'b', 'c']);
    expect(result.attempts[0].status).toBeUndefined();
  });

  it('a 4xx is not retried, does not fall back and does not count against the breaker', async () => {
    const transport = new FakeTransport().set(A, { status: 400 }).set(B, { status: 400 });
    const { router } = setup({
      models: {
        m: { fallbacks: ['n'], breaker: { failureThreshold: 2 }, endpoints: [{ url: A }, { url: B }] },
        n: { endpoints: [{ url: C }] },
      },
    }, transport);
    for (let i = 0; i < 10; i++) {
      const { error } = await settle(router.chat(chatBody('m')));
      expect((error as UpstreamError).status).toBe(400);
      expect(routeAttemptsOf(error)).toHaveLength(1);
    }
    expect(transport.calls).toHaveLength(10);
    expect(transport.callsTo(C)).toHaveLength(0);
    expect(router.stats().m.endpoints.map((e) => e.breaker)).toEqual(['closed', 'closed']);
    expect(router.stats().m.endpoints.every((e) => !e.ejected)).toBe(true);
  });

  it('waits with exponential backoff and jitter between attempts (on the clock)', async () => {
    const transport = new FakeTransport().set(A, { status: 500 });
    const { router, clock, events } = setup({
      models: { m: { retry: { maxAttempts: 3, baseDelayMs: 100, jitter: 'none' }, breaker: { failureThreshold: 0 }, endpoints: [{ url: A }] } },
    }, transport);
    const pending = settle(router.chat(chatBody('m')));
    await clock.advance(0);
    expect(transport.calls).toHaveLength(1);
    await clock.advance(99);
    expect(transport.calls).toHaveLength(1);
    await clock.advance(1);
    expect(transport.calls).toHaveLength(2);
    await clock.advance(199);
    expect(transport.calls).toHaveLength(2);
    await clock.advance(1);
    const { error } = await pending;
    expect(transport.calls).toHaveLength(3);
    expect((error as UpstreamError).status).toBe(500);
    expect(events.filter((e) => e.type === 'retry').map((e) => (e.event as { delayMs: number }).delayMs)).toEqual([100, 200]);
  });

  it('honours Retry-After on the endpoint that sent it: the retry waits for it', async () => {
    let first = true;
    const transport = new FakeTransport().set(A, () => {
      if (!first) return {};
      first = false;
      return { status: 429, headers: { 'retry-after': '2' } };
    });
    const { router, clock, events } = setup({ models: { m: { retry: { baseDelayMs: 10 }, endpoints: [{ url: A, id: 'a' }] } } }, transport);
    const pending = router.chat(chatBody('m'));
    await clock.advance(1999);
    expect(transport.calls).toHaveLength(1);
    expect(router.stats().m.endpoints[0].cooldownUntil).toBe(2000);
    await clock.advance(1);
    const result = await pending;
    expect(transport.calls).toHaveLength(2);
    expect(result.attempts.map((a) => a.status)).toEqual([429, 200]);
    expect(events.find((e) => e.type === 'cooldown')!.event).toEqual({ model: 'm', endpoint: 'a', retryAfterMs: 2000, until: 2000 });
  });

  it('a Retry-After longer than maxRetryAfterMs skips the endpoint instead of sleeping', async () => {
    const transport = new FakeTransport().set(A, { status: 429, headers: { 'retry-after-ms': '60000' } });
    const { router, clock } = setup({ models: { m: { retry: { maxRetryAfterMs: 5000, baseDelayMs: 0 }, endpoints: [{ url: A }] } } }, transport);
    const { error } = await settle(router.chat(chatBody('m')));
    // No sleeping: the call failed with the upstream's 429 and nothing is waiting on the clock.
    expect((error as UpstreamError).status).toBe(429);
    expect((error as UpstreamError).retryAfterMs).toBe(60_000);
    expect(transport.calls).toHaveLength(1);
    expect(clock.pendingTimers).toBe(0);
    // Later calls do not call it either while it cools down: they fail fast, saying when to come back.
    const again = await settle(router.chat(chatBody('m')));
    expect(again.error).toBeInstanceOf(BreakerOpenError);
    expect((again.error as BreakerOpenError).retryAfterMs).toBe(60_000);
    expect((again.error as BreakerOpenError).details).toMatchObject({ model: 'm', reason: 'no-eligible-endpoint' });
    expect(transport.calls).toHaveLength(1);
    await clock.advance(60_000);
    transport.set(A, {});
    await expect(router.chat(chatBody('m'))).resolves.toMatchObject({ model: 'm' });
  });

  it('with Retry-After over the cap on one endpoint, the call and the next ones go to the others', async () => {
    const transport = new FakeTransport().set(A, { status: 429, headers: { 'retry-after': '30' } });
    const { router } = setup({ models: { m: { retry: { ...noDelay, maxRetryAfterMs: 1000 }, endpoints: [{ url: A, id: 'a' }, { url: B, id: 'b' }] } } }, transport);
    const result = await router.chat(chatBody('m'));
    expect(result.attempts.map((a) => [a.endpoint, a.status])).toEqual([
      ['a', 429],
      ['b', 200],
    ]);
    for (let i = 0; i < 5; i++) expect((await router.chat(chatBody('m'))).endpoint).toBe('b');
    expect(transport.callsTo(A)).toHaveLength(1);
  });

  it('respectRetryAfter: false ignores the hint', async () => {
    const transport = new FakeTransport().set(A, { status: 503, headers: { 'retry-after': '30' } });
    const { router } = setup({ models: { m: { retry: { ...noDelay, respectRetryAfter: false }, breaker: { failureThreshold: 0 }, endpoints: [{ url: A }] } } }, transport);
    await settle(router.chat(chatBody('m')));
    expect(transport.calls).toHaveLength(3);
  });

  it('a custom retryOn decides what is retried', async () => {
    const transport = new FakeTransport().set(A, { status: 401 });
    const { router } = setup({
      models: { m: { retry: { ...noDelay, retryOn: (e) => (e as UpstreamError).status === 401 }, endpoints: [{ url: A, id: 'a' }, { url: B, id: 'b' }] } },
    }, transport);
    expect((await router.chat(chatBody('m'))).endpoint).toBe('b');
  });
});

// ---- single endpoint protection -----------------------------------------------------------------------------

describe('ModelRouter: a single dead endpoint', () => {
  it('gets at most breaker-threshold + probe calls while many requests arrive; the rest fail fast', async () => {
    const transport = new FakeTransport().set(A, { status: 503 });
    const { router, clock, events } = setup({
      models: { m: { retry: { maxAttempts: 3, baseDelayMs: 0 }, breaker: { failureThreshold: 5, recoveryTimeoutMs: 1000 }, endpoints: [{ url: A, id: 'a' }] } },
    }, transport);
    const errors: unknown[] = [];
    for (let i = 0; i < 40; i++) errors.push((await settle(router.chat(chatBody('m')))).error);
    const burst = await Promise.all(Array.from({ length: 40 }, () => settle(router.chat(chatBody('m')))));
    expect(transport.calls).toHaveLength(5);
    const fastFails = [...errors, ...burst.map((b) => b.error)].filter((e) => e instanceof BreakerOpenError) as BreakerOpenError[];
    expect(fastFails.length).toBe(80 - 2); // the first two requests made the 5 calls (3 + 2)
    expect(fastFails[0].status).toBe(503);
    expect(fastFails[0].retryAfterMs).toBe(1000);
    expect(fastFails[0].details).toMatchObject({ model: 'm', reason: 'breaker-open' });
    expect(router.stats().m.endpoints[0].breaker).toBe('open');
    expect(router.stats().m.endpoints[0].ejected).toBe(false); // a group of one is never ejected

    // Each recovery period lets exactly one probe through, however many requests arrive.
    for (let period = 1; period <= 3; period++) {
      await clock.advance(1000);
      await Promise.all(Array.from({ length: 30 }, () => settle(router.chat(chatBody('m')))));
      expect(transport.calls).toHaveLength(5 + period);
    }
    expect(events.filter((e) => e.type === 'breakerStateChange').map((e) => (e.event as { to: string }).to)).toEqual([
      'open',
      'half-open',
      'open',
      'half-open',
      'open',
      'half-open',
      'open',
    ]);

    // It recovers: the next probe succeeds and closes the breaker.
    transport.set(A, {});
    await clock.advance(1000);
    await expect(router.chat(chatBody('m'))).resolves.toMatchObject({ endpoint: 'a' });
    expect(router.stats().m.endpoints[0].breaker).toBe('closed');
  });
});

// ---- ejection -----------------------------------------------------------------------------------------------

describe('ModelRouter: outlier ejection', () => {
  it('ejects an endpoint that keeps failing, routes around it, and brings it back after the ejection time', async () => {
    const transport = new FakeTransport().set(B, { status: 500 });
    const { router, clock, events } = setup({
      models: {
        m: {
          retry: noDelay,
          outlier: { consecutiveErrors: 3, baseEjectionMs: 10_000 },
          breaker: { failureThreshold: 0 },
          endpoints: [{ url: A, id: 'a' }, { url: B, id: 'b' }, { url: C, id: 'c' }],
        },
      },
    }, transport);
    for (let i = 0; i < 30; i++) await router.chat(chatBody('m'));
    expect(transport.callsTo(B)).toHaveLength(3);
    expect(events.filter((e) => e.type === 'ejected').map((e) => e.event)).toEqual([
      { model: 'm', endpoint: 'b', reason: 'consecutive-errors', ejections: 1, durationMs: 10_000, until: 10_000 },
    ]);
    expect(router.stats().m.endpoints[1]).toMatchObject({ id: 'b', ejected: true, ejectedUntil: 10_000, ejections: 1, errors: 3 });

    transport.set(B, {});
    await clock.advance(10_000);
    expect(events.filter((e) => e.type === 'returned').map((e) => e.event)).toEqual([{ model: 'm', endpoint: 'b', ejectedForMs: 10_000 }]);
    for (let i = 0; i < 30; i++) await router.chat(chatBody('m'));
    expect(transport.callsTo(B)).toHaveLength(13);
    expect(router.stats().m.endpoints[1]).toMatchObject({ ejected: false, ejections: 1 });
  });

  it('never ejects more than maxEjectionPercent of the group', async () => {
    const transport = new FakeTransport().set(A, { status: 500 }).set(B, { status: 500 }).set(C, { status: 500 });
    const { router } = setup({
      models: {
        m: {
          retry: { ...noDelay, maxAttempts: 1 },
          outlier: { consecutiveErrors: 1, maxEjectionPercent: 50 },
          breaker: { failureThreshold: 0 },
          endpoints: [{ url: A }, { url: B }, { url: C }, { url: D }],
        },
      },
    }, transport);
    for (let i = 0; i < 20; i++) await settle(router.chat(chatBody('m')));
    expect(router.stats().m.endpoints.filter((e) => e.ejected)).toHaveLength(2);
  });
});

// ---- health checks ------------------------------------------------------------------------------------------

describe('ModelRouter: health checks', () => {
  it('keeps traffic off an endpoint its health checks mark down, and sends it back once it is up', async () => {
    const down = new Set<string>([B]);
    const transport = new FakeTransport();
    const probe = async (endpoint: EndpointConfig) => !down.has(endpoint.url);
    const { router, clock, events } = setup({
      models: {
        m: { healthCheck: { probe, intervalMs: 1000, unhealthyThreshold: 2, healthyThreshold: 1 }, endpoints: [{ url: A, id: 'a' }, { url: B, id: 'b' }] },
      },
    }, transport);
    await clock.advance(1000); // two failed probes
    expect(router.stats().m.endpoints.map((e) => e.healthy)).toEqual([true, false]);
    for (let i = 0; i < 10; i++) await router.chat(chatBody('m'));
    expect(transport.callsTo(B)).toHaveLength(0);
    down.clear();
    await clock.advance(1000);
    expect(router.stats().m.endpoints[1].healthy).toBe(true);
    for (let i = 0; i < 10; i++) await router.chat(chatBody('m'));
    expect(transport.callsTo(B)).toHaveLength(5);
    expect(events.filter((e) => e.type === 'healthChange').map((e) => (e.event as { healthy: boolean }).healthy)).toEqual([false, true]);
  });

  it('when every endpoint fails its checks, routes to them anyway (panic routing: breakers still protect)', async () => {
    const transport = new FakeTransport();
    const { router, clock } = setup({
      models: { m: { healthCheck: { probe: async () => false, intervalMs: 1000, unhealthyThreshold: 1 }, endpoints: [{ url: A }, { url: B }] } },
    }, transport);
    await clock.advance(0);
    expect(router.stats().m.endpoints.map((e) => e.healthy)).toEqual([false, false]);
    await expect(router.chat(chatBody('m'))).resolves.toBeDefined();
  });

  it('the default probe is GET /v1/models through the transport', async () => {
    const transport = new FakeTransport();
    const { clock } = setup({ models: { m: { healthCheck: {}, endpoints: [{ url: A }] } } }, transport);
    await clock.advance(0);
    expect(transport.calls.map((c) => [c.method, c.path])).toEqual([['GET', '/v1/models']]);
  });
});

// ---- fallbacks ----------------------------------------------------------------------------------------------

describe('ModelRouter: fallbacks', () => {
  it('moves along the chain when a group is exhausted, rewriting body.model', async () => {
    const transport = new FakeTransport().set(A, { status: 503 }).set(B, { network: true }).set(C, { status: 429 });
    const { router, events } = setup({
      models: {
        'gpt-4o': { retry: noDelay, fallbacks: ['gpt-4o-mini', 'llama'], endpoints: [{ url: A, id: 'a' }, { url: B, id: 'b' }] },
        'gpt-4o-mini': { retry: { ...noDelay, maxAttempts: 1 }, endpoints: [{ url: C, id: 'c' }] },
        llama: { endpoints: [{ url: D, id: 'd', model: 'llama-3.1-70b' }] },
      },
    }, transport);
    const result = await router.chat(chatBody('gpt-4o'));
    expect(result.model).toBe('llama');
    expect(result.endpoint).toBe('d');
    expect(result.attempts.map((a) => [a.model, a.endpoint, a.status])).toEqual([
      ['gpt-4o', 'a', 503],
      ['gpt-4o', 'b', undefined],
      ['gpt-4o', 'a', 503],
      ['gpt-4o-mini', 'c', 429],
      ['llama', 'd', 200],
    ]);
    expect(transport.callsTo(C)[0].body!.model).toBe('gpt-4o-mini');
    expect(transport.callsTo(D)[0].body!.model).toBe('llama-3.1-70b');
    expect(events.filter((e) => e.type === 'fallback').map((e) => [(e.event as { from: string }).from, (e.event as { to: string }).to])).toEqual([
      ['gpt-4o', 'gpt-4o-mini'],
      ['gpt-4o-mini', 'llama'],
    ]);
    const stats = router.stats();
    expect([stats['gpt-4o'].fellBack, stats['gpt-4o-mini'].fellBack, stats.llama.successes]).toEqual([1, 1, 1]);
  });

  it('falls back at once, without upstream calls, when every breaker of the group is open', async () => {
    const transport = new FakeTransport().set(A, { status: 500 });
    const { router } = setup({
      models: {
        m: { retry: { ...noDelay, maxAttempts: 1 }, breaker: { failureThreshold: 1 }, fallbacks: ['n'], endpoints: [{ url: A }] },
        n: { endpoints: [{ url: B }] },
      },
    }, transport);
    await router.chat(chatBody('m')); // opens A's breaker, falls back
    const result = await router.chat(chatBody('m'));
    expect(result.model).toBe('n');
    expect(result.attempts.map((a) => a.model)).toEqual(['n']);
    expect(transport.callsTo(A)).toHaveLength(1);
  });

  it('a bad request never falls back; fallbackOn can add a status (e.g. 400 for a bigger context window)', async () => {
    const transport = new FakeTransport().set(A, { status: 400 });
    const models = (fallbackOn?: Array<number | '5xx'>): ModelRouterOptions['models'] => ({
      m: { fallbacks: ['big'], ...(fallbackOn ? { fallbackOn } : {}), endpoints: [{ url: A }] },
      big: { endpoints: [{ url: B }] },
    });
    const plain = setup({ models: models() }, transport);
    expect(((await settle(plain.router.chat(chatBody('m')))).error as UpstreamError).status).toBe(400);
    const widened = setup({ models: models([400, '5xx']) }, transport);
    expect((await widened.router.chat(chatBody('m'))).model).toBe('big');
  });

  it('when every model fails, rejects with the last error and its attempts', async () => {
    const transport = new FakeTransport().set(A, { status: 503 }).set(B, { status: 502 });
    const { router } = setup({
      models: {
        m: { retry: { ...noDelay, maxAttempts: 1 }, fallbacks: ['n'], endpoints: [{ url: A }] },
        n: { retry: { ...noDelay, maxAttempts: 1 }, endpoints: [{ url: B }] },
      },
    }, transport);
    const { error } = await settle(router.chat(chatBody('m')));
    expect((error as UpstreamError).status).toBe(502);
    expect(routeAttemptsOf(error)!.map((a) => [a.model, a.status])).toEqual([
      ['m', 503],
      ['n', 502],
    ]);
  });

  it('matchesFallback and isRetryableUpstreamError read statuses, network errors and router rejections', () => {
    const up = (status: number, network = false) => new UpstreamError('x', { status, network });
    const conditions = [429, '5xx', 'network', 'breaker-open'] as const;
    expect(matchesFallback(conditions, up(503))).toBe(true);
    expect(matchesFallback(conditions, up(429))).toBe(true);
    expect(matchesFallback(conditions, up(400))).toBe(false);
    expect(matchesFallback(conditions, up(502, true))).toBe(true);
    expect(matchesFallback(conditions, up(504, true))).toBe(false); // a timeout, not listed
    expect(matchesFallback(conditions, new BreakerOpenError('open', { retryAfterMs: 1 }))).toBe(true);
    expect(matchesFallback(['4xx'], up(404))).toBe(true);
    expect(matchesFallback(() => true, new Error('x'))).toBe(true);
    expect(matchesFallback(conditions, new AbortedError())).toBe(false);
    expect([408, 429, 500, 503].every((s) => isRetryableUpstreamError(up(s)))).toBe(true);
    expect([400, 401, 404, 422].some((s) => isRetryableUpstreamError(up(s)))).toBe(false);
    expect(isRetryableUpstreamError(up(502, true))).toBe(true);
  });
});

// ---- abort --------------------------------------------------------------------------------------------------

describe('ModelRouter: abort', () => {
  it('an aborted signal stops a call in flight: no retry, no fallback, the endpoint is not blamed', async () => {
    const transport = new FakeTransport().set(A, 'hang');
    const { router } = setup({ models: { m: { fallbacks: ['n'], endpoints: [{ url: A, id: 'a' }] }, n: { endpoints: [{ url: B }] } } }, transport);
    const controller = new AbortController();
    const pending = settle(router.chat(chatBody('m'), { signal: controller.signal }));
    await Promise.resolve();
    controller.abort(new Error('client went away'));
    const { error } = await pending;
    expect(error).toBeInstanceOf(AbortedError);
    expect((error as AbortedError).cause).toEqual(new Error('client went away'));
    expect(routeAttemptsOf(error)).toHaveLength(1);
    expect(transport.calls).toHaveLength(1);
    const stats = router.stats().m.endpoints[0];
    expect(stats).toMatchObject({ outstanding: 0, errors: 0, breaker: 'closed' });
  });

  it('an abort during a backoff wakes the call at once, leaving no timer', async () => {
    const transport = new FakeTransport().set(A, { status: 503 });
    const { router, clock } = setup({ models: { m: { retry: { baseDelayMs: 5000, jitter: 'none' }, endpoints: [{ url: A }] } } }, transport);
    const controller = new AbortController();
    const pending = settle(router.chat(chatBody('m'), { signal: controller.signal }));
    await clock.advance(10);
    expect(clock.pendingTimers).toBe(1);
    controller.abort();
    expect((await pending).error).toBeInstanceOf(AbortedError);
    expect(clock.pendingTimers).toBe(0);
    expect(transport.calls).toHaveLength(1);
  });

  it('an already aborted signal makes no call', async () => {
    const transport = new FakeTransport();
    const { router } = setup({ models: { m: { endpoints: [{ url: A }] } } }, transport);
    const { error } = await settle(router.chat(chatBody('m'), { signal: AbortSignal.abort() }));
    expect(error).toBeInstanceOf(AbortedError);
    expect(transport.calls).toHaveLength(0);
  });
});

describe('ModelRouter: attemptTimeoutMs', () => {
  it('aborts an attempt that does not answer in time, fails it as a timeout and retries on another endpoint', async () => {
    const transport = new FakeTransport().set(A, 'hang').set(B, {});
    const { router, clock } = setup(
      { models: { m: { attemptTimeoutMs: 2000, retry: { ...noDelay, jitter: 'none' }, endpoints: [{ url: A, id: 'a' }, { url: B, id: 'b' }] } } },
      transport,
    );
    const outcomes: string[] = [];
    router.on('attempt', (e) => outcomes.push(`${e.endpoint}:${e.outcome}`));
    const pending = router.chat(chatBody('m'));
    await clock.advance(1999);
    expect(transport.calls).toHaveLength(1); // still waiting on a
    await clock.advance(1);
    const result = await pending;
    expect(result.endpoint).toBe('b');
    expect(outcomes).toEqual(['a:timeout', 'b:success']);
    const timedOut = result.attempts[0]!.error as TimeoutError;
    expect(timedOut).toBeInstanceOf(TimeoutError);
    expect(timedOut.message).toContain('did not answer within 2000ms');
    expect(timedOut.status).toBe(504);
    // The upstream call itself was aborted (the hanging fake settles only on its signal), and a was blamed.
    expect(router.stats().m.endpoints[0]).toMatchObject({ outstanding: 0, errors: 1 });
    expect(clock.pendingTimers).toBe(0);
  });

  it('falls back to another model once every attempt timed out; a caller abort stays an abort', async () => {
    const transport = new FakeTransport().set(A, 'hang').set(B, {});
    const { router, clock } = setup(
      {
        defaults: { attemptTimeoutMs: 500 },
        models: { m: { retry: { maxAttempts: 2, ...noDelay }, fallbacks: ['n'], endpoints: [{ url: A, id: 'a' }] }, n: { endpoints: [{ url: B, id: 'b' }] } },
      },
      transport,
    );
    const pending = router.chat(chatBody('m'));
    await clock.advance(500);
    await clock.advance(500);
    const result = await pending;
    expect(result.model).toBe('n');
    expect(result.attempts.map((a) => [a.endpoint, a.error instanceof TimeoutError])).toEqual([
      ['a', true],
      ['a', true],
      ['b', false],
    ]);

    const controller = new AbortController();
    const aborted = settle(router.chat(chatBody('m'), { signal: controller.signal }));
    await clock.advance(100);
    controller.abort(new Error('client went away'));
    expect((await aborted).error).toBeInstanceOf(AbortedError);
    expect(clock.pendingTimers).toBe(0);
  });

  it('a stream counts until its first chunk: one that never starts is retried, one that started is never cut', async () => {
    const transport = new FakeTransport().set(A, { stallFirstChunk: true }).set(B, { chunks: ['data: x\n\n', 'data: [DONE]\n\n'] });
    const { router, clock } = setup({ models: { m: { attemptTimeoutMs: 1000, retry: noDelay, endpoints: [{ url: A, id: 'a' }, { url: B, id: 'b' }] } } }, transport);
    const pending = router.chatStream(chatBody('m'));
    await clock.advance(1000);
    const result = await pending;
    expect(result.endpoint).toBe('b');
    expect((result.attempts[0]!.error as TimeoutError).message).toContain('did not start streaming within 1000ms');
    // The timer is gone once the first chunk came: reading slowly past the deadline is fine.
    expect(clock.pendingTimers).toBe(0);
    await clock.advance(5000);
    expect(await readAll(result.response)).toBe('data: x\n\ndata: [DONE]\n\n');
    expect(router.stats().m.endpoints.map((e) => e.outstanding)).toEqual([0, 0]);
  });

  it('a call may set its own attemptTimeoutMs (shorter, or where the model has none); a bad one is a RangeError', async () => {
    const transport = new FakeTransport().set(A, 'hang').set(B, {});
    const { router, clock } = setup({ models: { m: { attemptTimeoutMs: 10_000, retry: noDelay, endpoints: [{ url: A, id: 'a' }, { url: B, id: 'b' }] }, n: { retry: { maxAttempts: 1 }, endpoints: [{ url: A, id: 'a' }] } } }, transport);
    const pending = router.chat(chatBody('m'), { attemptTimeoutMs: 50 });
    await clock.advance(50);
    const result = await pending;
    expect(result.attempts.map((a) => [a.endpoint, a.error instanceof TimeoutError])).toEqual([
      ['a', true],
      ['b', false],
    ]);
    const none = settle(router.chat(chatBody('n'), { attemptTimeoutMs: 200 }));
    await clock.advance(200);
    expect((await none).error).toBeInstanceOf(TimeoutError);
    for (const bad of [0, -1, Number.NaN, '50', 2 ** 31]) {
      await expect(router.chat(chatBody('m'), { attemptTimeoutMs: bad as number })).rejects.toThrow(/attemptTimeoutMs must be a number of ms/);
    }
    expect(clock.pendingTimers).toBe(0);
  });

  it('rejects a bad attemptTimeoutMs with its path', () => {
    const error = invalidOption(() => new ModelRouter({ transport: new FakeTransport(), models: { m: { attemptTimeoutMs: 0, endpoints: [{ url: A }] } } }));
    expect(error.issues.map((i) => i.path)).toEqual(['models.m.attemptTimeoutMs']);
    const bad = invalidOption(() => new ModelRouter({ transport: new FakeTransport(), defaults: { attemptTimeoutMs: '5s' as never }, models: { m: { endpoints: [{ url: A }] } } }));
    expect(bad.issues.map((i) => i.path)).toEqual(['defaults.attemptTimeoutMs']);
  });
});

// ---- streams ------------------------------------------------------------------------------------------------

async function readAll(stream: UpstreamStream): Promise<string> {
  let text = '';
  for await (const chunk of stream.body) text += Buffer.from(chunk).toString('utf8');
  return text;
}

describe('ModelRouter: streams', () => {
  it('retries a stream that fails before its first byte (error status, or a body that breaks at once)', async () => {
    const transport = new FakeTransport().set(A, { status: 503 }).set(B, { breakAfter: 0 }).set(C, {});
    const { router } = setup({ models: { m: { retry: noDelay, endpoints: [{ url: A, id: 'a' }, { url: B, id: 'b' }, { url: C, id: 'c' }] } } }, transport);
    const result = await router.chatStream(chatBody('m'));
    expect(result.attempts.map((a) => [a.endpoint, a.status])).toEqual([
      ['a', 503],
      ['b', undefined],
      ['c', 200],
    ]);
    expect((result.attempts[1].error as UpstreamError).network).toBe(true);
    expect(transport.calls.every((c) => c.stream && c.body!.stream === true)).toBe(true);
    expect(await readAll(result.response)).toBe('data: a\n\ndata: b\n\ndata: [DONE]\n\n');
    expect(router.stats().m.endpoints.map((e) => e.outstanding)).toEqual([0, 0, 0]);
  });

  it('after the first byte, a broken stream is the caller\'s (no retry), and counts against the endpoint', async () => {
    const transport = new FakeTransport().set(A, { breakAfter: 1 });
    const { router } = setup({ models: { m: { retry: noDelay, endpoints: [{ url: A, id: 'a' }, { url: B }] } } }, transport);
    const result = await router.chatStream(chatBody('m'));
    expect(result.endpoint).toBe('a');
    await expect(readAll(result.response)).rejects.toThrow('socket hang up');
    expect(transport.calls).toHaveLength(1);
    expect(router.stats().m.endpoints[0]).toMatchObject({ outstanding: 0, errors: 1, successes: 1 });
  });

  it('the endpoint stays outstanding until the body ends or is returned early', async () => {
    const { router } = setup({ models: { m: { endpoints: [{ url: A }] } } });
    const result = await router.chatStream(chatBody('m'));
    expect(router.stats().m.endpoints[0].outstanding).toBe(1);
    const iterator = result.response.body[Symbol.asyncIterator]();
    expect(Buffer.from((await iterator.next()).value as Uint8Array).toString()).toBe('data: a\n\n');
    await iterator.return!();
    expect(router.stats().m.endpoints[0].outstanding).toBe(0);
  });

  it('aborting the signal while the caller holds the stream releases the endpoint', async () => {
    const { router } = setup({ models: { m: { endpoints: [{ url: A }] } } });
    const controller = new AbortController();
    await router.chatStream(chatBody('m'), { signal: controller.signal });
    expect(router.stats().m.endpoints[0].outstanding).toBe(1);
    controller.abort();
    expect(router.stats().m.endpoints[0].outstanding).toBe(0);
  });
});

// ---- breakers, stats, close ---------------------------------------------------------------------------------

describe('ModelRouter: breakers, stats and close', () => {
  it('takes its breakers from a registry, named ai:<model>/<endpoint-id>', async () => {
    const clock = new ManualClock(0);
    const registry = new BreakerRegistry({ clock });
    const transport = new FakeTransport().set(A, { status: 500 });
    const router = new ModelRouter({
      transport,
      clock,
      logger: silentLogger,
      breakers: registry,
      models: { m: { retry: { ...noDelay, maxAttempts: 1 }, breaker: { failureThreshold: 2 }, endpoints: [{ url: A, id: 'a' }, { url: B, id: 'b' }] } },
    });
    routers.push(router);
    expect(registry.names()).toEqual(['ai:m/a', 'ai:m/b']);
    await settle(router.chat(chatBody('m')));
    await settle(router.chat(chatBody('m')));
    await settle(router.chat(chatBody('m')));
    expect(registry.get('ai:m/a').getState()).toBe('open');
    await router.close();
    // The registry owns them: close() leaves them alone.
    expect(registry.get('ai:m/a').getState()).toBe('open');
  });

  it('stats() reports per model and endpoint', async () => {
    const transport = new FakeTransport().set(A, { latencyMs: 40 });
    const { router } = setup({ models: { m: { strategy: 'weighted', endpoints: [{ url: A, id: 'a', weight: 2 }] } } }, transport);
    await router.chat(chatBody('m'));
    expect(router.stats()).toEqual({
      m: {
        model: 'm',
        strategy: 'weighted',
        requests: 1,
        successes: 1,
        failures: 0,
        fellBack: 0,
        endpoints: [
          {
            id: 'a',
            url: A,
            provider: 'openai',
            model: 'm',
            weight: 2,
            requests: 1,
            successes: 1,
            errors: 0,
            outstanding: 0,
            ewmaMs: 40,
            ejected: false,
            ejections: 0,
            breaker: 'closed',
            healthy: true,
          },
        ],
      },
    });
  });

  it('close() stops health checks and ejection timers; later calls reject', async () => {
    const transport = new FakeTransport().set(B, { status: 500 });
    const { router, clock } = setup({
      models: {
        m: {
          retry: noDelay,
          healthCheck: { probe: async () => true, intervalMs: 1000 },
          outlier: { consecutiveErrors: 1 },
          endpoints: [{ url: A }, { url: B }],
        },
      },
    }, transport);
    await clock.advance(0);
    await router.chat(chatBody('m'));
    await router.chat(chatBody('m'));
    expect(router.stats().m.endpoints[1].ejected).toBe(true);
    expect(clock.pendingTimers).toBeGreaterThan(1);
    await router.close();
    expect(clock.pendingTimers).toBe(0);
    expect((await settle(router.chat(chatBody('m')))).error).toBeInstanceOf(AbortedError);
  });

  it('close() wakes calls waiting out a backoff', async () => {
    const transport = new FakeTransport().set(A, { status: 503 });
    const { router, clock } = setup({ models: { m: { retry: { baseDelayMs: 5000, jitter: 'none' }, endpoints: [{ url: A }] } } }, transport);
    const pending = settle(router.chat(chatBody('m')));
    await clock.advance(0);
    await router.close();
    expect((await pending).error).toBeInstanceOf(AbortedError);
    expect(clock.pendingTimers).toBe(0);
  });

  it('InvalidOptionError is thrown at construction, never at call time', () => {
    expect(() => new ModelRouter({ transport: new FakeTransport(), models: { m: { endpoints: [{ url: 'not a url' }] } } })).toThrow(InvalidOptionError);
  });
});
