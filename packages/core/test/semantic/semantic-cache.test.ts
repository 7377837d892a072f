import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { InvalidOptionError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import { chatPartition } from '../../src/semantic/chat-partition.js';
import { CachedEmbedder } from '../../src/semantic/embedding-cache.js';
import { EmbeddingInputError } from '../../src/semantic/embedder.js';
import { SemanticCache } from '../../src/semantic/semantic-cache.js';
import { UniversalSentenceEncoderEmbedder } from '../../src/semantic/use-embedder.js';
import { MemoryStore } from '../../src/stores/memory-store.js';
import { RedisStore } from '../../src/stores/redis-store.js';
import { createAmas } from '../../src/amas.js';
import { startSlowFirstConnectionProxy } from '../../../../test/support/slow-first-connection-proxy.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
// One real model for the file, behind an LRU (the caches below never close it).
const embedder = new CachedEmbedder(new UniversalSentenceEncoderEmbedder(), { closeInner: false });
const open: Array<{ close(): Promise<void> }> = [];
const track = <T extends { close(): Promise<void> }>(x: T): T => (open.push(x), x);
afterEach(async () => {
  while (open.length) await open.pop()!.close().catch(() => undefined);
});
beforeAll(async () => {
  await embedder.embed(['warm up the model']);
}, 30_000);
afterAll(async () => {
  await embedder.close();
});

const cache = (options: ConstructorParameters<typeof SemanticCache>[0] = {}) => track(new SemanticCache<string>({ embedder, logger: silentLogger, ...options }));

describe('SemanticCache (real embeddings)', () => {
  it('answers the same prompt exactly and a paraphrase semantically', async () => {
    const c = cache();
    await c.set('What is AI?', 'AI is the field of making machines do things that need intelligence.');
    expect(await c.get('What is AI?')).toMatchObject({ kind: 'exact', score: 1 });
    expect(await c.get('  What is AI?  ')).toMatchObject({ kind: 'exact' });
    await c.set('How do I reverse a list in Python?', 'Use list.reverse() or reversed(list).');
    const hit = await c.get('In Python, how can a list be reversed?');
    expect(hit?.kind).toBe('semantic');
    expect(hit?.prompt).toBe('How do I reverse a list in Python?');
    expect(hit!.score).toBeGreaterThanOrEqual(0.74);
    expect(await c.get('How do I bake sourdough bread?')).toBeUndefined();
    const s = c.stats();
    expect([s.exactHits, s.semanticHits, s.misses]).toEqual([2, 1, 1]);
  });

  it('never answers a different question: the guard vetoes near-misses that cosine scores as matches', async () => {
    const c = cache();
    const plain = cache({ guard: false });
    const pairs: Array<[string, string]> = [
      ['Set an alarm for 6:30 am', 'Set an alarm for 7:30 am'],
      ['Sort the array in ascending order', 'Sort the array in descending order'],
      ['What is the capital of Austria?', 'What is the capital of Australia?'],
      ['How do I enable 2FA on my account?', 'How do I disable 2FA on my account?'],
    ];
    let plainWrong = 0;
    for (const [stored, asked] of pairs) {
      await c.set(stored, `answer to: ${stored}`);
      await plain.set(stored, `answer to: ${stored}`);
      expect(await c.get(asked), asked).toBeUndefined();
      if ((await plain.get(asked)) !== undefined) plainWrong++;
      const similar = await c.getSimilar(asked, { threshold: 0.5 });
      expect(similar[0]?.prompt, asked).toBe(stored);
      expect(similar[0]?.vetoed?.length, asked).toBeGreaterThan(0);
    }
    // Plain cosine would have served most of them: this is what the guard is for.
    expect(plainWrong).toBeGreaterThanOrEqual(3);
    expect(c.stats().vetoedNearMisses).toBeGreaterThanOrEqual(3);
  });

  it('partitions are hard filters; chatPartition separates system prompts, users, models, sampling and conversations', async () => {
    const c = cache();
    const base = { model: 'gpt-4o-mini', temperature: 0, messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'What is AI?' }] };
    const a = chatPartition(base, { tenant: 'alice' });
    await c.set(a.prompt, 'terse answer', { partition: a.partition });
    expect((await c.get(a.prompt, { partition: chatPartition(base, { tenant: 'alice' }).partition }))?.value).toBe('terse answer');
    const variants = [
      chatPartition(base, { tenant: 'bob' }),
      chatPartition({ ...base, model: 'gpt-4o' }, { tenant: 'alice' }),
      chatPartition({ ...base, temperature: 1 }, { tenant: 'alice' }),
      chatPartition({ ...base, messages: [{ role: 'system', content: 'You are verbose.' }, base.messages[1]!] }, { tenant: 'alice' }),
      chatPartition({ ...base, messages: [...base.messages.slice(0, 1), { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }, base.messages[1]!] }, { tenant: 'alice' }),
    ];
    for (const v of variants) {
      expect(v.prompt).toBe('What is AI?');
      expect(v.partition).not.toBe(a.partition);
      expect(await c.get(v.prompt, { partition: v.partition })).toBeUndefined();
    }
    expect(chatPartition({ ...base, temperature: 0 }).partition).toBe(chatPartition({ ...base, temperature: 0 }).partition);
    expect(() => chatPartition({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] })).toThrow(EmbeddingInputError);
    expect(() => chatPartition({ messages: [{ role: 'system', content: 'x' }] })).toThrow(/no user message/);
    expect(() => chatPartition({} as never)).toThrow(/no messages/);
  });

  it('bad input gets a clear error and loses nothing', async () => {
    const c = cache({ maxPromptChars: 1000 });
    await c.set('keep me', 'kept');
    await expect(c.set('', 'x')).rejects.toBeInstanceOf(EmbeddingInputError);
    await expect(c.get('   ')).rejects.toThrow(/empty/);
    await expect(c.get(42 as never)).rejects.toThrow(/must be a string/);
    await expect(c.set('x'.repeat(1001), 'x')).rejects.toThrow(/maxPromptChars/);
    await expect(c.set('ok', undefined as never)).rejects.toThrow(/undefined/);
    await expect(c.get('keep me', { threshold: 2 })).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(c.getSimilar('keep me', { maxResults: 0 })).rejects.toThrow(/maxResults/);
    expect(() => new SemanticCache({ threshold: 0 })).toThrow(InvalidOptionError);
    expect(() => new SemanticCache({ ttl: 'soon' })).toThrow(/ttl/);
    expect((await c.get('keep me'))?.value).toBe('kept');
  });

  it('TTL expiry removes entries from the index', async () => {
    const clock = new ManualClock();
    const store = track(new MemoryStore({ clock }));
    const c = cache({ clock, store, ttl: '10s' });
    await c.set('How do I reverse a list in Python?', 'reversed()');
    expect(c.stats().entries).toBe(1);
    await clock.advance(10_000);
    expect(c.stats().entries).toBe(0);
    expect(await c.get('How do I reverse a list in Python?')).toBeUndefined();
  });

  it('on Redis: replicas share entries, a restart rebuilds the index from Redis, delete and clear reach every replica', async () => {
    const prefix = `amas-test-sc-${process.pid}-${Math.random().toString(36).slice(2, 8)}:`;
    const storeA = track(new RedisStore({ url: REDIS_URL, prefix }));
    const storeB = track(new RedisStore({ url: REDIS_URL, prefix }));
    await Promise.all([storeA.ready(), storeB.ready()]);
    try {
      const a = cache({ store: storeA });
      const b = cache({ store: storeB });
      await Promise.all([a.ready(), b.ready()]);
      await a.set('How do I reverse a list in Python?', 'reversed()');
      await a.set('What is the capital of Austria?', 'Vienna');
      // B learns about A's entries through Pub/Sub (no restart needed).
      await expect.poll(async () => (await b.get('In Python, how can a list be reversed?'))?.value, { timeout: 5000 }).toBe('reversed()');
      // A new replica (a restart) loads every live entry from Redis.
      const restarted = cache({ store: storeB });
      await restarted.ready();
      expect(restarted.stats().entries).toBe(2);
      expect((await restarted.get('What is the capital of Austria?'))?.kind).toBe('exact');
      await a.delete('What is the capital of Austria?');
      await expect.poll(async () => b.stats().entries, { timeout: 5000 }).toBe(1);
      await a.clear();
      await expect.poll(async () => b.stats().entries, { timeout: 5000 }).toBe(0);
      const afterClear = cache({ store: storeA });
      await afterClear.ready();
      expect(afterClear.stats().entries).toBe(0);
    } finally {
      await storeA.deleteByPrefix(prefix);
    }
  });

  it('waits for a store that is still connecting (its Pub/Sub connection ready before the command one)', async () => {
    const prefix = `amas-test-scc-${process.pid}-${Math.random().toString(36).slice(2, 8)}:`;
    const redisPort = Number(new URL(REDIS_URL).port || 6379);
    // The command connection is the first one made: the proxy holds it back, so Pub/Sub is ready first.
    const proxy = await startSlowFirstConnectionProxy(redisPort, 400);
    try {
      const store = track(new RedisStore({ url: `redis://127.0.0.1:${proxy.port}`, prefix }));
      const c = cache({ store, name: 'connecting' });
      expect(store.health().status).toBe('connecting');
      await c.set('What is the capital of Austria?', 'Vienna');
      expect((await c.get('What is the capital of Austria?'))?.value).toBe('Vienna');
      await store.deleteByPrefix(prefix);
    } finally {
      while (open.length) await open.pop()!.close().catch(() => undefined);
      await proxy.close();
    }
  });

  it('amas.semanticCache() keeps its entries in the engine store and is closed with the engine', async () => {
    const prefix = `amas-test-sca-${process.pid}-${Math.random().toString(36).slice(2, 8)}:`;
    const amas = createAmas({ logger: silentLogger, redis: { url: REDIS_URL, prefix } });
    try {
      const sc = amas.semanticCache<string>({ embedder, name: 'answers' });
      await sc.set('What is the capital of Austria?', 'Vienna');
      // Another cache on the same store (another replica) loads the entry from Redis.
      const probe = cache({ store: amas.store, name: 'answers' });
      await probe.ready();
      expect((await probe.get('What is the capital of Austria?'))?.value).toBe('Vienna');
      expect(() => amas.semanticCache({ store: amas.store } as never)).toThrow(/semanticCache options/);
      await amas.store!.deleteByPrefix(prefix);
    } finally {
      await amas.close();
    }
  });
});
