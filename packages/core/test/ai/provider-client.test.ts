/**
 * ProviderClient against real HTTP servers started here on 127.0.0.1 (node:http, and node:http2 over TLS for
 * the HTTP/2 case). Servers decide when to answer through promises, so nothing here depends on timing except
 * the timeout tests, which only wait for the timeouts they configure.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createSecureServer, type Http2SecureServer } from 'node:http2';
import type { LookupAddress } from 'node:dns';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidOptionError } from '../../src/errors.js';
import { endpointId, ProviderClient, upstreamPath, upstreamUrl, type ProviderClientOptions } from '../../src/ai/provider-client.js';
import { UpstreamError, type EndpointConfig } from '../../src/ai/provider-types.js';
import { deferred, invalidOption, settle } from '../helpers.js';

// A self-signed certificate for 127.0.0.1 / localhost, valid 2000-2100 (test use only).
const TEST_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg1w4aZrWVejcH99Vf
v0liYeiF6DXOE/L2FBdzBNo4XJ+hRANCAAT9nRRAn/wrThYlcWBp1+kVIFSY/Dm2
R13o2jVbJrJ3qQGc6MIb5NFwlgvIzl2555gDtFzLbMVRowlc2Go5zKH9
-----END PRIVATE KEY-----
`;
const TEST_CERT = `-----BEGIN CERTIFICATE-----
MIIBZzCCAQ2gAwIBAgIBATAKBggqhkjOPQQDAjAUMRIwEAYDVQQDDAkxMjcuMC4w
LjEwIBcNMDAwMTAxMDAwMDAwWhgPMjEwMDAxMDEwMDAwMDBaMBQxEjAQBgNVBAMM
CTEyNy4wLjAuMTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABP2dFECf/CtOFiVx
YGnX6RUgVJj8ObZHXejaNVsmsnepAZzowhvk0XCWC8jOXbnnmAO0XMtsxVGjCVzY
ajnMof2jTjBMMA8GA1UdEwEB/wQFMAMBAf8wGgYDVR0RBBMwEYcEfwAAAYIJbG9j
YWxob3N0MB0GA1UdDgQWBBRPR99j96eJcpcOr63WvKlYEpzSMjAKBggqhkjOPQQD
AgNIADBFAiBtid89BN1LfkZUUyuiWjt4g0y7WrNTnz9thbnfRVTGtAIhAJUPbbER
0mpy8Z3Yq4mdkZUQFLcQlzCeXmiwHeqCCziv
-----END CERTIFICATE-----
`;

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
  httpVersion: string;
}

type Handler = (req: IncomingMessage, res: ServerResponse, seen: Seen) => void | Promise<void>;

interface TestServer {
  url: string;
  port: number;
  server: Server;
  requests: Seen[];
  /** Sockets accepted in total. */
  accepted: number;
  /** Most sockets open at once. */
  peakSockets: number;
  openSockets: Set<Socket>;
  /** Resolves when `n` requests have arrived (bodies read). */
  arrived(n: number): Promise<void>;
  /** Resolves when every socket the server accepted is closed. */
  allSocketsClosed(): Promise<void>;
  close(): Promise<void>;
}

const servers: TestServer[] = [];
const clients: ProviderClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.closeAll({ force: true })));
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

function client(options: ProviderClientOptions = {}): ProviderClient {
  const c = new ProviderClient(options);
  clients.push(c);
  return c;
}

async function startServer(handler: Handler): Promise<TestServer> {
  const requests: Seen[] = [];
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  const openSockets = new Set<Socket>();
  let socketWaiters: Array<() => void> = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      const seen: Seen = { method: req.method!, url: req.url!, headers: req.headers, body, httpVersion: req.httpVersion };
      requests.push(seen);
      for (const w of waiters.filter((w) => requests.length >= w.n)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
      void handler(req, res, seen);
    });
  });
  const t: TestServer = {
    url: '',
    port: 0,
    server,
    requests,
    accepted: 0,
    peakSockets: 0,
    openSockets,
    arrived: (n) => (requests.length >= n ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ n, resolve }))),
    allSocketsClosed: () => (openSockets.size === 0 ? Promise.resolve() : new Promise<void>((resolve) => socketWaiters.push(resolve))),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  server.on('connection', (socket: Socket) => {
    t.accepted++;
    openSockets.add(socket);
    t.peakSockets = Math.max(t.peakSockets, openSockets.size);
    socket.on('close', () => {
      openSockets.delete(socket);
      if (openSockets.size === 0) {
        const ws = socketWaiters;
        socketWaiters = [];
        for (const w of ws) w();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.port = (server.address() as AddressInfo).port;
  t.url = `http://127.0.0.1:${t.port}`;
  servers.push(t);
  return t;
}

const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(typeof body === 'string' ? body : JSON.stringify(body));
};

/** The rejection of `promise` (fails the test when it resolves). */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  const { value, error } = await settle(promise);
  if (error === undefined) throw new Error(`expected a rejection, got ${JSON.stringify(value)}`);
  return error;
}

async function upstreamError(promise: Promise<unknown>): Promise<UpstreamError> {
  const error = await rejection(promise);
  expect(error).toBeInstanceOf(UpstreamError);
  return error as UpstreamError;
}

/** A port nothing listens on: bind one, then close it. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('URLs and endpoint ids', () => {
  it('joins base URLs with or without a trailing slash, with a base path, a query and a version segment', () => {
    const e = (url: string): EndpointConfig => ({ url });
    expect(upstreamUrl(e('http://127.0.0.1:8080'), '/v1/chat/completions')).toBe('http://127.0.0.1:8080/v1/chat/completions');
    expect(upstreamUrl(e('http://127.0.0.1:8080/'), '/v1/chat/completions')).toBe('http://127.0.0.1:8080/v1/chat/completions');
    expect(upstreamUrl(e('http://127.0.0.1:8080//'), 'v1/models')).toBe('http://127.0.0.1:8080/v1/models');
    expect(upstreamUrl(e('https://x.openai.azure.com/openai/deployments/gpt-4o/'), '/chat/completions?api-version=2024-06-01')).toBe(
      'https://x.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01',
    );
    expect(upstreamUrl(e('https://x.openai.azure.com/openai/deployments/gpt-4o?api-version=2024-06-01'), '/chat/completions')).toBe(
      'https://x.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01',
    );
    expect(upstreamUrl(e('https://gw.example/base?a=1'), '/v1/embeddings?b=2')).toBe('https://gw.example/base/v1/embeddings?a=1&b=2');
    // An OpenAI-style base that already ends in the version the path starts with.
    expect(upstreamUrl(e('https://api.openai.com/v1'), '/v1/chat/completions')).toBe('https://api.openai.com/v1/chat/completions');
    expect(upstreamUrl(e('https://generativelanguage.example/v1beta/'), '/v1beta/models')).toBe('https://generativelanguage.example/v1beta/models');
    expect(upstreamUrl(e('https://api.openai.com/v1'), '/v2/x')).toBe('https://api.openai.com/v1/v2/x');
    expect(upstreamPath({ basePath: '', query: '' }, '/v1/models')).toBe('/v1/models');
  });

  it('defaults the endpoint id to provider:origin+basePath and keeps an explicit one', () => {
    expect(endpointId({ url: 'http://127.0.0.1:8080/' })).toBe('openai:http://127.0.0.1:8080');
    expect(endpointId({ url: 'https://x.openai.azure.com/openai/deployments/gpt-4o/?api-version=1', provider: 'azure' })).toBe(
      'azure:https://x.openai.azure.com/openai/deployments/gpt-4o',
    );
    expect(endpointId({ url: 'https://api.openai.com:443' })).toBe('openai:https://api.openai.com');
    expect(endpointId({ url: 'http://127.0.0.1:1', id: 'primary' })).toBe('primary');
  });

  it('rejects an endpoint URL that is not http(s) with an InvalidOptionError naming endpoint.url', async () => {
    const c = client();
    for (const url of ['ftp://127.0.0.1/', 'not a url', 'ftp://user:secret@127.0.0.1/', 42, undefined]) {
      const error = await rejection(c.request({ url } as unknown as EndpointConfig, { path: '/v1/models', method: 'GET' }));
      expect(error).toBeInstanceOf(InvalidOptionError);
      expect((error as InvalidOptionError).issues[0]!.path).toBe('endpoint.url');
      expect((error as Error).message).not.toContain('secret');
    }
    expect(c.stats()).toEqual({});
  });

  it('sends credentials in the URL as Basic auth and keeps them out of ids and stats', async () => {
    const s = await startServer((_req, res) => json(res, 200, {}));
    const c = client();
    const url = `http://us%40er:p%3Ass@127.0.0.1:${s.port}/base`;
    await c.request({ url }, { path: '/v1/x', body: {} });
    expect(s.requests[0]!.headers.authorization).toBe(`Basic ${Buffer.from('us@er:p:ss').toString('base64')}`);
    expect(s.requests[0]!.url).toBe('/base/v1/x');
    expect(endpointId({ url })).toBe(`openai:${s.url}/base`);
    expect(Object.keys(c.stats())).toEqual([s.url]);
    await c.request({ url, apiKey: 'sk-1' }, { path: '/v1/x', body: {} });
    expect(s.requests[1]!.headers.authorization).toBe('Bearer sk-1');
  });
});

describe('request', () => {
  it('POSTs JSON with the key, endpoint and call headers, and returns a 2xx answer with lower-cased headers', async () => {
    const s = await startServer((_req, res) => json(res, 200, { ok: true }, { 'X-Request-Id': 'abc', 'Set-Cookie': 'a=1' }));
    const c = client({ headers: { 'User-Agent': 'my-gateway/1.0', 'x-default': 'd' } });
    const endpoint: EndpointConfig = { url: `${s.url}/gw/`, apiKey: 'sk-test', headers: { 'X-Org': 'org-1', 'x-default': 'endpoint' } };
    const res = await c.request(endpoint, { path: '/v1/chat/completions', body: { model: 'm', messages: [] }, headers: { 'X-Trace': 't1' } });

    expect(res.status).toBe(200);
    expect(Buffer.isBuffer(res.body)).toBe(true);
    expect(JSON.parse(res.body.toString())).toEqual({ ok: true });
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.headers['x-request-id']).toBe('abc');
    expect(Object.keys(res.headers).every((k) => k === k.toLowerCase())).toBe(true);
    expect(res.latencyMs).toBeGreaterThanOrEqual(0);

    const [seen] = s.requests;
    expect(seen!.method).toBe('POST');
    expect(seen!.url).toBe('/gw/v1/chat/completions');
    expect(JSON.parse(seen!.body)).toEqual({ model: 'm', messages: [] });
    expect(seen!.headers['content-type']).toBe('application/json');
    expect(seen!.headers.authorization).toBe('Bearer sk-test');
    expect(seen!.headers['x-org']).toBe('org-1');
    expect(seen!.headers['x-trace']).toBe('t1');
    expect(seen!.headers['x-default']).toBe('endpoint');
    expect(seen!.headers['user-agent']).toBe('my-gateway/1.0');
  });

  it('sends GET probes without a body or content-type, and no Authorization without a key', async () => {
    const s = await startServer((_req, res) => json(res, 200, { data: [] }));
    const c = client();
    const res = await c.request({ url: s.url }, { path: '/v1/models', method: 'GET', body: { ignored: true } });
    expect(res.status).toBe(200);
    expect(s.requests[0]!.method).toBe('GET');
    expect(s.requests[0]!.body).toBe('');
    expect(s.requests[0]!.headers['content-type']).toBeUndefined();
    expect(s.requests[0]!.headers.authorization).toBeUndefined();
  });

  it('sends a Uint8Array body as is (pre-serialized JSON)', async () => {
    const s = await startServer((_req, res) => json(res, 200, {}));
    const c = client();
    await c.request({ url: s.url }, { path: '/v1/embeddings', body: Buffer.from('{"input":"raw"}') });
    expect(s.requests[0]!.body).toBe('{"input":"raw"}');
  });

  it('reuses keep-alive sockets for sequential calls', async () => {
    const s = await startServer((_req, res) => json(res, 200, { ok: true }));
    const c = client();
    // undici frees an HTTP/1.1 socket one event-loop turn after its response ends (in case the server closes
    // it despite keep-alive), so a call made in the same turn takes a second socket: back to back, two at most.
    for (let i = 0; i < 8; i++) await c.request({ url: s.url }, { path: '/v1/chat/completions', body: { i } });
    expect(s.requests).toHaveLength(8);
    expect(s.accepted).toBeLessThanOrEqual(2);

    const t = await startServer((_req, res) => json(res, 200, { ok: true }));
    for (let i = 0; i < 8; i++) {
      await c.request({ url: t.url }, { path: '/v1/chat/completions', body: { i } });
      await new Promise((r) => setImmediate(r));
    }
    expect(t.accepted).toBe(1);
    const stats = c.stats()[t.url]!;
    expect(stats.connected).toBe(1);
    expect(stats.free).toBe(1);
  });

  it('never opens more than `connections` sockets to one origin', async () => {
    const release = deferred<void>();
    const s = await startServer(async (_req, res) => {
      await release.promise;
      json(res, 200, { ok: true });
    });
    const c = client({ connections: 2 });
    const calls = Array.from({ length: 7 }, (_, i) => c.request({ url: s.url }, { path: '/v1/chat/completions', body: { i } }));
    await s.arrived(2);
    const held = c.stats()[s.url]!;
    expect(held.connected).toBe(2);
    expect(held.running).toBe(2);
    expect(held.pending).toBe(5); // waiting for a socket (undici counts `queued` inside `pending`)
    expect(held.size).toBe(7);
    expect(held.inFlight).toBe(7);
    release.resolve();
    const results = await Promise.all(calls);
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect(s.requests).toHaveLength(7);
    expect(s.peakSockets).toBeLessThanOrEqual(2);
    expect(s.accepted).toBeLessThanOrEqual(2);
    expect(c.stats()[s.url]!.succeeded).toBe(7);
  });

  it('keeps one pool per origin, shared by endpoints with different base paths', async () => {
    const s = await startServer((_req, res) => json(res, 200, {}));
    const c = client();
    await c.request({ url: `${s.url}/a`, id: 'a' }, { path: '/v1/x' });
    await c.request({ url: `${s.url}/b/`, id: 'b' }, { path: '/v1/x' });
    expect(s.requests.map((r) => r.url)).toEqual(['/a/v1/x', '/b/v1/x']);
    expect(Object.keys(c.stats())).toEqual([s.url]);
    expect(c.stats()[s.url]!.requests).toBe(2);
  });
});

describe('upstream errors', () => {
  it('turns a 429 into an UpstreamError with status, JSON body, headers and retry-after-ms', async () => {
    const body = { error: { message: 'Rate limit reached for gpt-4o', type: 'requests', code: 'rate_limit_exceeded' } };
    const s = await startServer((_req, res) => json(res, 429, body, { 'retry-after-ms': '1500', 'retry-after': '9', 'x-ratelimit-remaining-requests': '0' }));
    const c = client();
    const error = await upstreamError(c.request({ url: s.url, id: 'oai-1' }, { path: '/v1/chat/completions', body: {} }));
    expect(error.status).toBe(429);
    expect(error.code).toBe('AMAS_UPSTREAM_ERROR');
    expect(error.endpoint).toBe('oai-1');
    expect(error.network).toBe(false);
    expect(error.body).toEqual(body);
    expect(error.retryAfterMs).toBe(1500);
    expect(error.responseHeaders['x-ratelimit-remaining-requests']).toBe('0');
    expect(error.message).toContain('oai-1');
    expect(error.message).toContain('429');
    expect(error.message).toContain('Rate limit reached for gpt-4o');
  });

  it('reads Retry-After in seconds, and keeps a text body as text', async () => {
    const s = await startServer((_req, res) => {
      res.writeHead(503, { 'content-type': 'text/plain', 'Retry-After': '2' });
      res.end('upstream overloaded');
    });
    const c = client();
    const error = await upstreamError(c.request({ url: s.url }, { path: '/v1/chat/completions', body: {} }));
    expect(error.status).toBe(503);
    expect(error.retryAfterMs).toBe(2000);
    expect(error.body).toBe('upstream overloaded');
    expect(error.endpoint).toBe(`openai:${s.url}`);
  });

  it('has no retryAfterMs without the headers, and caps a large error body', async () => {
    const s = await startServer((_req, res) => json(res, 500, { error: { message: 'x'.repeat(5000) } }));
    const c = client({ maxErrorBodyBytes: 100 });
    const error = await upstreamError(c.request({ url: s.url }, { path: '/v1/chat/completions', body: {} }));
    expect(error.status).toBe(500);
    expect(error.retryAfterMs).toBeUndefined();
    expect(typeof error.body).toBe('string');
    expect((error.body as string).length).toBe(100);
    expect(error.details.bodyTruncated).toBe(true);
  });

  it('keeps the socket for the next call after a small error body', async () => {
    let n = 0;
    const s = await startServer((_req, res) => (n++ === 0 ? json(res, 400, { error: { message: 'bad' } }) : json(res, 200, {})));
    const c = client();
    await upstreamError(c.request({ url: s.url }, { path: '/v1/x', body: {} }));
    await new Promise((r) => setImmediate(r));
    await c.request({ url: s.url }, { path: '/v1/x', body: {} });
    expect(s.accepted).toBe(1);
  });

  it('reports a closed port as a 502 network error naming the endpoint and ECONNREFUSED', async () => {
    const port = await closedPort();
    const c = client();
    const error = await upstreamError(c.request({ url: `http://127.0.0.1:${port}`, id: 'dead' }, { path: '/v1/chat/completions', body: {} }));
    expect(error.status).toBe(502);
    expect(error.network).toBe(true);
    expect(error.endpoint).toBe('dead');
    expect(error.message).toContain('dead');
    expect(error.message).toContain('ECONNREFUSED');
    const stats = c.stats()[`http://127.0.0.1:${port}`]!;
    expect(stats).toMatchObject({ requests: 1, errors: 1, networkErrors: 1, inFlight: 0 });
  });

  it('reports a connection the server drops as a 502 network error', async () => {
    const s = await startServer((req) => {
      req.socket.destroy();
    });
    const c = client();
    const error = await upstreamError(c.request({ url: s.url }, { path: '/v1/x', body: {} }));
    expect(error.status).toBe(502);
    expect(error.network).toBe(true);
  });

  it('reports a headers timeout as a 504 network error', async () => {
    const s = await startServer(() => {
      /* never answers */
    });
    const c = client({ headersTimeout: 100 });
    const error = await upstreamError(c.request({ url: s.url }, { path: '/v1/chat/completions', body: {} }));
    expect(error.status).toBe(504);
    expect(error.network).toBe(true);
    expect(error.details.code).toBe('UND_ERR_HEADERS_TIMEOUT');
    expect(c.stats()[s.url]).toMatchObject({ errors: 1, timeouts: 1, inFlight: 0 });
  });

  it('reports a body timeout as a 504 network error, for request and for stream', async () => {
    const s = await startServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: first\n\n');
      /* then silence */
    });
    const c = client({ bodyTimeout: 100 });
    const error = await upstreamError(c.request({ url: s.url }, { path: '/v1/chat/completions', body: {} }));
    expect(error.status).toBe(504);
    expect(error.details.code).toBe('UND_ERR_BODY_TIMEOUT');

    const stream = await c.stream({ url: s.url }, { path: '/v1/chat/completions', body: {} });
    const chunks: string[] = [];
    const streamError = await rejection(
      (async () => {
        for await (const chunk of stream.body) chunks.push(Buffer.from(chunk).toString());
      })(),
    );
    expect(chunks.join('')).toBe('data: first\n\n');
    expect(streamError).toBeInstanceOf(UpstreamError);
    expect((streamError as UpstreamError).status).toBe(504);
    expect(c.stats()[s.url]).toMatchObject({ timeouts: 2, inFlight: 0 });
  });

  it('fails a body larger than maxResponseBytes with a 502, with or without content-length', async () => {
    const s = await startServer((req, res) => {
      const size = Number(new URL(req.url!, 'http://x').searchParams.get('size'));
      if (req.url!.includes('chunked')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('a'.repeat(size / 2));
        res.end('a'.repeat(size / 2));
      } else json(res, 200, 'a'.repeat(size));
    });
    const c = client({ maxResponseBytes: 1000 });
    const ok = await c.request({ url: s.url }, { path: '/v1/x?size=1000', body: {} });
    expect(ok.body.length).toBe(1000);
    for (const path of ['/v1/x?size=1001', '/v1/x/chunked?size=4000']) {
      const error = await upstreamError(c.request({ url: s.url }, { path, body: {} }));
      expect(error.status).toBe(502);
      expect(error.details.reason).toBe('response-too-large');
      expect(error.message).toContain('maxResponseBytes');
    }
    expect(c.stats()[s.url]).toMatchObject({ requests: 3, succeeded: 1, errors: 2, networkErrors: 0, inFlight: 0 });
  });

  it('maps a 3xx answer to a 502 that keeps the upstream status', async () => {
    const s = await startServer((_req, res) => {
      res.writeHead(301, { location: 'https://elsewhere/' });
      res.end();
    });
    const c = client();
    const error = await upstreamError(c.request({ url: s.url }, { path: '/v1/x', body: {} }));
    expect(error.status).toBe(502);
    expect(error.details.upstreamStatus).toBe(301);
    expect(error.responseHeaders.location).toBe('https://elsewhere/');
  });
});

describe('abort', () => {
  it('rejects with the signal reason itself and aborts the upstream request', async () => {
    const closed = deferred<boolean>();
    const s = await startServer((req, res) => {
      res.on('close', () => closed.resolve(res.writableFinished));
    });
    const c = client();
    const controller = new AbortController();
    const reason = new Error('client went away');
    const call = c.request({ url: s.url }, { path: '/v1/chat/completions', body: {}, signal: controller.signal });
    await s.arrived(1);
    controller.abort(reason);
    expect(await rejection(call)).toBe(reason);
    expect(await closed.promise).toBe(false);
    expect(c.stats()[s.url]).toMatchObject({ aborted: 1, errors: 0, inFlight: 0, running: 0 });
  });

  it('rejects an already aborted signal with its reason without calling upstream', async () => {
    const s = await startServer((_req, res) => json(res, 200, {}));
    const c = client();
    const reason = new Error('already gone');
    const error = await rejection(c.request({ url: s.url }, { path: '/v1/x', body: {}, signal: AbortSignal.abort(reason) }));
    expect(error).toBe(reason);
    expect(s.requests).toHaveLength(0);
  });

  it('rejects a call waiting for a socket as soon as its signal aborts, and never sends it', async () => {
    const release = deferred<void>();
    const s = await startServer(async (_req, res) => {
      await release.promise;
      json(res, 200, {});
    });
    const c = client({ connections: 1 });
    const first = c.request({ url: s.url }, { path: '/v1/x', body: { n: 1 } });
    await s.arrived(1);
    const controller = new AbortController();
    const queued = c.request({ url: s.url }, { path: '/v1/x', body: { n: 2 }, signal: controller.signal });
    const reason = new Error('gave up waiting');
    controller.abort(reason);
    expect(await rejection(queued)).toBe(reason);
    expect(c.stats()[s.url]).toMatchObject({ aborted: 1, inFlight: 1 });
    release.resolve();
    expect((await first).status).toBe(200);
    const third = await c.request({ url: s.url }, { path: '/v1/x', body: { n: 3 } });
    expect(third.status).toBe(200);
    expect(s.requests.map((r) => JSON.parse(r.body) as unknown)).toEqual([{ n: 1 }, { n: 3 }]);
  });

  it('frees the socket after an abort for the next call', async () => {
    let n = 0;
    const s = await startServer((_req, res) => {
      if (n++ > 0) json(res, 200, { ok: 1 });
    });
    const c = client({ connections: 1 });
    const controller = new AbortController();
    const call = c.request({ url: s.url }, { path: '/v1/x', body: {}, signal: controller.signal });
    await s.arrived(1);
    controller.abort();
    await rejection(call);
    const res = await c.request({ url: s.url }, { path: '/v1/x', body: {} });
    expect(res.status).toBe(200);
  });
});

describe('stream', () => {
  /** A server that sends headers and a first chunk, then waits for `release` before sending the rest. */
  async function holdingServer() {
    const release = deferred<void>();
    const finished = { value: false };
    const closed = deferred<{ finished: boolean }>();
    const s = await startServer(async (_req, res) => {
      res.on('close', () => closed.resolve({ finished: res.writableFinished }));
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {"n":1}\n\n');
      await release.promise;
      if (res.destroyed) return;
      res.write('data: {"n":2}\n\n');
      res.end('data: [DONE]\n\n');
      finished.value = true;
    });
    return { s, release, finished, closed };
  }

  it('yields the first chunk while the server still holds the rest', async () => {
    const { s, release, finished } = await holdingServer();
    const c = client();
    const res = await c.stream({ url: s.url }, { path: '/v1/chat/completions', body: { stream: true } });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream');
    expect(res.latencyMs).toBeGreaterThanOrEqual(0);
    expect(s.requests[0]!.headers.accept).toContain('text/event-stream');

    const chunks: string[] = [];
    let firstSeenWhileHeld: boolean | undefined;
    for await (const chunk of res.body) {
      chunks.push(Buffer.from(chunk).toString());
      if (chunks.length === 1) {
        firstSeenWhileHeld = !finished.value;
        release.resolve();
      }
    }
    expect(firstSeenWhileHeld).toBe(true);
    expect(chunks.join('')).toBe('data: {"n":1}\n\ndata: {"n":2}\n\ndata: [DONE]\n\n');
    expect(c.stats()[s.url]).toMatchObject({ requests: 1, succeeded: 1, inFlight: 0 });
  });

  it('aborts the upstream request when the consumer breaks early', async () => {
    const { s, closed } = await holdingServer();
    const c = client();
    const res = await c.stream({ url: s.url }, { path: '/v1/chat/completions', body: {} });
    for await (const chunk of res.body) {
      expect(Buffer.from(chunk).toString()).toContain('"n":1');
      break;
    }
    expect(await closed.promise).toEqual({ finished: false });
    // The aborted socket is destroyed. (undici 7 then opens one idle replacement socket, nodejs/undici#5845;
    // it stays in the pool for the next call, within the `connections` cap.)
    const stats = c.stats()[s.url]!;
    expect(stats).toMatchObject({ inFlight: 0, running: 0, errors: 0, succeeded: 1 });
  });

  it('aborts the upstream request when the signal aborts mid-stream, rejecting with the reason', async () => {
    const { s, closed } = await holdingServer();
    const c = client();
    const controller = new AbortController();
    const res = await c.stream({ url: s.url }, { path: '/v1/chat/completions', body: {}, signal: controller.signal });
    const reason = new Error('user cancelled');
    const consumed = (async () => {
      for await (const _chunk of res.body) controller.abort(reason);
    })();
    expect(await rejection(consumed)).toBe(reason);
    expect(await closed.promise).toEqual({ finished: false });
    expect(c.stats()[s.url]).toMatchObject({ aborted: 1, inFlight: 0 });
  });

  it('drops the upstream request when the body is returned before iterating', async () => {
    const { s, closed } = await holdingServer();
    const c = client();
    const res = await c.stream({ url: s.url }, { path: '/v1/chat/completions', body: {} });
    const iterator = res.body[Symbol.asyncIterator]();
    await iterator.return?.();
    expect(await closed.promise).toEqual({ finished: false });
    expect(await iterator.next()).toEqual({ done: true, value: undefined });
  });

  it('rejects a non-2xx stream answer with an UpstreamError carrying the body', async () => {
    const s = await startServer((_req, res) => json(res, 400, { error: { message: 'stream not supported for this model' } }));
    const c = client();
    const error = await upstreamError(c.stream({ url: s.url }, { path: '/v1/chat/completions', body: {} }));
    expect(error.status).toBe(400);
    expect(error.body).toEqual({ error: { message: 'stream not supported for this model' } });
  });
});

describe('OpenAI-style helpers', () => {
  it('chatCompletion and embeddings post to the default paths, apply endpoint.model and parse JSON', async () => {
    const s = await startServer((req, res, seen) => json(res, 200, { path: req.url, model: (JSON.parse(seen.body) as { model: string }).model }));
    const c = client();
    const chat = await c.chatCompletion<{ path: string; model: string }>({ url: s.url }, { model: 'gpt-4o', messages: [] });
    expect(chat).toEqual({ path: '/v1/chat/completions', model: 'gpt-4o' });
    const emb = await c.embeddings({ url: s.url, model: 'deployment-model' }, { model: 'text-embedding-3-small', input: ['a'] });
    expect(emb).toEqual({ path: '/v1/embeddings', model: 'deployment-model' });
    const custom = await c.chatCompletion({ url: `${s.url}/openai/deployments/d1` }, { messages: [] }, { path: '/chat/completions?api-version=1' });
    expect(custom).toMatchObject({ path: '/openai/deployments/d1/chat/completions?api-version=1' });
  });

  it('chatCompletionStream sends stream: true', async () => {
    const s = await startServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end('data: [DONE]\n\n');
    });
    const c = client();
    const res = await c.chatCompletionStream({ url: s.url }, { model: 'm', messages: [] });
    let text = '';
    for await (const chunk of res.body) text += Buffer.from(chunk).toString();
    expect(text).toBe('data: [DONE]\n\n');
    expect(JSON.parse(s.requests[0]!.body)).toEqual({ model: 'm', messages: [], stream: true });
  });

  it('fails a 2xx answer that is not JSON with a 502', async () => {
    const s = await startServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html>gateway login</html>');
    });
    const c = client();
    const error = await upstreamError(c.chatCompletion({ url: s.url }, { messages: [] }));
    expect(error.status).toBe(502);
    expect(error.details.reason).toBe('invalid-json');
    expect(error.body).toBe('<html>gateway login</html>');
  });
});

describe('DNS cache', () => {
  it('resolves a host name once per TTL across new sockets and sends the original Host header', async () => {
    const release = deferred<void>();
    const s = await startServer(async (_req, res) => {
      await release.promise;
      json(res, 200, {});
    });
    const lookups: string[] = [];
    const lookup = (hostname: string, _options: unknown, callback: (err: Error | null, addresses: LookupAddress[]) => void) => {
      lookups.push(hostname);
      setImmediate(() => callback(null, [{ address: '127.0.0.1', family: 4 }]));
    };
    for (const [dnsTtl, expected] of [
      ['1m', 1],
      [0, 2],
    ] as const) {
      lookups.length = 0;
      s.requests.length = 0;
      const c = client({ dnsTtl, lookup: lookup as unknown as ProviderClientOptions['lookup'], connections: 2 });
      const endpoint = { url: `http://provider.test:${s.port}` };
      const calls = [0, 1].map(() => c.request(endpoint, { path: '/v1/x', body: {} }));
      await s.arrived(2);
      expect(c.stats()[`http://provider.test:${s.port}`]!.connected).toBe(2);
      expect(lookups).toEqual(Array(expected).fill('provider.test'));
      expect(s.requests[0]!.headers.host).toBe(`provider.test:${s.port}`);
      release.resolve();
      await Promise.all(calls);
      await c.closeAll();
    }
  });

  it('does not cache a failed lookup', async () => {
    let calls = 0;
    const lookup = (_hostname: string, _options: unknown, callback: (err: Error | null, addresses: LookupAddress[]) => void) => {
      calls++;
      setImmediate(() => callback(Object.assign(new Error('getaddrinfo ENOTFOUND nowhere.test'), { code: 'ENOTFOUND' }), []));
    };
    const c = client({ lookup: lookup as unknown as ProviderClientOptions['lookup'] });
    for (let i = 0; i < 2; i++) {
      const error = await upstreamError(c.request({ url: 'http://nowhere.test:1' }, { path: '/v1/x', body: {} }));
      expect(error.status).toBe(502);
      expect(error.message).toContain('ENOTFOUND');
    }
    expect(calls).toBe(2);
  });
});

describe('HTTP/2', () => {
  async function h2Server(): Promise<{ url: string; versions: string[]; server: Http2SecureServer }> {
    const versions: string[] = [];
    const server = createSecureServer({ key: TEST_KEY, cert: TEST_CERT, allowHTTP1: true }, (req, res) => {
      versions.push(req.httpVersion);
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ version: req.httpVersion }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return { url, versions, server };
  }

  it('speaks h2 to an https origin that offers it, and HTTP/1.1 with http2: false', async () => {
    const { url, versions, server } = await h2Server();
    try {
      const h2 = client({ tls: { ca: TEST_CERT } });
      const a = await h2.request({ url }, { path: '/v1/x', body: {} });
      expect(JSON.parse(a.body.toString())).toEqual({ version: '2.0' });
      const stream = await h2.stream({ url }, { path: '/v1/x', body: {} });
      let text = '';
      for await (const chunk of stream.body) text += Buffer.from(chunk).toString();
      expect(JSON.parse(text)).toEqual({ version: '2.0' });
      expect(h2.stats()[url]!.connected).toBe(1);

      const h1 = client({ tls: { ca: TEST_CERT }, http2: false });
      const b = await h1.request({ url }, { path: '/v1/x', body: {} });
      expect(JSON.parse(b.body.toString())).toEqual({ version: '1.1' });
      expect(versions).toEqual(['2.0', '2.0', '1.1']);
      await h2.closeAll();
      await h1.closeAll();
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('rejects an untrusted certificate as a network error', async () => {
    const { url, server } = await h2Server();
    try {
      const c = client();
      const error = await upstreamError(c.request({ url }, { path: '/v1/x', body: {} }));
      expect(error.status).toBe(502);
      expect(error.network).toBe(true);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

describe('stats', () => {
  it('counts calls per origin and reports recent latency', async () => {
    let n = 0;
    const s = await startServer((_req, res) => (n++ % 2 === 0 ? json(res, 200, {}) : json(res, 500, { error: 'boom' })));
    const c = client({ latencyWindow: 4 });
    for (let i = 0; i < 6; i++) {
      await settle(c.request({ url: s.url }, { path: '/v1/x', body: {} }));
      await new Promise((r) => setImmediate(r));
    }
    const stats = c.stats()[s.url]!;
    expect(stats).toMatchObject({
      origin: s.url,
      requests: 6,
      succeeded: 3,
      errors: 3,
      networkErrors: 0,
      timeouts: 0,
      aborted: 0,
      inFlight: 0,
      connected: 1,
      free: 1,
      pending: 0,
      running: 0,
      size: 0,
      closed: false,
    });
    expect(stats.latency.samples).toBe(4);
    expect(stats.latency.p50Ms).toBeGreaterThanOrEqual(0);
    expect(stats.latency.p95Ms).toBeGreaterThanOrEqual(stats.latency.p50Ms);
    expect(stats.latency.maxMs).toBeGreaterThanOrEqual(stats.latency.p95Ms);
    expect(stats.latency.meanMs).toBeGreaterThanOrEqual(0);
  });

  it('measures latency with the injected clock', async () => {
    const s = await startServer((_req, res) => json(res, 200, {}));
    let t = 0;
    const c = client({ clock: { now: () => (t += 10) } });
    const res = await c.request({ url: s.url }, { path: '/v1/x', body: {} });
    expect(res.latencyMs).toBe(20); // started at 10, headers at 20, last byte at 30
    expect(c.stats()[s.url]!.latency).toMatchObject({ samples: 1, p50Ms: 10, meanMs: 10 });
  });
});

describe('closeAll', () => {
  it('closes every pool, is idempotent, rejects later calls and leaves no sockets or timers', async () => {
    const baseline = process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'Timeout').length;
    const a = await startServer((_req, res) => json(res, 200, {}));
    const b = await startServer((_req, res) => json(res, 200, {}));
    const c = new ProviderClient();
    await c.request({ url: a.url }, { path: '/v1/x', body: {} });
    await c.request({ url: b.url }, { path: '/v1/x', body: {} });
    expect(a.openSockets.size + b.openSockets.size).toBe(2);

    const first = c.closeAll();
    expect(c.closeAll()).toBe(first);
    await first;
    expect(c.closed).toBe(true);
    await Promise.all([a.allSocketsClosed(), b.allSocketsClosed()]);
    const stats = c.stats();
    expect(Object.values(stats).map((s) => [s.closed, s.connected])).toEqual([
      [true, 0],
      [true, 0],
    ]);

    const error = await upstreamError(c.request({ url: a.url, id: 'late' }, { path: '/v1/x', body: {} }));
    expect(error.status).toBe(503);
    expect(error.message).toContain('closed');
    expect(error.details.reason).toBe('client-closed');
    expect(a.requests).toHaveLength(1);
    await upstreamError(c.stream({ url: `http://127.0.0.1:1` }, { path: '/v1/x', body: {} }));
    expect(Object.keys(c.stats())).toHaveLength(2);

    await a.close();
    await b.close();
    servers.splice(0);
    await new Promise((r) => setImmediate(r));
    const left = process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'Timeout').length;
    expect(left).toBeLessThanOrEqual(baseline);
  });

  it('waits for running calls by default, and fails them with force', async () => {
    const release = deferred<void>();
    const s = await startServer(async (_req, res) => {
      await release.promise;
      json(res, 200, { ok: true });
    });
    const graceful = new ProviderClient();
    const running = graceful.request({ url: s.url }, { path: '/v1/x', body: {} });
    await s.arrived(1);
    let closed = false;
    const closing = graceful.closeAll().then(() => (closed = true));
    await new Promise((r) => setImmediate(r));
    expect(closed).toBe(false);
    release.resolve();
    expect((await running).status).toBe(200);
    await closing;
    expect(closed).toBe(true);

    const forced = new ProviderClient();
    const never = await startServer(() => {
      /* holds */
    });
    const held = forced.request({ url: never.url }, { path: '/v1/x', body: {} });
    await never.arrived(1);
    await forced.closeAll({ force: true });
    const error = await upstreamError(held);
    expect(error.status).toBe(503);
    expect(error.details.reason).toBe('client-closed');
    await never.allSocketsClosed();

    // A graceful close still waiting can be hurried with force; both return the same promise.
    const hurried = new ProviderClient();
    const stuck = hurried.request({ url: never.url }, { path: '/v1/x', body: {} });
    await never.arrived(2);
    const gracefully = hurried.closeAll();
    expect(hurried.closeAll({ force: true })).toBe(gracefully);
    await gracefully;
    expect((await upstreamError(stuck)).status).toBe(503);
  });
});

describe('options', () => {
  it('accepts duration strings and numbers', () => {
    expect(() => client({ connectTimeout: '2s', headersTimeout: 1000, bodyTimeout: '5 minutes', keepAliveTimeout: '30s', dnsTtl: 0 })).not.toThrow();
  });

  it('rejects bad options with an InvalidOptionError naming the option', () => {
    const cases: Array<[unknown, string]> = [
      [{ connections: 0 }, 'connections'],
      [{ connections: 1.5 }, 'connections'],
      [{ connectTimeout: 'soon' }, 'connectTimeout'],
      [{ connectTimeout: 0 }, 'connectTimeout'],
      [{ headersTimeout: -1 }, 'headersTimeout'],
      [{ bodyTimeout: 1e12 }, 'bodyTimeout'],
      [{ keepAliveTimeout: '1 fortnight' }, 'keepAliveTimeout'],
      [{ dnsTtl: 'x' }, 'dnsTtl'],
      [{ http2: 'yes' }, 'http2'],
      [{ maxResponseBytes: -5 }, 'maxResponseBytes'],
      [{ maxErrorBodyBytes: 0 }, 'maxErrorBodyBytes'],
      [{ latencyWindow: 0 }, 'latencyWindow'],
      [{ lookup: 'dns' }, 'lookup'],
      [{ tls: { ca: 5 } }, 'tls.ca'],
      [{ headers: { 'x-evil': 'a\r\nb' } }, 'headers.x-evil'],
      [{ headers: { 'bad name': 'v' } }, 'headers.bad name'],
      [{ clock: {} }, 'clock'],
      [{ conections: 2 }, ''],
    ];
    for (const [options, path] of cases) {
      const error = invalidOption(() => new ProviderClient(options as ProviderClientOptions), JSON.stringify(options));
      expect(error.issues[0]!.path, JSON.stringify(options)).toBe(path);
      expect(error.message).toContain('ProviderClient options');
    }
  });

  it('rejects a header value with CR/LF before sending, without counting a call or harming the pool', async () => {
    const s = await startServer((_req, res) => json(res, 200, {}));
    const c = client();
    const error = await rejection(c.request({ url: s.url, headers: { 'x-tenant': 'a\r\nx-injected: 1' } }, { path: '/v1/x', body: {} }));
    expect(error).not.toBeInstanceOf(UpstreamError);
    expect(String((error as Error).message)).toMatch(/header/i);
    const unserializable = await rejection(c.request({ url: s.url }, { path: '/v1/x', body: { n: 1n } }));
    expect(unserializable).toBeInstanceOf(TypeError);
    expect(s.requests).toHaveLength(0);
    expect(c.stats()[s.url]).toMatchObject({ requests: 0, errors: 0, inFlight: 0 });
    expect((await c.request({ url: s.url }, { path: '/v1/x', body: {} })).status).toBe(200);
  });

  it('rejects a call without a path', async () => {
    const c = client();
    const error = await rejection(c.request({ url: 'http://127.0.0.1:1' }, {} as never));
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect((error as InvalidOptionError).issues[0]!.path).toBe('request.path');
  });
});
