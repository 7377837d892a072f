import { afterEach, describe, expect, it } from 'vitest';
import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAmas } from '../src/amas.js';
import { silentLogger } from '../src/logger.js';
import { instrumentResponse, writeSharedResponse } from '../src/http/node-response.js';

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
});

async function serve(handler: http.RequestListener): Promise<string> {
  const server = http.createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('instrumentResponse on a plain node:http server', () => {
  it('adds timing and limit headers to tracked responses only, and finishes the ticket once on close', async () => {
    const amas = createAmas({ logger: silentLogger, limits: { l: { limit: 5, window: '1m' } } });
    const route = amas.http.compile({ limit: 'l' }, '/t');
    const url = await serve((req, res) => {
      if (req.url === '/t') {
        const admission = amas.http.admit({ method: 'GET', url: '/t', headers: req.headers, ip: req.socket.remoteAddress }, route);
        if (admission instanceof Promise || admission.action !== 'pass') throw new Error('expected pass');
        instrumentResponse(res, admission.ticket);
        instrumentResponse(res, admission.ticket); // idempotent for the writeHead hook
      }
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
    });
    const tracked = await fetch(`${url}/t`);
    expect(tracked.headers.get('x-response-time')).toMatch(/ms$/);
    expect(tracked.headers.get('ratelimit-policy')).toBe('"l";q=5;w=60');
    const untracked = await fetch(`${url}/other`);
    expect(untracked.headers.get('x-response-time')).toBeNull();
    expect(await untracked.text()).toBe('ok');
    const text = (await amas.metrics.expose()).body;
    expect(text).toContain('amas_http_requests_total{route="/t",method="GET",status="200",outcome="success"} 1');
    await amas.close();
  });

  it('counts a client that goes away as aborted, and replays a shared response with its own headers', async () => {
    const amas = createAmas({ logger: silentLogger });
    const route = amas.http.compile({ dedup: true }, '/slow');
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const url = await serve(async (req, res) => {
      const admission = await amas.http.admit({ method: 'GET', url: req.url!, headers: req.headers, ip: req.socket.remoteAddress }, route);
      if (admission.action === 'replay') return writeSharedResponse(res, admission.response, admission.ticket);
      if (admission.action !== 'pass') throw new Error('unexpected');
      instrumentResponse(res, admission.ticket);
      if (req.url === '/slow?abort') return; // never answers: the client aborts
      await released;
      res.setHeader('set-cookie', 'leader-only=1');
      res.end('shared body');
    });
    const leader = fetch(`${url}/slow`);
    await new Promise((r) => setTimeout(r, 50));
    const follower = fetch(`${url}/slow`);
    await new Promise((r) => setTimeout(r, 50));
    release();
    const [a, b] = await Promise.all([leader, follower]);
    expect(await a.text()).toBe('shared body');
    expect(await b.text()).toBe('shared body');
    expect(b.headers.get('x-amas-dedup')).toBe('shared');
    expect(b.headers.get('set-cookie')).toBeNull();
    const controller = new AbortController();
    const aborted = fetch(`${url}/slow?abort`, { signal: controller.signal }).catch((e) => e.name);
    await new Promise((r) => setTimeout(r, 50));
    controller.abort();
    expect(await aborted).toBe('AbortError');
    await new Promise((r) => setTimeout(r, 50));
    expect((await amas.metrics.expose()).body).toMatch(/amas_http_requests_total\{route="\/slow",method="GET",status="200",outcome="aborted"\} 1/);
    await amas.close();
  });

  it("adds deferred limit headers at writeHead in every header form, letting the handler's own win and keeping duplicates", async () => {
    const amas = createAmas({ logger: silentLogger, limits: { l: { limit: 5, window: '1m' } } });
    const route = amas.http.compile({ limit: 'l' }, '/t');
    const url = await serve((req, res) => {
      const admission = amas.http.admit({ method: 'GET', url: req.url!, headers: req.headers, ip: req.socket.remoteAddress }, route);
      if (admission instanceof Promise || admission.action !== 'pass') throw new Error('expected pass');
      instrumentResponse(res, admission.ticket, { setLimitHeaders: 'at-write-head' });
      // Nothing is on the response before writeHead: the headers join whatever writeHead is given.
      if (res.hasHeader('ratelimit')) throw new Error('limit headers set too early');
      if (req.url === '/object') res.writeHead(200, { 'content-type': 'text/plain', ratelimit: 'handler-set' });
      else if (req.url === '/flat') res.writeHead(200, ['set-cookie', 'a=1', 'set-cookie', 'b=2', 'RateLimit', 'handler-set']);
      else if (req.url === '/nested') res.writeHead(200, 'Fine', [['set-cookie', 'a=1'], ['set-cookie', 'b=2']]);
      else {
        res.setHeader('ratelimit', 'handler-set');
        res.writeHead(200);
      }
      res.end('ok');
    });
    for (const path of ['/object', '/flat', '/progressive']) {
      const res = await fetch(url + path);
      expect(res.headers.get('ratelimit'), path).toBe('handler-set');
      expect(res.headers.get('ratelimit-policy'), path).toBe('"l";q=5;w=60');
      expect(res.headers.get('x-response-time'), path).toMatch(/^\d+\.\d{3}ms$/);
      expect(res.headers.get('server-timing'), path).toMatch(/^total;dur=\d+\.\d{3}$/);
    }
    const flat = await fetch(`${url}/flat`);
    expect(flat.headers.getSetCookie()).toEqual(['a=1', 'b=2']);
    const nested = await fetch(`${url}/nested`);
    expect(nested.statusText).toBe('Fine');
    expect(nested.headers.getSetCookie()).toEqual(['a=1', 'b=2']);
    expect(nested.headers.get('ratelimit')).toMatch(/^"l";r=\d;t=60$/);
    expect(nested.headers.get('x-response-time')).toMatch(/ms$/);
    await amas.close();
  });

  it('adds deferred limit headers even when timing headers are off', async () => {
    const amas = createAmas({ logger: silentLogger, limits: { l: { limit: 5, window: '1m' } }, http: { responseTime: false } });
    const route = amas.http.compile({ limit: 'l' }, '/t');
    const url = await serve((req, res) => {
      const admission = amas.http.admit({ method: 'GET', url: '/t', headers: req.headers, ip: req.socket.remoteAddress }, route);
      if (admission instanceof Promise || admission.action !== 'pass') throw new Error('expected pass');
      instrumentResponse(res, admission.ticket, { setLimitHeaders: 'at-write-head' });
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
    });
    const res = await fetch(url);
    expect(res.headers.get('ratelimit')).toBe('"l";r=4;t=60');
    expect(res.headers.get('x-response-time')).toBeNull();
    await amas.close();
  });

  it('finds the ticket of a response whose prototype changes between admission and writeHead (an Express mounted app)', async () => {
    const amas = createAmas({ logger: silentLogger, limits: { l: { limit: 5, window: '1m' } } });
    const route = amas.http.compile({ limit: 'l' }, '/t');
    const plainProto = http.ServerResponse.prototype;
    const url = await serve((req, res) => {
      const swapped = Object.create(http.ServerResponse.prototype);
      // /to-custom: tracked as a plain response, written as a custom one; /to-plain: the other way round.
      if (req.url === '/to-plain') Object.setPrototypeOf(res, swapped);
      const admission = amas.http.admit({ method: 'GET', url: '/t', headers: req.headers, ip: req.socket.remoteAddress }, route);
      if (admission instanceof Promise || admission.action !== 'pass') throw new Error('expected pass');
      instrumentResponse(res, admission.ticket, { setLimitHeaders: 'at-write-head' });
      Object.setPrototypeOf(res, req.url === '/to-plain' ? plainProto : swapped);
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
    });
    for (const path of ['/to-custom', '/to-plain']) {
      const res = await fetch(url + path);
      expect(res.headers.get('x-response-time'), path).toMatch(/ms$/);
      expect(res.headers.get('ratelimit'), path).toMatch(/^"l";r=\d;t=60$/);
    }
    await amas.close();
  });
});
