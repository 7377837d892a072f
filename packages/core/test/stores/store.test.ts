import { ManualClock } from '../../src/clock.js';
import { MemoryStore } from '../../src/stores/memory-store.js';
import { RedisStore } from '../../src/stores/redis-store.js';
import { storeConformance } from './store-conformance.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = () => `test:${Math.random().toString(36).slice(2, 8)}:`;

storeConformance('MemoryStore', async () => {
  const clock = new ManualClock();
  const store = new MemoryStore({ clock, prefix: prefix() });
  return { store, clock, close: () => store.close() };
});

storeConformance('RedisStore (single node, test clock)', async () => {
  const clock = new ManualClock();
  const store = new RedisStore({ url: REDIS_URL, clock, prefix: prefix() });
  await store.ready();
  return { store, scriptClock: clock, close: () => store.close() };
});

storeConformance('RedisStore (single node, server time)', async () => {
  const store = new RedisStore({ url: REDIS_URL, prefix: prefix() });
  await store.ready();
  return { store, close: () => store.close() };
});
