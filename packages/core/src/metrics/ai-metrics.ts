import { Counter, Histogram, type Registry } from 'prom-client';
import { registerCollected, type Sample } from './collected-metric.js';
import type { AiService } from '../ai/ai-service.js';

type RouterStats = ReturnType<AiService['router']['stats']>;
type ClientStats = NonNullable<ReturnType<NonNullable<AiService['client']>['stats']>>;
type CostStats = ReturnType<AiService['costs']['stats']>;

/** What a watched service allows as label values (all from its configuration), and its listeners. */
interface Watched {
  models: Set<string>;
  providers: Set<string>;
  /** `scheme://host:port` of the configured endpoints: the pool label values. */
  origins: Set<string>;
  /** Configured endpoint ids: the endpoint label values. */
  endpoints: Set<string>;
  detach: Array<() => void>;
}

/** Label value for anything outside the configured set (a model or provider given to `trackRequest` directly). */
const OTHER = 'other';

/**
 * The AI provider layer's metrics. Counters the components keep anyway are read from their `stats()` when
 * scraped (nothing added to a call); what only events carry (fallback targets, retries, tokens and dollars by
 * model, budget refusals and alerts) is counted from the router's and the cost tracker's events.
 *
 * Every label value comes from configuration: model group names, endpoint ids (never credentials: an id is
 * `<provider>:<origin><path>` or what the user chose), providers, pool origins (`scheme://host:port`). User and
 * team ids are never labels. A model or provider a record names that is not configured is reported as `other`.
 *
 * Endpoint (per attempt, from router stats):
 *   amas_ai_requests_total{model,endpoint,outcome}      counter  outcome: success | error
 *   amas_ai_endpoint_outstanding{model,endpoint}        gauge    upstream calls in flight (the scaling signal)
 *   amas_ai_endpoint_up{model,endpoint}                 gauge    1: healthy and not ejected
 *   amas_ai_endpoint_ejections_total{model,endpoint}    counter
 *   amas_ai_endpoint_latency_ewma_seconds{model,endpoint} gauge  the balancer's latency average (no per-call
 *                                                               latency is exposed by the router, so no histogram)
 * Model group (per routed call, after retries):
 *   amas_ai_model_requests_total{model,outcome}         counter  outcome: success | error
 *   amas_ai_fallbacks_total{from,to}                    counter  event `fallback`
 *   amas_ai_retries_total{model}                        counter  event `retry`
 * Client pools (undici; absent with a custom transport):
 *   amas_ai_pool_connections{origin,state}              gauge    state: connected | free | pending | running
 *   amas_ai_pool_requests_total{origin,outcome}         counter  outcome: success | http_error | network | timeout | aborted
 * Cost:
 *   amas_ai_tokens_total{provider,model,type}           counter  type: input (not cached) | cached | output; event `record`
 *   amas_ai_cost_usd_total{provider,model}              counter  event `record`
 *   amas_ai_cost_saved_usd_total{provider,model}        counter  answers served from a cache; event `record`
 *   amas_ai_unpriced_requests_total                     counter  calls counted at $0 (no price known)
 *   amas_ai_budget_rejections_total{scope}              counter  scope: user | team; event `budgetExceeded`
 *   amas_ai_budget_alerts_total{share}                  counter  event `budgetAlert`
 *   amas_ai_budget_store_failures_total                 counter  budget store calls that failed (degraded)
 *   amas_ai_usage_records_pending                       gauge
 *   amas_ai_usage_records_dropped_total                 counter  dropped: too many pending
 *   amas_ai_usage_records_lost_total                    counter  not written before close gave up
 *   amas_ai_usage_records_write_failures_total          counter  failed writes (records kept and retried)
 */
export class AiMetrics {
  private readonly services = new Map<AiService, Watched>();
  private readonly names: string[] = [];
  readonly fallbacks: Counter<'from' | 'to'>;
  readonly retries: Counter<'model'>;
  readonly tokens: Counter<'provider' | 'model' | 'type'>;
  readonly cost: Counter<'provider' | 'model'>;
  readonly savedCost: Counter<'provider' | 'model'>;
  readonly budgetRejections: Counter<'scope'>;
  readonly budgetAlerts: Counter<'share'>;
  readonly attempts: Counter<'model' | 'endpoint' | 'outcome'>;
  readonly duration: Histogram<'model' | 'endpoint'>;

  /** amas_user_ai_cost_usd_total{user}, only when the engine's `metrics.userLabels` is on. */
  readonly userCost: Counter<'user'> | undefined;

  constructor(
    private readonly registry: Registry,
    prefix: string,
    /** The capped user label (AmasMetrics.userLabel) when per-caller series are on. */
    private readonly userLabel?: (user: string) => string,
  ) {
    const p = `${prefix}ai_`;
    const routers = (fn: (stats: RouterStats, w: Watched) => Sample[]) => this.summed((s, w) => fn(s.router.stats(), w));
    const endpoints = (fn: (model: string, e: RouterStats[string]['endpoints'][number]) => Sample[]) =>
      routers((stats) => Object.values(stats).flatMap((m) => m.endpoints.flatMap((e) => fn(m.model, e))));
    const pools = (fn: (origin: string, o: ClientStats[string]) => Sample[]) =>
      this.summed((s, w) => Object.values(s.client?.stats() ?? {}).flatMap((o) => fn(w.origins.has(o.origin) ? o.origin : OTHER, o)));
    const costs = (fn: (stats: CostStats) => Sample[]) => this.summed((s) => fn(s.costs.stats()));

    this.collect(`${p}requests_total`, 'counter', 'Upstream calls (attempts) to AI endpoints by outcome (success, error); a stream that broke after its first byte counts in both', endpoints((model, e) => [
      { labels: { model, endpoint: e.id, outcome: 'success' }, value: e.successes },
      { labels: { model, endpoint: e.id, outcome: 'error' }, value: e.errors },
    ]));
    this.collect(`${p}endpoint_outstanding`, 'gauge', 'Upstream calls in flight per AI endpoint', endpoints((model, e) => [{ labels: { model, endpoint: e.id }, value: e.outstanding }]));
    this.collect(`${p}endpoint_up`, 'gauge', 'Whether an AI endpoint takes calls: 1 when healthy and not ejected (its breaker is amas_breaker_state)', endpoints((model, e) => [
      { labels: { model, endpoint: e.id }, value: e.healthy && !e.ejected ? 1 : 0 },
    ]));
    this.collect(`${p}endpoint_ejections_total`, 'counter', 'Times outlier detection ejected an AI endpoint', endpoints((model, e) => [{ labels: { model, endpoint: e.id }, value: e.ejections }]));
    this.collect(`${p}endpoint_latency_ewma_seconds`, 'gauge', 'Moving average of an AI endpoint\'s latency, as the balancer sees it (failures penalized)', endpoints((model, e) =>
      e.ewmaMs === undefined ? [] : [{ labels: { model, endpoint: e.id }, value: e.ewmaMs / 1000 }],
    ));
    this.collect(`${p}model_requests_total`, 'counter', 'Calls routed to a model group (as asked or as a fallback) by outcome after its retries (success, error)', routers((stats) =>
      Object.values(stats).flatMap((m) => [
        { labels: { model: m.model, outcome: 'success' }, value: m.successes },
        { labels: { model: m.model, outcome: 'error' }, value: m.failures },
      ]),
    ));
    this.collect(`${p}pool_connections`, 'gauge', 'Provider client pool by origin: connections (connected, free) and requests (pending, running)', pools((origin, o) => [
      { labels: { origin, state: 'connected' }, value: o.connected },
      { labels: { origin, state: 'free' }, value: o.free },
      { labels: { origin, state: 'pending' }, value: o.pending },
      { labels: { origin, state: 'running' }, value: o.running },
    ]));
    this.collect(`${p}pool_requests_total`, 'counter', 'Provider client calls by origin and outcome (success, http_error, network, timeout, aborted)', pools((origin, o) => [
      { labels: { origin, outcome: 'success' }, value: o.succeeded },
      { labels: { origin, outcome: 'http_error' }, value: Math.max(0, o.errors - o.networkErrors - o.timeouts) },
      { labels: { origin, outcome: 'network' }, value: o.networkErrors },
      { labels: { origin, outcome: 'timeout' }, value: o.timeouts },
      { labels: { origin, outcome: 'aborted' }, value: o.aborted },
    ]));
    this.collect(`${p}unpriced_requests_total`, 'counter', 'AI calls counted at $0 because no price is known for their model', costs((c) => [{ labels: {}, value: c.unpriced }]));
    this.collect(`${p}budget_store_failures_total`, 'counter', 'Budget store calls that failed (calls go on per onStoreFailure; the records keep the spend)', costs((c) =>
      c.budgets === undefined ? [] : [{ labels: {}, value: c.budgets.storeFailures }],
    ));
    this.collect(`${p}usage_records_pending`, 'gauge', 'Usage records waiting to be written', costs((c) => [{ labels: {}, value: c.records.pending }]));
    this.collect(`${p}usage_records_dropped_total`, 'counter', 'Usage records dropped because too many were waiting', costs((c) => [{ labels: {}, value: c.records.dropped }]));
    this.collect(`${p}usage_records_lost_total`, 'counter', 'Usage records that could not be written before close gave up', costs((c) => [{ labels: {}, value: c.records.lost }]));
    this.collect(`${p}usage_records_write_failures_total`, 'counter', 'Usage record writes that failed (their records are kept and retried)', costs((c) => [{ labels: {}, value: c.records.failedFlushes }]));

    const registers = [registry];
    this.fallbacks = this.counter(new Counter({ name: `${p}fallbacks_total`, help: 'AI calls moved on to a fallback model after their model group was exhausted', labelNames: ['from', 'to'], registers }));
    this.retries = this.counter(new Counter({ name: `${p}retries_total`, help: 'Retries of failed AI upstream calls within a model group', labelNames: ['model'], registers }));
    this.tokens = this.counter(
      new Counter({ name: `${p}tokens_total`, help: 'Tokens billed by providers: type input (not served from the prompt cache), cached (input served from it), output', labelNames: ['provider', 'model', 'type'], registers }),
    );
    this.cost = this.counter(new Counter({ name: `${p}cost_usd_total`, help: 'Dollars spent on AI calls (price table)', labelNames: ['provider', 'model'], registers }));
    this.savedCost = this.counter(new Counter({ name: `${p}cost_saved_usd_total`, help: 'Dollars AI answers served from a cache would have cost', labelNames: ['provider', 'model'], registers }));
    this.budgetRejections = this.counter(new Counter({ name: `${p}budget_rejections_total`, help: 'AI calls refused before any upstream call because a budget was exhausted, by budget scope (user, team)', labelNames: ['scope'], registers }));
    this.attempts = this.counter(
      new Counter({ name: `${p}attempts_total`, help: 'AI upstream calls (each retry and fallback counted) by outcome: success, client_error, rate_limited, server_error, network, timeout, aborted, other', labelNames: ['model', 'endpoint', 'outcome'], registers }),
    );
    this.duration = this.counter(
      new Histogram<'model' | 'endpoint'>({
        name: `${p}request_duration_seconds`,
        help: 'Duration of AI upstream calls (streams: to the first byte), by model and endpoint',
        labelNames: ['model', 'endpoint'],
        // LLM calls run from tens of milliseconds (embeddings, cached prompts) to minutes (long generations).
        buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120],
        registers,
      }),
    );
    this.userCost = userLabel === undefined ? undefined : this.counter(new Counter({ name: `${prefix}user_ai_cost_usd_total`, help: 'Dollars spent on AI calls by caller (first metrics.userLabels.max callers; the rest as "other")', labelNames: ['user'], registers }));
    this.budgetAlerts = this.counter(new Counter({ name: `${p}budget_alerts_total`, help: 'Times spend crossed a configured share of a budget (first time in its period)', labelNames: ['share'], registers }));
  }

  /** Exports `service`'s metrics until unwatch() or unregister(). Watching the same service twice is a no-op. */
  watch(service: AiService): void {
    if (this.services.has(service)) return;
    const stats = service.router.stats();
    const w: Watched = { models: new Set(), providers: new Set(), origins: new Set(), endpoints: new Set(), detach: [] };
    for (const m of Object.values(stats)) {
      w.models.add(m.model);
      for (const e of m.endpoints) {
        w.providers.add(e.provider);
        w.endpoints.add(e.id);
        const origin = originOf(e.url);
        if (origin !== undefined) w.origins.add(origin);
      }
    }
    // Known series start at 0, so the first increment shows in rate() and increase().
    for (const m of Object.values(stats)) {
      this.retries.inc({ model: m.model }, 0);
      for (const provider of new Set(m.endpoints.map((e) => e.provider))) {
        for (const type of ['input', 'cached', 'output']) this.tokens.inc({ provider, model: m.model, type }, 0);
        this.cost.inc({ provider, model: m.model }, 0);
      }
    }
    if (service.costs.budgets !== undefined) for (const scope of ['user', 'team']) this.budgetRejections.inc({ scope }, 0);

    const model = (name: string): string => (w.models.has(name) ? name : OTHER);
    w.detach.push(
      service.router.on('fallback', (e) => this.fallbacks.inc({ from: model(e.from), to: model(e.to) })),
      service.router.on('retry', (e) => this.retries.inc({ model: model(e.model) })),
      service.router.on('attempt', (e) => {
        const labels = { model: model(e.model), endpoint: w.endpoints.has(e.endpoint) ? e.endpoint : OTHER };
        this.attempts.inc({ ...labels, outcome: e.outcome });
        if (e.outcome !== 'aborted') this.duration.observe(labels, e.latencyMs / 1000);
      }),
      service.costs.on('record', (r) => {
        // A failed call bills nothing (and names the model the caller asked for, which may be anything).
        if (r.status !== 'ok') return;
        const labels = { provider: w.providers.has(r.provider) ? r.provider : OTHER, model: model(r.model) };
        if (r.cached) {
          if (r.savedCost !== undefined && r.savedCost > 0) this.savedCost.inc(labels, r.savedCost);
          return;
        }
        const cached = Math.min(r.cachedInputTokens, r.inputTokens);
        if (r.inputTokens - cached > 0) this.tokens.inc({ ...labels, type: 'input' }, r.inputTokens - cached);
        if (cached > 0) this.tokens.inc({ ...labels, type: 'cached' }, cached);
        if (r.outputTokens > 0) this.tokens.inc({ ...labels, type: 'output' }, r.outputTokens);
        if (r.cost > 0) this.cost.inc(labels, r.cost);
        if (r.cost > 0 && this.userCost !== undefined) this.userCost.inc({ user: this.userLabel!(r.user) }, r.cost);
      }),
      service.costs.on('budgetExceeded', (e) => this.budgetRejections.inc({ scope: e.scope })),
      service.costs.on('budgetAlert', (a) => this.budgetAlerts.inc({ share: String(a.share) })),
    );
    this.services.set(service, w);
  }

  /** Stops exporting `service` (what its events counted stays). */
  unwatch(service: AiService): void {
    const w = this.services.get(service);
    if (w === undefined) return;
    for (const off of w.detach.splice(0)) off();
    this.services.delete(service);
  }

  /** Detaches from every watched service (metrics stay registered). */
  detach(): void {
    for (const service of [...this.services.keys()]) this.unwatch(service);
  }

  /** Detaches and removes every metric from the registry. */
  unregister(): void {
    this.detach();
    for (const name of this.names.splice(0)) this.registry.removeSingleMetric(name);
  }

  /** Samples of every watched service, summed where two give the same label set (a scrape never repeats one). */
  private summed(fn: (service: AiService, w: Watched) => Sample[]): () => Sample[] {
    return () => {
      const out = new Map<string, Sample>();
      for (const [service, w] of this.services) {
        for (const sample of fn(service, w)) {
          const key = JSON.stringify(sample.labels);
          const seen = out.get(key);
          if (seen === undefined) out.set(key, { ...sample });
          else seen.value += sample.value;
        }
      }
      return [...out.values()];
    };
  }

  private collect(name: string, type: 'gauge' | 'counter', help: string, values: () => Sample[]): void {
    this.names.push(registerCollected(this.registry, name, type, help, values));
  }

  /** Remembers a metric created with `registers` (so unregister() removes it). */
  private counter<T extends Counter<string> | Histogram<string>>(metric: T): T {
    this.names.push((metric as unknown as { name: string }).name);
    return metric;
  }
}

function originOf(url: string): string | undefined {
  try {
    return new URL(url).origin;
  } catch {
    return undefined;
  }
}
