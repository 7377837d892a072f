import 'reflect-metadata';
import {
  Controller,
  Get,
  Injectable,
  Module,
  UseGuards,
  type CanActivate,
  type ExecutionContext,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { afterEach, describe, expect, it } from 'vitest';
import { createAmas, InvalidOptionError, ManualClock, type Amas } from '@amas/core';
import { AMAS, AmasGuard, AmasModule, AmasRouteRegistry, InjectAmas, RateLimit } from '@amas/nestjs';
import { createApp, createModule, PLATFORMS, startApp, type TestApp } from './helpers.js';

const CONFIG = 'CONFIG';

@Module({ providers: [{ provide: CONFIG, useValue: { perMinute: 1 } }], exports: [CONFIG] })
class ConfigModule {}

@Controller('named')
class NamedLimitController {
  @Get()
  @RateLimit('api')
  get() {
    return { ok: true };
  }
}

@Injectable()
class UsesAmas {
  constructor(@InjectAmas() readonly amas: Amas) {}
}

/** An auth guard that sets request.user, as Passport's AuthGuard does (on Fastify: the FastifyRequest). */
@Injectable()
class FakeAuthGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const req = context.switchToHttp().getRequest<{ headers: Record<string, string>; user?: unknown }>();
    req.user = { id: req.headers['x-token'] };
    return true;
  }
}

@Controller('guarded')
@UseGuards(FakeAuthGuard, AmasGuard)
class GuardedController {
  @Get()
  @RateLimit({ limit: 1, window: '1m' })
  get() {
    return { ok: true };
  }
}

async function rejectionOf(promise: Promise<unknown>): Promise<InvalidOptionError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(InvalidOptionError);
  return error as InvalidOptionError;
}

describe.each(PLATFORMS)('AmasModule bootstrap and lifecycle (%s)', (platform) => {
  const apps: TestApp[] = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
  });

  it('fails application creation on a bad option, naming its path', async () => {
    const error = await rejectionOf(createApp(platform, { imports: [AmasModule.forRoot({ limits: { api: { limit: -1, window: '1m' } } })] }));
    expect(error.issues[0]!.path).toBe('limits.api.limit');
    expect(error.message).toContain('limits.api.limit');

    const unknown = await rejectionOf(createApp(platform, { imports: [AmasModule.forRoot({ htpp: {} } as never)] }));
    expect(unknown.message).toContain('htpp');

    const instance = await rejectionOf(createApp(platform, { imports: [AmasModule.forRoot({ instance: { not: 'amas' } } as never)] }));
    expect(instance.issues[0]!.path).toBe('instance');
  });

  it('fails start-up on a bad per-route option, naming the route and the option', async () => {
    @Controller('bad')
    class BadController {
      @Get('route')
      @RateLimit([{ limit: 0, window: '1m' }])
      get() {
        return 'never';
      }
    }
    const app = await createApp(platform, { imports: [AmasModule.forRoot()], controllers: [BadController] });
    const error = await rejectionOf(app.init());
    expect(error.message).toContain('/bad/route');
    expect(error.issues[0]!.path).toBe('limit.0.limit');
    await app.close();
  });

  it('forRootAsync builds the instance from injected providers', async () => {
    const app = await startApp(platform, {
      imports: [
        AmasModule.forRootAsync({
          imports: [ConfigModule],
          inject: [CONFIG],
          useFactory: async (config: { perMinute: number }) => ({
            clock: new ManualClock(),
            limits: { api: { limit: config.perMinute, window: '1m' } },
          }),
        }),
      ],
      controllers: [NamedLimitController],
    });
    apps.push(app);
    expect((await app.get('/named')).status).toBe(200);
    expect((await app.get('/named')).status).toBe(429);
  });

  it('forRootAsync reports a bad factory result at creation', async () => {
    const error = await rejectionOf(
      createApp(platform, { imports: [AmasModule.forRootAsync({ useFactory: () => ({ breakerDefaults: { failureThreshold: -2 } }) })] }),
    );
    expect(error.issues[0]!.path).toBe('breakerDefaults.failureThreshold');
  });

  it('injects the same instance everywhere with @InjectAmas() and AMAS', async () => {
    const app = await startApp(platform, { imports: [AmasModule.forRoot()], providers: [UsesAmas] });
    apps.push(app);
    expect(app.app.get(UsesAmas).amas).toBe(app.app.get(AMAS));
  });

  it('closes an owned instance on shutdown, and never a passed one', async () => {
    const owned = await startApp(platform, { imports: [AmasModule.forRoot({})] });
    const ownedAmas = owned.app.get<Amas>(AMAS);
    expect(ownedAmas.isClosed).toBe(false);
    await owned.close();
    expect(ownedAmas.isClosed).toBe(true);

    const shared = createAmas();
    for (const input of [{ instance: shared }, shared]) {
      const app = await startApp(platform, { imports: [AmasModule.forRoot(input)] });
      expect(app.app.get(AMAS)).toBe(shared);
      await app.close();
      expect(shared.isClosed).toBe(false);
    }
    const async = await startApp(platform, { imports: [AmasModule.forRootAsync({ useFactory: () => ({ instance: shared }) })] });
    await async.close();
    expect(shared.isClosed).toBe(false);
    await shared.close();
  });

  it('with guard: false, @UseGuards(AuthGuard, AmasGuard) limits by the user an auth guard sets', async () => {
    const app = await startApp(platform, {
      imports: [AmasModule.forRoot({ clock: new ManualClock() }, { guard: false })],
      controllers: [GuardedController],
    });
    apps.push(app);
    expect((await app.get('/guarded', { 'x-token': 'u1' })).status).toBe(200);
    expect((await app.get('/guarded', { 'x-token': 'u2' })).status).toBe(200);
    const limited = await app.get('/guarded', { 'x-token': 'u1' });
    expect(limited.status).toBe(429);
    expect(((await limited.json()) as { error: { code: string } }).error.code).toBe('AMAS_RATE_LIMITED');
  });

  it('admits once when AmasGuard is both global and in @UseGuards', async () => {
    @Controller('twice')
    @UseGuards(AmasGuard)
    class TwiceController {
      @Get()
      @RateLimit({ limit: 2, window: '1m' })
      get() {
        return { ok: true };
      }
    }
    const app = await startApp(platform, { imports: [AmasModule.forRoot({ clock: new ManualClock() })], controllers: [TwiceController] });
    apps.push(app);
    const first = await app.get('/twice');
    expect(first.headers.get('ratelimit')).toContain('r=1');
    expect((await app.get('/twice')).status).toBe(200);
    expect((await app.get('/twice')).status).toBe(429);
  });

  it('serves Prometheus metrics at metricsPath', async () => {
    const app = await startApp(platform, { imports: [AmasModule.forRoot({ limits: { api: { limit: 10, window: '1m' } } }, { metricsPath: 'metrics' })], controllers: [NamedLimitController] });
    apps.push(app);
    await app.get('/named');
    const res = await app.get('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(res.headers.get('x-response-time')).toBeNull();
    const text = await res.text();
    expect(text).toMatch(/# TYPE \w+ /);
    expect(text).toContain('/named');
  });

  it('compiles each route once with its pattern (global prefix + controller + method path)', async () => {
    const app = await startApp(
      platform,
      { imports: [AmasModule.forRoot({ limits: { api: { limit: 5, window: '1m' } } })], controllers: [NamedLimitController, GuardedController] },
      (a) => a.setGlobalPrefix('v1'),
    );
    apps.push(app);
    const registry = app.app.get(AmasRouteRegistry);
    const route = registry.get(NamedLimitController, NamedLimitController.prototype.get);
    expect(route.pattern).toBe('/v1/named');
    expect(registry.get(NamedLimitController, NamedLimitController.prototype.get)).toBe(route);
    expect((await app.get('/v1/named')).status).toBe(200);
    const metrics = await app.app.get<Amas>(AMAS).metrics.expose();
    expect(metrics.body).toContain('/v1/named');
  });
});

describe('AmasModule options', () => {
  it('rejects bad module options when the module is declared', () => {
    expect(() => AmasModule.forRoot({}, { guard: 'yes' } as never)).toThrow(InvalidOptionError);
    expect(() => AmasModule.forRoot({}, { gaurd: true } as never)).toThrow(/gaurd/);
    expect(() => AmasModule.forRootAsync({} as never)).toThrow(/useFactory/);
    expect(() => AmasModule.forRoot({}, { metricsPath: '' })).toThrow(/metricsPath/);
    expect(() => AmasModule.forRoot({}, { interceptor: 'no' } as never)).toThrow(/interceptor/);
  });

  it('works in a plain application context (no HTTP)', async () => {
    const ctx = await NestFactory.createApplicationContext(createModule({ imports: [AmasModule.forRoot()], providers: [UsesAmas] }), {
      logger: false,
      abortOnError: false,
    });
    const amas = ctx.get<Amas>(AMAS);
    expect(ctx.get(UsesAmas).amas).toBe(amas);
    await ctx.close();
    expect(amas.isClosed).toBe(true);
  });
});

