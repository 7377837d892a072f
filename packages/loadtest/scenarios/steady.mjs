// A scenario can be an ES module: handy for generated prompts. This one holds 8 connections busy (closed model)
// for 15 s with a mix of traffic from 50 users, so per-user limits are not what is measured.
const topics = ['databases', 'queues', 'caches', 'load balancers', 'rate limits', 'retries', 'timeouts', 'bulkheads'];

export default {
  name: 'steady',
  description: 'Steady mixed traffic: 8 concurrent connections for 15 s, 50 users, chat / streaming / embeddings.',
  target: 'http://127.0.0.1:8787',
  duration: '15s',
  concurrency: 8,
  users: { count: 50, prefix: 'steady', header: 'mixed' },
  mix: [
    { name: 'chat', type: 'chat', weight: 6, prompts: topics.map((t) => `Explain ${t} in two sentences.`), maxTokens: 80 },
    { name: 'stream', type: 'stream', weight: 2, prompts: topics.map((t) => `Stream a short note about ${t}.`), includeUsage: true },
    { name: 'embed', type: 'embeddings', weight: 2, inputs: topics, batch: 4 },
  ],
  slo: { p95: 1500, p99: 3000, maxErrorRate: 0.02 },
};
