/**
 * checkHealth: liveness never depends on a dependency; readiness reports every dependency the engine has and
 * is 'down' only for what the user marked required. Real Redis (127.0.0.1:6379 or REDIS_URL), a Redis that
 * is not there (a closed loopback port), a PostgreSQL L3 that is not there.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createAmas, type Amas } from '../src/amas.js';
import { InvalidOptionError } from '../src/errors.js';
import { checkHealth, healthResponse, healthStatusCode, parseHealthOptions } from '../src/health/health.js';
import { silentLogger } from '../src/logger.js';
import { UniversalSentenceEncoderEmbedder } from '../src/semantic/use-embedder.js';
import type { Store } from '../src/stores/store.js';
import { MemoryStore } from '../src/stores/memory-store.js';
import { freePort, REDIS_URL, uniquePrefix } from './stores/limiter-fixtures.js';

const engines: Amas[] = [];
const track = (amas: Amas): Amas => {
  engines.push(amas);
  return amas;
};
afterEach(async () => {
  await Promise.all(engines.splice(0).map((a) => a.close()));
});

async function unreachableRedis(): Promise<Amas> {
  const port = await freePort();
  const amas = track(createAmas({ redis: { url: `redis://127.0.0.1:${port}`, connectTimeoutMs: 200, prefix: uniquePrefix() }, logger: silentLogger }));
  // Give the first connection attempt time to fail, as on a pod whose Redis is gone.
  await amas.warmUp(1000);
  return amas;
}

describe('checkHealth', () => {
  it('a memory engine is live and ready, with the engine and breakers checks', async () => {
    const amas = track(createAmas({ logger: silentLogger }));
    const live = await checkHealth(amas, { kind: 'live' });
    expect(live).toEqual({ status: 'ok', checks: { engine: { status: 'ok' } } });
    const ready = await checkHealth(amas, { kind: 'ready' });
    expect(ready.status).toBe('ok');
    expect(Object.keys(ready.checks).sort()).toEqual(['breakers', 'engine']);
    expect(ready.checks.breakers).toEqual({ status: 'ok', detail: '0 breakers, none open' });
    expect(healthStatusCode(ready)).toBe(200);
    // Default kind is readiness.
    expect((await checkHealth(amas)).checks.breakers).toBeDefined();
  });

  it('a MemoryStore is checked as "store" with a PING', async () => {
    const store = new MemoryStore();
    const amas = track(createAmas({ store, logger: silentLogger }));
    const ready = await checkHealth(amas);
    expect(ready.status).toBe('ok');
    expect(ready.checks.store!.status).toBe('ok');
    expect(ready.checks.store!.latencyMs).toBeGreaterThanOrEqual(0);
    await store.close();
  });

  it('on a real Redis: the redis check answers PONG with its latency', async () => {
    const amas = track(createAmas({ redis: { url: REDIS_URL, prefix: uniquePrefix() }, logger: silentLogger }));
    await amas.ready(5000);
    const started = performance.now();
    const ready = await checkHealth(amas, { required: ['redis'] });
    const whole = performance.now() - started;
    expect(ready.status).toBe('ok');
    expect(ready.checks.redis).toMatchObject({ status: 'ok' });
    expect(ready.checks.redis!.latencyMs).toBeGreaterThanOrEqual(0);
    // In ms, and part of the call that measured it (a relation, not a speed limit).
    expect(ready.checks.redis!.latencyMs).toBeLessThanOrEqual(whole + 1);
  });

  it('Redis unreachable: readiness is degraded with the redis check down, liveness stays ok', async () => {
    const amas = await unreachableRedis();
    const ready = await checkHealth(amas, { kind: 'ready' });
    // Answered from the store's failure, not by waiting out the check's deadline.
    expect(ready.checks.redis!.detail).not.toMatch(/no answer within/);
    expect(ready.status).toBe('degraded');
    expect(ready.checks.redis!.status).toBe('down');
    expect(ready.checks.redis!.detail).toMatch(/Redis store/);
    expect(ready.checks.redis!.detail).toMatch(/local fallbacks/);
    expect(ready.checks.engine).toEqual({ status: 'ok' });
    expect(healthStatusCode(ready)).toBe(200);

    const live = await checkHealth(amas, { kind: 'live' });
    expect(live.status).toBe('ok');
    expect(Object.keys(live.checks)).toEqual(['engine']);
  });

  it('required: ["redis"] turns a Redis outage into down / 503', async () => {
    const amas = await unreachableRedis();
    const ready = await checkHealth(amas, { kind: 'ready', required: ['redis'] });
    expect(ready.status).toBe('down');
    const answer = await healthResponse(amas, { kind: 'ready', required: ['redis'] });
    expect(answer.statusCode).toBe(503);
    expect(answer.headers['content-type']).toMatch(/application\/json/);
    expect(answer.headers['cache-control']).toBe('no-store');
    expect(JSON.parse(answer.body)).toEqual(answer.report);
    // Liveness ignores `required`: a Redis outage never restarts pods.
    expect((await healthResponse(amas, { kind: 'live', required: ['redis'] })).statusCode).toBe(200);
  });

  it('an open breaker makes readiness degraded and names it; half-open ones are listed as probing', async () => {
    const amas = track(createAmas({ logger: silentLogger, breakers: { billing: { recoveryTimeoutMs: 60_000 } } }));
    amas.breaker('openai').open();
    amas.breaker('billing').isolate();
    amas.breaker('search');
    const ready = await checkHealth(amas);
    expect(ready.status).toBe('degraded');
    expect(ready.checks.breakers).toEqual({ status: 'degraded', detail: 'open: openai, billing' });
    expect(healthStatusCode(ready)).toBe(200);
    // Marked required, the breakers check going degraded is still not 'down' (calls fail fast, nothing is down).
    expect((await checkHealth(amas, { required: ['breakers'] })).status).toBe('degraded');
    amas.breaker('openai').close();
    amas.breaker('billing').close();
    expect((await checkHealth(amas)).status).toBe('ok');
  });

  it('a closed engine: liveness and readiness are down (503)', async () => {
    const amas = createAmas({ logger: silentLogger });
    await amas.close();
    const live = await checkHealth(amas, { kind: 'live' });
    expect(live).toEqual({ status: 'down', checks: { engine: { status: 'down', detail: 'the engine is closed' } } });
    expect(healthStatusCode(live)).toBe(503);
    expect((await checkHealth(amas, { kind: 'ready' })).status).toBe('down');
  });

  it('reports the tiered cache levels: L2 on Redis, L3 on files, and an L3 PostgreSQL that is down', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'amas-health-'));
    try {
      const amas = track(createAmas({ redis: { url: REDIS_URL, prefix: uniquePrefix() }, cache: { l3: { file: { directory: dir } } }, logger: silentLogger }));
      await amas.ready(5000);
      await amas.cache.set('k', 'v');
      const ready = await checkHealth(amas);
      expect(ready.status).toBe('ok');
      expect(ready.checks['cache.l1']).toEqual({ status: 'ok', detail: 'memory: 1 entries' });
      expect(ready.checks['cache.l2']!.status).toBe('ok');
      expect(ready.checks['cache.l2']!.detail).toMatch(/^Redis: \d+ operations, 0 errors/);
      expect(ready.checks['cache.l3']!.status).toBe('ok');
      expect(ready.checks['cache.l3']!.detail).toMatch(/^file: /);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }

    const port = await freePort();
    const pg = track(createAmas({ cache: { l3: { postgres: { connectionString: `postgres://postgres@127.0.0.1:${port}/postgres` } } }, logger: silentLogger }));
    expect(await pg.cache.get('missing')).toBeUndefined(); // L3 fails: the cache answers a miss, the level goes down
    const ready = await checkHealth(pg);
    expect(ready.status).toBe('degraded');
    expect(ready.checks['cache.l3']!.status).toBe('down');
    expect(ready.checks['cache.l3']!.detail).toMatch(/^PostgreSQL: failing, skipped until it answers again/);
    expect((await checkHealth(pg, { required: ['cache'] })).status).toBe('down');
    expect((await checkHealth(pg, { required: ['cache.l2'] })).checks['cache.l2']!.detail).toMatch(/required, but this engine has no such dependency/);
  });

  it('reports AI endpoints per model: some unavailable is degraded, none available is down', async () => {
    const amas = track(
      createAmas({
        logger: silentLogger,
        ai: { models: { 'gpt-4o-mini': { endpoints: [{ id: 'a', url: 'http://127.0.0.1:9', apiKey: 'k' }, { id: 'b', url: 'http://127.0.0.1:9', apiKey: 'k' }] } } },
      } as Parameters<typeof createAmas>[0]),
    );
    expect((await checkHealth(amas)).checks['ai.gpt-4o-mini']).toEqual({ status: 'ok', detail: '2/2 endpoints available' });
    amas.breaker('ai:gpt-4o-mini/a').open();
    let ready = await checkHealth(amas);
    expect(ready.status).toBe('degraded');
    expect(ready.checks['ai.gpt-4o-mini']).toEqual({ status: 'degraded', detail: '1/2 endpoints available: a breaker open; calls go to the others' });
    expect(ready.checks.breakers!.detail).toBe('open: ai:gpt-4o-mini/a');
    amas.breaker('ai:gpt-4o-mini/b').open();
    ready = await checkHealth(amas, { required: ['ai'] });
    expect(ready.checks['ai.gpt-4o-mini']!.status).toBe('down');
    expect(ready.status).toBe('down');
    expect((await checkHealth(amas)).status).toBe('degraded');
  });

  it('an engine without the ai option has no ai checks (amas.ai throws; health does not)', async () => {
    const amas = track(createAmas({ logger: silentLogger }));
    expect(() => amas.ai).toThrow(InvalidOptionError);
    const ready = await checkHealth(amas);
    expect(Object.keys(ready.checks).some((name) => name.startsWith('ai.'))).toBe(false);
  });

  it('reports the semantic cache when the engine has one (without loading the model)', async () => {
    const embedder = new UniversalSentenceEncoderEmbedder();
    try {
      const amas = track(createAmas({ logger: silentLogger, semanticCache: { embedder } } as Parameters<typeof createAmas>[0]));
      expect((await checkHealth(amas)).checks.semantic).toEqual({ status: 'ok', detail: '0 entries' });
      // An engine that never used its semantic cache has none, and health does not build one.
      const plain = track(createAmas({ logger: silentLogger }));
      expect((await checkHealth(plain)).checks.semantic).toBeUndefined();
    } finally {
      await embedder.close();
    }
  });

  it('a check that does not answer in time is down after its deadline; the other checks still report', async () => {
    const memory = new MemoryStore();
    const hanging: Store = Object.assign(Object.create(memory) as Store, { run: () => new Promise<never>(() => {}) });
    const amas = track(createAmas({ store: hanging, logger: silentLogger }));
    const ready = await checkHealth(amas, { timeoutMs: 100 });
    expect(ready.checks.engine).toEqual({ status: 'ok' });
    expect(ready.checks.breakers!.status).toBe('ok');
    expect(ready.checks.store!.status).toBe('down');
    expect(ready.checks.store!.detail).toBe('no answer within 100 ms');
    expect(ready.status).toBe('degraded');
    await memory.close();
  });

  it('bad options: parseHealthOptions names the option; checkHealth reports instead of throwing', async () => {
    const amas = track(createAmas({ logger: silentLogger }));
    for (const [options, path] of [
      [{ kind: 'alive' }, 'kind'],
      [{ required: 'redis' }, 'required'],
      [{ required: [''] }, 'required.0'],
      [{ timeoutMs: -1 }, 'timeoutMs'],
      [{ timeout: 5 }, ''],
    ] as const) {
      const error = (() => {
        try {
          parseHealthOptions(options as never);
        } catch (e) {
          return e as InvalidOptionError;
        }
        throw new Error('expected a throw');
      })();
      expect(error).toBeInstanceOf(InvalidOptionError);
      expect(error.issues[0]!.path).toBe(path);
      const report = await checkHealth(amas, options as never);
      expect(report.status).toBe('down');
      expect(report.checks.options!.detail).toMatch(/Invalid health check options/);
    }
  });
});
