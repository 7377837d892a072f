/**
 * HTTP dedup across replicas: an Express app and a Fastify app, each with its own AMAS engine and its own
 * Redis connections (two replicas in all but process), receive the same POST at the same time; the upstream
 * handler runs once and both clients get its response. Processes are not needed to prove the HTTP part: the
 * cross-process lease protocol underneath has its own 3-process test (shared-single-flight.replicas).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify from 'fastify';
import { Redis } from 'ioredis';
import { createAmas, InvalidOptionError, silentLogger, type Amas } from '@amas/core';
import { amasMiddleware } from '@amas/express';
import amasPlugin from '@amas/fastify';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `test:${Math.random().toString(36).slice(2, 8)}:`;

interface Upstream {
  calls: number;
  release: () => void;
  gate: Promise<void>;
}

function newGate(upstream: Upstream): void {
  upstream.gate = new Promise((r) => (upstream.release = r));
}

const upstream: Upstream = { calls: 0, release: () => undefined, gate: Promise.resolve() };

async function answer(body: unknown): Promise<{ status: number; payload: unknown }> {
  upstream.calls++;
  await upstream.gate;
  const prompt = (body as { prompt?: string }).prompt;
  if (prompt === 'huge') return { status: 200, payload: { text: 'x'.repeat(4096), call: upstream.calls } };
  if (prompt === 'fails') return { status: 502, payload: { error: 'upstream failed', call: upstream.calls } };
  return { status: 200, payload: { text: `answer to ${prompt}`, call: upstream.calls } };
}

const engine = (): Amas =>
  createAmas({
    redis: { url: REDIS_URL, prefix },
    logger: silentLogger,
    http: { dedup: { shared: sharedOptions }, identity: () => 'tenant-1' },
  });

let expressUrl = '';
let fastifyUrl = '';
const engines: Amas[] = [];
const closers: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  const a = engine();
  const b = engine();
  engines.push(a, b);
  await Promise.all([a.ready(), b.ready()]);

  const app = express();
  app.use(express.json());
  app.use(amasMiddleware(a));
  app.post('/v1/chat', async (req, res) => {
    const { status, payload } = await answer(req.body);
    res.status(status).set('x-upstream', 'express').json(payload);
  });
  const server = await new Promise<import('node:http').Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  expressUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  closers.push(() => new Promise((r) => server.close(r)));

  const fastify = Fastify();
  await fastify.register(amasPlugin, { instance: b });
  fastify.post('/v1/chat', async (req, reply) => {
    const { status, payload } = await answer(req.body);
    reply.code(status).header('x-upstream', 'fastify');
    return payload;
  });
  await fastify.listen({ port: 0, host: '127.0.0.1' });
  fastifyUrl = `http://127.0.0.1:${(fastify.server.address() as AddressInfo).port}`;
  closers.push(() => fastify.close());
});

afterAll(async () => {
  for (const close of closers) await close();
  for (const amas of engines) await amas.close();
  redis.disconnect();
});

const redis = new Redis(REDIS_URL);
const sharedOptions = { maxResultBytes: 2048 };
/** Requests that joined a run already in flight in their own process, over both replicas. */
const localFollowers = () => engines.reduce((n, amas) => n + amas.sharedFlight(sharedOptions, 'test').stats().localFollowers, 0);

async function waitFor(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const post = (url: string, prompt: string) =>
  fetch(`${url}/v1/chat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt }) });

/** Sends the same prompt to both replicas (several times each), releasing the upstream once all wait. */
async function together(prompt: string, each = 3) {
  upstream.calls = 0;
  newGate(upstream);
  const pending = [...Array.from({ length: each }, () => post(expressUrl, prompt)), ...Array.from({ length: each }, () => post(fastifyUrl, prompt))];
  // Release the upstream only once the one run has started, every same-replica request has joined it, and
  // the other replica is waiting on the store (it subscribes to the key's channel once it found it held).
  const followersBefore = localFollowers();
  await waitFor('the run and its followers', async () => {
    if (upstream.calls === 0 || localFollowers() - followersBefore < 2 * (each - 1)) return false;
    const channels = (await redis.pubsub('CHANNELS', `${prefix}df:*`)) as string[];
    return channels.length > 0;
  });
  upstream.release();
  const responses = await Promise.all(pending);
  return Promise.all(responses.map(async (r) => ({ status: r.status, dedup: r.headers.get('x-amas-dedup'), upstream: r.headers.get('x-upstream'), body: await r.json() })));
}

describe('http.dedup.shared', () => {
  it('runs the upstream once for identical requests on two replicas (Express and Fastify) and replays it to all', async () => {
    const results = await together('what is AI?');
    expect(upstream.calls).toBe(1);
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    for (const r of results) expect(r.body).toEqual({ text: 'answer to what is AI?', call: 1 });
    expect(results.filter((r) => r.dedup === 'shared')).toHaveLength(5);
    // The leader's own headers travel with the replay, whichever framework produced them.
    expect(new Set(results.map((r) => r.upstream)).size).toBe(1);
  });

  it('different bodies are different calls', async () => {
    upstream.calls = 0;
    newGate(upstream);
    upstream.release();
    const [x, y] = await Promise.all([post(expressUrl, 'one'), post(fastifyUrl, 'two')]);
    expect(((await x.json()) as { text: string }).text).toBe('answer to one');
    expect(((await y.json()) as { text: string }).text).toBe('answer to two');
    expect(upstream.calls).toBe(2);
  });

  it('an upstream error response is shared too (no storm against a failing upstream)', async () => {
    const results = await together('fails', 2);
    expect(upstream.calls).toBe(1);
    expect(results.map((r) => r.status)).toEqual([502, 502, 502, 502]);
  });

  it('a response above maxResultBytes is not shared across replicas: the other replica runs its own', async () => {
    const results = await together('huge', 1);
    expect(results.map((r) => r.status)).toEqual([200, 200]);
    expect(upstream.calls).toBe(2);
    expect(results.every((r) => r.dedup === null)).toBe(true);
  });

  it('shared dedup without a store fails at start-up, naming the option', () => {
    expect(() => createAmas({ http: { dedup: { shared: true } } })).toThrow(InvalidOptionError);
    expect(() => createAmas({ http: { dedup: { shared: true } } })).toThrow(/dedup.shared: expected the engine to have a `redis` or `store` option/);
    const withStore = () => createAmas({ redis: { url: REDIS_URL, prefix }, logger: silentLogger, http: { dedup: { shared: { leaseMs: -1 } } } });
    expect(withStore).toThrow(/dedup\.shared\.leaseMs/);
    const badValues: Array<[unknown, RegExp]> = [
      ['yes', /http\.dedup/],
      [{ leaseTime: 5 }, /dedup\.shared.*leaseTime|leaseTime/],
      [{ maxResultBytes: 0 }, /dedup\.shared\.maxResultBytes/],
    ];
    for (const [shared, message] of badValues) {
      const make = () => createAmas({ redis: { url: REDIS_URL, prefix }, logger: silentLogger, http: { dedup: { shared } as never } });
      expect(make, JSON.stringify(shared)).toThrow(InvalidOptionError);
      expect(make, JSON.stringify(shared)).toThrow(message);
    }
  });
});
