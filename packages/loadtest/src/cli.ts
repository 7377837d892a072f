/**
 * `amas-load`: run a load-test scenario against an AI gateway, check its SLOs, compare with a baseline.
 * Exit codes: 0 every SLO passed (and no regression), 1 an SLO failed or a regression, 2 usage or configuration
 * error, 130 interrupted (Ctrl-C).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { renderHtml } from './load/render-html.js';
import { renderProgress, renderSummary, table, verdictLine } from './load/render-text.js';
import { writeBaseline, type LoadReport } from './load/report.js';
import { DEFAULT_TARGET, runScenario, type RunOptions } from './load/run.js';
import { LoadConfigError, listScenarios, loadScenario } from './load/scenario.js';

export const USAGE = `Usage:
  amas-load list
  amas-load run <scenario> [options]

<scenario> is a bundled scenario name (see \`amas-load list\`) or a path to a .json / .mjs scenario file.

Options for run:
  --target URL                  service under test (default: the scenario's target, else ${DEFAULT_TARGET})
  --duration D                  run length, overriding the scenario: 30s, 2m, 1500ms
  --users N                     number of simulated users (Authorization / x-user identities)
  --rate R                      arrival rate in requests/s (switches the scenario to rate mode)
  --concurrency C               C concurrent connections (switches the scenario to concurrency mode)
  --mock URL                    @amas/loadtest mock provider for injected outages (POST <mock>/__mock/outage)
  --json FILE                   write the JSON report
  --html FILE                   write a self-contained HTML report with latency-over-time charts
  --save-baseline FILE          write this run's key numbers (p50/p95/p99, error rate, rps, cache hit rate)
  --baseline FILE               compare with a saved baseline: p95, p99 or error rate more than the
                                threshold worse is a regression and fails the run
  --regression-threshold X      relative worsening that counts as a regression (default: the scenario's, 0.1)
  --seed N                      seed for the request mix
  --quiet                       no progress bar and no table: the verdict line only
  -h, --help                    this help

Exit codes: 0 all SLOs passed (and no regression), 1 an SLO failed or a regression,
            2 usage or configuration error (bad scenario, unreachable target), 130 interrupted.`;

class UsageError extends Error {}

function intOption(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw.trim())) throw new UsageError(`--${name} expects a whole number, received ${JSON.stringify(raw)}`);
  return Number(raw);
}

function numberOption(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--${name} expects a number, received ${JSON.stringify(raw)}`);
  return n;
}

function writeFile(file: string, content: string): void {
  const path = resolve(file);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, content);
}

async function list(out: NodeJS.WriteStream): Promise<number> {
  const scenarios = await listScenarios();
  out.write('Bundled scenarios (amas-load run <name>):\n');
  out.write(table(scenarios.map((s) => [s.name, s.description]), ['l', 'l']) + '\n');
  return 0;
}

async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      target: { type: 'string' },
      duration: { type: 'string' },
      users: { type: 'string' },
      rate: { type: 'string' },
      concurrency: { type: 'string' },
      mock: { type: 'string' },
      json: { type: 'string' },
      html: { type: 'string' },
      'save-baseline': { type: 'string' },
      baseline: { type: 'string' },
      'regression-threshold': { type: 'string' },
      seed: { type: 'string' },
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  if (positionals.length !== 1) {
    throw new UsageError(positionals.length ? `run takes one scenario, received ${positionals.length}: ${positionals.join(' ')}` : 'run needs a scenario name or file');
  }
  const quiet = values.quiet ?? false;
  const scenario = await loadScenario(positionals[0]!);

  const stderr = process.stderr;
  const showProgress = !quiet && stderr.isTTY === true;
  let lastLine = 0;
  const clearLine = () => {
    if (lastLine) stderr.write('\r' + ' '.repeat(lastLine) + '\r');
    lastLine = 0;
  };
  const controller = new AbortController();
  let interrupts = 0;
  const onSigint = () => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    controller.abort();
  };
  process.on('SIGINT', onSigint);

  const options: RunOptions = {
    target: values.target,
    mock: values.mock,
    duration: values.duration,
    users: intOption('users', values.users),
    rate: intOption('rate', values.rate),
    concurrency: intOption('concurrency', values.concurrency),
    seed: intOption('seed', values.seed),
    baseline: values.baseline,
    regressionThreshold: numberOption('regression-threshold', values['regression-threshold']),
    signal: controller.signal,
    onWarning: (message) => {
      clearLine();
      stderr.write(`amas-load: warning: ${message}\n`);
    },
    ...(showProgress
      ? {
          onProgress: (p) => {
            const line = renderProgress(p).slice(0, Math.max(20, (stderr.columns || 100) - 1));
            stderr.write('\r' + line + (line.length < lastLine ? ' '.repeat(lastLine - line.length) : ''));
            lastLine = line.length;
          },
        }
      : {}),
  };

  let report: LoadReport;
  try {
    report = await runScenario(scenario, options);
  } finally {
    clearLine();
    process.off('SIGINT', onSigint);
  }

  if (values.json) writeFile(values.json, JSON.stringify(report, null, 2) + '\n');
  if (values.html) writeFile(values.html, renderHtml(report));
  if (values['save-baseline']) writeBaseline(resolve(values['save-baseline']), report);

  const color = process.stdout.isTTY === true && !process.env.NO_COLOR;
  process.stdout.write((quiet ? verdictLine(report, { color }) : renderSummary(report, { color })) + '\n');
  if (!quiet) {
    const written = [
      values.json && `JSON report: ${values.json}`,
      values.html && `HTML report: ${values.html}`,
      values['save-baseline'] && `baseline saved: ${values['save-baseline']}`,
    ].filter(Boolean);
    if (written.length) process.stdout.write(written.map((w) => `  ${w}`).join('\n') + '\n');
  }
  if (report.interrupted) return 130;
  return report.pass ? 0 : 1;
}

export async function main(argv: string[] = process.argv.slice(2)): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
      (command === undefined ? process.stderr : process.stdout).write(USAGE + '\n');
      return command === undefined ? 2 : 0;
    }
    if (command === 'list') {
      if (rest.length) throw new UsageError(`list takes no arguments, received: ${rest.join(' ')}`);
      return await list(process.stdout);
    }
    if (command === 'run') return await run(rest);
    throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  } catch (error) {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`amas-load: ${(error as Error).message}\n\n${USAGE}\n`);
      return 2;
    }
    if (error instanceof LoadConfigError) {
      process.stderr.write(`amas-load: ${error.message}\n`);
      return 2;
    }
    process.stderr.write(`amas-load: unexpected error: ${(error as Error)?.stack ?? String(error)}\n`);
    return 2;
  }
}

const code = await main();
process.exitCode = code;
