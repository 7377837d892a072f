#!/usr/bin/env node
/**
 * Start-up race finder: a TCP proxy to the Redis on 127.0.0.1:6379 that holds every new connection back for a
 * random 0..maxDelayMs before connecting it through, so connections that are ready in one order on a quiet
 * machine get ready in every order. Run the suite through it:
 *
 *   node scripts/redis-delay-proxy.mjs 6390 250 &
 *   REDIS_URL=redis://127.0.0.1:6390 pnpm exec vitest run
 *
 * (tests that read REDIS_URL go through it; those that start their own redis-server do not). It found the
 * semantic cache reading its index before the store's command connection was ready.
 */
import net from 'node:net';

const port = Number(process.argv[2] ?? 6390);
const maxDelayMs = Number(process.argv[3] ?? 60);
if (!Number.isInteger(port) || port <= 0 || !(maxDelayMs >= 0)) {
  console.error('usage: node scripts/redis-delay-proxy.mjs [port=6390] [maxDelayMs=60]');
  process.exit(2);
}

net
  .createServer((client) => {
    client.pause();
    client.on('error', () => undefined);
    setTimeout(() => {
      if (client.destroyed) return;
      const upstream = net.connect(6379, '127.0.0.1');
      upstream.on('error', () => client.destroy());
      upstream.on('close', () => client.destroy());
      client.on('close', () => upstream.destroy());
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    }, Math.random() * maxDelayMs);
  })
  .listen(port, '127.0.0.1', () => console.log(`redis-delay-proxy: 127.0.0.1:${port} -> 127.0.0.1:6379, 0-${maxDelayMs} ms per new connection`));
