/**
 * Health endpoints of every adapter over real HTTP: Express `healthHandler`, Fastify `healthHandler`, Nest
 * `createAmasHealthController` (on both of Nest's platforms). The engine's Redis is a closed loopback port,
 * so readiness is degraded (200) with the redis check down, required Redis is down (503), liveness is ok (200)
 * until the engine is closed (503). Every adapter answers the same statuses and JSON shape.
 */
import 'reflect-metadata';
import { afterAll, describe, expect, it } from 'vitest';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify from 'fastify';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { createAmas, InvalidOptionError, silentLogger, type Amas, type HealthReport } from '@amas/core';
import { amasMiddleware, healthHandler as expressHealth } from '@amas/express';
import amasPlugin, { healthHandler as fastifyHealth } from '@amas/fastify';
import { AmasModule, createAmasHealthController } from '@amas/nestjs';
import { freePort } from './support/free-port.js';

interface Running {
  url: string;
  amas: Amas;
  close(): Promise<void>;
}

async function engineWithoutRedis(): Promise<Amas> {
  const port = await freePort();
  const amas = createAmas({ redis: { url: `redis://127.0.0.1:${port}`, connectTimeoutMs: 200 }, breakers: { openai: {} }, logger: silentLogger });
  await amas.warmUp(1000);
  return amas;
}

async function startExpress(): Promise<Running> {
  const amas = await engineWithoutRedis();
  const app = express();
  const mw = amasMiddleware(amas);
  // Probes first: they never go through limits.
  app.get('/health/live', expressHealth('live', mw));
  app.get('/health/ready', expressHealth('ready', amas));
  app.get('/strict/live', expressHealth('live', mw, { required: ['redis'] }));
  app.get('/strict/ready', expressHealth('ready', mw, { required: ['redis'], timeoutMs: 500 }));
  app.use(mw);
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((r) => server.once('listening', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    amas,
    close: async () => {
      await new Promise<void>((r) => server.close(() => r()));
      await amas.close();
    },
  };
}

async function startFastify(): Promise<Running> {
  const amas = await engineWithoutRedis();
  const app = Fastify();
  await app.register(amasPlugin, { instance: amas });
  const skip = { config: { amas: { skip: true } } };
  app.get('/health/live', skip, fastifyHealth('live'));
  app.get('/health/ready', skip, fastifyHealth('ready'));
  app.get('/strict/live', skip, fastifyHealth('live', amas, { required: ['redis'] }));
  app.get('/strict/ready', skip, fastifyHealth('ready', amas, { required: ['redis'], timeoutMs: 500 }));
  await app.listen({ port: 0, host: '127.0.0.1' });
  return {
    url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`,
    amas,
    close: async () => {
      await app.close();
      await amas.close();
    },
  };
}

async function startNest(platform: 'express' | 'fastify'): Promise<Running> {
  const amas = await engineWithoutRedis();
  @Module({
    imports: [AmasModule.forRoot(amas)],
    controllers: [createAmasHealthController(), createAmasHealthController('strict', { required: ['redis'], timeoutMs: 500 })],
  })
  class HealthModule {}
  const app = await NestFactory.create(HealthModule, platform === 'express' ? new ExpressAdapter() : new FastifyAdapter(), { logger: false, abortOnError: false });
  await app.listen(0, '127.0.0.1');
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1').replace('localhost', '127.0.0.1');
  return {
    url,
    amas,
    close: async () => {
      await app.close();
      await amas.close();
    },
  };
}

const frameworks: Array<[string, () => Promise<Running>]> = [
  ['express', startExpress],
  ['fastify', startFastify],
  ['nest-express', () => startNest('express')],
  ['nest-fastify', () => startNest('fastify')],
];

/** Per framework: [path, status, body status] in order, compared across frameworks at the end. */
const seen = new Map<string, Array<[string, number, string]>>();

async function probe(framework: string, base: string, path: string): Promise<{ status: number; body: HealthReport; headers: Headers }> {
  const response = await fetch(base + path);
  const body = (await response.json()) as HealthReport;
  const list = seen.get(framework) ?? [];
  list.push([path, response.status, body.status]);
  seen.set(framework, list);
  return { status: response.status, body, headers: response.headers };
}

function expectReportShape(body: HealthReport): void {
  expect(['ok', 'degraded', 'down']).toContain(body.status);
  for (const [name, check] of Object.entries(body.checks)) {
    expect(typeof name).toBe('string');
    expect(['ok', 'degraded', 'down']).toContain(check.status);
    for (const key of Object.keys(check)) expect(['status', 'detail', 'latencyMs']).toContain(key);
    if (check.detail !== undefined) expect(typeof check.detail).toBe('string');
    if (check.latencyMs !== undefined) expect(typeof check.latencyMs).toBe('number');
  }
}

describe.each(frameworks)('health endpoints on %s', (framework, start) => {
  it('live ok, ready degraded without Redis, required Redis 503, closed engine 503', async () => {
    const app = await start();
    try {
      const live = await probe(framework, app.url, '/health/live');
      expect(live.status).toBe(200);
      expect(live.body).toEqual({ status: 'ok', checks: { engine: { status: 'ok' } } });
      expect(live.headers.get('content-type')).toMatch(/^application\/json/);
      expect(live.headers.get('cache-control')).toBe('no-store');

      const ready = await probe(framework, app.url, '/health/ready');
      expect(ready.status).toBe(200);
      expectReportShape(ready.body);
      expect(ready.body.status).toBe('degraded');
      expect(ready.body.checks.redis!.status).toBe('down');
      expect(ready.body.checks.redis!.detail).toMatch(/local fallbacks/);
      expect(ready.body.checks.engine).toEqual({ status: 'ok' });
      expect(ready.body.checks.breakers!.status).toBe('ok');

      app.amas.breaker('openai').open();
      const open = await probe(framework, app.url, '/health/ready');
      expect(open.status).toBe(200);
      expect(open.body.checks.breakers).toEqual({ status: 'degraded', detail: 'open: openai' });

      const strict = await probe(framework, app.url, '/strict/ready');
      expect(strict.status).toBe(503);
      expectReportShape(strict.body);
      expect(strict.body.status).toBe('down');
      expect((await probe(framework, app.url, '/strict/live')).status).toBe(200);

      await app.amas.close();
      const closed = await probe(framework, app.url, '/health/live');
      expect(closed.status).toBe(503);
      expect(closed.body).toEqual({ status: 'down', checks: { engine: { status: 'down', detail: 'the engine is closed' } } });
      expect((await probe(framework, app.url, '/health/ready')).status).toBe(503);
    } finally {
      await app.close();
    }
  });
});

describe('health adapters', () => {
  afterAll(() => {
    // Same statuses on every framework, step by step.
    const [first, ...rest] = [...seen.values()];
    for (const other of rest) expect(other).toEqual(first);
  });

  it('validate their options when created', () => {
    const amas = createAmas({ logger: silentLogger });
    expect(() => expressHealth('ready', amas, { required: 'redis' } as never)).toThrow(InvalidOptionError);
    expect(() => expressHealth('ready', amas, { timeoutMs: 0 })).toThrow(/timeoutMs/);
    expect(() => expressHealth('sideways' as never, amas)).toThrow(/kind: expected one of "live", "ready"/);
    expect(() => expressHealth('live', {} as never)).toThrow(/pass the AMAS middleware/);
    expect(() => fastifyHealth('ready', amas, { required: [''] })).toThrow(/required\.0/);
    expect(() => createAmasHealthController('health', { timeoutMs: -1 })).toThrow(InvalidOptionError);
    return amas.close();
  });
});
