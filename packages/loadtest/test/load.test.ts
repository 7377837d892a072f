import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  LoadConfigError,
  baselineOf,
  compareWithBaseline,
  createRequestMix,
  listScenarios,
  loadScenario,
  renderHtml,
  renderSummary,
  runScenario,
  startMockProvider,
  validateScenario,
  verdictLine,
  type LoadReport,
  type MockProvider,
  type ScenarioInput,
} from '../src/index.js';

// Inside the repository: vitest's module loader does not import .mjs files from outside its root.
const dir = mkdtempSync(join(fileURLToPath(new URL('.', import.meta.url)), '.tmp-load-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const minimal = (extra: Partial<ScenarioInput> = {}): ScenarioInput => ({
  duration: '1s',
  rate: 5,
  mix: [{ type: 'chat', prompts: ['hello'] }],
  ...extra,
});

function configError(fn: () => unknown): LoadConfigError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(LoadConfigError);
    return error as LoadConfigError;
  }
  throw new Error('expected a LoadConfigError');
}

describe('scenario validation', () => {
  it('fills defaults, converts durations to ms and names mix entries', () => {
    const s = validateScenario(
      minimal({
        timeout: '5s',
        mix: [
          { type: 'chat', prompts: ['a'] },
          { type: 'chat', prompts: ['b'], weight: 2 },
          { type: 'embeddings', inputs: ['x'] },
        ],
      }),
      '/tmp/my-scenario.json',
    );
    expect(s.name).toBe('my-scenario');
    expect(s.duration).toBe(1000);
    expect(s.timeout).toBe(5000);
    expect(s.mix.map((m) => m.name)).toEqual(['chat', 'chat#1', 'embeddings']);
    expect(s.mix[0]).toMatchObject({ weight: 1, model: 'gpt-4o-mini', path: '/v1/chat/completions' });
    expect(s.mix[2]).toMatchObject({ model: 'text-embedding-3-small', path: '/v1/embeddings', batch: 1 });
    expect(s.users).toEqual({ prefix: 'user', header: 'authorization' });
    expect(s.regressionThreshold).toBe(0.1);
  });

  it('names the field, the value and what was expected', () => {
    const e = configError(() => validateScenario(minimal({ mix: [{ type: 'chat', prompts: ['a'], weight: -1 }] })));
    expect(e.issues.map((i) => i.path)).toEqual(['mix.0.weight']);
    expect(e.message).toMatch(/mix\.0\.weight: expected a number > 0, received -1/);

    expect(configError(() => validateScenario(minimal({ duration: 'soon' }))).message).toMatch(/duration: expected a duration/);
    expect(configError(() => validateScenario({ ...minimal(), durtion: '1s' })).message).toMatch(/unknown: durtion/);
    expect(configError(() => validateScenario(minimal({ mix: [{ type: 'image', prompts: ['a'] } as never] }))).message).toMatch(/mix\.0\.type/);
    expect(configError(() => validateScenario(minimal({ mix: [] }))).message).toMatch(/mix: expected an array with length >= 1/);
    expect(configError(() => validateScenario(minimal({ target: 'localhost:8080' }))).message).toMatch(/target: expected an http\(s\) URL/);
  });

  it('needs exactly one of rate and concurrency; the outage must start before the end', () => {
    const { rate: _rate, ...noRate } = minimal();
    expect(configError(() => validateScenario(noRate)).message).toMatch(/rate: expected either `rate`/);
    expect(configError(() => validateScenario(minimal({ concurrency: 2 }))).message).toMatch(/concurrency: expected not both/);
    expect(configError(() => validateScenario(minimal({ outage: { at: '2s', for: '1s' } }))).message).toMatch(/outage\.at/);
  });

  it('loads bundled scenarios by name, and .mjs modules exporting the object or a function', async () => {
    const listed = await listScenarios();
    expect(listed.map((s) => s.name)).toEqual(expect.arrayContaining(['smoke', 'cache', 'outage', 'steady']));
    for (const s of listed) expect(s.description.length).toBeGreaterThan(10);
    const smoke = await loadScenario('smoke');
    expect(smoke.rate).toBe(10);
    expect(smoke.duration).toBe(3000);

    const fnFile = join(dir, 'fn.mjs');
    writeFileSync(fnFile, `export default () => ({ name: 'from-fn', duration: 500, concurrency: 1, mix: [{ type: 'stream', prompts: ['x'] }] });`);
    expect((await loadScenario(fnFile)).name).toBe('from-fn');

    const badJson = join(dir, 'bad.json');
    writeFileSync(badJson, '{ "duration": ');
    await expect(loadScenario(badJson)).rejects.toThrow(/is not valid JSON/);
    await expect(loadScenario('no-such-scenario')).rejects.toThrow(/Bundled scenarios: .*smoke/);
  });
});

describe('request mix', () => {
  it('is seeded, weighted, and spreads users over both identity headers in mixed mode', () => {
    const s = validateScenario(
      minimal({
        users: { count: 3, header: 'mixed' },
        mix: [
          { type: 'chat', prompts: [['p1', 'p1 reworded']], weight: 3, temperature: 0, system: 'sys' },
          { type: 'embeddings', inputs: ['e'], batch: 2 },
        ],
      }),
    );
    const draw = () => {
      const mix = createRequestMix(s);
      return Array.from({ length: 400 }, () => mix.next());
    };
    const a = draw();
    expect(draw()).toEqual(a);
    const chats = a.filter((r) => r.entry === 0);
    expect(chats.length / a.length).toBeGreaterThan(0.65);
    expect(chats.length / a.length).toBeLessThan(0.85);
    expect(new Set(a.map((r) => r.user))).toEqual(new Set(['user-1', 'user-2', 'user-3']));
    expect(a.some((r) => r.headers.authorization?.startsWith('Bearer '))).toBe(true);
    expect(a.some((r) => r.headers['x-user'])).toBe(true);
    const bodies = new Set(chats.map((r) => JSON.parse(r.body).messages[1].content));
    expect(bodies).toEqual(new Set(['p1', 'p1 reworded']));
    expect(JSON.parse(chats[0]!.body)).toMatchObject({ temperature: 0, messages: [{ role: 'system', content: 'sys' }, { role: 'user' }] });
    const embed = a.find((r) => r.entry === 1)!;
    expect(embed.path).toBe('/v1/embeddings');
    expect(JSON.parse(embed.body).input).toEqual(['e', 'e']);
  });
});

function fakeReport(p95: number, p99: number, errorRate: number): LoadReport {
  return {
    scenario: { name: 's', description: '' },
    latencyMs: { count: 10, min: 1, mean: 2, stddev: 1, p50: 2, p75: 3, p90: 4, p95, p99, p999: p99, max: p99 },
    totals: { requests: 10, responses: 10, ok: 10, errors: 0, errorRate, rps: 10, bytes: 0 },
  } as LoadReport;
}

describe('baselines', () => {
  it('flags p95 / p99 / error rate more than the threshold worse, above the noise floor', () => {
    const base = baselineOf({ ...fakeReport(100, 200, 0.01), target: 'http://x', finishedAt: 'now', durationMs: 1000, cache: { hitRate: null } } as unknown as LoadReport);
    expect(compareWithBaseline(fakeReport(109, 210, 0.0109), base, 0.1).pass).toBe(true);
    const worse = compareWithBaseline(fakeReport(111, 200, 0.01), base, 0.1);
    expect(worse.pass).toBe(false);
    expect(worse.checks.filter((c) => c.regression).map((c) => c.id)).toEqual(['p95']);
    expect(compareWithBaseline(fakeReport(111, 200, 0.01), base, 0.2).pass).toBe(true);
    expect(compareWithBaseline(fakeReport(100, 200, 0.02), base, 0.1).checks.find((c) => c.id === 'errorRate')!.regression).toBe(true);
    // Sub-millisecond jitter on a fast run is not a regression, however large the ratio.
    const fast = baselineOf({ ...fakeReport(0.5, 0.8, 0), target: 'x', finishedAt: 'now', durationMs: 1, cache: { hitRate: null } } as unknown as LoadReport);
    expect(compareWithBaseline(fakeReport(0.9, 1.5, 0), fast, 0.1).pass).toBe(true);
    expect(compareWithBaseline(fakeReport(5, 8, 0), { ...fast, scenario: 'other' }, 0.1).warnings[0]).toMatch(/scenario "other"/);
  });
});

describe('runScenario against the mock provider directly', () => {
  const open: MockProvider[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((m) => m.close()));
  });

  it('measures, checks SLOs, injects the outage and renders text and HTML', async () => {
    const mock = await startMockProvider({ latencyMs: 2, chunkDelayMs: 0, seed: 3 });
    open.push(mock);
    const progress: number[] = [];
    const report = await runScenario(
      {
        name: 'direct',
        duration: '1500ms',
        rate: 20,
        users: { count: 2 },
        mix: [
          { type: 'chat', prompts: ['hi'], weight: 2 },
          { type: 'stream', prompts: ['tell'] },
          { type: 'embeddings', inputs: ['x'] },
        ],
        outage: { at: '500ms', for: '500ms', status: 502 },
        slo: { p99: 1000, maxErrorRate: 0.1 },
      },
      { target: mock.url, mock: mock.url, onProgress: (p) => progress.push(p.elapsedMs) },
    );
    // 20/s for 1.5 s, spread over 10 slots a second: about 30 requests.
    expect(report.totals.requests).toBeGreaterThanOrEqual(26);
    expect(report.totals.requests).toBeLessThanOrEqual(34);
    expect(report.config).toMatchObject({ mode: 'rate', rate: 20, connections: 20, users: 2 });
    expect(report.errors['502']).toBeGreaterThan(0);
    expect(report.errors['502']).toBe(mock.stats().outageRejections);
    expect(report.outage).toMatchObject({ at: 500, for: 500, status: 502 });
    expect(report.outage!.appliedAtMs).toBeGreaterThanOrEqual(500);
    expect(report.outage!.clearedAtMs).toBeGreaterThanOrEqual(1000);
    expect(report.entries.map((e) => e.type)).toEqual(['chat', 'stream', 'embeddings']);
    expect(report.entries.reduce((n, e) => n + e.requests, 0)).toBe(report.totals.requests);
    expect(report.timeline).toHaveLength(2);
    expect(report.slo.checks.find((c) => c.id === 'maxErrorRate')!.pass).toBe(false);
    expect(report.pass).toBe(false);
    expect(progress.length).toBeGreaterThan(3);
    // The outage is off again after the run.
    const after = await fetch(`${mock.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }),
    });
    expect(after.status).toBe(200);

    const text = renderSummary(report);
    expect(text).toMatch(/error rate\s+<= 10%\s+\S+%\s+FAIL/);
    expect(verdictLine(report)).toMatch(/^FAIL {2}direct: SLO failed: error rate/);
    const html = renderHtml({ ...report, scenario: { name: '<script>x</script>', description: '"q"' } });
    expect(html).toContain('<svg');
    expect(html).toContain('class="outage"');
    expect(html).not.toContain('<script>x</script>');
    expect(html).not.toMatch(/<script(?! type="application\/json")/);
    expect(html).not.toMatch(/(src|href)="https?:/);
  });

  it('an unreachable target or mock is a configuration error', async () => {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    await new Promise<void>((r) => server.close(() => r()));
    await expect(runScenario(minimal(), { target: `http://127.0.0.1:${port}` })).rejects.toThrow(/Cannot reach the target/);
    const mock = await startMockProvider();
    open.push(mock);
    await expect(runScenario(minimal({ outage: { at: 100, for: 100 } }), { target: mock.url })).rejects.toThrow(/pass --mock/);
    await expect(runScenario(minimal(), { target: mock.url, duration: 'later' })).rejects.toThrow(/Invalid duration/);
  });
});

describe('mock admin: POST /__mock/latency', () => {
  it('changes the latency like setLatency and rejects bad values', async () => {
    const mock = await startMockProvider({ latencyMs: 0 });
    try {
      const set = (body: unknown) => fetch(`${mock.url}/__mock/latency`, { method: 'POST', body: JSON.stringify(body) });
      const ok = await set({ latencyMs: { min: 40, max: 50 } });
      expect(ok.status).toBe(200);
      expect(await ok.json()).toEqual({ ok: true, latencyMs: { min: 40, max: 50 } });
      const t = performance.now();
      const res = await fetch(`${mock.url}/v1/models`);
      expect(res.status).toBe(200);
      expect(performance.now() - t).toBeGreaterThanOrEqual(39);
      const bad = await set({ latencyMs: -1 });
      expect(bad.status).toBe(400);
      expect(((await bad.json()) as { error: { param: string } }).error.param).toBe('latencyMs');
    } finally {
      await mock.close();
    }
  });
});
