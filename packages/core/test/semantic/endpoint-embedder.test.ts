/**
 * EndpointEmbedder against real HTTP servers on 127.0.0.1: the @amas/loadtest OpenAI-compatible mock
 * provider, and a tiny hand-written server for answers the mock never gives (malformed bodies, a failure
 * for one batch only, header checks).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mockEmbedding, startMockProvider, type MockProvider } from '@amas/loadtest';
import { AbortedError } from '../../src/errors.js';
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
): Promise<{ url: string; requests: string[][]; close(): Promise<void> }> {
  const requests: string[][] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const inputs = (JSON.parse(body) as { input: string[] }).input;
      requests.push(inputs);
      handler(inputs, req, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
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
