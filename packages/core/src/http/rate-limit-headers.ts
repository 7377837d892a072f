import type { LimitDecision, WindowState } from '../policies/limit-decision.js';

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
    // Built by concatenation rather than arrays and join(): this runs on every admitted request.
    const windows = decision.windows;
    let policy = '';
    let state = '';
    for (let i = 0; i < windows.length; i++) {
      const w = windows[i]!;
      const separator = i === 0 ? '' : ', ';
      policy += separator + policyMember(w);
      state += `${separator}${sfString(w.name)};r=${Math.max(0, Math.floor(w.remaining))};t=${Math.max(0, Math.ceil(w.resetMs / 1000))}`;
    }
    headers['ratelimit-policy'] = policy;
    headers['ratelimit'] = state;
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

interface PolicyMember {
  limit: number;
  windowMs: number;
  text: string;
}
const policies = new Map<string, PolicyMember>();

/** `"name";q=<quota>;w=<window s>`: the same for every response of a limit, so kept per window name. */
function policyMember(w: WindowState): string {
  const cached = policies.get(w.name);
  if (cached !== undefined && cached.limit === w.limit && cached.windowMs === w.windowMs) return cached.text;
  const text = `${sfString(w.name)};q=${w.limit};w=${Math.max(1, Math.ceil(w.windowMs / 1000))}`;
  if (policies.size < 1000) policies.set(w.name, { limit: w.limit, windowMs: w.windowMs, text });
  return text;
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
