/** Plain-text output: the summary table, the one-line verdict, and the progress bar. */
import type { LoadReport, RegressionCheck, SloCheck } from './report.js';
import type { RunProgress } from './run.js';

export interface TextOptions {
  /** ANSI colours for PASS / FAIL; default false. */
  color?: boolean;
}

const num = (x: number, digits = 2) => x.toFixed(digits);
export const fmtMs = (x: number | null | undefined) => (x === null || x === undefined ? '-' : `${num(x)} ms`);
export const fmtPct = (x: number | null | undefined) => (x === null || x === undefined ? '-' : `${num(x * 100)}%`);
const fmtSeconds = (ms: number) => `${num(ms / 1000, 1)} s`;
const fmtBytes = (b: number) => (b < 1024 ? `${b} B` : b < 1024 * 1024 ? `${num(b / 1024, 1)} KiB` : `${num(b / 1024 / 1024, 1)} MiB`);

function fmtValue(unit: SloCheck['unit'], x: number | null): string {
  if (unit === 'ms') return fmtMs(x);
  if (unit === 'ratio') return fmtPct(x);
  return x === null ? '-' : `${num(x, 1)} req/s`;
}

function paint(text: string, code: number, color: boolean | undefined): string {
  return color ? `\u001b[${code}m${text}\u001b[0m` : text;
}
const green = (t: string, c?: boolean) => paint(t, 32, c);
const red = (t: string, c?: boolean) => paint(t, 31, c);
const bold = (t: string, c?: boolean) => paint(t, 1, c);

// eslint-disable-next-line no-control-regex
const visible = (s: string) => s.replace(/\u001b\[[0-9;]*m/g, '').length;

/** Left/right aligned columns, two spaces apart. */
export function table(rows: string[][], align: Array<'l' | 'r'>, indent = '  '): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, visible(cell))));
  return rows
    .map(
      (row) =>
        indent +
        row
          .map((cell, i) => {
            const pad = ' '.repeat((widths[i] ?? 0) - visible(cell));
            return align[i] === 'r' ? pad + cell : i === row.length - 1 ? cell : cell + pad;
          })
          .join('  ')
          .trimEnd(),
    )
    .join('\n');
}

/** Targets as written: 300 ms, 1%, 50 req/s (no padding decimals). */
export function fmtTarget(unit: SloCheck['unit'], x: number): string {
  const short = (v: number) => String(Math.round(v * 1000) / 1000);
  if (unit === 'ms') return `${short(x)} ms`;
  if (unit === 'ratio') return `${short(x * 100)}%`;
  return `${short(x)} req/s`;
}

function sloTarget(c: SloCheck): string {
  return `${c.comparator} ${fmtTarget(c.unit, c.target)}`;
}

function changeText(c: RegressionCheck): string {
  if (c.change === null) return c.baseline === 0 && (c.current ?? 0) > 0 ? 'new' : '-';
  return `${c.change >= 0 ? '+' : ''}${num(c.change * 100, 1)}%`;
}

function regressionValue(c: RegressionCheck, x: number | null): string {
  return c.id === 'errorRate' ? fmtPct(x) : fmtMs(x);
}

/** Why the run failed, in one line (empty when it passed). */
export function failureSummary(report: LoadReport): string {
  const parts: string[] = [];
  const failed = report.slo.checks.filter((c) => !c.pass);
  if (failed.length) {
    parts.push(
      `SLO failed: ${failed.map((c) => `${c.label} (${fmtValue(c.unit, c.actual)}, target ${sloTarget(c)}${c.detail ? `; ${c.detail}` : ''})`).join(', ')}`,
    );
  }
  const regressed = report.baseline?.checks.filter((c) => c.regression) ?? [];
  if (regressed.length) {
    parts.push(
      `regression against the baseline: ${regressed.map((c) => `${c.label} ${regressionValue(c, c.baseline)} -> ${regressionValue(c, c.current)} (${changeText(c)})`).join(', ')}`,
    );
  }
  return parts.join('; ');
}

/** `PASS smoke: ...` or `FAIL smoke: ...`. */
export function verdictLine(report: LoadReport, options: TextOptions = {}): string {
  const n = report.slo.checks.length;
  const base = report.baseline ? ', no regression against the baseline' : '';
  if (report.pass) {
    return `${green('PASS', options.color)}  ${report.scenario.name}: ${n ? `all ${n} SLO${n === 1 ? '' : 's'} met` : 'no SLOs set'}${base}${report.interrupted ? ' (interrupted)' : ''}`;
  }
  return `${red('FAIL', options.color)}  ${report.scenario.name}: ${failureSummary(report)}${report.interrupted ? ' (interrupted)' : ''}`;
}

/** The summary printed after a run. */
export function renderSummary(report: LoadReport, options: TextOptions = {}): string {
  const c = options.color;
  const out: string[] = [];
  const cfg = report.config;
  out.push(`${bold(`amas-load: ${report.scenario.name}`, c)} -> ${report.target}`);
  if (report.scenario.description) out.push(`  ${report.scenario.description.split('\n')[0]}`);
  const load = cfg.mode === 'rate' ? `rate ${cfg.rate}/s (${cfg.connections} connections)` : `${cfg.concurrency} concurrent connections`;
  out.push(
    `  ${load}, ${cfg.users} user${cfg.users === 1 ? '' : 's'}, ${fmtSeconds(report.durationMs)} (planned ${fmtSeconds(cfg.plannedDurationMs)})` +
      `${cfg.warmupRequests ? `, ${cfg.warmupRequests} warm-up requests` : ''}; ${cfg.loadGenerator}`,
  );
  if (report.interrupted) out.push('  interrupted: the numbers cover the part of the run that happened');
  if (report.bailedOut) out.push('  stopped early: too many connection errors or timeouts');
  out.push('');

  const t = report.totals;
  const l = report.latencyMs;
  const errorKinds = Object.entries(report.errors).sort((a, b) => b[1] - a[1]);
  const cacheStatuses = Object.entries(report.cache.byStatus).sort((a, b) => b[1] - a[1]);
  const rows: string[][] = [
    ['Requests', `${t.requests} total, ${t.ok} ok, ${t.errors} error${t.errors === 1 ? '' : 's'} (${fmtPct(t.errorRate)})`],
    ['Throughput', `${num(t.rps, 1)} req/s, ${fmtBytes(t.bytes)} received`],
    [
      'Latency',
      l.count
        ? `min ${num(l.min!)}  p50 ${num(l.p50!)}  p90 ${num(l.p90!)}  p95 ${num(l.p95!)}  p99 ${num(l.p99!)}  max ${num(l.max!)} ms`
        : 'no response measured',
    ],
    ['Statuses', Object.entries(report.statuses).map(([k, v]) => `${k}: ${v}`).join(', ') || 'none'],
    ['Errors', errorKinds.map(([k, v]) => `${k}: ${v}`).join(', ') || 'none'],
    [
      'Cache',
      report.cache.withHeader
        ? `hit rate ${fmtPct(report.cache.hitRate)} (${cacheStatuses.map(([k, v]) => `${k} ${v}`).join(', ')}; over ${report.cache.withHeader} 2xx responses with X-Cache)`
        : 'no 2xx response carried X-Cache',
    ],
  ];
  if (report.outage) {
    const o = report.outage;
    rows.push([
      'Outage',
      `${o.status} from +${fmtSeconds(o.at)} for ${fmtSeconds(o.for)} via ${o.mock}` +
        (o.appliedAtMs !== undefined ? ` (on at +${o.appliedAtMs} ms` + (o.clearedAtMs !== undefined ? `, off at +${o.clearedAtMs} ms)` : ')') : '') +
        (o.error ? `; ${o.error}` : ''),
    ]);
  }
  out.push(table(rows, ['l', 'l']));
  out.push('');

  out.push(
    table(
      [
        ['Entry', 'Type', 'Requests', 'Errors', 'p50', 'p95', 'p99', 'Cache hit'],
        ...report.entries.map((e) => [
          e.name,
          e.type,
          String(e.requests),
          String(e.errors),
          fmtMs(e.latencyMs.p50),
          fmtMs(e.latencyMs.p95),
          fmtMs(e.latencyMs.p99),
          fmtPct(e.cache.hitRate),
        ]),
      ],
      ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r'],
    ),
  );
  out.push('');

  if (report.slo.checks.length) {
    out.push(
      table(
        [
          ['SLO', 'Target', 'Actual', 'Result'],
          ...report.slo.checks.map((s) => [
            s.label,
            sloTarget(s),
            fmtValue(s.unit, s.actual),
            s.pass ? green('PASS', c) : red('FAIL', c) + (s.detail ? ` (${s.detail})` : ''),
          ]),
        ],
        ['l', 'l', 'r', 'l'],
      ),
    );
  } else out.push('  No SLOs set.');

  if (report.baseline) {
    const b = report.baseline;
    out.push('');
    out.push(`  Baseline${b.file ? ` ${b.file}` : ''} (scenario ${b.scenario}, ${b.createdAt}): a regression is more than ${num(b.threshold * 100, 0)}% worse`);
    for (const w of b.warnings) out.push(`  warning: ${w}`);
    out.push(
      table(
        [
          ['Metric', 'Baseline', 'Current', 'Change', 'Result'],
          ...b.checks.map((r) => [
            r.label,
            regressionValue(r, r.baseline),
            regressionValue(r, r.current),
            changeText(r),
            r.regression ? red('REGRESSION', c) : green('ok', c),
          ]),
        ],
        ['l', 'r', 'r', 'r', 'l'],
      ),
    );
  }
  out.push('');
  out.push(verdictLine(report, options));
  return out.join('\n');
}

/** One line for a TTY: a bar and the live numbers. */
export function renderProgress(p: RunProgress, width = 24): string {
  if (p.phase === 'warmup') return 'warming up...';
  const frac = p.durationMs > 0 ? Math.min(1, p.elapsedMs / p.durationMs) : 0;
  const filled = Math.round(frac * width);
  const bar = '█'.repeat(filled) + '░'.repeat(width - filled);
  return (
    `${bar} ${String(Math.round(frac * 100)).padStart(3)}%  ${num(p.elapsedMs / 1000, 1)}/${num(p.durationMs / 1000, 1)} s  ` +
    `${p.requests} req  ${num(p.rps, 0)} req/s  ${p.errors} err  p95 ${fmtMs(p.p95)}${p.outageActive ? '  [outage]' : ''}`
  );
}
