import 'reflect-metadata';
import { Body, Controller, Get, HttpCode, ImATeapotException, NotFoundException, Post, Query } from '@nestjs/common';
import { afterEach, describe, expect, it } from 'vitest';
import { BreakerOpenError, ManualClock, RateLimitedError, type Amas, type NeutralRequest } from '@amas/core';
import { AMAS, AmasModule, AmasRoute, CircuitProtected, Deduplicate, InjectAmas, RateLimit, SkipAmas } from '@amas/nestjs';
import { PLATFORMS, startApp, until, type TestApp } from './helpers.js';

const state = { fail: false, handlerCalls: 0, identityCalls: 0, gate: Promise.resolve() };

@Controller('api')
class ApiController {
  constructor(@InjectAmas() private readonly amas: Amas) {}

  @Get('plain')
  plain() {
    return { ok: true };
  }

  @Get('limited')
  @RateLimit({ limit: 2, window: '1m' })
  limited() {
    return { ok: true };
  }

  @Get('flaky')
  @CircuitProtected('upstream', { failureThreshold: 2, recoveryTimeoutMs: 10_000 })
  flaky() {
    if (state.fail) throw new Error('upstream down');
    return { ok: true };
  }

  @Get('dedup')
  @Deduplicate()
  @AmasRoute({
    identity: () => {
      state.identityCalls++;
      return 'same-caller';
    },
  })
  async dedup() {
    state.handlerCalls++;
    await state.gate;
    return { calls: state.handlerCalls };
  }

  @Post('echo')
  @HttpCode(200)
  echo(@Body() body: unknown) {
    return { body };
  }

  @Get('amas-error')
  async amasError(@Query('kind') kind: string) {
    if (kind === 'limit') throw new RateLimitedError('quota used', { retryAfterMs: 1500 });
    const breaker = this.amas.breaker('external');
    breaker.open();
    return breaker.execute(() => 'never');
  }

  @Get('skipped')
  @SkipAmas()
  skipped() {
    return { skipped: true };
  }
}

@Controller('errors')
class ErrorsController {
  @Get('not-found')
  notFound() {
    throw new NotFoundException('no such thing');
  }

  @Get('teapot')
  teapot() {
    throw new ImATeapotException({ custom: 'body', nested: { a: 1 } });
  }

  @Get('crash')
  crash() {
    throw new Error('unexpected');
  }
}

@Controller('tuned')
@RateLimit({ limit: 1, window: '1m' })
class ClassLevelController {
  @Get('a')
  a() {
    return 'a';
  }

  @Get('b')
  @RateLimit({ limit: 3, window: '1m' })
  b() {
    return 'b';
  }
}

async function expectLimitShape(res: Response, retryAfterMs?: number): Promise<number> {
  expect(res.status).toBe(429);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
  const body = (await res.json()) as { error: Record<string, unknown> };
  expect(body).toEqual({
    error: { code: 'AMAS_RATE_LIMITED', message: expect.any(String), status: 429, retryAfterMs: retryAfterMs ?? expect.any(Number) },
  });
  expect(res.headers.get('retry-after')).toBe(String(Math.max(1, Math.ceil((body.error.retryAfterMs as number) / 1000))));
  return body.error.retryAfterMs as number;
}

describe.each(PLATFORMS)('AmasModule over HTTP (%s)', (platform) => {
  let app: TestApp | undefined;
  const apps: TestApp[] = [];
  const start = async (options: Parameters<typeof AmasModule.forRoot>[0] = {}, controllers: Array<new (...a: never[]) => unknown> = [ApiController, ErrorsController]) => {
    app = await startApp(platform, { imports: [AmasModule.forRoot(options)], controllers });
    apps.push(app);
    return app;
  };

  afterEach(async () => {
    for (const a of apps.splice(0)) await a.close();
    state.fail = false;
    state.handlerCalls = 0;
    state.identityCalls = 0;
    state.gate = Promise.resolve();
  });

  it('with zero config adds timing headers and never rejects', async () => {
    const { get } = await start();
    for (let i = 0; i < 20; i++) {
      const res = await get('/api/plain');
      expect(res.status).toBe(200);
      expect(res.headers.get('x-response-time')).toMatch(/^\d+\.\d{3}ms$/);
      expect(res.headers.get('server-timing')).toMatch(/^total;dur=\d+\.\d{3}$/);
      expect(res.headers.get('ratelimit')).toBeNull();
      expect(await res.json()).toEqual({ ok: true });
    }
    const skipped = await get('/api/skipped');
    expect(skipped.status).toBe(200);
    expect(skipped.headers.get('x-response-time')).toBeNull();
  });

  it('limits per user: 429 with retry-after, ratelimit, ratelimit-policy and the JSON body', async () => {
    const clock = new ManualClock();
    const { get } = await start({ clock });
    for (let i = 0; i < 2; i++) {
      const ok = await get('/api/limited', { 'x-user': 'alice' });
      expect(ok.status).toBe(200);
      expect(ok.headers.get('ratelimit-policy')).toBeTruthy();
      expect(ok.headers.get('ratelimit')).toContain(`r=${1 - i}`);
    }
    const limited = await get('/api/limited', { 'x-user': 'alice' });
    expect(limited.headers.get('ratelimit-policy')).toBeTruthy();
    expect(limited.headers.get('ratelimit')).toContain('r=0');
    expect(limited.headers.get('x-response-time')).toBeTruthy();
    expect(limited.headers.get('server-timing')).toBeTruthy();
    const retryAfterMs = await expectLimitShape(limited);
    expect(retryAfterMs).toBeGreaterThan(0);
    // Another user has their own budget; alice is allowed again once retryAfterMs has passed.
    expect((await get('/api/limited', { 'x-user': 'bob' })).status).toBe(200);
    await clock.advance(retryAfterMs - 1);
    expect((await get('/api/limited', { 'x-user': 'alice' })).status).toBe(429);
    await clock.advance(1);
    expect((await get('/api/limited', { 'x-user': 'alice' })).status).toBe(200);
  });

  it('applies class-level decorators, with method-level ones overriding them', async () => {
    const { get } = await start({ clock: new ManualClock() }, [ClassLevelController]);
    expect((await get('/tuned/a')).status).toBe(200);
    expect((await get('/tuned/a')).status).toBe(429);
    for (let i = 0; i < 3; i++) expect((await get('/tuned/b')).status).toBe(200);
    expect((await get('/tuned/b')).status).toBe(429);
  });

  it('opens the route breaker after failures (503) and recovers after the recovery timeout', async () => {
    const clock = new ManualClock();
    const { get, app: nest } = await start({ clock });
    state.fail = true;
    expect((await get('/api/flaky')).status).toBe(500);
    expect((await get('/api/flaky')).status).toBe(500);
    const open = await get('/api/flaky');
    expect(open.status).toBe(503);
    expect(open.headers.get('retry-after')).toBe('10');
    expect(open.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await open.json()).toEqual({
      error: { code: 'AMAS_BREAKER_OPEN', message: expect.any(String), status: 503, retryAfterMs: 10_000 },
    });
    state.fail = false;
    await clock.advance(10_000);
    expect((await get('/api/flaky')).status).toBe(200);
    expect(nest.get<Amas>(AMAS).breaker('upstream').getState()).toBe('closed');
    expect((await get('/api/flaky')).status).toBe(200);
  });

  it('runs 50 identical concurrent requests through the handler once', async () => {
    const { get } = await start();
    let release!: () => void;
    state.gate = new Promise<void>((resolve) => (release = resolve));
    const pending = Array.from({ length: 50 }, () => get('/api/dedup'));
    await until(() => state.identityCalls === 50);
    release();
    const responses = await Promise.all(pending);
    expect(state.handlerCalls).toBe(1);
    const bodies = await Promise.all(responses.map((r) => r.json()));
    expect(responses.every((r) => r.status === 200)).toBe(true);
    expect(bodies.every((b) => (b as { calls: number }).calls === 1)).toBe(true);
    expect(responses.filter((r) => r.headers.get('x-amas-dedup') === 'shared')).toHaveLength(49);
    expect(responses.every((r) => r.headers.get('x-response-time'))).toBe(true);
    // Once settled, the next identical request runs again.
    await (await get('/api/dedup')).json();
    expect(state.handlerCalls).toBe(2);
  });

  it('renders AMAS errors thrown by handlers exactly like pipeline rejections', async () => {
    const { get } = await start();
    const limited = await get('/api/amas-error?kind=limit');
    expect(limited.headers.get('retry-after')).toBe('2');
    expect(limited.headers.get('x-response-time')).toBeTruthy();
    await expectLimitShape(limited, 1500);

    const open = await get('/api/amas-error?kind=breaker');
    expect(open.status).toBe(503);
    expect(open.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(open.headers.get('content-type')).toMatch(/^application\/json/);
    const body = (await open.json()) as { error: { code: string; status: number } };
    expect(body.error).toMatchObject({ code: 'AMAS_BREAKER_OPEN', status: 503 });
    expect(BreakerOpenError.code).toBe(body.error.code);
  });

  it('uses a custom rejectionBody, falling back to the default when it cannot be serialised', async () => {
    const { get } = await start({ clock: new ManualClock(), http: { rejectionBody: (e: { code: string }) => ({ problem: e.code }) } });
    await get('/api/limited');
    await get('/api/limited');
    expect(await (await get('/api/limited')).json()).toEqual({ problem: 'AMAS_RATE_LIMITED' });
    expect(await (await get('/api/amas-error?kind=limit')).json()).toEqual({ problem: 'AMAS_RATE_LIMITED' });

    const other = await start({ http: { rejectionBody: () => ({ big: 1n }) } });
    const res = await other.get('/api/amas-error?kind=limit');
    expect(res.status).toBe(429);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('AMAS_RATE_LIMITED');
  });

  it('leaves non-AMAS exceptions to Nest, unchanged', async () => {
    const baseline = await startApp(platform, { controllers: [ErrorsController] });
    apps.push(baseline);
    const { get } = await start();
    for (const path of ['/errors/not-found', '/errors/teapot', '/errors/crash', '/no/such/route']) {
      const [ours, theirs] = [await get(path), await baseline.get(path)];
      expect(ours.status).toBe(theirs.status);
      expect(ours.headers.get('content-type')).toBe(theirs.headers.get('content-type'));
      expect(await ours.json()).toEqual(await theirs.json());
    }
    expect((await get('/errors/teapot')).status).toBe(418);
  });

  it('never crashes on malformed forwarding headers or odd user ids', async () => {
    const { get } = await start({ http: { trustProxy: true, limit: { limit: 1000, window: '1m' } }, clock: new ManualClock() });
    const odd = ['__object__', '__number__', '__array__', '__control__', '__long__', '__null__', '', ' '];
    for (const user of odd) {
      const res = await get('/api/plain', { 'x-user': user, 'x-forwarded-for': ' , ,,garbage, 999.1.1.1, [::zz]' });
      expect(res.status).toBe(200);
      expect(res.headers.get('ratelimit')).toBeTruthy();
    }
    const post = await fetch(`${app!.url}/api/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': 'not an ip' },
      body: JSON.stringify({ deep: { a: [1, 2, { b: null }] } }),
    });
    expect(post.status).toBe(200);
    expect(await post.json()).toEqual({ body: { deep: { a: [1, 2, { b: null }] } } });
  });

  it('shares POST responses only between identical bodies', async () => {
    await start({ http: { dedup: true } });
    const send = (body: unknown) =>
      fetch(`${app!.url}/api/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const [a, b] = await Promise.all([send({ x: 1 }), send({ x: 2 })]);
    expect(await a.json()).toEqual({ body: { x: 1 } });
    expect(await b.json()).toEqual({ body: { x: 2 } });
  });

  it('keys dedup on a custom key when given one', async () => {
    @Controller('keyed')
    class KeyedController {
      @Get(':id')
      @Deduplicate({ key: (req: NeutralRequest) => req.url.split('?')[0]! })
      async get() {
        state.handlerCalls++;
        await state.gate;
        return { calls: state.handlerCalls };
      }
    }
    const { get } = await start({}, [KeyedController]);
    let release!: () => void;
    state.gate = new Promise<void>((resolve) => (release = resolve));
    const pending = [get('/keyed/1?a=1'), get('/keyed/1?b=2'), get('/keyed/2')];
    await until(() => state.handlerCalls === 2);
    release();
    const bodies = await Promise.all((await Promise.all(pending)).map((r) => r.json()));
    expect(state.handlerCalls).toBe(2);
    expect(bodies[0]).toEqual(bodies[1]);
  });
});

