/**
 * The gateway as a long-running server, for trying it by hand:
 *
 *   node examples/express-gateway/server.mjs
 *   PORT=8787 PROVIDER_URL=https://api.openai.com PROVIDER_API_KEY=sk-... REDIS_URL=redis://... node examples/express-gateway/server.mjs
 *
 * Without PROVIDER_URL an in-process mock provider is started (MOCK_PORT, default random) and its outage
 * switch is exposed at POST <mock>/__mock/outage {"on": true}.
 */
import { startMockProvider } from '@amas/loadtest';
import { createGateway } from './gateway.mjs';

function portFrom(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`${name} must be a port number (0-65535), received ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return port;
}

const port = portFrom('PORT', 8787);
const host = process.env.HOST || '127.0.0.1';
const mock = process.env.PROVIDER_URL ? undefined : await startMockProvider({ port: portFrom('MOCK_PORT', 0), latencyMs: { min: 50, max: 250 } });
const providerUrl = process.env.PROVIDER_URL || mock.url;

// With REDIS_URL, replicas share limits, dedup, caches, budgets and usage records through Redis.
const gateway = createGateway({ providerUrl, providerApiKey: process.env.PROVIDER_API_KEY || undefined, ...(process.env.REDIS_URL ? { amas: { redis: process.env.REDIS_URL } } : {}) });
gateway.amas.breakers.on('stateChange', (e) => {
  if (e.name.startsWith('ai:')) console.log(`[gateway] breaker "${e.name}": ${e.from} -> ${e.to} (${e.reason})`);
});
const url = await gateway.listen(port, host);

console.log(`AMAS gateway listening on ${url}  ->  provider ${providerUrl}${mock ? ' (mock)' : ''}; state ${process.env.REDIS_URL ? 'in Redis' : 'in memory'}`);
console.log(`  curl ${url}/v1/chat/completions -H 'authorization: Bearer alice' -H 'content-type: application/json' \\`);
console.log(`       -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}'`);
console.log(`  GET ${url}/health   GET ${url}/metrics`);
if (mock) console.log(`  simulate an outage: curl -X POST ${mock.url}/__mock/outage -d '{"on":true}'`);

let stopping = false;
async function stop(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`\n${signal}: shutting down`);
  await gateway.close();
  await mock?.close();
}
process.once('SIGINT', () => void stop('SIGINT'));
process.once('SIGTERM', () => void stop('SIGTERM'));
