import 'reflect-metadata';
import { Injectable } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { describe, expect, it } from 'vitest';
import { InvalidOptionError, silentLogger, stableKey, type Amas } from '@amas/core';
import { AMAS, AmasModule, Cached } from '@amas/nestjs';
import { createModule } from './helpers.js';

@Injectable()
class CatalogService {
  runs = 0;

  @Cached({ ttl: '1m' })
  async product(id: number, options: { locale: string; currency: string }): Promise<{ id: number; locale: string; run: number }> {
    this.runs++;
    await new Promise((r) => setTimeout(r, 20));
    return { id, locale: options.locale, run: this.runs };
  }

  @Cached({ namespace: 'prices', key: (sku: string) => `price:${sku}` })
  price(sku: string): number {
    this.runs++;
    return sku.length;
  }
}

describe('@Cached() on provider methods', () => {
  it('caches results in amas.cache by arguments (order-free objects), one run for concurrent calls', async () => {
    const ctx = await NestFactory.createApplicationContext(
      createModule({ imports: [AmasModule.forRoot({ logger: silentLogger })], providers: [CatalogService] }),
      { logger: false },
    );
    try {
      const svc = ctx.get(CatalogService);
      const amas = ctx.get<Amas>(AMAS);
      const results = await Promise.all([
        svc.product(1, { locale: 'en', currency: 'EUR' }),
        svc.product(1, { currency: 'EUR', locale: 'en' }),
        svc.product(1, { locale: 'en', currency: 'EUR' }),
      ]);
      expect(svc.runs).toBe(1);
      expect(results.every((r) => r.run === 1)).toBe(true);
      expect(await svc.product(2, { locale: 'fr', currency: 'EUR' })).toMatchObject({ id: 2, run: 2 });
      expect(await amas.cache.get(`CatalogService.product:${stableKey([1, { locale: 'en', currency: 'EUR' }])}`)).toMatchObject({ id: 1 });
      expect(await svc.price('abc')).toBe(3);
      expect(await svc.price('abc')).toBe(3);
      expect(svc.runs).toBe(3);
      expect(await amas.cache.get('price:abc', { namespace: 'prices' })).toBe(3);
    } finally {
      await ctx.close();
    }
  });

  it('a bad @Cached option fails at start-up with the decorator and method named', async () => {
    @Injectable()
    class Broken {
      @Cached({ ttl: 'whenever' as never })
      value(): number {
        return 1;
      }
    }
    const error = await NestFactory.createApplicationContext(createModule({ imports: [AmasModule.forRoot({ logger: silentLogger })], providers: [Broken] }), {
      logger: false,
      abortOnError: false,
    }).then(
      async (ctx) => {
        await ctx.close();
        return undefined;
      },
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect(String((error as Error).message)).toMatch(/@Cached on Broken\.value/);
    expect(String((error as Error).message)).toMatch(/ttl/);
  });
});
