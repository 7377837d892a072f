/**
 * The AMAS gateway demo: a mock OpenAI-compatible provider and the gateway, in-process on loopback ports,
 * driven through a short scripted run. Prints what happened and checks it; `--json` prints the report as JSON.
 * Exit code 0 when every check passes.
 *
 *   pnpm demo            (from the repository root: builds, then runs this file)
 *   node examples/express-gateway/demo.mjs --json
 */
import { realpathSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { startMockProvider } from '@amas/loadtest';
import { breakerName, createGateway } from './gateway.mjs';

/** The scripted run's settings; small numbers so the whole run takes a few seconds. */
export const DEMO = Object.freeze({
  users: ['alice', 'bob', 'carol'],
  greedyUser: 'mallory',
  limit: { limit: 32, window: '30s' },
  breaker: { failureThreshold: 3, recoveryTimeoutMs: 1000 },
  retry: { maxAttempts: 2, baseDelayMs: 20, maxDelayMs: 50, maxRetryAfterMs: 200 },
  timeoutMs: 3000,
  providerLatencyMs: 60,
  burstSize: 8,
  burstProviderLatencyMs: 300,
  greedyRequests: 45,
  outageRequests: 9,
  cacheRepeats: 3,
  /** Asked first, then reworded (answered from the semantic cache), then changed in one detail (it must not be). */
  /** dave's daily budget (USD): a short answer fits, one asking for 4000 tokens does not. */
  budget: { user: 'dave', day: 0.0015, smallMaxTokens: 100, bigMaxTokens: 4000 },
  semantic: {
    question: 'How do I reverse a list in Python?',
    paraphrases: ['In Python, how can a list be reversed?', 'How can I reverse a Python list?'],
    nearMiss: 'How do I reverse a list in JavaScript?',
  },
});

const MODEL = 'gpt-4o-mini';
/** The breaker of the chat model's provider endpoint (one per model and endpoint). */
const CHAT_BREAKER = breakerName(MODEL);
const chatBody = (prompt, extra = {}) => ({ model: MODEL, messages: [{ role: 'user', content: prompt }], ...extra });

export async function runDemo() {
  const redisPrefix = process.env.REDIS_URL ? `amas-demo:${process.pid}-${Date.now().toString(36)}:` : undefined;
  const warnings = [];
  const logger = { warn: (m) => warnings.push(String(m)), error: (m, e) => warnings.push(`${m}${e ? `: ${e?.message ?? e}` : ''}`) };
  const mock = await startMockProvider({ latencyMs: DEMO.providerLatencyMs, chunkDelayMs: 2, seed: 7 });
  const gateway = createGateway({
    providerUrl: mock.url,
    logger,
    // In memory by default; with REDIS_URL the engine's state (limits, caches, budgets, records) is in Redis,
    // under a prefix of this run's own (removed at the end), so runs never see each other's limits or caches.
    amas: { limits: { 'per-user': DEMO.limit }, breakers: { provider: DEMO.breaker }, ...(redisPrefix ? { redis: { url: process.env.REDIS_URL, prefix: redisPrefix } } : {}) },
    budgets: { users: { [DEMO.budget.user]: { day: DEMO.budget.day } } },
    retry: DEMO.retry,
    timeoutMs: DEMO.timeoutMs,
  });
  // The embedding model loads here, not on the first semantic request (about a second).
  await gateway.amas.semantic.warmUp();
  const t0 = performance.now();
  const since = () => Math.round(performance.now() - t0);
  const transitions = [];
  let phase = 'setup';
  gateway.amas.breakers.on('stateChange', (e) => {
    if (e.name === CHAT_BREAKER) transitions.push({ atMs: since(), from: e.from, to: e.to, reason: e.reason, phase });
  });

  try {
    const url = await gateway.listen();
    const results = [];
    const phases = [];

    const request = async (user, path, body) => {
      const res = await fetch(url + path, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${user}` },
        body: JSON.stringify(body),
      });
      const text = await res.text();
      const record = {
        phase,
        user,
        path,
        status: res.status,
        code: undefined,
        dedup: res.headers.get('x-amas-dedup'),
        cache: res.headers.get('x-cache'),
        similarity: res.headers.get('x-amas-semantic-score'),
        attempts: Number(res.headers.get('x-amas-attempts') ?? 0),
        cost: res.headers.get('x-amas-cost') === null ? undefined : Number(res.headers.get('x-amas-cost')),
        retryAfter: res.headers.get('retry-after'),
        rateLimit: res.headers.get('ratelimit'),
        stream: body.stream === true,
        content: undefined,
        chunks: 0,
      };
      if (record.stream && res.status === 200) {
        // Reassemble the SSE stream the way an OpenAI client would.
        let content = '';
        for (const line of text.split('\n')) {
          if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
          record.chunks++;
          content += JSON.parse(line.slice(6)).choices?.[0]?.delta?.content ?? '';
        }
        record.content = content;
      } else {
        try {
          const json = JSON.parse(text);
          record.code = json.error?.code ?? undefined;
          record.content = json.choices?.[0]?.message?.content;
        } catch {
          record.code = 'unparseable';
        }
      }
      record.outcome = outcomeOf(record);
      results.push(record);
      return record;
    };
    const chat = (user, prompt, extra) => request(user, '/v1/chat/completions', chatBody(prompt, extra));

    const runPhase = async (name, fn) => {
      phase = name;
      const before = mock.stats();
      const firstIndex = results.length;
      const startedAt = since();
      await fn();
      const after = mock.stats();
      const own = results.slice(firstIndex);
      phases.push({
        name,
        startedAtMs: startedAt,
        durationMs: since() - startedAt,
        clientRequests: own.length,
        byOutcome: countBy(own, (r) => r.outcome),
        upstreamCalls: after.requests - before.requests,
      });
    };

    // 1. Normal traffic: distinct prompts, one embedding and one streamed reply per user.
    const streamChecks = [];
    const semanticChecks = [];
    await runPhase('normal traffic', async () => {
      await Promise.all(
        DEMO.users.map(async (user) => {
          await Promise.all([1, 2, 3].map((i) => chat(user, `${user}: question ${i} about rate limits`)));
          await request(user, '/v1/embeddings', { model: 'text-embedding-3-small', input: `${user}'s notes` });
          const prompt = `${user}: explain circuit breakers`;
          const streamed = await chat(user, prompt, { stream: true });
          const buffered = await chat(user, prompt);
          streamChecks.push({ user, chunks: streamed.chunks, same: streamed.status === 200 && streamed.content === buffered.content && !!buffered.content });
        }),
      );
    });

    // 2. Identical concurrent prompts from the same user share one upstream call.
    await runPhase('dedup burst', async () => {
      // A slower provider for this phase: the copies of each prompt certainly arrive while the first is in flight.
      mock.setLatency(DEMO.burstProviderLatencyMs);
      await Promise.all(
        DEMO.users.flatMap((user) => Array.from({ length: DEMO.burstSize }, () => chat(user, "Summarise today's incident report"))),
      );
      mock.setLatency(DEMO.providerLatencyMs);
    });

    // 2b. Deterministic prompts (temperature 0) asked again are answered from the response cache, per user.
    await runPhase('cache', async () => {
      for (const user of DEMO.users) {
        for (let i = 0; i < DEMO.cacheRepeats; i++) await chat(user, 'What is a circuit breaker? Answer in one line.', { temperature: 0 });
      }
    });

    // 2c. The semantic cache: a reworded question is answered from the first one's answer; a question that
    // differs in one detail (another language) is not, however similar its embedding.
    await runPhase('semantic cache', async () => {
      for (const user of DEMO.users) {
        const { question, paraphrases, nearMiss } = DEMO.semantic;
        const first = await chat(user, question, { temperature: 0 });
        semanticChecks.push({ user, first: first.content, answers: [] });
        for (const p of paraphrases) semanticChecks.at(-1).answers.push(await chat(user, p, { temperature: 0 }));
        semanticChecks.at(-1).nearMiss = await chat(user, nearMiss, { temperature: 0 });
      }
    });

    // 2d. Budgets: dave's daily budget affords a short answer; a call asking for 4000 tokens could cost more
    // than what is left, so it is refused before it reaches the provider.
    await runPhase('budgets', async () => {
      const { user, smallMaxTokens, bigMaxTokens } = DEMO.budget;
      await chat(user, 'Summarise our refund policy in two lines.', { max_tokens: smallMaxTokens });
      await chat(user, 'Write the full refund policy handbook.', { max_tokens: bigMaxTokens });
    });

    // 3. A greedy user fires far more than the per-user limit while the others keep working.
    await runPhase('greedy user', async () => {
      const batches = 5;
      const perBatch = Math.ceil(DEMO.greedyRequests / batches);
      let sent = 0;
      for (let b = 0; b < batches; b++) {
        const n = Math.min(perBatch, DEMO.greedyRequests - sent);
        sent += n;
        await Promise.all([
          ...Array.from({ length: n }, (_, i) => chat(DEMO.greedyUser, `mallory prompt ${b}-${i}`)),
          ...(b === 2 ? DEMO.users.map((user) => chat(user, `${user} works while mallory floods`)) : []),
        ]);
      }
    });

    // 4. The provider goes down: the first failures trip the breaker, later calls fail fast without reaching it.
    await runPhase('provider outage', async () => {
      mock.setOutage(true);
      for (let i = 0; i < DEMO.outageRequests; i++) {
        await chat(DEMO.users[i % DEMO.users.length], `outage question ${i}`);
        await sleep(25);
      }
    });

    // 5. The provider is back: after the recovery timeout one probe goes through (half-open) and closes the breaker.
    await runPhase('recovery', async () => {
      mock.setOutage(false);
      const opened = transitions.findLast((t) => t.to === 'open');
      const waitMs = opened ? Math.max(0, opened.atMs + DEMO.breaker.recoveryTimeoutMs + 50 - since()) : 0;
      await sleep(waitMs);
      await chat(DEMO.users[0], 'are you back?');
      await Promise.all(DEMO.users.map((user) => chat(user, `${user}: back to normal`)));
    });
    phase = 'done';

    await gateway.amas.ai.costs.flush();
    const spend = {};
    for (const user of [...DEMO.users, DEMO.greedyUser, DEMO.budget.user]) spend[user] = await gateway.amas.ai.usage({ user });
    return buildReport({ results, phases, transitions, streamChecks, semanticChecks, spend, mock, gateway, warnings, durationMs: since(), urls: { provider: mock.url, gateway: url } });
  } finally {
    if (redisPrefix) {
      await gateway.amas.ai.costs.flush().catch(() => undefined);
      await gateway.amas.store?.deleteByPrefix(redisPrefix).catch(() => undefined);
    }
    await gateway.close();
    await mock.close();
  }
}

function outcomeOf(r) {
  if (r.status === 200) return r.dedup === 'shared' ? 'ok (shared)' : r.cache === 'HIT' ? 'ok (cache hit)' : r.cache === 'SEMANTIC-HIT' ? 'ok (semantic hit)' : 'ok';
  if (r.status === 429 && r.code === 'AMAS_RATE_LIMITED') return 'rate limited';
  if (r.status === 429 && r.code === 'AMAS_BUDGET_EXCEEDED') return 'over budget';
  if (r.status === 503 && r.code === 'AMAS_BREAKER_OPEN') return 'breaker open (fast fail)';
  if (r.status === 504) return 'timeout';
  return 'upstream error';
}

function countBy(items, key) {
  const out = {};
  for (const item of items) {
    const k = key(item);
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

function buildReport({ results, phases, transitions, streamChecks, semanticChecks, spend, mock, gateway, warnings, durationMs, urls }) {
  const upstream = mock.stats();
  const allUsers = [...DEMO.users, DEMO.greedyUser];
  const users = {};
  for (const user of allUsers) {
    const own = results.filter((r) => r.user === user);
    users[user] = {
      requests: own.length,
      ok: own.filter((r) => r.status === 200).length,
      limited: own.filter((r) => r.outcome === 'rate limited').length,
      failed: own.filter((r) => r.status >= 500).length,
    };
  }
  const phase = (name) => phases.find((p) => p.name === name);
  const burst = phase('dedup burst');
  const outage = phase('provider outage');
  const outageResults = results.filter((r) => r.phase === 'provider outage');
  const failedFast = outageResults.filter((r) => r.outcome === 'breaker open (fast fail)').length;
  const withoutBreaker = outageResults.length * DEMO.retry.maxAttempts;
  const limited = results.filter((r) => r.outcome === 'rate limited');
  const report = {
    durationMs,
    urls,
    config: {
      perUserLimit: DEMO.limit,
      breaker: DEMO.breaker,
      retry: DEMO.retry,
      timeoutMs: DEMO.timeoutMs,
      providerLatencyMs: DEMO.providerLatencyMs,
    },
    requests: {
      total: results.length,
      byStatus: countBy(results, (r) => String(r.status)),
      byOutcome: countBy(results, (r) => r.outcome),
      byStatusAndOutcome: countBy(results, (r) => `${r.status} ${r.outcome}`),
    },
    phases,
    users,
    limitRejections: Object.fromEntries(allUsers.map((u) => [u, users[u].limited])),
    breaker: {
      name: CHAT_BREAKER,
      transitions,
      finalState: gateway.amas.breaker(CHAT_BREAKER).getState(),
      stats: gateway.amas.breaker(CHAT_BREAKER).stats().totals,
    },
    dedup: {
      clientRequests: burst.clientRequests,
      upstreamCalls: burst.upstreamCalls,
      saved: burst.clientRequests - burst.upstreamCalls,
      sharedResponses: results.filter((r) => r.phase === 'dedup burst' && r.dedup === 'shared').length,
    },
    cache: {
      clientRequests: phase('cache').clientRequests,
      upstreamCalls: phase('cache').upstreamCalls,
      hits: results.filter((r) => r.phase === 'cache' && r.cache === 'HIT').length,
      misses: results.filter((r) => r.phase === 'cache' && r.cache === 'MISS').length,
    },
    /** dave's daily budget (USD): a short answer fits, one asking for 4000 tokens does not. */
  budget: { user: 'dave', day: 0.0015, smallMaxTokens: 100, bigMaxTokens: 4000 },
  semantic: {
      clientRequests: phase('semantic cache').clientRequests,
      upstreamCalls: phase('semantic cache').upstreamCalls,
      hits: results.filter((r) => r.phase === 'semantic cache' && r.cache === 'SEMANTIC-HIT').length,
      similarities: results.filter((r) => r.phase === 'semantic cache' && r.similarity !== null).map((r) => Number(r.similarity)),
      nearMissesAnsweredUpstream: semanticChecks.filter((s) => s.nearMiss?.status === 200 && s.nearMiss.cache === 'MISS').length,
      stats: gateway.amas.semantic.stats(),
    },
    budgets: {
      user: DEMO.budget.user,
      dailyBudgetUsd: DEMO.budget.day,
      results: results.filter((r) => r.phase === 'budgets').map((r) => ({ status: r.status, code: r.code ?? null, cost: r.cost ?? null })),
      upstreamCalls: phase('budgets').upstreamCalls,
    },
    spend: Object.fromEntries(Object.entries(spend).map(([user, s]) => [user, { requests: s.requests, inputTokens: s.inputTokens, outputTokens: s.outputTokens, costUsd: s.cost }])),
    outage: {
      clientRequests: outage.clientRequests,
      upstreamCalls: outage.upstreamCalls,
      failedFast,
      upstreamCallsWithoutBreaker: withoutBreaker,
      upstreamCallsAvoided: Math.max(0, withoutBreaker - outage.upstreamCalls),
    },
    streaming: { streams: streamChecks.length, chunks: streamChecks.reduce((n, s) => n + s.chunks, 0), reassembledMatches: streamChecks.filter((s) => s.same).length },
    upstream,
    warnings,
  };

  const breakerPath = transitions.map((t) => `${t.from}->${t.to}`);
  const openIdx = breakerPath.indexOf('closed->open');
  const closeIdx = breakerPath.lastIndexOf('half-open->closed');
  const others = DEMO.users.filter((u) => users[u].limited > 0);
  const notOutage = results.filter((r) => DEMO.users.includes(r.user) && r.phase !== 'provider outage');
  const minSaved = Math.ceil(burst.clientRequests / 2);
  const check = (name, pass, detail) => ({ name, pass: Boolean(pass), detail });
  report.checks = [
    check(`${DEMO.greedyUser} was limited, others were not`, users[DEMO.greedyUser].limited > 0 && others.length === 0,
      `${DEMO.greedyUser}: ${users[DEMO.greedyUser].limited} rejected; ${DEMO.users.map((u) => `${u}: ${users[u].limited}`).join(', ')}`),
    check('limit rejections carry Retry-After and RateLimit headers', limited.length > 0 && limited.every((r) => Number(r.retryAfter) > 0 && r.rateLimit),
      `${limited.filter((r) => Number(r.retryAfter) > 0 && r.rateLimit).length}/${limited.length}`),
    check('normal traffic always succeeded', notOutage.length > 0 && notOutage.every((r) => r.status === 200),
      `${notOutage.filter((r) => r.status === 200).length}/${notOutage.length} requests by ${DEMO.users.join(', ')} outside the outage got 200`),
    check(`dedup saved >= ${minSaved} upstream calls`, report.dedup.saved >= minSaved,
      `${burst.clientRequests} client requests -> ${burst.upstreamCalls} upstream calls`),
    check('repeated temperature-0 prompts were answered from the cache, once upstream per user',
      report.cache.misses === DEMO.users.length && report.cache.hits === DEMO.users.length * (DEMO.cacheRepeats - 1) && report.cache.upstreamCalls === DEMO.users.length,
      `${report.cache.clientRequests} requests -> ${report.cache.upstreamCalls} upstream calls (${report.cache.hits} hits, ${report.cache.misses} misses)`),
    check('reworded questions were answered from the semantic cache with the first answer; a changed detail was not',
      semanticChecks.length === DEMO.users.length &&
        semanticChecks.every((s) => s.answers.every((a) => a.cache === 'SEMANTIC-HIT' && a.content === s.first) && s.nearMiss?.cache === 'MISS' && s.nearMiss.content !== s.first) &&
        report.semantic.upstreamCalls === 2 * DEMO.users.length,
      `${report.semantic.clientRequests} requests -> ${report.semantic.upstreamCalls} upstream calls (${report.semantic.hits} SEMANTIC-HIT, ${report.semantic.nearMissesAnsweredUpstream} near-misses sent upstream)`),
    check(`${DEMO.budget.user}'s budget let a short answer through and refused a call that could exceed it, before any upstream call`,
      report.budgets.results.length === 2 && report.budgets.results[0].status === 200 && report.budgets.results[0].cost > 0 &&
        report.budgets.results[1].status === 429 && report.budgets.results[1].code === 'AMAS_BUDGET_EXCEEDED' && report.budgets.upstreamCalls === 1,
      report.budgets.results.map((r) => `${r.status}${r.code ? ` ${r.code}` : ''}${r.cost ? ` $${r.cost.toFixed(6)}` : ''}`).join(', ')),
    check('every user\'s tokens and cost were recorded', Object.values(report.spend).every((s) => s.requests > 0 && s.costUsd > 0),
      Object.entries(report.spend).map(([u, s]) => `${u}: ${s.requests} calls $${s.costUsd.toFixed(6)}`).join(', ')),
    check('streaming passed through intact', streamChecks.length === DEMO.users.length && streamChecks.every((s) => s.same && s.chunks > 2),
      `${report.streaming.reassembledMatches}/${streamChecks.length} streams reassembled to the non-streamed reply`),
    check('breaker opened during outage', transitions.some((t) => t.to === 'open' && t.phase === 'provider outage'),
      transitions.filter((t) => t.to === 'open').map((t) => `open at +${t.atMs} ms (${t.phase})`).join('; ') || 'never opened'),
    check('open breaker failed fast instead of calling the provider', failedFast > 0 && outage.upstreamCalls < outageResults.length,
      `${failedFast} of ${outageResults.length} requests got 503 at once; ${outage.upstreamCalls} upstream calls`),
    check('breaker closed after recovery (via half-open)', openIdx >= 0 && closeIdx > openIdx && report.breaker.finalState === 'closed',
      breakerPath.join(', ') || 'no transitions'),
    check('requests succeed again after recovery', results.filter((r) => r.phase === 'recovery').every((r) => r.status === 200),
      `${results.filter((r) => r.phase === 'recovery' && r.status === 200).length}/${results.filter((r) => r.phase === 'recovery').length} got 200`),
    check('no upstream request left in flight', upstream.inFlight === 0, `inFlight ${upstream.inFlight}`),
  ];
  report.ok = report.checks.every((c) => c.pass);
  return report;
}

const pad = (s, n) => String(s).padEnd(n);
const lpad = (s, n) => String(s).padStart(n);

export function formatReport(r) {
  const lines = [];
  const out = (s = '') => lines.push(s);
  out(`AMAS express-gateway demo: ${r.requests.total} requests in ${r.durationMs} ms`);
  out(`  provider (mock) ${r.urls.provider}   gateway ${r.urls.gateway}`);
  out(`  per-user limit ${r.config.perUserLimit.limit}/${r.config.perUserLimit.window}, breaker opens after ${r.config.breaker.failureThreshold} failures and probes after ${r.config.breaker.recoveryTimeoutMs} ms, retry up to ${r.config.retry.maxAttempts} attempts`);
  out();
  out('Phases');
  for (const p of r.phases) {
    const outcomes = Object.entries(p.byOutcome).map(([k, v]) => `${k} ${v}`).join(', ');
    out(`  ${pad(p.name, 16)} +${lpad(p.startedAtMs, 5)} ms  ${lpad(p.clientRequests, 3)} requests -> ${lpad(p.upstreamCalls, 3)} upstream calls   ${outcomes}`);
  }
  out();
  out('Requests by outcome');
  const rows = Object.entries(r.requests.byStatusAndOutcome).sort(([a], [b]) => a.localeCompare(b));
  for (const [outcome, n] of rows) out(`  ${pad(outcome, 30)} ${lpad(n, 3)}`);
  out();
  out('Per-user limit rejections (429)');
  for (const [user, u] of Object.entries(r.users)) out(`  ${pad(user, 8)} ${lpad(u.requests, 3)} requests  ${lpad(u.ok, 3)} ok  ${lpad(u.limited, 3)} limited  ${lpad(u.failed, 3)} failed`);
  out();
  out(`Circuit breaker "${r.breaker.name}" (now ${r.breaker.finalState})`);
  for (const t of r.breaker.transitions) out(`  +${lpad(t.atMs, 5)} ms  ${pad(`${t.from} -> ${t.to}`, 22)} ${t.reason} (${t.phase})`);
  if (r.breaker.transitions.length === 0) out('  no transitions');
  out();
  out('Dedup');
  out(`  ${r.dedup.clientRequests} identical concurrent client requests -> ${r.dedup.upstreamCalls} upstream calls (saved ${r.dedup.saved}; ${r.dedup.sharedResponses} shared responses)`);
  out();
  out('Response cache (temperature 0)');
  out(`  ${r.cache.clientRequests} requests -> ${r.cache.upstreamCalls} upstream calls: ${r.cache.hits} X-Cache HIT, ${r.cache.misses} MISS (one entry per user)`);
  out();
  out('Semantic cache (temperature 0)');
  out(`  ${r.semantic.clientRequests} requests -> ${r.semantic.upstreamCalls} upstream calls: ${r.semantic.hits} X-Cache SEMANTIC-HIT (similarity ${r.semantic.similarities.map((x) => x.toFixed(2)).join(', ')}), ${r.semantic.nearMissesAnsweredUpstream} near-misses ("${DEMO.semantic.nearMiss}") sent upstream; ${r.semantic.stats.vetoedNearMisses} vetoed by the guard`);
  out();
  out(`Budgets (${r.budgets.user}: $${r.budgets.dailyBudgetUsd} a day)`);
  out(`  ${r.budgets.results.map((x) => `${x.status}${x.code ? ` ${x.code}` : ''}${x.cost ? ` ($${x.cost.toFixed(6)})` : ''}`).join(', ')}; ${r.budgets.upstreamCalls} upstream call`);
  out();
  out('Spend per user (tokens in / out, USD)');
  for (const [user, x] of Object.entries(r.spend)) out(`  ${pad(user, 8)} ${lpad(x.requests, 3)} calls  ${lpad(x.inputTokens, 6)} / ${lpad(x.outputTokens, 6)} tokens  $${x.costUsd.toFixed(6)}`);
  out();
  out('Outage');
  out(`  ${r.outage.clientRequests} client requests -> ${r.outage.upstreamCalls} upstream calls; ${r.outage.failedFast} failed fast with 503`);
  out(`  without the breaker (same retries): up to ${r.outage.upstreamCallsWithoutBreaker} calls -> ${r.outage.upstreamCallsAvoided} upstream calls avoided`);
  out();
  out(`Streaming: ${r.streaming.streams} streams, ${r.streaming.chunks} SSE chunks passed through`);
  out(`Upstream totals: ${r.upstream.requests} requests (${Object.entries(r.upstream.byStatus).map(([s, n]) => `${s}: ${n}`).join(', ')})`);
  if (r.warnings.length) out(`Warnings: ${r.warnings.join(' | ')}`);
  out();
  out('Checks');
  for (const c of r.checks) out(`  ${c.pass ? 'PASS' : 'FAIL'}  ${c.name}  (${c.detail})`);
  out();
  out(r.ok ? 'All checks passed.' : `${r.checks.filter((c) => !c.pass).length} check(s) failed.`);
  return lines.join('\n');
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href;
if (isMain) {
  const json = process.argv.includes('--json');
  try {
    const report = await runDemo();
    console.log(json ? JSON.stringify(report, null, 2) : formatReport(report));
    process.exitCode = report.ok ? 0 : 1;
  } catch (error) {
    console.error('demo failed:', error);
    process.exitCode = 1;
  }
}
