/**
 * deploy/: the Kubernetes manifests and the Grafana dashboard.
 *
 * 1. Every YAML document is validated against the Kubernetes OpenAPI schema (kubernetes-models) or the KEDA CRD
 *    schema (@kubernetes-models/keda), and the manifests agree with each other and with the gateway (labels,
 *    ports, env, probe paths, scale targets, KEDA's fallback rules). Broken copies must fail.
 * 2. Every metric named in a PromQL expression (dashboard panels and variables, ScaledObject triggers) is one the
 *    code registers: names come from real engines (response cache, semantic cache, AI layer, Redis store) and
 *    from the running example gateway's /metrics. Wrong names must fail.
 * 3. The container command really starts: server.mjs with the manifest's probe/metrics paths answers, and stops
 *    on SIGTERM within the pod's grace period. Needs the built packages (`pnpm build`) and Redis.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ConfigMap, Namespace, Secret, Service } from 'kubernetes-models/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1';
import { createAmas } from '@amas/core';

const root = fileURLToPath(new URL('..', import.meta.url));
const deployDir = path.join(root, 'deploy');
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

// --------------------------------------------------------------------------------------------- manifests

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;
interface Validatable {
  validate(): void;
}
/** apiVersion/kind -> model class. A document of any other type fails: add its model here first. */
const MODELS: Record<string, new (data: never) => Validatable> = {
  'v1/Namespace': Namespace,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'keda.sh/v1alpha1/ScaledObject': ScaledObject,
};

interface Doc {
  file: string;
  obj: Obj;
}

function loadYaml(file: string): Doc[] {
  const text = readFileSync(path.join(deployDir, file), 'utf8');
  return parseAllDocuments(text).flatMap((doc, i) => {
    if (doc.errors.length > 0) throw new Error(`${file} document ${i + 1}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const obj = doc.toJS({ maxAliasCount: 0 }) as Obj | null;
    return obj === null ? [] : [{ file, obj }];
  });
}

/** Throws with the file, kind, name and the schema's complaint when the object is not valid. */
function validateObject(doc: Doc): void {
  const { apiVersion, kind, metadata } = doc.obj;
  const where = `${doc.file}: ${kind}/${metadata?.name}`;
  const Model = MODELS[`${apiVersion}/${kind}`];
  if (!Model) throw new Error(`${where}: no schema for apiVersion "${apiVersion}" kind "${kind}"`);
  try {
    new Model(structuredClone(doc.obj) as never).validate();
  } catch (error) {
    throw new Error(`${where}: ${(error as Error).message}`);
  }
}

const yamlFiles = readdirSync(deployDir).filter((f) => /\.ya?ml$/.test(f)).sort();
const docs = yamlFiles.flatMap(loadYaml);
const one = (kind: string, name?: string): Obj => {
  const found = docs.filter((d) => d.obj.kind === kind && (name === undefined || d.obj.metadata?.name === name));
  if (found.length !== 1) throw new Error(`expected exactly one ${kind}${name ? ` ${name}` : ''} in deploy/, found ${found.length}`);
  return found[0].obj;
};
const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);

describe('deploy/*.yaml: schema validation', () => {
  it('has the expected files and objects', () => {
    expect(yamlFiles).toEqual(expect.arrayContaining(['gateway-deployment.yaml', 'keda-scaledobject.yaml', 'hpa-fallback.yaml', 'pdb.yaml']));
    const kinds = docs.map((d) => d.obj.kind);
    expect(kinds).toEqual(expect.arrayContaining(['Deployment', 'Service', 'ScaledObject', 'HorizontalPodAutoscaler', 'PodDisruptionBudget']));
  });

  it.each(docs.map((d) => [`${d.file} ${d.obj.kind}/${d.obj.metadata?.name}`, d] as const))('%s is valid', (_label, doc) => {
    expect(() => validateObject(doc)).not.toThrow();
  });

  it('fails on broken copies (wrong field types, unknown kinds)', () => {
    // A wrong type anywhere: every object has metadata.name.
    for (const doc of docs) {
      const broken = structuredClone(doc.obj);
      broken.metadata.name = 42;
      expect(() => validateObject({ file: doc.file, obj: broken }), `${doc.obj.kind} with a numeric name`).toThrow(/metadata\/name must be string/);
    }
    const deployment = structuredClone(one('Deployment'));
    deployment.spec.template.spec.containers[0].ports[0].containerPort = '8787';
    expect(() => validateObject({ file: 'broken', obj: deployment })).toThrow(/containerPort must be integer/);
    const probe = structuredClone(one('Deployment'));
    probe.spec.template.spec.containers[0].readinessProbe.periodSeconds = 'often';
    expect(() => validateObject({ file: 'broken', obj: probe })).toThrow(/periodSeconds must be integer/);
    const scaled = structuredClone(one('ScaledObject'));
    scaled.spec.minReplicaCount = '2';
    expect(() => validateObject({ file: 'broken', obj: scaled })).toThrow(/minReplicaCount must be integer/);
    const threshold = structuredClone(one('ScaledObject'));
    threshold.spec.triggers[0].metadata.threshold = 50; // KEDA trigger metadata is a string map
    expect(() => validateObject({ file: 'broken', obj: threshold })).toThrow(/threshold must be string/);
    const hpa = structuredClone(one('HorizontalPodAutoscaler'));
    hpa.spec.maxReplicas = 'twenty';
    expect(() => validateObject({ file: 'broken', obj: hpa })).toThrow(/maxReplicas must be integer/);
    const pdb = structuredClone(one('PodDisruptionBudget'));
    pdb.spec.maxUnavailable = true;
    expect(() => validateObject({ file: 'broken', obj: pdb })).toThrow(/maxUnavailable/);
    expect(() => validateObject({ file: 'broken', obj: { apiVersion: 'apps/v1beta1', kind: 'Deployment', metadata: { name: 'x' } } })).toThrow(/no schema/);
  });
});

describe('deploy/*.yaml: the manifests agree with each other and with the gateway', () => {
  const deployment = one('Deployment', 'amas-gateway');
  const pod = deployment.spec.template;
  const container = pod.spec.containers[0];
  const configMaps = new Map(docs.filter((d) => d.obj.kind === 'ConfigMap').map((d) => [d.obj.metadata.name as string, d.obj]));
  /** An env var's value, following configMapKeyRef into ConfigMaps of deploy/ (undefined for Secrets). */
  const env = (name: string): string | undefined => {
    const entry = (container.env as Obj[]).find((e) => e.name === name);
    if (!entry) return undefined;
    if (entry.value !== undefined) return String(entry.value);
    const ref = entry.valueFrom?.configMapKeyRef;
    return ref ? configMaps.get(ref.name)?.data?.[ref.key] : undefined;
  };
  const httpPort = (container.ports as Obj[]).find((p) => p.name === 'http') as Obj;

  it('every namespaced object lives in the same namespace, which deploy/ creates', () => {
    const namespace = deployment.metadata.namespace;
    expect(namespace).toBeTruthy();
    for (const { obj } of docs.filter((d) => d.obj.kind !== 'Namespace')) expect(obj.metadata.namespace, `${obj.kind}/${obj.metadata.name}`).toBe(namespace);
    expect(one('Namespace').metadata.name).toBe(namespace);
  });

  it('runs the example gateway with the env it reads (listening on all interfaces, on the container port)', () => {
    expect(container.command.slice(0, 2)).toEqual(['node', 'examples/express-gateway/server.mjs']);
    expect(existsSync(path.join(root, container.command[1])), 'the command runs a file of the repository').toBe(true);
    expect(container.image).toMatch(/^amas\/express-gateway:/);
    expect(httpPort?.containerPort).toBeTypeOf('number');
    expect(Number(env('PORT'))).toBe(httpPort.containerPort);
    expect(env('HOST'), 'server.mjs listens on 127.0.0.1 unless HOST says otherwise').toBe('0.0.0.0');
    expect(env('PROVIDER_URL')).toMatch(/^https?:\/\//);
    const redis = (container.env as Obj[]).find((e) => e.name === 'REDIS_URL');
    expect(redis?.valueFrom?.secretKeyRef, 'REDIS_URL comes from a Secret').toBeTruthy();
  });

  it('has resources, probes on the http port, prometheus scraping and a locked-down security context', () => {
    for (const r of ['cpu', 'memory']) {
      expect(container.resources.requests[r], `requests.${r}`).toBeTruthy();
      expect(container.resources.limits[r], `limits.${r}`).toBeTruthy();
    }
    for (const probe of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
      expect(container[probe].httpGet.path, probe).toBe('/health');
      expect([httpPort.name, httpPort.containerPort], probe).toContain(container[probe].httpGet.port);
    }
    const annotations = pod.metadata.annotations;
    expect(annotations['prometheus.io/scrape']).toBe('true');
    expect(Number(annotations['prometheus.io/port'])).toBe(httpPort.containerPort);
    expect(annotations['prometheus.io/path']).toBe('/metrics');
    expect(pod.spec.securityContext.runAsNonRoot).toBe(true);
    expect(pod.spec.securityContext.runAsUser).toBeGreaterThan(0);
    expect(container.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    const tmp = (container.volumeMounts as Obj[]).find((m) => m.mountPath === '/tmp');
    expect((pod.spec.volumes as Obj[]).find((v) => v.name === tmp?.name)?.emptyDir, 'a writable /tmp').toBeTruthy();
    expect(pod.spec.topologySpreadConstraints.length).toBeGreaterThan(0);
    for (const c of pod.spec.topologySpreadConstraints) expect(matches(c.labelSelector.matchLabels, pod.metadata.labels)).toBe(true);
    expect(deployment.spec.replicas, 'replicas are the autoscaler\'s: a re-apply must not reset them').toBeUndefined();
  });

  it('Service and PodDisruptionBudget select the Deployment\'s pods; the Service targets the named port', () => {
    expect(matches(deployment.spec.selector.matchLabels, pod.metadata.labels)).toBe(true);
    const service = one('Service', 'amas-gateway');
    expect(matches(service.spec.selector, pod.metadata.labels)).toBe(true);
    for (const port of service.spec.ports) expect([httpPort.name, httpPort.containerPort]).toContain(port.targetPort);
    const pdb = one('PodDisruptionBudget');
    expect(pdb.spec.selector.matchLabels).toEqual(deployment.spec.selector.matchLabels);
  });

  it('ScaledObject and HPA scale the Deployment with the same bounds; KEDA\'s rules for fallback and cpu/memory hold', () => {
    const scaled = one('ScaledObject');
    const hpa = one('HorizontalPodAutoscaler');
    const target = { apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name };
    expect(scaled.spec.scaleTargetRef).toEqual(target);
    expect(hpa.spec.scaleTargetRef).toEqual(target);
    expect(hpa.spec.minReplicas).toBe(scaled.spec.minReplicaCount);
    expect(hpa.spec.maxReplicas).toBe(scaled.spec.maxReplicaCount);
    expect(scaled.spec.minReplicaCount).toBeGreaterThanOrEqual(2);
    expect(scaled.spec.maxReplicaCount).toBeGreaterThan(scaled.spec.minReplicaCount);
    const behavior = scaled.spec.advanced.horizontalPodAutoscalerConfig.behavior;
    for (const b of [behavior, hpa.spec.behavior]) {
      expect(b.scaleUp.policies.length).toBeGreaterThan(0);
      expect(b.scaleDown.policies.length).toBeGreaterThan(0);
      expect(b.scaleDown.stabilizationWindowSeconds).toBeGreaterThan(b.scaleUp.stabilizationWindowSeconds);
    }
    expect(scaled.spec.fallback.replicas).toBeGreaterThanOrEqual(scaled.spec.minReplicaCount);
    expect(scaled.spec.fallback.replicas).toBeLessThanOrEqual(scaled.spec.maxReplicaCount);
    const triggers = scaled.spec.triggers as Obj[];
    // KEDA's webhook: fallback needs at least one non-cpu/memory trigger with metricType AverageValue spelled out.
    expect(triggers.some((t) => !['cpu', 'memory'].includes(t.type) && t.metricType === 'AverageValue')).toBe(true);
    // KEDA's webhook: cpu/memory triggers need the matching container requests.
    for (const t of triggers.filter((t) => ['cpu', 'memory'].includes(t.type))) {
      expect(container.resources.requests[t.type], `${t.type} trigger`).toBeTruthy();
      expect(t.metricType).toBe('Utilization');
      expect(Number(t.metadata.value)).toBeGreaterThan(0);
    }
    const prometheus = triggers.filter((t) => t.type === 'prometheus');
    expect(prometheus.length).toBeGreaterThanOrEqual(3);
    for (const t of prometheus) {
      expect(t.metadata.serverAddress).toMatch(/^https?:\/\//);
      expect(Number(t.metadata.threshold), `${t.name} threshold`).toBeGreaterThan(0);
      expect(t.metadata.query, `${t.name} is scoped to the gateway's namespace`).toContain(`namespace="${deployment.metadata.namespace}"`);
    }
  });
});

// --------------------------------------------------------------------------------------------- PromQL names

const FUNCTIONS = new Set(
  (
    'abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes clamp clamp_max clamp_min cos cosh ' +
    'count_over_time day_of_month day_of_week day_of_year days_in_month deg delta deriv double_exponential_smoothing exp floor ' +
    'histogram_avg histogram_count histogram_fraction histogram_quantile histogram_stddev histogram_stdvar histogram_sum ' +
    'holt_winters hour idelta increase info irate label_join label_replace last_over_time ln log10 log2 mad_over_time ' +
    'max_over_time min_over_time minute month pi predict_linear present_over_time quantile_over_time rad rate resets round ' +
    'scalar sgn sin sinh sort sort_by_label sort_by_label_desc sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time ' +
    'tan tanh time timestamp vector year start end ' +
    // aggregation operators
    'sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio'
  ).split(' '),
);
const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'inf', 'nan']);

/**
 * The metric names an expression selects: every identifier outside strings, label matchers, ranges and
 * grouping lists that is not a function, aggregation or keyword. (Identifiers followed by `{`, `[`, `(` AND bare
 * ones such as `sum(amas_ai_endpoint_outstanding)`.) An unknown function is an error, not a metric.
 */
function metricNamesIn(expr: string): string[] {
  let s = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""'); // string literals
  s = s.replace(/\{[^}]*\}/g, ' {} '); // label matchers
  s = s.replace(/\[[^\]]*\]/g, ' [] '); // ranges and subqueries (durations, $__rate_interval)
  s = s.replace(/\$\{[^}]*\}|\$[A-Za-z_]\w*/g, ' '); // Grafana variables outside strings
  s = s.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' '); // label lists
  const names: string[] = [];
  for (const m of s.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const before = s[m.index - 1];
    if (before !== undefined && /[0-9.]/.test(before)) continue; // 1e3, 0.95
    const token = m[0];
    const next = s.slice(m.index + token.length).trimStart()[0];
    if (KEYWORDS.has(token.toLowerCase())) continue;
    if (next === '(') {
      if (!FUNCTIONS.has(token)) throw new Error(`unknown PromQL function "${token}" in ${expr}`);
      continue;
    }
    names.push(token);
  }
  return [...new Set(names)];
}

/** Known metric names and types (counter, gauge, histogram, summary). */
type Registered = Map<string, string>;

/** Names in `expr` that the code does not export; `_bucket/_sum/_count` count only for histograms/summaries. */
function unknownMetrics(expr: string, registered: Registered): string[] {
  const names = metricNamesIn(expr);
  if (names.length === 0) return [`(no metric in "${expr}")`];
  return names.filter((name) => {
    if (registered.has(name)) return false;
    const base = /^(.*)_(bucket|sum|count)$/.exec(name);
    const type = base ? registered.get(base[1]) : undefined;
    return !(type === 'histogram' || (type === 'summary' && base?.[2] !== 'bucket'));
  });
}

/** Every PromQL expression of a dashboard: panel targets (nested rows too) and query variables. */
function dashboardExpressions(dashboard: Obj): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  const visit = (panels: Obj[] = []) => {
    for (const p of panels) {
      for (const t of p.targets ?? []) out.push({ where: `panel "${p.title}" ${t.refId}`, expr: t.expr });
      visit(p.panels);
    }
  };
  visit(dashboard.panels);
  for (const v of dashboard.templating?.list ?? []) {
    if (v.type !== 'query') continue;
    const query: string = typeof v.query === 'string' ? v.query : v.query?.query;
    const labelValues = /^\s*label_values\((.*),\s*[A-Za-z_]\w*\s*\)\s*$/.exec(query);
    out.push({ where: `variable $${v.name}`, expr: labelValues ? labelValues[1] : query });
  }
  return out;
}

const scaledObjectQueries = (scaled: Obj) =>
  (scaled.spec.triggers as Obj[]).filter((t) => t.type === 'prometheus').map((t) => ({ where: `trigger ${t.name}`, expr: t.metadata.query as string }));

function problems(list: { where: string; expr: string }[], registered: Registered): string[] {
  return list.flatMap(({ where, expr }) => {
    try {
      return unknownMetrics(expr, registered).map((name) => `${where}: ${name}`);
    } catch (error) {
      return [`${where}: ${(error as Error).message}`];
    }
  });
}

// --------------------------------------------------------------------------------------------- the gateway process

interface Gateway {
  child: ChildProcess;
  url: string;
  output: () => string;
}

async function startGateway(): Promise<Gateway> {
  // The container's command, with the test's loopback host and a free port; no PROVIDER_URL: server.mjs starts
  // its in-process mock provider.
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: '0', HOST: '127.0.0.1', REDIS_URL };
  delete env.PROVIDER_URL;
  delete env.PROVIDER_API_KEY;
  const child = spawn(process.execPath, ['examples/express-gateway/server.mjs'], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server.mjs did not report its URL in 15 s:\n${out}`)), 15_000);
    const check = () => {
      const m = /listening on (http:\/\/[^\s]+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server.mjs exited with ${code} before listening (built packages missing? run pnpm build):\n${out}`));
    });
  });
  return { child, url, output: () => out };
}

// --------------------------------------------------------------------------------------------- metric names

describe('deploy/: every metric name used exists in the code', () => {
  const registered: Registered = new Map();
  let gateway: Gateway | undefined;
  let gatewayExit: Promise<unknown> | undefined;
  const dashboard = JSON.parse(readFileSync(path.join(deployDir, 'grafana-dashboard.json'), 'utf8')) as Obj;
  const scaled = one('ScaledObject');

  beforeAll(async () => {
    // One engine with every optional component that registers metrics.
    const amas = createAmas({
      cache: {},
      redis: REDIS_URL,
      ai: { models: { 'gpt-4o-mini': { endpoints: [{ url: 'http://127.0.0.1:9' }] } } },
    });
    try {
      void amas.cache;
      amas.semanticCache({
        embedder: { name: 'fake', dimensions: 4, embed: async (t: readonly string[]) => t.map(() => new Float32Array([1, 0, 0, 0])), close: async () => {} },
      });
      for (const m of await amas.registry.getMetricsAsJSON()) registered.set(m.name, String(m.type));
    } finally {
      await amas.close();
    }
    // The example gateway as the Deployment runs it: what its /metrics serves counts too.
    gateway = await startGateway();
    gatewayExit = once(gateway.child, 'exit');
    const text = await (await fetch(`${gateway.url}/metrics`)).text();
    for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) if (!registered.has(m[1])) registered.set(m[1], m[2]);
  }, 40_000);

  afterAll(async () => {
    if (gateway && gateway.child.exitCode === null) {
      gateway.child.kill('SIGKILL');
      await gatewayExit;
    }
  });

  it('collects the engine\'s metrics (response cache, semantic cache, AI layer, Redis store, HTTP)', () => {
    for (const name of [
      'amas_http_requests_total',
      'amas_http_request_duration_seconds',
      'amas_http_cache_total',
      'amas_cache_requests_total',
      'amas_semantic_cache_lookups_total',
      'amas_semantic_cache_vetoed_total',
      'amas_breaker_state',
      'amas_ai_endpoint_outstanding',
      'amas_ai_tokens_total',
      'amas_ai_cost_usd_total',
      'amas_store_up',
    ]) {
      expect(registered.has(name), name).toBe(true);
    }
    expect(registered.get('amas_http_request_duration_seconds')).toBe('histogram');
  });

  it('the PromQL name extraction finds bare, selected, ranged and histogram names, and skips the rest', () => {
    expect(
      metricNamesIn(
        'histogram_quantile(0.95, sum by (le, route) (rate(amas_http_request_duration_seconds_bucket{namespace=~"$namespace", route!~"/health|/metrics"}[$__rate_interval])))',
      ),
    ).toEqual(['amas_http_request_duration_seconds_bucket']);
    expect(metricNamesIn('sum(amas_ai_endpoint_outstanding)')).toEqual(['amas_ai_endpoint_outstanding']);
    expect(metricNamesIn('sum(rate(a_total[1m])) / count(count by (instance) (b)) > bool 1e3 or vector(0)')).toEqual(['a_total', 'b']);
    expect(metricNamesIn('sum(rate(x{le="0.5", job=~"a|b"}[5m] offset 1h)) without (pod)')).toEqual(['x']);
    expect(() => metricNamesIn('summ(rate(x[1m]))')).toThrow(/unknown PromQL function "summ"/);
  });

  it('a wrong metric name fails the check (typos, a _bucket of a counter, a bare unknown name)', () => {
    expect(unknownMetrics('sum(rate(amas_http_requestz_total[1m]))', registered)).toEqual(['amas_http_requestz_total']);
    expect(unknownMetrics('sum(rate(amas_http_requests_total_bucket[1m])) by (le)', registered)).toEqual(['amas_http_requests_total_bucket']);
    expect(unknownMetrics('sum(amas_ai_endpoint_pending)', registered)).toEqual(['amas_ai_endpoint_pending']);
    expect(unknownMetrics('vector(1)', registered)).toHaveLength(1);
    expect(unknownMetrics('sum(rate(amas_http_request_duration_seconds_count[1m]))', registered)).toEqual([]);

    const brokenDashboard = structuredClone(dashboard);
    const target = brokenDashboard.panels.find((p: Obj) => p.targets?.length)!.targets[0];
    target.expr = target.expr.replace(/amas_[a-z_]+/, 'amas_http_requests_totl');
    expect(problems(dashboardExpressions(brokenDashboard), registered)).toEqual([expect.stringContaining('amas_http_requests_totl')]);
    const brokenScaled = structuredClone(scaled);
    brokenScaled.spec.triggers[0].metadata.query = 'sum(rate(amas_http_request_total{namespace="amas"}[1m]))';
    expect(problems(scaledObjectQueries(brokenScaled), registered)).toEqual([expect.stringContaining('amas_http_request_total')]);
  });

  it('grafana-dashboard.json uses only exported metric names, through the ${datasource} variable', () => {
    const list = dashboardExpressions(dashboard);
    expect(list.length).toBeGreaterThan(40);
    expect(problems(list, registered)).toEqual([]);

    const variable = (dashboard.templating.list as Obj[]).find((v) => v.name === 'datasource');
    expect(variable).toMatchObject({ type: 'datasource', query: 'prometheus' });
    const ids = new Set<number>();
    const visit = (panels: Obj[] = []) => {
      for (const p of panels) {
        expect(ids.has(p.id), `duplicate panel id ${p.id}`).toBe(false);
        ids.add(p.id);
        expect(p.gridPos.x + p.gridPos.w, `panel "${p.title}" fits the 24-column grid`).toBeLessThanOrEqual(24);
        if (p.type !== 'row') {
          expect(p.targets?.length, `panel "${p.title}" has queries`).toBeGreaterThan(0);
          expect(p.datasource?.uid, `panel "${p.title}"`).toBe('${datasource}');
          for (const t of p.targets) expect(t.datasource?.uid, `panel "${p.title}" ${t.refId}`).toBe('${datasource}');
        }
        visit(p.panels);
      }
    };
    visit(dashboard.panels);

    // The areas the dashboard must cover.
    const used = new Set(list.flatMap(({ expr }) => metricNamesIn(expr)).map((n) => n.replace(/_(bucket|sum|count)$/, '')));
    for (const name of [
      'amas_http_requests_total',
      'amas_http_request_duration_seconds',
      'amas_http_cache_total',
      'amas_cache_requests_total',
      'amas_semantic_cache_lookups_total',
      'amas_semantic_cache_vetoed_total',
      'amas_breaker_state',
      'amas_ratelimit_decisions_total',
      'amas_dedup_shared_total',
      'amas_ai_requests_total',
      'amas_ai_endpoint_ejections_total',
      'amas_ai_endpoint_outstanding',
      'amas_ai_tokens_total',
      'amas_ai_cost_usd_total',
      'amas_store_up',
    ]) {
      expect(used.has(name), `dashboard shows ${name}`).toBe(true);
    }
  });

  it('the ScaledObject\'s Prometheus queries use only exported metric names', () => {
    const list = scaledObjectQueries(scaled);
    expect(list.map((q) => metricNamesIn(q.expr)).flat()).toEqual(
      expect.arrayContaining(['amas_http_requests_total', 'amas_ai_endpoint_outstanding', 'amas_http_request_duration_seconds_bucket']),
    );
    expect(problems(list, registered)).toEqual([]);
  });

  it('the gateway answers the Deployment\'s probe and scrape paths, and stops on SIGTERM within the grace period', async () => {
    const deployment = one('Deployment', 'amas-gateway');
    const pod = deployment.spec.template;
    const container = pod.spec.containers[0];
    const g = gateway!;
    for (const probe of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
      const res = await fetch(`${g.url}${container[probe].httpGet.path}`);
      expect(res.status, probe).toBe(200);
      await res.arrayBuffer();
    }
    const metrics = await fetch(`${g.url}${pod.metadata.annotations['prometheus.io/path']}`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await metrics.text()).toMatch(/^amas_http_requests_total\{[^}]*route="\/health"/m);

    const started = Date.now();
    g.child.kill('SIGTERM');
    const budgetMs = Math.min(15_000, (pod.spec.terminationGracePeriodSeconds ?? 30) * 1000);
    const exited = await Promise.race([gatewayExit!.then(() => true), new Promise((r) => setTimeout(() => r(false), budgetMs))]);
    expect(exited, `server.mjs still running ${budgetMs} ms after SIGTERM:\n${g.output()}`).toBe(true);
    expect(Date.now() - started).toBeLessThan(budgetMs);
  }, 30_000);
});
