/** Shared bits of the HTTP bench servers: one route, one body, port from argv/env, a ready line. */
export const LIMIT = 1_000_000_000; // per-IP limit high enough never to reject during a run
export const BODY = { hello: 'world' };

/** Usage: node bench/servers/<framework>.mjs <variant> [port]  (port 0 or absent: any free port). */
export function parseArgs(known) {
  const variant = process.argv[2];
  if (!known.includes(variant)) {
    console.error(`unknown variant "${variant}" (known: ${known.join(', ')})`);
    process.exit(2);
  }
  const port = Number(process.argv[3] ?? process.env.PORT ?? 0);
  return { variant, port };
}

/** The AMAS configuration every AMAS server variant uses: per-IP limit, a breaker, metrics (always on). */
export const amasOptions = {
  limits: { perIp: { limit: LIMIT, window: '1m' } },
  breakers: { upstream: { failureThreshold: 5, recoveryTimeoutMs: 30_000 } },
  http: { limit: 'perIp', breaker: 'upstream' },
};

/**
 * Diagnostics only (not used by run.mjs): AMAS_BENCH_DEDUP=0 drops dedup from the AMAS variants, to see
 * what the other parts cost on their own.
 */
export const dedup = process.env.AMAS_BENCH_DEDUP !== '0';

/**
 * The four headers an AMAS server variant adds to every passed response, with values of the same length as
 * in a run: the `bare-headers` variants send them as constants (no limit, breaker, dedup or metrics), so
 * their row is the ceiling any rate limiter that sends these headers can reach on this machine.
 */
export const AMAS_RESPONSE_HEADERS = {
  'ratelimit-policy': '"perIp";q=1000000000;w=60',
  ratelimit: '"perIp";r=999999998;t=60',
  'x-response-time': '0.365ms',
  'server-timing': 'total;dur=0.365',
};

export function ready(port) {
  process.stdout.write(`${JSON.stringify({ ready: true, port, pid: process.pid })}\n`);
}

export function exitOnSignal(close) {
  const stop = async () => {
    try {
      await close();
    } finally {
      process.exit(0);
    }
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  // The runner owns us: if it dies, so do we.
  process.stdin.on('end', stop);
  process.stdin.resume();
}
