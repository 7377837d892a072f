import type { LimitDecision } from '../policies/limit-decision.js';

export type RateLimitHeaderMode = 'draft' | 'legacy' | 'both' | false;

/**
 * Response headers for a limiter decision.
 * - IETF httpapi draft: `RateLimit-Policy: "name";q=<quota>;w=<window s>` and `RateLimit: "name";r=<remaining>;t=<s until reset>`,
 *   one list member per window (e.g. minute, hour and day limits all show).
 * - Legacy `X-RateLimit-Limit/Remaining/Reset` describe the most restrictive window (fewest remaining).
 * `Retry-After` (seconds, rounded up) is added when the decision denies.
 */
export function rateLimitHeaders(decision: LimitDecision, mode: RateLimitHeaderMode): Record<string, string> {
  const headers: Record<string, string> = {};
  if (!decision.allowed) headers['retry-after'] = String(Math.max(1, Math.ceil(decision.retryAfterMs / 1000)));
  if (mode === false || decision.windows.length === 0) return headers;
  if (mode === 'draft' || mode === 'both') {
    const policy: string[] = [];
    const state: string[] = [];
    for (const w of decision.windows) {
      const name = sfString(w.name);
      policy.push(`${name};q=${w.limit};w=${Math.max(1, Math.ceil(w.windowMs / 1000))}`);
      state.push(`${name};r=${Math.max(0, Math.floor(w.remaining))};t=${Math.max(0, Math.ceil(w.resetMs / 1000))}`);
    }
    headers['ratelimit-policy'] = policy.join(', ');
    headers['ratelimit'] = state.join(', ');
  }
  if (mode === 'legacy' || mode === 'both') {
    let tightest = decision.windows[0]!;
    for (const w of decision.windows) if (w.remaining < tightest.remaining) tightest = w;
    headers['x-ratelimit-limit'] = String(tightest.limit);
    headers['x-ratelimit-remaining'] = String(Math.max(0, Math.floor(tightest.remaining)));
    headers['x-ratelimit-reset'] = String(Math.max(0, Math.ceil(tightest.resetMs / 1000)));
  }
  return headers;
}

const quoted = new Map<string, string>();

/** A structured-field string: quotes and backslashes escaped, non-printable ASCII dropped. Cached: names repeat on every response. */
function sfString(value: string): string {
  let result = quoted.get(value);
  if (result === undefined) {
    result = `"${value.replace(/[^\x20-\x7e]/g, '').replace(/["\\]/g, (c) => `\\${c}`)}"`;
    if (quoted.size < 1000) quoted.set(value, result);
  }
  return result;
}
