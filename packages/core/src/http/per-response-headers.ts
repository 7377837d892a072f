/**
 * Headers that describe one response on one connection and must not be copied to another (dedup replays;
 * a proxy forwarding an upstream response needs the same list).
 */
export const PER_RESPONSE_HEADERS: ReadonlySet<string> = new Set([
  'date',
  'connection',
  'keep-alive',
  'transfer-encoding',
  'content-length',
  'set-cookie',
  'x-response-time',
  'server-timing',
  'ratelimit',
  'ratelimit-policy',
  'x-ratelimit-limit',
  'x-ratelimit-remaining',
  'x-ratelimit-reset',
  'retry-after',
]);
