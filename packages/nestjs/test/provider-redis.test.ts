/**
 * Provider-method decorators on an engine with a shared store: @RateLimit decides in Redis (the method
 * returns a promise then, even a synchronous one), so two applications (two replicas) share one limit.
 */
import 'reflect-metadata';
import { Injectable, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { afterEach, describe, expect, it } from 'vitest';
import { RateLimitedError, silentLogger } from '@amas/core';
import { AmasModule, RateLimit } from '@amas/nestjs';
import { createModule } from './helpers.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

@Injectable()
class QuotaService {
  @RateLimit('reports', { key: (tenant: string) => tenant })
  async report(tenant: string): Promise<string> {
    return `report:${tenant}`;
  }

  @RateLimit({ limit: 1, window: '1m', name: 'sync-inline' })
  syncMethod(): string {
    return 'sync';
  }
}

async function replica(prefix: string): Promise<INestApplicationContext> {
  const ctx = await NestFactory.createApplicationContext(
    createModule({
      imports: [AmasModule.forRoot({ redis: { url: REDIS_URL, prefix }, logger: silentLogger, limits: { reports: { limit: 3, window: '1h' } } })],
      providers: [QuotaService],
    }),
    { logger: false, abortOnError: false },
  );
  await ctx.init();
  return ctx;
}

describe('@RateLimit on provider methods with a shared store', () => {
  const contexts: INestApplicationContext[] = [];
  afterEach(async () => {
    for (const ctx of contexts.splice(0)) await ctx.close();
  });

  it('two replicas share one limit per tenant', async () => {
    const prefix = `test:${Math.random().toString(36).slice(2, 8)}:`;
    const a = await replica(prefix);
    const b = await replica(prefix);
    contexts.push(a, b);
    const sa = a.get(QuotaService);
    const sb = b.get(QuotaService);
    const results = await Promise.all([sa.report('acme'), sb.report('acme'), sa.report('acme'), sb.report('acme')].map((p) => p.catch((e: unknown) => e)));
    expect(results.filter((r) => typeof r === 'string')).toHaveLength(3);
    const denied = results.filter((r) => r instanceof RateLimitedError) as RateLimitedError[];
    expect(denied).toHaveLength(1);
    expect(denied[0]!.retryAfterMs).toBeGreaterThan(0);
    await expect(sb.report('other-tenant')).resolves.toBe('report:other-tenant');
  });

  it('a synchronous method becomes asynchronous when its limit lives in the store', async () => {
    const prefix = `test:${Math.random().toString(36).slice(2, 8)}:`;
    const a = await replica(prefix);
    contexts.push(a);
    const service = a.get(QuotaService);
    const first = service.syncMethod() as unknown;
    expect(first).toBeInstanceOf(Promise);
    await expect(first).resolves.toBe('sync');
    await expect(service.syncMethod() as unknown as Promise<string>).rejects.toBeInstanceOf(RateLimitedError);
  });
});
