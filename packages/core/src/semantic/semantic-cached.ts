/**
 * `semanticCached(fn, options)`: memoize a function whose answer depends on what a prompt MEANS, e.g. a
 * service method that calls a model. A call whose prompt (a string, or an OpenAI-style chat request) means
 * the same as an earlier one's gets that call's result; everything else about the call (the function, the
 * `partition` you give, and for chat requests the model, system prompt, earlier turns, tools and sampling
 * bucket) must match exactly. A call whose prompt cannot be read (no user message, image parts, too long)
 * or whose cache fails simply runs uncached.
 */
import { z } from 'zod';
import { durationSchema } from '../options/duration.js';
import { MAX_TIMER_MS, parseOptions } from '../options/validate.js';
import { chatPartition, type ChatRequestLike } from './chat-partition.js';
import type { SemanticCache } from './semantic-cache.js';

export interface SemanticCachedOptions<A extends unknown[]> {
  /** The cache (or a function returning it, resolved at call time). */
  cache: SemanticCache | (() => SemanticCache);
  /** The prompt of a call: a string or a chat request. Default: the first argument. */
  prompt?: (...args: A) => string | ChatRequestLike;
  /** An exact partition of a call on top of the prompt's own, e.g. the tenant: (...args) => string. */
  partition?: (...args: A) => string;
  /** Names the function in the partition (default: `fn.name`): two functions never answer each other. */
  name?: string;
  ttl?: number | string;
  threshold?: number;
}

const optionsSchema = z.object({
  cache: z.custom<unknown>((v) => typeof v === 'function' || (typeof v === 'object' && v !== null && typeof (v as SemanticCache).get === 'function'), { message: 'a SemanticCache or a function returning one' }),
  prompt: z.custom<unknown>((v) => typeof v === 'function', { message: 'a function of the arguments' }).optional(),
  partition: z.custom<unknown>((v) => typeof v === 'function', { message: 'a function of the arguments' }).optional(),
  name: z.string().min(1).optional(),
  ttl: durationSchema.pipe(z.number().positive('a duration > 0').max(MAX_TIMER_MS)).optional(),
  threshold: z.number().gt(0).max(1).optional(),
});

export function semanticCached<A extends unknown[], R>(fn: (...args: A) => R | Promise<R>, options: SemanticCachedOptions<A>, where = 'semanticCached()'): (...args: A) => Promise<Awaited<R>> {
  if (typeof fn !== 'function') throw new TypeError(`${where}: the first argument must be a function`);
  const o = parseOptions(optionsSchema, options, where);
  const name = o.name ?? fn.name;
  const setOptions = o.ttl !== undefined ? { ttl: o.ttl } : {};
  const getOptions = o.threshold !== undefined ? { threshold: o.threshold } : {};
  return async function (this: unknown, ...args: A): Promise<Awaited<R>> {
    const run = () => fn.apply(this, args) as Awaited<R>;
    const keyed = keyOf(args, options, name);
    if (keyed === undefined) return run();
    const cache = typeof options.cache === 'function' ? options.cache() : options.cache;
    const hit = await cache.get(keyed.prompt, { partition: keyed.partition, ...getOptions }).catch(() => undefined);
    if (hit !== undefined) return hit.value as Awaited<R>;
    const value = await run();
    if (value !== undefined) await cache.set(keyed.prompt, value, { partition: keyed.partition, ...setOptions }).catch(() => undefined);
    return value;
  };
}

/** The prompt and partition of a call, or undefined when it cannot be cached (it then runs uncached). */
function keyOf<A extends unknown[]>(args: A, options: SemanticCachedOptions<A>, name: string): { prompt: string; partition: string } | undefined {
  try {
    const input = options.prompt ? options.prompt(...args) : args[0];
    const extra = options.partition ? String(options.partition(...args)) : '';
    const tenant = `${name}\u0000${extra}`;
    if (typeof input === 'string') return input.trim() === '' ? undefined : { prompt: input, partition: tenant };
    if (typeof input === 'object' && input !== null && Array.isArray((input as ChatRequestLike).messages)) return chatPartition(input as ChatRequestLike, { tenant });
    return undefined;
  } catch {
    return undefined; // unreadable input or a broken key function: run uncached rather than fail the call
  }
}
