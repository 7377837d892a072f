/**
 * The adapters with a shared store: Fastify and NestJS connect to Redis before the app serves (their start-up
 * hooks), a missing Redis never blocks start-up, and limits keep deciding (locally) without it. Express has
 * no start-up hook: `await amas.ready()` is the user's to call (README).
 */
import 'reflect-metadata';
import { afterEach, describe, expect, it } from 'vitest';
import type { AddressInfo } from 'node:net';
import Fastify from 'fastify';
import { Controller, Get, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { RedisStore, type AmasOptions, type Logger } from '@amas/core';
import amasPlugin from '@amas/fastify';
import { AMAS, AmasModule } from '@amas/nestjs';
import { freePort } from './support/free-port.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = () => `test:${Math.random().toString(36).slice(2, 8)}:`;
const closers: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, warn: (m: string) => lines.push(m), error: (m: string) => lines.push(m) };
}

function options(redisUrl: string, logger: Logger): AmasOptions {
  return { redis: { url: redisUrl, prefix: prefix() }, logger, limits: { api: { limit: 2, window: '1m' } }, http: { limit: 'api', identity: () => 'u1' } };
}

async function fastifyApp(opts: AmasOptions) {
  const app = Fastify();
  await app.register(amasPlugin, opts);
  app.get('/x', async () => ({ ok: true }));
  await app.listen({ port: 0, host: '127.0.0.1' });
  closers.push(() => app.close());
  return { amas: app.amas, url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}` };
}

async function nestApp(opts: AmasOptions) {
  @Controller()
  class C {
    @Get('x')
    x() {
      return { ok: true };
    }
  }
  @Module({ imports: [AmasModule.forRoot(opts)], controllers: [C] })
  class M {}
  const app = await NestFactory.create(M, new ExpressAdapter(), { logger: false, abortOnError: false });
  await app.listen(0, '127.0.0.1');
  closers.push(() => app.close());
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1').replace('localhost', '127.0.0.1');
  return { amas: app.get(AMAS), url };
}

const statuses = async (url: string, n: number) => {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await fetch(`${url}/x`)).status);
  return out;
};

describe.each([
  ['fastify', fastifyApp],
  ['nest', nestApp],
] as const)('%s with a shared store', (_name, start) => {
  it('is connected to Redis before it serves, and limits decide there', async () => {
    const logger = recordingLogger();
    const { amas, url } = await start(options(REDIS_URL, logger));
    expect(amas.store).toBeInstanceOf(RedisStore);
    expect(amas.store!.available).toBe(true);
    expect(await statuses(url, 3)).toEqual([200, 200, 429]);
    expect(logger.lines).toEqual([]);
  });

  it('starts without Redis, says so once, and limits decide locally', async () => {
    const logger = recordingLogger();
    const port = await freePort();
    const { amas, url } = await start(options(`redis://127.0.0.1:${port}`, logger));
    expect(amas.store!.available).toBe(false);
    expect(await statuses(url, 3)).toEqual([200, 200, 429]); // replicas defaults to 1: the local limit is the whole limit
    expect(logger.lines.filter((l) => /not ready/.test(l))).toHaveLength(1);
    expect(logger.lines.filter((l) => /store is unavailable/.test(l))).toHaveLength(1);
  });
});
