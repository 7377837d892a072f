import 'reflect-metadata';
import { Module, type MiddlewareConsumer, type ModuleMetadata, type NestModule, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';

export type Platform = 'express' | 'fastify';
export const PLATFORMS: Platform[] = ['express', 'fastify'];

export interface TestApp {
  app: INestApplication;
  url: string;
  get(path: string, headers?: Record<string, string>): Promise<Response>;
  close(): Promise<void>;
}

/**
 * Sets `req.user` from the `x-user` header, as an auth middleware would. Special values produce the odd
 * identities real apps hand over (objects, numbers, control characters, huge ids).
 */
export function userFromHeader(req: { headers: Record<string, unknown>; user?: unknown }, _res: unknown, next: () => void): void {
  const header = req.headers['x-user'];
  if (typeof header === 'string') {
    const odd: Record<string, unknown> = {
      __object__: { id: { nested: true } },
      __number__: 12345,
      __array__: ['a', 'b'],
      __control__: { id: '\u0000\u0007\u001bevil\r\n' },
      __long__: { id: 'x'.repeat(100_000) },
      __null__: null,
    };
    req.user = header in odd ? odd[header] : { id: header };
  }
  next();
}

/** Creates a Nest module from `metadata`, starts it on `platform` on a random local port. */
export function createModule(metadata: ModuleMetadata) {
  @Module(metadata)
  class TestModule implements NestModule {
    configure(consumer: MiddlewareConsumer): void {
      if (metadata.controllers?.length) consumer.apply(userFromHeader).forRoutes(...metadata.controllers);
    }
  }
  return TestModule;
}

export async function createApp(platform: Platform, metadata: ModuleMetadata): Promise<INestApplication> {
  const module = createModule(metadata);
  const options = { logger: false as const, abortOnError: false };
  return platform === 'express'
    ? NestFactory.create(module, new ExpressAdapter(), options)
    : NestFactory.create(module, new FastifyAdapter(), options);
}

export async function startApp(platform: Platform, metadata: ModuleMetadata, setup?: (app: INestApplication) => void): Promise<TestApp> {
  const app = await createApp(platform, metadata);
  setup?.(app);
  await app.listen(0, '127.0.0.1');
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  return {
    app,
    url,
    get: (path, headers) => fetch(`${url}${path}`, { headers }),
    close: () => app.close(),
  };
}

/** Waits (without timers) until `condition` holds; fails after many event-loop turns. */
export async function until(condition: () => boolean, turns = 10_000): Promise<void> {
  for (let i = 0; i < turns; i++) {
    if (condition()) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  throw new Error('condition never became true');
}
