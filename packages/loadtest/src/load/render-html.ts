/**
 * A self-contained HTML report: inline CSS, inline SVG charts drawn here (latency percentiles per second with
 * the SLO lines and the outage window; throughput per second split into cache hits, other successes and
 * errors), the summary tables, and the report JSON embedded as a data block for tools. No executable script,
 * no CDN, no external file.
 */
import type { LoadReport, TimelinePoint } from './report.js';
import { failureSummary, fmtMs, fmtPct, fmtTarget } from './render-text.js';

export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch]!);
}

/** 1, 2 or 5 times a power of ten, near range / count. */
function niceStep(range: number, count: number): number {
  if (!(range > 0)) return 1;
  const raw = range / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const m = raw / power;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * power;
}

const r1 = (x: number) => Math.round(x * 10) / 10;
const fmtTick = (x: number) => (Math.abs(x) >= 100 || Number.isInteger(x) ? String(Math.round(x)) : String(r1(x)));

interface Frame {
  width: number;
  height: number;
  left: number;
  right: number;
  top: number;
  bottom: number;
  xMax: number;
  yMax: number;
}

const sx = (f: Frame, x: number) => r1(f.left + (x / f.xMax) * (f.width - f.left - f.right));
const sy = (f: Frame, y: number) => r1(f.height - f.bottom - (y / f.yMax) * (f.height - f.top - f.bottom));

function axes(f: Frame, yLabel: string, yStep: number): string {
  const parts: string[] = [];
  for (let y = 0; y <= f.yMax + 1e-9; y += yStep) {
    parts.push(`<line class="grid" x1="${f.left}" x2="${f.width - f.right}" y1="${sy(f, y)}" y2="${sy(f, y)}"/>`);
    parts.push(`<text class="tick" x="${f.left - 6}" y="${sy(f, y) + 4}" text-anchor="end">${fmtTick(y)}</text>`);
  }
  const xStep = Math.max(1, niceStep(f.xMax, 10));
  for (let x = 0; x <= f.xMax + 1e-9; x += xStep) {
    parts.push(`<line class="axis" x1="${sx(f, x)}" x2="${sx(f, x)}" y1="${f.height - f.bottom}" y2="${f.height - f.bottom + 4}"/>`);
    parts.push(`<text class="tick" x="${sx(f, x)}" y="${f.height - f.bottom + 16}" text-anchor="middle">${fmtTick(x)}</text>`);
  }
  parts.push(`<line class="axis" x1="${f.left}" x2="${f.width - f.right}" y1="${f.height - f.bottom}" y2="${f.height - f.bottom}"/>`);
  parts.push(`<line class="axis" x1="${f.left}" x2="${f.left}" y1="${f.top}" y2="${f.height - f.bottom}"/>`);
  parts.push(`<text class="label" x="${(f.left + f.width - f.right) / 2}" y="${f.height - 4}" text-anchor="middle">seconds since start</text>`);
  parts.push(`<text class="label" transform="translate(14 ${(f.top + f.height - f.bottom) / 2}) rotate(-90)" text-anchor="middle">${escapeHtml(yLabel)}</text>`);
  return parts.join('');
}

function outageBand(f: Frame, report: LoadReport): string {
  const o = report.outage;
  if (!o) return '';
  const start = (o.appliedAtMs ?? o.at) / 1000;
  const end = Math.min(f.xMax, (o.clearedAtMs ?? o.at + o.for) / 1000);
  const x = sx(f, Math.min(start, f.xMax));
  const w = Math.max(1, r1(sx(f, end) - x));
  return (
    `<rect class="outage" x="${x}" y="${f.top}" width="${w}" height="${f.height - f.top - f.bottom}"><title>provider outage (${o.status}) ${r1(start)}s - ${r1(end)}s</title></rect>` +
    `<text class="outage-label" x="${x + 4}" y="${f.top + 12}">outage ${o.status}</text>`
  );
}

/**
 * The frame (one second per x unit over the planned duration, y up to `top` plus 10% in nice steps) and the
 * opening of a chart: its svg element, title, outage band and axes.
 */
function chartStart(
  report: LoadReport,
  width: number,
  height: number,
  top: number,
  yTicks: number,
  text: { label: string; title: string; yLabel: string },
): { f: Frame; parts: string[] } {
  const yStep = niceStep(top * 1.1, yTicks);
  const f: Frame = {
    width,
    height,
    left: 64,
    right: 16,
    top: 16,
    bottom: 40,
    xMax: Math.max(1, report.timeline.length, Math.ceil(report.config.plannedDurationMs / 1000)),
    yMax: Math.ceil((top * 1.1) / yStep) * yStep,
  };
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${text.label}">`,
    `<title>${text.title} for ${escapeHtml(report.scenario.name)}</title>`,
    outageBand(f, report),
    axes(f, text.yLabel, yStep),
  ];
  return { f, parts };
}

const SERIES = [
  { key: 'p50', label: 'p50', color: '#2f6fdf' },
  { key: 'p95', label: 'p95', color: '#e08a00' },
  { key: 'p99', label: 'p99', color: '#c62828' },
] as const;

/** Latency percentiles per second as lines, the latency SLOs as dashed lines, the outage as a band. */
export function latencyChartSvg(report: LoadReport, width = 880, height = 320): string {
  const points = report.timeline;
  const sloLines = (['p50', 'p90', 'p95', 'p99'] as const)
    .map((id) => report.slo.checks.find((c) => c.id === id))
    .filter((c): c is NonNullable<typeof c> => c !== undefined);
  const dataMax = Math.max(0, ...points.flatMap((p) => [p.p50 ?? 0, p.p95 ?? 0, p.p99 ?? 0]));
  const sloMax = Math.max(0, ...sloLines.map((c) => c.target));
  // SLO lines far above the data would flatten the curves: show them only when within 3x the data.
  const shownSlo = sloLines.filter((c) => dataMax === 0 || c.target <= dataMax * 3);
  const top = Math.max(dataMax, shownSlo.length ? Math.min(sloMax, dataMax * 3 || sloMax) : 0, 1);
  const { f, parts } = chartStart(report, width, height, top, 5, {
    label: 'Latency over time',
    title: 'Latency per second (p50, p95, p99)',
    yLabel: 'latency (ms)',
  });
  const hidden = sloLines.filter((c) => !shownSlo.includes(c));
  if (hidden.length) {
    parts.push(`<text class="slo-label" x="${width - f.right - 4}" y="${f.top + 12}" text-anchor="end">${hidden.map((c) => `SLO ${c.id} ${fmtTick(c.target)} ms`).join(', ')} (above the chart)</text>`);
  }
  for (const c of shownSlo) {
    const y = sy(f, c.target);
    parts.push(`<line class="slo" x1="${f.left}" x2="${width - f.right}" y1="${y}" y2="${y}"/>`);
    parts.push(`<text class="slo-label" x="${width - f.right - 4}" y="${y - 4}" text-anchor="end">SLO ${c.id} ${fmtTick(c.target)} ms</text>`);
  }
  // p99 first, so the lower percentiles are drawn over it where they coincide.
  for (const s of [...SERIES].reverse()) {
    // Break the line where a second had no response.
    let segment: string[] = [];
    const flush = () => {
      // p99 is drawn wider underneath, so it still shows as an outline where p95 equals it.
      const strokeWidth = s.key === 'p99' ? 4 : 2;
      if (segment.length > 1) parts.push(`<polyline class="series" fill="none" stroke="${s.color}" stroke-width="${strokeWidth}" points="${segment.join(' ')}"/>`);
      segment = [];
    };
    for (const p of points) {
      const v = p[s.key];
      if (v === null) {
        flush();
        continue;
      }
      const x = sx(f, p.second + 0.5);
      const y = sy(f, v);
      segment.push(`${x},${y}`);
      parts.push(`<circle cx="${x}" cy="${y}" r="2.5" fill="${s.color}"><title>${s.label} ${fmtMs(v)} at ${p.second}-${p.second + 1}s (${p.requests} requests)</title></circle>`);
    }
    flush();
  }
  SERIES.forEach((s, i) => {
    const x = f.left + 10 + i * 70;
    parts.push(`<line x1="${x}" x2="${x + 18}" y1="${f.top + 8}" y2="${f.top + 8}" stroke="${s.color}" stroke-width="2.5"/>`);
    parts.push(`<text class="legend" x="${x + 22}" y="${f.top + 12}">${s.label}</text>`);
  });
  if (points.every((p) => p.p50 === null)) {
    parts.push(`<text class="label" x="${width / 2}" y="${height / 2}" text-anchor="middle">no response was measured</text>`);
  }
  parts.push('</svg>');
  return parts.join('');
}

/** Completions per second as stacked bars: cache hits, other successes, errors. */
export function throughputChartSvg(report: LoadReport, width = 880, height = 220): string {
  const points = report.timeline;
  const max = Math.max(1, ...points.map((p) => p.requests));
  const { f, parts } = chartStart(report, width, height, max, 4, {
    label: 'Throughput over time',
    title: 'Completed requests per second',
    yLabel: 'requests / s',
  });
  const barWidth = Math.max(1, r1(((width - f.left - f.right) / f.xMax) * 0.7));
  const stack = (p: TimelinePoint) => [
    { n: p.cacheHits, cls: 'bar-hit', label: 'cache hits' },
    { n: p.ok - p.cacheHits, cls: 'bar-ok', label: 'other successes' },
    { n: p.errors, cls: 'bar-err', label: 'errors' },
  ];
  for (const p of points) {
    let base = 0;
    const x = r1(sx(f, p.second + 0.5) - barWidth / 2);
    for (const part of stack(p)) {
      if (part.n <= 0) continue;
      const y1 = sy(f, base + part.n);
      const h = Math.max(0.5, r1(sy(f, base) - y1));
      parts.push(`<rect class="${part.cls}" x="${x}" y="${y1}" width="${barWidth}" height="${h}"><title>${p.second}-${p.second + 1}s: ${part.n} ${part.label} (${p.requests} total)</title></rect>`);
      base += part.n;
    }
  }
  [
    ['bar-hit', 'cache hit'],
    ['bar-ok', 'ok'],
    ['bar-err', 'error'],
  ].forEach(([cls, label], i) => {
    const x = f.left + 10 + i * 90;
    parts.push(`<rect class="${cls}" x="${x}" y="${f.top + 2}" width="12" height="10"/>`);
    parts.push(`<text class="legend" x="${x + 16}" y="${f.top + 11}">${label}</text>`);
  });
  parts.push('</svg>');
  return parts.join('');
}

function htmlTable(head: string[], rows: string[][], numeric: boolean[] = []): string {
  const th = head.map((h, i) => `<th${numeric[i] ? ' class="num"' : ''}>${escapeHtml(h)}</th>`).join('');
  const trs = rows.map((r) => `<tr>${r.map((c, i) => `<td${numeric[i] ? ' class="num"' : ''}>${c}</td>`).join('')}</tr>`).join('');
  return `<table><thead><tr>${th}</tr></thead><tbody>${trs}</tbody></table>`;
}

const badge = (pass: boolean, text = pass ? 'PASS' : 'FAIL') => `<span class="badge ${pass ? 'pass' : 'fail'}">${escapeHtml(text)}</span>`;

function sloValue(unit: string, x: number | null): string {
  return unit === 'ms' ? fmtMs(x) : unit === 'ratio' ? fmtPct(x) : x === null ? '-' : `${x.toFixed(1)} req/s`;
}

/** The whole report as one HTML document. */
export function renderHtml(report: LoadReport): string {
  const t = report.totals;
  const l = report.latencyMs;
  const cfg = report.config;
  const e = escapeHtml;
  const summaryRows: string[][] = [
    ['Target', e(report.target)],
    ['Started', `${e(report.startedAt)} (${(report.durationMs / 1000).toFixed(1)} s${report.interrupted ? ', interrupted' : ''})`],
    ['Load', e(cfg.mode === 'rate' ? `rate ${cfg.rate}/s over ${cfg.connections} connections` : `${cfg.concurrency} concurrent connections`) + `, ${cfg.users} users, seed ${cfg.seed}, ${e(cfg.loadGenerator)}`],
    ['Requests', `${t.requests} (${t.ok} ok, ${t.errors} errors = ${fmtPct(t.errorRate)})`],
    ['Throughput', `${t.rps.toFixed(1)} req/s`],
    ['Latency', l.count ? `min ${fmtMs(l.min)} · p50 ${fmtMs(l.p50)} · p90 ${fmtMs(l.p90)} · p95 ${fmtMs(l.p95)} · p99 ${fmtMs(l.p99)} · max ${fmtMs(l.max)}` : 'no response measured'],
    ['Statuses', e(Object.entries(report.statuses).map(([k, v]) => `${k}: ${v}`).join(', ') || 'none')],
    ['Errors', e(Object.entries(report.errors).map(([k, v]) => `${k}: ${v}`).join(', ') || 'none')],
    [
      'Cache',
      report.cache.withHeader
        ? `hit rate ${fmtPct(report.cache.hitRate)} (${e(Object.entries(report.cache.byStatus).map(([k, v]) => `${k} ${v}`).join(', '))})`
        : 'no 2xx response carried X-Cache',
    ],
  ];
  if (report.outage) {
    const o = report.outage;
    summaryRows.push(['Outage', e(`${o.status} from ${o.at} ms for ${o.for} ms via ${o.mock}${o.appliedAtMs !== undefined ? ` (on at +${o.appliedAtMs} ms, off at +${o.clearedAtMs ?? '?'} ms)` : ''}${o.error ? `; ${o.error}` : ''}`)]);
  }

  const sloTable = report.slo.checks.length
    ? htmlTable(
        ['SLO', 'Target', 'Actual', 'Result'],
        report.slo.checks.map((c) => [e(c.label), e(`${c.comparator} ${fmtTarget(c.unit, c.target)}`), e(sloValue(c.unit, c.actual)), badge(c.pass) + (c.detail ? ` ${e(c.detail)}` : '')]),
        [false, true, true, false],
      )
    : '<p>No SLOs set.</p>';

  const b = report.baseline;
  const baselineSection = b
    ? `<h2>Baseline comparison</h2><p>${e(b.file ?? 'baseline')} (scenario ${e(b.scenario)}, ${e(b.createdAt)}): a regression is more than ${(b.threshold * 100).toFixed(0)}% worse.</p>` +
      b.warnings.map((w) => `<p class="warn">${e(w)}</p>`).join('') +
      htmlTable(
        ['Metric', 'Baseline', 'Current', 'Change', 'Result'],
        b.checks.map((c) => {
          const v = (x: number | null) => (c.id === 'errorRate' ? fmtPct(x) : fmtMs(x));
          return [e(c.label), e(v(c.baseline)), e(v(c.current)), c.change === null ? '-' : `${c.change >= 0 ? '+' : ''}${(c.change * 100).toFixed(1)}%`, c.regression ? badge(false, 'REGRESSION') : badge(true, 'ok')];
        }),
        [false, true, true, true, false],
      )
    : '';

  const entryTable = htmlTable(
    ['Entry', 'Type', 'Weight', 'Requests', 'Errors', 'p50', 'p95', 'p99', 'Cache hit'],
    report.entries.map((x) => [e(x.name), e(x.type), String(x.weight), String(x.requests), String(x.errors), fmtMs(x.latencyMs.p50), fmtMs(x.latencyMs.p95), fmtMs(x.latencyMs.p99), fmtPct(x.cache.hitRate)]),
    [false, false, true, true, true, true, true, true, true],
  );

  const timelineTable = htmlTable(
    ['Second', 'Requests', 'Errors', 'Cache hits', 'p50', 'p95', 'p99', 'max'],
    report.timeline.map((p) => [`${p.second}-${p.second + 1}`, String(p.requests), String(p.errors), String(p.cacheHits), fmtMs(p.p50), fmtMs(p.p95), fmtMs(p.p99), fmtMs(p.max)]),
    [false, true, true, true, true, true, true, true],
  );

  const json = JSON.stringify(report).replace(/</g, '\\u003c');
  const verdict = report.pass ? 'All SLOs met' + (b ? ', no regression.' : '.') : failureSummary(report);

  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>amas-load: ${e(report.scenario.name)} ${report.pass ? 'PASS' : 'FAIL'}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2430; margin: 24px auto; max-width: 940px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.sub { color: #5b6575; margin: 0 0 12px; }
table { border-collapse: collapse; margin: 4px 0 8px; } th, td { padding: 4px 10px; border-bottom: 1px solid #e3e7ee; text-align: left; vertical-align: top; }
th { background: #f4f6f9; font-weight: 600; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.kv td:first-child { color: #5b6575; white-space: nowrap; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-weight: 700; font-size: 12px; color: #fff; }
.badge.pass { background: #2e7d32; } .badge.fail { background: #c62828; }
.verdict { font-size: 16px; margin: 12px 0; } .warn { color: #a15c00; }
svg.chart { max-width: 100%; height: auto; background: #fff; border: 1px solid #e3e7ee; border-radius: 6px; }
.grid { stroke: #eef1f5; } .axis { stroke: #8a94a6; } .tick { font-size: 11px; fill: #5b6575; } .label { font-size: 12px; fill: #39414f; }
.legend { font-size: 12px; fill: #39414f; } .series { stroke-linejoin: round; }
.slo { stroke: #c62828; stroke-dasharray: 6 4; stroke-width: 1.2; opacity: .7; } .slo-label { font-size: 11px; fill: #c62828; }
.outage { fill: #c62828; opacity: .10; } .outage-label { font-size: 11px; fill: #a01f1f; }
.bar-hit { fill: #43a047; } .bar-ok { fill: #5c8ee6; } .bar-err { fill: #e53935; }
details { margin: 12px 0; } pre { background: #f4f6f9; padding: 10px; overflow: auto; font-size: 12px; }
</style>
</head>
<body>
<h1>amas-load: ${e(report.scenario.name)} ${badge(report.pass)}</h1>
<p class="sub">${e(report.scenario.description)}</p>
<p class="verdict">${e(verdict)}</p>
<table class="kv"><tbody>${summaryRows.map(([k, v]) => `<tr><td>${e(k)}</td><td>${v}</td></tr>`).join('')}</tbody></table>
<h2>SLOs</h2>
${sloTable}
${baselineSection}
<h2>Latency over time</h2>
${latencyChartSvg(report)}
<h2>Throughput over time</h2>
${throughputChartSvg(report)}
<h2>Request mix</h2>
${entryTable}
<details><summary>Per-second numbers</summary>${timelineTable}</details>
<details><summary>Report JSON</summary><pre>${e(JSON.stringify(report, null, 2))}</pre></details>
<script type="application/json" id="amas-load-report">${json}</script>
<p class="sub">Generated by ${e(report.tool)} at ${e(report.finishedAt)}.</p>
</body>
</html>
`;
}
