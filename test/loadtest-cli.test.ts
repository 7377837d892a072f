/**
 * The real `amas-load` CLI (packages/loadtest/dist/cli.js, built) as a child process, against the example
 * gateway and the mock provider running in this process on loopback ports. Each run lasts 1-2.5 s.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMockProvider, type Baseline, type LoadReport, type MockProvider } from '@amas/loadtest';
import { freePort } from './support/free-port.js';

const cliPath = fileURLToPath(new URL('../packages/loadtest/dist/cli.js', import.meta.url));
const gatewayUrl = new URL('../examples/express-gateway/gateway.mjs', import.meta.url).href;

interface Gateway {
  listen(): Promise<string>;
  close(): Promise<void>;
  amas: { semantic: { warmUp(): Promise<unknown> } };
}
type CreateGateway = (options: Record<string, unknown>) => Gateway;

const silent = { warn() {}, error() {} };
const work = mkdtempSync(join(tmpdir(), 'amas-load-cli-'));
const file = (name: string) => join(work, name);

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI (async: the gateway under test lives in this process and must keep answering). */
function cli(args: string[], timeoutMs = 20_000): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [cliPath, ...args], { timeout: timeoutMs, env: { ...process.env, NO_COLOR: '1' } }, (error, stdout, stderr) => {
      const code = error ? (typeof (error as { code?: unknown }).code === 'number' ? ((error as { code: number }).code) : -1) : 0;
      resolve({ code, stdout, stderr });
    });
    child.stdin?.end();
  });
}

const readJson = <T>(path: string): T => JSON.parse(readFileSync(path, 'utf8')) as T;

let createGateway: CreateGateway;
let mock: MockProvider;
let gateway: Gateway;
let target: string;

beforeAll(async () => {
  if (!existsSync(cliPath)) throw new Error(`${cliPath} is missing: run \`pnpm -C packages/loadtest build\` first`);
  ({ createGateway } = (await import(gatewayUrl)) as { createGateway: CreateGateway });
  mock = await startMockProvider({ latencyMs: 5, chunkDelayMs: 1, seed: 11 });
  gateway = createGateway({
    providerUrl: mock.url,
    logger: silent,
    // Limits are not under test here: the load must not be rate limited.
    amas: { limits: { 'per-user': { limit: 100_000, window: '1m' } } },
    retry: { baseDelayMs: 1, maxDelayMs: 5 },
  });
  target = await gateway.listen();
});

afterAll(async () => {
  await gateway?.close();
  await mock?.close();
  rmSync(work, { recursive: true, force: true });
});

describe('amas-load CLI (built, child process) against the example gateway', () => {
  it('list prints the bundled scenarios with one-line descriptions', async () => {
    const r = await cli(['list']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    for (const name of ['smoke', 'cache', 'outage']) expect(r.stdout).toMatch(new RegExp(`^\\s+${name}\\s+\\S.{20,}$`, 'm'));
  });

  it('smoke: passes its SLOs (exit 0), writes the JSON and a self-contained HTML report', async () => {
    const r = await cli(['run', 'smoke', '--target', target, '--duration', '2s', '--json', file('smoke.json'), '--html', file('smoke.html')]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/PASS {2}smoke: all 4 SLOs met/);
    expect(r.stdout).toMatch(/p95 latency\s+<= 1000 ms\s+[\d.]+ ms\s+PASS/);

    const report = readJson<LoadReport>(file('smoke.json'));
    expect(report.pass).toBe(true);
    expect(report.scenario.name).toBe('smoke');
    expect(report.target).toBe(target);
    expect(report.config).toMatchObject({ mode: 'rate', rate: 10, users: 4, plannedDurationMs: 2000 });
    expect(report.config.loadGenerator).toMatch(/^autocannon \d/);
    // 10 req/s for 2 s.
    expect(report.totals.requests).toBeGreaterThanOrEqual(16);
    expect(report.totals.requests).toBeLessThanOrEqual(24);
    expect(report.totals).toMatchObject({ errors: 0, errorRate: 0 });
    expect(report.totals.ok).toBe(report.totals.requests);
    expect(report.statuses).toEqual({ '200': report.totals.requests });
    expect(report.latencyMs.count).toBe(report.totals.requests);
    expect(report.latencyMs.p50!).toBeGreaterThan(0);
    expect(report.latencyMs.p50!).toBeLessThanOrEqual(report.latencyMs.p95!);
    expect(report.latencyMs.p95!).toBeLessThanOrEqual(report.latencyMs.p99!);
    expect(report.latencyMs.p99!).toBeLessThanOrEqual(report.latencyMs.max!);
    expect(report.entries.map((e) => [e.name, e.type])).toEqual([
      ['chat', 'chat'],
      ['stream', 'stream'],
      ['embed', 'embeddings'],
    ]);
    expect(report.entries.reduce((n, e) => n + e.requests, 0)).toBe(report.totals.requests);
    expect(report.timeline.map((p) => p.second)).toEqual([0, 1]);
    expect(report.timeline.reduce((n, p) => n + p.requests, 0)).toBe(report.totals.requests);
    expect(report.slo.checks.map((c) => [c.id, c.pass])).toEqual([
      ['p50', true],
      ['p95', true],
      ['p99', true],
      ['maxErrorRate', true],
    ]);

    const html = readFileSync(file('smoke.html'), 'utf8');
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).toContain('<svg');
    expect(html).toContain('<polyline');
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//);
  });

  it('an impossible SLO fails the run (exit 1) and names the failing SLO', async () => {
    const scenario = file('impossible.mjs');
    writeFileSync(
      scenario,
      `export default {
        name: 'impossible',
        description: 'p99 under a microsecond',
        duration: '1s',
        rate: 10,
        mix: [{ type: 'chat', prompts: ['hello'] }],
        slo: { p99: 0.001, maxErrorRate: 0.5 },
      };\n`,
    );
    const r = await cli(['run', scenario, '--target', target, '--quiet', '--json', file('impossible.json')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('');
    // --quiet: the verdict line only.
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
    expect(r.stdout).toMatch(/^FAIL {2}impossible: SLO failed: p99 latency \([\d.]+ ms, target <= 0\.001 ms\)/);
    expect(r.stdout).not.toMatch(/error rate/);
    const report = readJson<LoadReport>(file('impossible.json'));
    expect(report.pass).toBe(false);
    expect(report.slo.checks.filter((c) => !c.pass).map((c) => c.id)).toEqual(['p99']);
  });

  it('a bad scenario, a bad option or an unreachable target exits 2 with a clear message', async () => {
    const bad = file('bad.json');
    writeFileSync(bad, JSON.stringify({ duration: '1s', rate: 5, mix: [{ type: 'chat', prompts: ['x'], weight: -1 }] }));
    const r = await cli(['run', bad, '--target', target]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('mix.0.weight: expected a number > 0, received -1');

    const typo = file('typo.json');
    writeFileSync(typo, JSON.stringify({ durration: '1s', rate: 5, mix: [{ type: 'chat', prompts: ['x'] }] }));
    const t = await cli(['run', typo, '--target', target]);
    expect(t.code).toBe(2);
    expect(t.stderr).toMatch(/duration: expected a duration/);
    expect(t.stderr).toMatch(/unknown: durration/);

    const option = await cli(['run', 'smoke', '--target', target, '--users', 'many']);
    expect(option.code).toBe(2);
    expect(option.stderr).toMatch(/--users expects a whole number/);
    expect(option.stderr).toMatch(/Usage:/);

    const missing = await cli(['run', 'no-such-scenario']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/No scenario file or bundled scenario named "no-such-scenario".*smoke/);

    const port = await freePort();
    const down = await cli(['run', 'smoke', '--target', `http://127.0.0.1:${port}`]);
    expect(down.code).toBe(2);
    expect(down.stderr).toMatch(new RegExp(`Cannot reach the target at http://127\\.0\\.0\\.1:${port}: ECONNREFUSED`));
  });

  it('--baseline: a slower provider is a regression (exit 1); the same speed is not', async () => {
    const baselineFile = file('baseline.json');
    const fast = await cli(['run', 'smoke', '--target', target, '--duration', '2s', '--save-baseline', baselineFile]);
    expect(fast.code).toBe(0);
    const baseline = readJson<Baseline>(baselineFile);
    expect(baseline).toMatchObject({ amasLoadBaseline: 1, scenario: 'smoke', target, errorRate: 0 });
    expect(baseline.p95).toBeGreaterThan(0);

    // The provider becomes 100 ms slower, through the mock's admin endpoint.
    const set = await fetch(`${mock.url}/__mock/latency`, { method: 'POST', body: JSON.stringify({ latencyMs: 100 }) });
    expect(set.status).toBe(200);
    try {
      const slow = await cli(['run', 'smoke', '--target', target, '--duration', '2s', '--baseline', baselineFile, '--json', file('slow.json')]);
      expect(slow.code).toBe(1);
      expect(slow.stdout).toMatch(/p95 latency\s+[\d.]+ ms\s+[\d.]+ ms\s+\+[\d.]+%\s+REGRESSION/);
      expect(slow.stdout).toMatch(/FAIL {2}smoke: regression against the baseline: p95 latency/);
      const report = readJson<LoadReport>(file('slow.json'));
      expect(report.slo.pass).toBe(true);
      expect(report.baseline).toMatchObject({ pass: false, threshold: 0.1 });
      expect(report.baseline!.checks.find((c) => c.id === 'p95')).toMatchObject({ regression: true });
      expect(report.latencyMs.p95!).toBeGreaterThan(100);

      // A threshold large enough to absorb the slowdown passes.
      const lenient = await cli(['run', 'smoke', '--target', target, '--duration', '1s', '--baseline', baselineFile, '--regression-threshold', '50', '--quiet']);
      expect(lenient.stdout).toMatch(/^PASS {2}smoke: all 4 SLOs met, no regression against the baseline/);
      expect(lenient.code).toBe(0);
    } finally {
      mock.setLatency(5);
    }
  });

  it('cache hits: repeated and reworded temperature-0 questions are answered from the caches (X-Cache)', async () => {
    // The embedding model loads here rather than inside the measured run.
    await gateway.amas.semantic.warmUp();
    const scenario = file('cache.json');
    writeFileSync(
      scenario,
      JSON.stringify({
        name: 'cache-short',
        duration: '2s',
        rate: 10,
        users: { names: ['cache-user'] },
        mix: [
          {
            type: 'chat',
            temperature: 0,
            prompts: [['How do I reverse a list in Python?', 'In Python, how can a list be reversed?', 'How can I reverse a Python list?']],
          },
        ],
        slo: { minCacheHitRate: 0.5, maxErrorRate: 0 },
      }),
    );
    const r = await cli(['run', scenario, '--target', target, '--json', file('cache-report.json')], 30_000);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/cache hit rate\s+>= 50%\s+[\d.]+%\s+PASS/);
    const report = readJson<LoadReport>(file('cache-report.json'));
    expect(report.cache.withHeader).toBe(report.totals.ok);
    expect(report.cache.hits).toBeGreaterThanOrEqual(report.totals.ok - 3);
    expect(report.cache.semanticHits).toBeGreaterThan(0);
    expect(report.cache.byStatus.HIT).toBeGreaterThan(0);
    expect(report.cache.hitRate).toBe(report.cache.hits / report.cache.withHeader);
  }, 40_000);

  it('an outage injected through the mock (--mock) shows up as errors in its window, then the gateway recovers', async () => {
    const outageMock = await startMockProvider({ latencyMs: 5, chunkDelayMs: 1, seed: 12 });
    const outageGateway = createGateway({
      providerUrl: outageMock.url,
      logger: silent,
      amas: { limits: { 'per-user': { limit: 100_000, window: '1m' } }, breakers: { provider: { failureThreshold: 3, recoveryTimeoutMs: 200 } } },
      retry: { maxAttempts: 2, baseDelayMs: 1, maxDelayMs: 5 },
    });
    try {
      const url = await outageGateway.listen();
      const scenario = file('outage.json');
      writeFileSync(
        scenario,
        JSON.stringify({
          name: 'outage-short',
          duration: '2500ms',
          rate: 10,
          users: { count: 3, header: 'x-user' },
          mix: [{ type: 'chat', prompts: ['hello'] }, { type: 'stream', prompts: ['a story'] }],
          outage: { at: '700ms', for: '800ms', status: 503 },
          slo: { maxErrorRate: 0.9 },
        }),
      );
      // Without a mock URL the outage cannot be injected: a configuration error.
      const noMock = await cli(['run', scenario, '--target', url]);
      expect(noMock.code).toBe(2);
      expect(noMock.stderr).toMatch(/pass --mock URL/);

      const r = await cli(['run', scenario, '--target', url, '--mock', outageMock.url, '--json', file('outage-report.json'), '--html', file('outage.html')]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/Outage\s+503 from \+0\.7 s for 0\.8 s/);
      const report = readJson<LoadReport>(file('outage-report.json'));
      expect(report.outage).toMatchObject({ at: 700, for: 800, status: 503, mock: outageMock.url });
      expect(report.outage!.appliedAtMs).toBeGreaterThanOrEqual(700);
      expect(report.outage!.clearedAtMs).toBeGreaterThanOrEqual(1500);
      expect(report.errors['503']).toBeGreaterThan(0);
      expect(outageMock.stats().outageRejections).toBeGreaterThan(0);
      const [first, second, third] = report.timeline;
      expect(first!.errors).toBeLessThan(first!.requests);
      expect(second!.errors).toBeGreaterThan(0);
      expect(third!.ok).toBeGreaterThan(0);
      expect(readFileSync(file('outage.html'), 'utf8')).toContain('class="outage"');
    } finally {
      await outageGateway.close();
      await outageMock.close();
    }
  });
});
