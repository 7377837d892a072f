/**
 * Per-caller metric series are off by default (user ids are unbounded label values) and capped when turned on
 * with `metrics.userLabels: { max }`: the first `max` callers get their own series, later ones count as
 * user="other". Covers HTTP requests and AI cost, over a real Express server and a real mock provider.
 */
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import express from 'express';
import { silentLogger, type AmasOptions, type NeutralRequest } from '@amas/core';
import { amasMiddleware } from '@amas/express';
import { startMockProvider } from '@amas/loadtest';

async function run(options: Partial<AmasOptions>, users: string[]): Promise<string> {
  const mock = await startMockProvider({ latencyMs: 0 });
  const mw = amasMiddleware({ logger: silentLogger, http: { identity: (req: NeutralRequest) => req.headers['x-user'] as string | undefined }, ai: { models: { 'gpt-4o-mini': { endpoints: [{ url: mock.url }] } } }, ...options });
  const app = express();
  app.use(express.json());
  app.use(mw);
  app.post('/v1/chat/completions', mw.aiHandler('chat'));
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((r) => server.once('listening', () => r()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/chat/completions`;
  try {
    for (const user of users) {
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-user': user }, body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }) });
      expect(res.status).toBe(200);
      await res.text();
    }
    return await mw.amas.registry.metrics();
  } finally {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await mw.close();
    await mock.close();
  }
}

describe('per-caller metric series', () => {
  it('are absent by default: no user id appears in the output', async () => {
    const text = await run({}, ['alice-7f3', 'bob-8e1']);
    expect(text).not.toContain('alice-7f3');
    expect(text).not.toContain('amas_user_requests_total');
  });

  it('with userLabels { max: 2 }: the first two callers have their own series, the rest are "other"', async () => {
    const text = await run({ metrics: { userLabels: { max: 2 } } }, ['alice', 'bob', 'carol', 'dave', 'alice']);
    expect(text).toMatch(/amas_user_requests_total\{user="key:alice",outcome="success"\} 2/);
    expect(text).toMatch(/amas_user_requests_total\{user="key:bob",outcome="success"\} 1/);
    expect(text).toMatch(/amas_user_requests_total\{user="other",outcome="success"\} 2/);
    expect(text).not.toContain('carol');
    expect(text).toMatch(/amas_user_ai_cost_usd_total\{user="alice"\} \d/);
    expect(text).toMatch(/amas_user_ai_cost_usd_total\{user="other"\} \d/);
  });

  it('a bad userLabels option fails at construction with its path', () => {
    expect(() => amasMiddleware({ metrics: { userLabels: { max: 0 } } })).toThrow(/metrics\.userLabels\.max/);
    expect(() => amasMiddleware({ metrics: { userLabels: { max: 100_000 } } })).toThrow(/metrics\.userLabels\.max: expected a number <= 10000/);
  });
});
