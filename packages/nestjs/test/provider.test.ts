import 'reflect-metadata';
import { Inject, Injectable, Scope, SetMetadata, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { afterEach, describe, expect, it } from 'vitest';
import { BreakerOpenError, InvalidOptionError, ManualClock, RateLimitedError, type Amas } from '@amas/core';
import { AMAS, AmasModule, CircuitProtected, Deduplicate, RateLimit } from '@amas/nestjs';
import { createModule } from './helpers.js';

const OTHER_METADATA = 'other:listener';

@Injectable()
class UpstreamService {
  calls = 0;
  failing = true;
  gate: Promise<void> = Promise.resolve();

  @CircuitProtected(undefined, { failureThreshold: 3, recoveryTimeoutMs: 5_000 })
  async fetchQuote(symbol: string): Promise<string> {
    this.calls++;
    if (this.failing) throw new Error(`upstream failed for ${symbol}`);
    return `quote:${symbol}`;
  }

  @CircuitProtected('shared-upstream')
  async named(): Promise<string> {
    return 'named';
  }

  @RateLimit({ limit: 2, window: '1m' })
  syncLimited(): string {
    return 'ok';
  }

  @RateLimit({ limit: 1, window: '1m' }, { key: (tenant: string) => tenant })
  async perTenant(tenant: string): Promise<string> {
    return `ok:${tenant}`;
  }

  @RateLimit('reports')
  async namedLimit(): Promise<string> {
    return 'report';
  }

  @Deduplicate()
  async load(id: number, options?: { full: boolean }): Promise<{ id: number; full: boolean; calls: number }> {
    this.calls++;
    await this.gate;
    if (id < 0) throw new Error('negative id');
    return { id, full: options?.full ?? false, calls: this.calls };
  }

  @Deduplicate({ key: (id: number) => `item:${id}`, shareWindowMs: 1_000 })
  @SetMetadata(OTHER_METADATA, 'kept')
  async cached(id: number, _ignored: unknown): Promise<number> {
    this.calls++;
    return id * 10;
  }

  @RateLimit({ limit: 100, window: '1m' })
  @Deduplicate()
  @CircuitProtected('everything', { failureThreshold: 1 })
  async everything(n: number): Promise<number> {
    this.calls++;
    await this.gate;
    return n;
  }

  plain(): string {
    return 'untouched';
  }
}

@Injectable()
class Consumer {
  constructor(@Inject(UpstreamService) readonly upstream: UpstreamService) {}
}

@Injectable({ scope: Scope.REQUEST })
class PerRequestService {
  @CircuitProtected()
  async call(): Promise<string> {
    return 'per-request';
  }
}

@Injectable({ scope: Scope.TRANSIENT })
class TransientService {
  @RateLimit({ limit: 1, window: '1m' })
  hit(): string {
    return 'hit';
  }
}

@Injectable()
class TransientConsumer {
  constructor(@Inject(TransientService) readonly transient: TransientService) {}
}

async function context(providers: unknown[], clock = new ManualClock()): Promise<{ ctx: INestApplicationContext; amas: Amas; clock: ManualClock }> {
  const ctx = await NestFactory.createApplicationContext(
    createModule({
      imports: [AmasModule.forRoot({ clock, limits: { reports: { limit: 1, window: '1h' } } })],
      providers: providers as never[],
    }),
    { logger: false, abortOnError: false },
  );
  await ctx.init();
  return { ctx, amas: ctx.get<Amas>(AMAS), clock };
}

describe('AMAS decorators on provider methods', () => {
  const contexts: INestApplicationContext[] = [];
  const start = async (providers: unknown[] = [UpstreamService, Consumer]) => {
    const result = await context(providers);
    contexts.push(result.ctx);
    const service = providers.includes(UpstreamService) ? result.ctx.get(UpstreamService) : (undefined as never as UpstreamService);
    return { ...result, service };
  };
  afterEach(async () => {
    for (const ctx of contexts.splice(0)) await ctx.close();
  });

  it('@CircuitProtected opens after failures, rejects without calling, and recovers', async () => {
    const { service, amas, clock, ctx } = await start();
    for (let i = 0; i < 3; i++) await expect(service.fetchQuote('ACME')).rejects.toThrow('upstream failed for ACME');
    expect(service.calls).toBe(3);
    const breaker = amas.breaker('UpstreamService.fetchQuote');
    expect(breaker.getState()).toBe('open');
    const error = await service.fetchQuote('ACME').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BreakerOpenError);
    expect((error as BreakerOpenError).retryAfterMs).toBe(5_000);
    expect(service.calls).toBe(3);
    // The instance other providers got is the wrapped one.
    await expect(ctx.get(Consumer).upstream.fetchQuote('X')).rejects.toBeInstanceOf(BreakerOpenError);

    service.failing = false;
    await clock.advance(5_000);
    await expect(service.fetchQuote('ACME')).resolves.toBe('quote:ACME');
    expect(breaker.getState()).toBe('closed');
  });

  it('@CircuitProtected(name) uses the named breaker of the instance', async () => {
    const { service, amas } = await start();
    amas.breaker('shared-upstream').open();
    await expect(service.named()).rejects.toBeInstanceOf(BreakerOpenError);
    amas.breaker('shared-upstream').close();
    await expect(service.named()).resolves.toBe('named');
  });

  it('@RateLimit throws RateLimitedError (sync methods throw, async ones reject)', async () => {
    const { service, clock } = await start();
    expect(service.syncLimited()).toBe('ok');
    expect(service.syncLimited()).toBe('ok');
    let thrown: unknown;
    try {
      service.syncLimited();
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(RateLimitedError);
    expect((thrown as RateLimitedError).status).toBe(429);
    expect((thrown as RateLimitedError).retryAfterMs).toBeGreaterThan(0);
    await clock.advance((thrown as RateLimitedError).retryAfterMs!);
    expect(service.syncLimited()).toBe('ok');

    // A key function charges each key separately.
    await expect(service.perTenant('a')).resolves.toBe('ok:a');
    await expect(service.perTenant('b')).resolves.toBe('ok:b');
    const rejected = service.perTenant('a');
    expect(rejected).toBeInstanceOf(Promise);
    await expect(rejected).rejects.toBeInstanceOf(RateLimitedError);

    // A named limit from the module options.
    await expect(service.namedLimit()).resolves.toBe('report');
    await expect(service.namedLimit()).rejects.toMatchObject({ code: 'AMAS_RATE_LIMITED', details: { limit: 'reports' } });
  });

  it('@Deduplicate shares identical concurrent calls (results and errors) by stableKey(args)', async () => {
    const { service } = await start();
    service.calls = 0;
    let release!: () => void;
    service.gate = new Promise<void>((resolve) => (release = resolve));
    const same = Array.from({ length: 20 }, () => service.load(7, { full: true }));
    const other = service.load(8);
    const reordered = service.load(7, { full: true });
    expect(service.calls).toBe(2);
    release();
    const results = await Promise.all([...same, reordered]);
    expect(new Set(results).size).toBe(1);
    expect(results[0]).toMatchObject({ id: 7, full: true });
    expect((await other).id).toBe(8);

    // Errors are shared too; once settled, the next call runs again.
    service.calls = 0;
    const failures = await Promise.allSettled([service.load(-1), service.load(-1)]);
    expect(failures.every((f) => f.status === 'rejected')).toBe(true);
    expect(service.calls).toBe(1);
    await expect(service.load(-1)).rejects.toThrow('negative id');
    expect(service.calls).toBe(2);
  });

  it('@Deduplicate uses a key function and a share window, and keeps other metadata', async () => {
    const { service, clock } = await start();
    service.calls = 0;
    expect(await service.cached(1, 'a')).toBe(10);
    expect(await service.cached(1, 'b')).toBe(10); // same key, within the share window
    expect(service.calls).toBe(1);
    await clock.advance(1_000);
    expect(await service.cached(1, 'c')).toBe(10);
    expect(service.calls).toBe(2);
    expect(Reflect.getMetadata(OTHER_METADATA, service.cached)).toBe('kept');
    expect(service.cached.name).toBe('cached');
  });

  it('combines decorators (limit -> dedup -> breaker) and keeps `this` for detached calls', async () => {
    const { service, amas } = await start();
    service.calls = 0;
    const detached = service.everything;
    const [a, b] = await Promise.all([detached(1), service.everything(1)]);
    expect([a, b]).toEqual([1, 1]);
    expect(service.calls).toBe(1);
    amas.breaker('everything').open();
    await expect(service.everything(2)).rejects.toBeInstanceOf(BreakerOpenError);
    expect(service.plain()).toBe('untouched');
    expect(Object.prototype.hasOwnProperty.call(service, 'plain')).toBe(false);
  });

  it('wraps static transient instances and skips request-scoped providers', async () => {
    const { ctx } = await start([TransientConsumer, TransientService, PerRequestService]);
    const transient = ctx.get(TransientConsumer).transient;
    expect(transient.hit()).toBe('hit');
    expect(() => transient.hit()).toThrow(RateLimitedError);
    const perRequest = await ctx.resolve(PerRequestService);
    expect(Object.prototype.hasOwnProperty.call(perRequest, 'call')).toBe(false);
    await expect(perRequest.call()).resolves.toBe('per-request');
  });

  it('fails start-up on a bad decorator option, naming the method', async () => {
    @Injectable()
    class BadLimit {
      @RateLimit({ limit: 1, window: 'soon' })
      call() {}
    }
    @Injectable()
    class UnknownLimit {
      @RateLimit(['reports', 'nope'])
      call() {}
    }
    @Injectable()
    class BadBreaker {
      @CircuitProtected('bad', { failureThreshold: -1 })
      async call() {}
    }
    for (const [provider, path] of [
      [BadLimit, 'limit.window'],
      [UnknownLimit, 'limit[1]'],
      [BadBreaker, 'failureThreshold'],
    ] as const) {
      const error = await context([provider]).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(InvalidOptionError);
      expect((error as InvalidOptionError).message).toContain(`${provider.name}.call`);
      expect((error as InvalidOptionError).issues[0]!.path).toBe(path);
    }
  });
});
