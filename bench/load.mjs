/**
 * Load generator, run as its own process so it never shares a core's event loop with the server:
 *   node bench/load.mjs <url> <connections> <durationSeconds>
 * Prints one JSON line: requests/s over the whole run plus error and non-2xx counts.
 */
import autocannon from 'autocannon';

const [url, connectionsArg = '50', durationArg = '5'] = process.argv.slice(2);
if (!url || !url.startsWith('http://127.0.0.1:')) {
  console.error('usage: node bench/load.mjs http://127.0.0.1:<port>/path [connections] [seconds] (loopback only)');
  process.exit(2);
}

const result = await autocannon({
  url,
  connections: Number(connectionsArg),
  duration: Number(durationArg),
  pipelining: 1,
});
const seconds = result.duration; // measured elapsed seconds
process.stdout.write(
  `${JSON.stringify({
    url,
    requests: result.requests.total,
    seconds,
    reqPerSec: result.requests.total / seconds,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    latencyP50: result.latency.p50,
    latencyP99: result.latency.p99,
  })}\n`,
);
