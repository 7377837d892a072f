/**
 * EndpointEmbedder against real HTTP servers on 127.0.0.1: the @amas/loadtest OpenAI-compatible mock
 * provider, and a tiny hand-written server for answers the mock never gives (malformed bodies, a failure
 * for one batch only, header checks). The last groups go through the provider layer: a transport or endpoint
 * of the caller's, a ModelRouter over two servers, and an AiService (usage records).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mockEmbedding, startMockProvider, type MockProvider } from '@amas/loadtest';
import { AiService } from '../../src/ai/ai-service.js';
import { ModelRouter } from '../../src/ai/model-router.js';
import { ProviderClient } from '../../src/ai/provider-client.js';
import type { ProviderTransport } from '../../src/ai/provider-types.js';
import { AbortedError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import { cosine, EmbeddingFailedError, EmbeddingInputError, normalize } from '../../src/semantic/embedder.js';
import { EndpointEmbedder, embeddingsUrl } from '../../src/semantic/endpoint-embedder.js';
import { invalidOption } from '../helpers.js';

let mock: MockProvider;
const open: EndpointEmbedder[] = [];
const make = (options: Partial<ConstructorParameters<typeof EndpointEmbedder>[0]> & { baseUrl?: string } = {}) => {
  const e = new EndpointEmbedder({ baseUrl: mock.url, model: 'text-embedding-3-small', ...options });
  open.push(e);
  return e;
};

beforeAll(async () => {
  mock = await startMockProvider({ embeddingDimensions: 16 });
});
afterAll(async () => {
  await mock.close();
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((e) => e.close()));
  mock.setOutage(false);
  mock.setLatency(0);
  mock.resetStats();
});

async function failure(promise: Promise<unknown>): Promise<EmbeddingFailedError> {
  const error = await promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(EmbeddingFailedError);
  return error as EmbeddingFailedError;
}

/** A loopback server answering POSTs with `handler(inputs, req)`; records every request's inputs. */
async function customServer(
  handler: (inputs: string[], req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ url: string; requests: string[][]; bodies: Record<string, unknown>[]; close(): Promise<void> }> {
  const requests: string[][] = [];
  const bodies: Record<string, unknown>[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const parsed = JSON.parse(body) as { input: string[] };
      bodies.push(parsed);
      const inputs = parsed.input;
      requests.push(inputs);
      handler(inputs, req, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    bodies,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(typeof body === 'string' ? body : JSON.stringify(body));
};
const okBody = (inputs: string[], dims = 4) => ({
  object: 'list',
  data: inputs.map((t, index) => ({ object: 'embedding', index, embedding: mockEmbedding(t, dims) })),
});

describe('EndpointEmbedder with the mock provider', () => {
  it('micro-batches 20 concurrent calls into fewer requests; each caller gets its own rows in order', async () => {
    const e = make();
    expect(e.dimensions).toBe(0);
    const texts = Array.from({ length: 20 }, (_, i) => `question number ${i}`);
    const results = await Promise.all(texts.map((t, i) => (i % 5 === 0 ? e.embed([t, `${t} (again)`]) : e.embed([t]))));
    expect(mock.stats().embeddings).toBe(1);
    expect(mock.stats().embeddings).toBeLessThan(20);
    expect(e.stats()).toMatchObject({ requests: 1, texts: 24, largestBatch: 24, failures: 0 });
    expect(e.dimensions).toBe(16);
    results.forEach((rows, i) => {
      expect(rows).toHaveLength(i % 5 === 0 ? 2 : 1);
      const expected = normalize(mockEmbedding(texts[i], 16));
      expect(Array.from(rows[0])).toEqual(Array.from(expected));
      if (i % 5 === 0) expect(Array.from(rows[1])).toEqual(Array.from(normalize(mockEmbedding(`${texts[i]} (again)`, 16))));
      expect(Math.abs(cosine(rows[0], rows[0]) - 1)).toBeLessThan(1e-5);
    });
  });

  it('caps a request at maxBatch; a caller with more texts spans several requests, in order', async () => {
    const e = make({ maxBatch: 8 });
    await Promise.all(Array.from({ length: 20 }, (_, i) => e.embed([`t${i}`])));
    expect(mock.stats().embeddings).toBe(3);
    expect(e.stats().largestBatch).toBe(8);

    mock.resetStats();
    const small = make({ maxBatch: 4 });
    const texts = Array.from({ length: 10 }, (_, i) => `long input ${i}`);
    const rows = await small.embed(texts);
    expect(mock.stats().embeddings).toBe(3);
    rows.forEach((row, i) => expect(Array.from(row)).toEqual(Array.from(normalize(mockEmbedding(texts[i], 16)))));
  });

  it('calls more than maxWaitMs apart go in separate requests', async () => {
    const e = make({ maxWaitMs: 1 });
    await e.embed(['first']);
    await e.embed(['second']);
    expect(mock.stats().embeddings).toBe(2);
  });

  it('sends configured dimensions and checks them', async () => {
    const e = make({ dimensions: 32 });
    expect(e.dimensions).toBe(32);
    const [row] = await e.embed(['shorter or longer']);
    expect(row.length).toBe(32);
    expect(Array.from(row)).toEqual(Array.from(normalize(mockEmbedding('shorter or longer', 32))));
  });

  it('an outage rejects the callers of that batch with the status and the provider message; it recovers after', async () => {
    const e = make();
    mock.setOutage({ status: 503, retryAfterSeconds: 2 });
    const calls = Array.from({ length: 5 }, (_, i) => failure(e.embed([`during outage ${i}`])));
    const errors = await Promise.all(calls);
    expect(mock.stats().embeddings).toBe(1);
    for (const error of errors) {
      expect(error.reason).toBe('http');
      expect(error.status).toBe(503);
      expect(error.retryAfterMs).toBe(2000);
      expect(error.message).toBe(
        `endpoint:text-embedding-3-small: POST ${mock.url}/v1/embeddings answered 503: The mock provider is unavailable (outage).`,
      );
      expect(error.details).toMatchObject({ upstreamStatus: 503 });
    }
    expect(e.stats().failures).toBe(1);
    mock.setOutage(false);
    expect((await e.embed(['after outage']))[0].length).toBe(16);
  });

  it('a 400 from the provider (unknown dimensions limit) names the status and message', async () => {
    const e = make({ dimensions: 100_000 });
    const error = await failure(e.embed(['x']));
    expect(error.message).toMatch(/answered 400: `dimensions` must be <= \d+\./);
    expect(error.status).toBe(502);
  });

  it('a timeout rejects with reason timeout', async () => {
    mock.setLatency(300);
    const e = make({ timeoutMs: 50 });
    const error = await failure(e.embed(['slow']));
    expect(error.reason).toBe('timeout');
    expect(error.status).toBe(504);
    expect(error.message).toMatch(/timed out after 50 ms/);
  });

  it('an aborted caller leaves the batch; the others still get their rows', async () => {
    const e = make({ maxWaitMs: 20 });
    const controller = new AbortController();
    const aborted = e.embed(['leave me out'], { signal: controller.signal });
    const kept = e.embed(['keep me']);
    controller.abort();
    await expect(aborted).rejects.toBeInstanceOf(AbortedError);
    expect(Array.from((await kept)[0])).toEqual(Array.from(normalize(mockEmbedding('keep me', 16))));
    expect(e.stats().texts).toBe(1);
  });

  it('close() rejects queued callers and later calls', async () => {
    const e = make({ maxWaitMs: 50 });
    const queued = e.embed(['queued']);
    await e.close();
    expect((await failure(queued)).reason).toBe('closed');
    expect((await failure(e.embed(['later']))).reason).toBe('closed');
    expect(mock.stats().embeddings).toBe(0);
  });

  it('bad input: [] without a request; empty and non-string texts rejected', async () => {
    const e = make();
    expect(await e.embed([])).toEqual([]);
    await expect(e.embed(['fine', ''])).rejects.toBeInstanceOf(EmbeddingInputError);
    await expect(e.embed([{} as unknown as string])).rejects.toThrow(/texts\[0\] must be a string, received \{\}/);
    await new Promise((r) => setTimeout(r, 20));
    expect(mock.stats().requests).toBe(0);
  });
});

describe('EndpointEmbedder with a hand-written server', () => {
  it('a failing batch rejects only its own callers', async () => {
    const server = await customServer((inputs, _req, res) =>
      inputs.includes('poison') ? json(res, 500, { error: { message: 'cannot embed poison' } }) : json(res, 200, okBody(inputs)),
    );
    try {
      const e = make({ baseUrl: server.url, maxBatch: 2 });
      const results = await Promise.allSettled([e.embed(['a']), e.embed(['poison']), e.embed(['c']), e.embed(['d'])]);
      expect(server.requests).toEqual([
        ['a', 'poison'],
        ['c', 'd'],
      ]);
      expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'fulfilled', 'fulfilled']);
      const reason = (results[0] as PromiseRejectedResult).reason as EmbeddingFailedError;
      expect(reason.message).toMatch(/answered 500: cannot embed poison$/);
      expect(Array.from((results[2] as PromiseFulfilledResult<Float32Array[]>).value[0])).toEqual(
        Array.from(normalize(mockEmbedding('c', 4))),
      );
    } finally {
      await server.close();
    }
  });

  it('malformed answers reject with reason malformed-response and say what is wrong', async () => {
    const answers: [string, (inputs: string[]) => unknown, RegExp][] = [
      ['not json', () => 'this is not json', /the body is not JSON \(this is not json\)/],
      ['no data', () => ({ object: 'list' }), /no `data` array/],
      ['wrong count', (inputs) => ({ data: okBody(inputs).data.slice(1) }), /1 embeddings for 2 inputs/],
      [
        'NaN value',
        (inputs) => ({ data: inputs.map((_, index) => ({ index, embedding: [1, 'x', 0, 0] })) }),
        /row 0 has a non-finite value at 1 \("x"\)/,
      ],
      [
        'mixed dimensions',
        (inputs) => ({ data: inputs.map((t, index) => ({ index, embedding: mockEmbedding(t, 4 + index) })) }),
        /row 1 has 5 dimensions, expected 4/,
      ],
      ['zero vector', (inputs) => ({ data: inputs.map((_, index) => ({ index, embedding: [0, 0, 0, 0] })) }), /zero or empty vector/],
      ['duplicate index', (inputs) => ({ data: inputs.map(() => ({ index: 0, embedding: [1, 0, 0, 0] })) }), /data\[1\]\.index is 0/],
    ];
    for (const [label, answer, message] of answers) {
      const server = await customServer((inputs, _req, res) => json(res, 200, answer(inputs) as object));
      try {
        const e = make({ baseUrl: server.url });
        const [a, b] = await Promise.all([failure(e.embed(['one'])), failure(e.embed(['two']))]);
        expect(a.reason, label).toBe('malformed-response');
        expect(a.message, label).toMatch(message);
        expect(a.message, label).toContain(`POST ${server.url}/v1/embeddings answered a malformed embeddings response`);
        expect(b.message, label).toBe(a.message);
        expect(e.dimensions, `${label}: nothing learned from a malformed answer`).toBe(0);
      } finally {
        await server.close();
      }
    }
  });

  it('rows come back by `index` even when the server answers out of order; base64 rows are decoded', async () => {
    const server = await customServer((inputs, _req, res) => {
      const data = inputs.map((t, index) => {
        const v = mockEmbedding(t, 4);
        const buf = Buffer.alloc(16);
        v.forEach((x, i) => buf.writeFloatLE(x, i * 4));
        return { index, embedding: index % 2 ? buf.toString('base64') : v };
      });
      json(res, 200, { data: data.reverse() });
    });
    try {
      const e = make({ baseUrl: server.url });
      const rows = await e.embed(['p', 'q', 'r']);
      rows.forEach((row, i) => expect(cosine(row, normalize(mockEmbedding(['p', 'q', 'r'][i], 4)))).toBeGreaterThan(0.99999));
    } finally {
      await server.close();
    }
  });

  it('sends the API key and extra headers; a 401 names the status', async () => {
    const seen: (string | undefined)[] = [];
    const server = await customServer((inputs, req, res) => {
      seen.push(req.headers.authorization, req.headers['x-org'] as string | undefined);
      if (req.headers.authorization !== 'Bearer sk-test') return json(res, 401, { error: { message: 'Incorrect API key provided' } });
      json(res, 200, okBody(inputs));
    });
    try {
      await make({ baseUrl: `${server.url}/v1`, apiKey: 'sk-test', headers: { 'x-org': 'acme' } }).embed(['x']);
      expect(seen).toEqual(['Bearer sk-test', 'acme']);
      const error = await failure(make({ baseUrl: server.url, apiKey: 'wrong' }).embed(['x']));
      expect(error.message).toMatch(/answered 401: Incorrect API key provided$/);
      expect(error.details).toMatchObject({ upstreamStatus: 401 });
    } finally {
      await server.close();
    }
  });

  it('a refused connection rejects with reason network', async () => {
    const server = await customServer(() => {});
    const url = server.url;
    await server.close();
    const error = await failure(make({ baseUrl: url }).embed(['x']));
    expect(error.reason).toBe('network');
    expect(error.message).toMatch(/failed: ECONNREFUSED/);
  });
});

describe('EndpointEmbedder options', () => {
  it('builds the endpoint URL from a root, a /v1 base or a full URL', () => {
    expect(embeddingsUrl('http://127.0.0.1:8080')).toBe('http://127.0.0.1:8080/v1/embeddings');
    expect(embeddingsUrl('https://api.openai.com/v1/')).toBe('https://api.openai.com/v1/embeddings');
    expect(embeddingsUrl('http://gw.local/openai/v1/embeddings')).toBe('http://gw.local/openai/v1/embeddings');
    expect(embeddingsUrl('http://gw.local/proxy')).toBe('http://gw.local/proxy/v1/embeddings');
  });

  it('validates options at construction', () => {
    const base = { baseUrl: 'http://127.0.0.1:1', model: 'm' };
    expect(invalidOption(() => new EndpointEmbedder({ ...base, baseUrl: 'ftp://x' })).message).toMatch(/baseUrl: expected an http\(s\) URL/);
    expect(invalidOption(() => new EndpointEmbedder({ ...base, baseUrl: 'not a url' })).message).toMatch(/baseUrl/);
    expect(invalidOption(() => new EndpointEmbedder({ ...base, model: '' })).message).toMatch(/model/);
    expect(invalidOption(() => new EndpointEmbedder({ ...base, maxBatch: 0 })).message).toMatch(/maxBatch/);
    expect(invalidOption(() => new EndpointEmbedder({ ...base, maxWaitMs: -1 })).message).toMatch(/maxWaitMs/);
    expect(invalidOption(() => new EndpointEmbedder({ ...base, timeoutMs: 0 })).message).toMatch(/timeoutMs/);
    expect(invalidOption(() => new EndpointEmbedder({ ...base, dimensions: 1.5 })).message).toMatch(/dimensions/);
    expect(invalidOption(() => new EndpointEmbedder({ ...base, maxbatch: 3 } as never)).message).toMatch(/unknown: maxbatch/);
  });
});

describe('EndpointEmbedder options (provider layer)', () => {
  const base = { model: 'm' };
  const router = { embeddings: () => Promise.reject(new Error('unused')) } as unknown as ModelRouter;
  const ai = { embeddings: () => Promise.reject(new Error('unused')) } as unknown as AiService;

  it('needs exactly one of baseUrl, endpoint, router, ai', () => {
    expect(invalidOption(() => new EndpointEmbedder({ ...base })).message).toMatch(/baseUrl: expected an http\(s\) URL \(or one of endpoint, router, ai\)/);
    expect(invalidOption(() => new EndpointEmbedder({ ...base, baseUrl: 'http://127.0.0.1:1', router })).message).toMatch(
      /router: expected only one of baseUrl, endpoint, router, ai \(baseUrl is given\)/,
    );
    expect(invalidOption(() => new EndpointEmbedder({ ...base, router, ai })).message).toMatch(/ai: expected only one of/);
    expect(invalidOption(() => new EndpointEmbedder({ ...base, endpoint: { url: 'ftp://x' } })).message).toMatch(/endpoint\.url: expected an http\(s\) URL/);
    expect(invalidOption(() => new EndpointEmbedder({ ...base, router: {} as never })).message).toMatch(/router: expected a ModelRouter/);
    expect(invalidOption(() => new EndpointEmbedder({ ...base, transport: { stream: () => {} } as never, baseUrl: 'http://127.0.0.1:1' })).message).toMatch(
      /transport: expected a ProviderTransport/,
    );
  });

  it('refuses options that do not fit the source, without echoing a key', () => {
    const keyed = invalidOption(() => new EndpointEmbedder({ ...base, router, apiKey: 'sk-secret' }));
    expect(keyed.message).toMatch(/apiKey: expected no apiKey with router/);
    expect(keyed.message).not.toContain('sk-secret');
    expect(invalidOption(() => new EndpointEmbedder({ ...base, endpoint: { url: 'http://127.0.0.1:1' }, apiKey: 'k' })).message).toMatch(/set endpoint\.apiKey/);
    expect(invalidOption(() => new EndpointEmbedder({ ...base, ai, headers: { 'x-a': '1' } })).message).toMatch(/headers: expected no headers with ai/);
    expect(invalidOption(() => new EndpointEmbedder({ ...base, ai, transport: new ProviderClient() })).message).toMatch(/transport: expected no transport with ai/);
    expect(invalidOption(() => new EndpointEmbedder({ ...base, baseUrl: 'http://127.0.0.1:1', user: 'u' })).message).toMatch(/user: expected user only with ai/);
    expect(
      invalidOption(() => new EndpointEmbedder({ ...base, baseUrl: 'http://127.0.0.1:1', transport: new ProviderClient(), client: { connections: 2 } })).message,
    ).toMatch(/client: expected no client options with transport/);
    expect(invalidOption(() => new EndpointEmbedder({ ...base, baseUrl: 'http://127.0.0.1:1', client: { connections: 0 } })).message).toMatch(/client\.connections/);
    expect(invalidOption(() => new EndpointEmbedder({ ...base, baseUrl: 'http://127.0.0.1:1', maxConcurrentRequests: 0 })).message).toMatch(/maxConcurrentRequests/);
  });

  it('reports how it routes', () => {
    const direct = make();
    expect(direct.via).toBe('endpoint');
    expect(direct.url).toBe(`${mock.url}/v1/embeddings`);
    const routed = new EndpointEmbedder({ ...base, router });
    open.push(routed);
    expect(routed.via).toBe('router');
    expect(routed.url).toBeUndefined();
  });
});

describe('EndpointEmbedder batching options', () => {
  it('adaptive: with no recent traffic the first request leaves at once (not after maxWaitMs), same-turn calls sharing it', async () => {
    const e = make({ maxWaitMs: 60_000, adaptive: true });
    const rows = await Promise.all([e.embed(['x']), e.embed(['y']), e.embed(['z'])]);
    expect(rows.map((r) => r[0].length)).toEqual([16, 16, 16]);
    expect(mock.stats().embeddings).toBe(1);
  });

  it('maxConcurrentRequests: requests wait for a free slot, one at a time', async () => {
    mock.setLatency(30);
    const e = make({ maxBatch: 2, maxConcurrentRequests: 1 });
    const texts = Array.from({ length: 6 }, (_, i) => `queued ${i}`);
    const rows = await Promise.all(texts.map((t) => e.embed([t])));
    expect(mock.stats().embeddings).toBe(3);
    expect(mock.stats().maxInFlight).toBe(1);
    rows.forEach(([row], i) => expect(Array.from(row)).toEqual(Array.from(normalize(mockEmbedding(texts[i], 16)))));
  });
});

describe('EndpointEmbedder through the provider layer', () => {
  const cleanups: Array<() => unknown> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  const track = (e: EndpointEmbedder) => {
    open.push(e);
    cleanups.push(() => e.close());
    return e;
  };
  const model = 'text-embedding-3-small';

  it('a transport of the caller’s: N concurrent calls are one transport call; close() leaves the transport open', async () => {
    const client = new ProviderClient();
    cleanups.push(() => client.closeAll());
    let calls = 0;
    const transport: ProviderTransport = {
      request: (endpoint, request) => {
        calls++;
        return client.request(endpoint, request);
      },
      stream: (endpoint, request) => client.stream(endpoint, request),
    };
    const e = track(new EndpointEmbedder({ baseUrl: mock.url, model, transport }));
    const texts = Array.from({ length: 12 }, (_, i) => `concurrent ${i}`);
    const rows = await Promise.all(texts.map((t) => e.embed([t])));
    expect(calls).toBe(1);
    expect(mock.stats().embeddings).toBe(1);
    expect(e.stats()).toMatchObject({ requests: 1, texts: 12, largestBatch: 12, failures: 0, queued: 0 });
    await new Promise((r) => setImmediate(r));
    expect(e.stats().running).toBe(0);
    rows.forEach(([row], i) => expect(Array.from(row)).toEqual(Array.from(normalize(mockEmbedding(texts[i], 16)))));
    await e.close();
    expect(client.closed).toBe(false);
    expect((await new EndpointEmbedder({ baseUrl: mock.url, model, transport }).embed(['still open']))[0].length).toBe(16);
  });

  it('an endpoint config: its key, headers and model name are sent; the call headers too', async () => {
    const seen: Record<string, unknown>[] = [];
    const server = await customServer((inputs, req, res) => {
      seen.push({ authorization: req.headers.authorization, org: req.headers['x-org'], call: req.headers['x-call'], url: req.url });
      json(res, 200, okBody(inputs));
    });
    cleanups.push(() => server.close());
    const e = track(
      new EndpointEmbedder({
        endpoint: { url: `${server.url}/v1`, apiKey: 'sk-e', headers: { 'x-org': 'acme' }, model: 'deployed-embedding' },
        headers: { 'x-call': 'yes' },
        model,
      }),
    );
    expect(e.url).toBe(`${server.url}/v1/embeddings`);
    await e.embed(['hello']);
    expect(seen).toEqual([{ authorization: 'Bearer sk-e', org: 'acme', call: 'yes', url: '/v1/embeddings' }]);
    expect(server.bodies[0]).toMatchObject({ model: 'deployed-embedding', input: ['hello'] });
  });

  /** Two embedding servers on 127.0.0.1 behind one ModelRouter model; `a` answers 503 unless told otherwise. */
  async function routed(options: { bothFail?: boolean; maxAttempts?: number } = {}) {
    const a = await customServer((_inputs, _req, res) => json(res, 503, { error: { message: 'A is overloaded' } }));
    const b = await customServer((inputs, _req, res) =>
      options.bothFail ? json(res, 503, { error: { message: 'B is overloaded' } }) : json(res, 200, okBody(inputs)),
    );
    const client = new ProviderClient();
    const router = new ModelRouter({
      transport: client,
      logger: silentLogger,
      models: {
        [model]: {
          endpoints: [
            { id: 'a', url: a.url },
            { id: 'b', url: b.url },
          ],
          retry: { baseDelayMs: 0, ...(options.maxAttempts !== undefined && { maxAttempts: options.maxAttempts }) },
        },
      },
    });
    cleanups.push(
      () => a.close(),
      () => b.close(),
      () => client.closeAll({ force: true }),
      () => router.close(),
    );
    return { a, b, router };
  }

  it('through a ModelRouter: endpoint a answers 503, the call is retried on b; N concurrent calls are one routed call', async () => {
    const { a, b, router } = await routed();
    const e = track(new EndpointEmbedder({ router, model }));
    const texts = Array.from({ length: 5 }, (_, i) => `routed ${i}`);
    const rows = await Promise.all(texts.map((t) => e.embed([t])));
    rows.forEach(([row], i) => expect(Array.from(row)).toEqual(Array.from(normalize(mockEmbedding(texts[i], 4)))));
    expect(a.requests).toEqual([texts]);
    expect(b.requests).toEqual([texts]);
    expect(e.dimensions).toBe(4);
    expect(e.stats()).toMatchObject({ requests: 1, failures: 0, texts: 5 });
    const stats = router.stats()[model].endpoints;
    expect(stats.find((s) => s.id === 'a')).toMatchObject({ errors: 1, successes: 0 });
    expect(stats.find((s) => s.id === 'b')).toMatchObject({ errors: 0, successes: 1 });
  });

  it('through a ModelRouter: when every endpoint fails, reason http with the last endpoint, its status and message', async () => {
    const { a, b, router } = await routed({ bothFail: true, maxAttempts: 2 });
    const e = track(new EndpointEmbedder({ router, model }));
    const [first, second] = await Promise.all([failure(e.embed(['one'])), failure(e.embed(['two']))]);
    expect(a.requests.length + b.requests.length).toBe(2);
    expect(first.reason).toBe('http');
    expect(first.status).toBe(503);
    expect(first.message).toBe(`endpoint:${model}: POST /v1/embeddings for model "${model}" on b answered 503: B is overloaded`);
    expect(first.details).toMatchObject({ endpoint: 'b', upstreamStatus: 503, attempts: 2 });
    expect(second.message).toBe(first.message);
    expect(e.stats().failures).toBe(1);
  });

  it('through a ModelRouter: a fallback model answers when the first model’s group is exhausted', async () => {
    const bad = await customServer((_inputs, _req, res) => json(res, 500, { error: { message: 'down' } }));
    const good = await customServer((inputs, _req, res) => json(res, 200, okBody(inputs)));
    const client = new ProviderClient();
    const router = new ModelRouter({
      transport: client,
      logger: silentLogger,
      models: {
        primary: { endpoints: [{ url: bad.url }], fallbacks: ['backup'], retry: { maxAttempts: 1 } },
        backup: { endpoints: [{ url: good.url, model: 'backup-embedding' }] },
      },
    });
    cleanups.push(
      () => bad.close(),
      () => good.close(),
      () => client.closeAll({ force: true }),
      () => router.close(),
    );
    const e = track(new EndpointEmbedder({ router, model: 'primary' }));
    const [row] = await e.embed(['fall back']);
    expect(Array.from(row)).toEqual(Array.from(normalize(mockEmbedding('fall back', 4))));
    expect(bad.bodies[0]).toMatchObject({ model: 'primary' });
    expect(good.bodies[0]).toMatchObject({ model: 'backup-embedding' });
    expect(router.stats().primary.fellBack).toBe(1);
  });

  it('through a ModelRouter: timeoutMs covers the routed call', async () => {
    mock.setLatency(300);
    const client = new ProviderClient();
    const router = new ModelRouter({ transport: client, logger: silentLogger, models: { [model]: { endpoints: [{ url: mock.url }] } } });
    cleanups.push(
      () => client.closeAll({ force: true }),
      () => router.close(),
    );
    const e = track(new EndpointEmbedder({ router, model, timeoutMs: 50 }));
    const error = await failure(e.embed(['slow']));
    expect(error.reason).toBe('timeout');
    expect(error.status).toBe(504);
    expect(error.message).toBe(`endpoint:${model}: POST /v1/embeddings for model "${model}" timed out after 50 ms`);
  });

  function aiService(): AiService {
    const ai = new AiService({ models: { [model]: { endpoints: [{ url: mock.url }] } }, defaults: { retry: { maxAttempts: 1 } } }, { logger: silentLogger });
    cleanups.push(() => ai.close());
    return ai;
  }

  it('through an AiService: N concurrent calls are one upstream call, recorded under user semantic-cache', async () => {
    const ai = aiService();
    const e = track(new EndpointEmbedder({ ai, model }));
    expect(e.via).toBe('ai');
    const texts = Array.from({ length: 8 }, (_, i) => `through the AI layer ${i}`);
    const rows = await Promise.all(texts.map((t) => e.embed([t])));
    rows.forEach(([row], i) => expect(Array.from(row)).toEqual(Array.from(normalize(mockEmbedding(texts[i], 16)))));
    expect(mock.stats().embeddings).toBe(1);
    const summary = await ai.costs.getSummary({ user: 'semantic-cache' });
    expect(summary.requests).toBe(1);
    expect(summary.errors).toBe(0);
    expect(summary.inputTokens).toBeGreaterThan(0);
    expect(summary.cost).toBeGreaterThan(0);
    expect(summary.byModel[model]).toMatchObject({ requests: 1 });
    expect((await ai.costs.getSummary({ user: 'anonymous' })).requests).toBe(0);
  });

  it('through an AiService: a configured user and team; a failure is recorded as an error and keeps reason http', async () => {
    const ai = aiService();
    const e = track(new EndpointEmbedder({ ai, model, user: 'tenant-a', team: 'search' }));
    await e.embed(['who pays']);
    expect((await ai.costs.getSummary({ user: 'tenant-a' })).requests).toBe(1);
    expect((await ai.costs.getSummary({ team: 'search' })).requests).toBe(1);
    expect((await ai.costs.getSummary({ user: 'semantic-cache' })).requests).toBe(0);

    mock.setOutage({ status: 503 });
    const error = await failure(e.embed(['during outage']));
    expect(error.reason).toBe('http');
    expect(error.status).toBe(503);
    expect(error.message).toMatch(new RegExp(`^endpoint:${model}: POST /v1/embeddings for model "${model}" on .+ answered 503: The mock provider is unavailable \\(outage\\)\\.$`));
    expect((await ai.costs.getSummary({ user: 'tenant-a' })).errors).toBe(1);
  });

  it('through an AiService: a closed AI service rejects with reason closed', async () => {
    const ai = aiService();
    const e = track(new EndpointEmbedder({ ai, model }));
    await ai.close();
    const error = await failure(e.embed(['too late']));
    expect(error.reason).toBe('closed');
  });
});
