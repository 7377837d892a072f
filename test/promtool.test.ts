/**
 * The whole engine's Prometheus output passes `promtool check metrics` (the Debian package `prometheus`
 * ships promtool; `.ci/run` installs it and sets AMAS_REQUIRE_PROMTOOL, so CI cannot skip this). Every
 * component that exports metrics is switched on and used once: HTTP requests and their cache statuses,
 * limits, breakers, dedup, the tiered cache, the semantic cache, the AI layer, the Redis store.
 */
import { spawnSync } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import express from 'express';
import { silentLogger, type Embedder } from '@amas/core';
import { amasMiddleware } from '@amas/express';
import { startMockProvider } from '@amas/loadtest';

const promtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' }).status === 0;
const required = process.env.AMAS_REQUIRE_PROMTOOL === '1';

// A fixed-vector embedder: the semantic cache's metrics without loading the model.
const embedder: Embedder = { name: 'fixed', dimensions: 4, embed: async (texts: string[]) => texts.map(() => new Float32Array([1, 0, 0, 0])), close: async () => undefined };

describe('promtool check metrics', () => {
  it.runIf(promtool || required)('passes on the output of an engine with every component in use', async () => {
    expect(promtool, 'promtool is required here (AMAS_REQUIRE_PROMTOOL=1) but not on PATH: apt-get install prometheus').toBe(true);
    const mock = await startMockProvider({ latencyMs: 0 });
    const mw = amasMiddleware({
      logger: silentLogger,
      redis: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
      limits: { perUser: { limit: 100, window: '1m' } },
      cache: {},
      semanticCache: { embedder, name: `promtool-${process.pid}` },
      ai: { models: { 'gpt-4o-mini': { endpoints: [{ url: mock.url, id: 'mock' }] } } },
    });
    const app = express();
    app.use(express.json());
    app.use(mw);
    app.get('/items/:id', mw.route({ limit: 'perUser', cache: true, dedup: true }), (req, res) => void res.json({ id: req.params.id }));
    app.post('/v1/chat/completions', mw.route({ semanticCache: true }), mw.aiHandler('chat'));
    const server = app.listen(0, '127.0.0.1');
    await new Promise<void>((r) => server.once('listening', () => r()));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      await mw.amas.ready();
      for (let i = 0; i < 2; i++) await fetch(`${url}/items/1`);
      const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello there' }] };
      for (let i = 0; i < 2; i++) await (await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(chat) })).text();
      const text = await mw.amas.registry.metrics();
      for (const family of ['amas_http_requests_total', 'amas_http_cache_total', 'amas_cache_requests_total', 'amas_semantic_cache_lookups_total', 'amas_ai_attempts_total', 'amas_ai_cost_usd_total', 'amas_store_up', 'amas_breaker_state']) {
        expect(text, family).toContain(`# TYPE ${family} `);
      }
      const checked = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
      expect(`${checked.stdout}${checked.stderr}`.trim()).toBe('');
      expect(checked.status).toBe(0);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await mw.amas.semantic.clear().catch(() => undefined);
      await mw.close();
      await mock.close();
    }
  });
});
