import { z } from 'zod';
import type { Cluster, ClusterOptions, Redis, RedisOptions } from 'ioredis';
import type { Clock } from '../clock.js';
import type { Logger } from '../logger.js';
import { clockSchema, positiveInt, timerMs, loggerSchema } from '../options/validate.js';

export interface RedisStoreOptions {
  /** `redis://[user:pass@]host:port[/db]` or `rediss://...`. Default 127.0.0.1:6379 when nothing else is given. */
  url?: string;
  /** An ioredis client (Redis or Cluster) you already have; AMAS uses it and never closes it. */
  client?: Redis | Cluster;
  /** Redis Cluster seed nodes (ioredis Cluster); `options` are passed through. */
  cluster?: { nodes: Array<{ host: string; port: number } | string>; options?: ClusterOptions };
  /** Sentinel-managed primary: the sentinels and the master group name. */
  sentinel?: { sentinels: Array<{ host: string; port: number }>; name: string };
  /** Extra ioredis options for the connections AMAS creates (password, tls, db, ...). */
  redisOptions?: RedisOptions;
  /** Prepended to every key and channel. Default `amas:`. */
  prefix?: string;
  /** Every command's deadline in ms (default 500); a command past it counts as Redis being unavailable. */
  commandTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Longest wait between reconnect attempts (default 500ms). */
  maxReconnectDelayMs?: number;
  /**
   * ioredis auto-pipelining on the command connection. Default false: for limiter decisions it measured slower
   * (bench/README.md, "Redis rows": the client and Redis take turns instead of working at once); it helps
   * trivial commands on a busy client.
   */
  autoPipelining?: boolean;
  /** The breaker around Redis itself: consecutive failures that open it (default 3) and its recovery time. */
  breaker?: { failureThreshold?: number; recoveryTimeoutMs?: number; maxRecoveryTimeoutMs?: number };
  /** Test time: scripts get the time from this clock instead of Redis TIME. */
  clock?: Clock;
  logger?: Logger;
}

const hostPort = z.strictObject({ host: z.string().min(1), port: z.number().int().min(1).max(65535) });
const objectOf = (what: string) =>
  z.custom<object>((v) => typeof v === 'object' && v !== null && !Array.isArray(v), { message: what });

export const redisStoreOptionsSchema = z
  .strictObject({
    url: z
      .string()
      .refine((u) => {
        try {
          const p = new URL(u).protocol;
          return p === 'redis:' || p === 'rediss:';
        } catch {
          return false;
        }
      }, 'a redis:// or rediss:// URL')
      .optional(),
    client: z
      .custom<Redis | Cluster>(
        (v) => typeof v === 'object' && v !== null && typeof (v as { evalsha?: unknown }).evalsha === 'function' && typeof (v as { duplicate?: unknown }).duplicate === 'function',
        { message: 'an ioredis Redis or Cluster client' },
      )
      .optional(),
    cluster: z.strictObject({ nodes: z.array(z.union([hostPort, z.string().min(1)])).min(1), options: objectOf('ioredis ClusterOptions').optional() }).optional(),
    sentinel: z.strictObject({ sentinels: z.array(hostPort).min(1), name: z.string().min(1) }).optional(),
    redisOptions: objectOf('ioredis RedisOptions').optional(),
    prefix: z.string().optional(),
    commandTimeoutMs: timerMs.refine((v) => v >= 1, 'at least 1ms').optional(),
    connectTimeoutMs: timerMs.refine((v) => v >= 1, 'at least 1ms').optional(),
    maxReconnectDelayMs: timerMs.refine((v) => v >= 1, 'at least 1ms').optional(),
    autoPipelining: z.boolean().optional(),
    breaker: z
      .strictObject({
        failureThreshold: positiveInt.optional(),
        recoveryTimeoutMs: timerMs.refine((v) => v >= 1, 'at least 1ms').optional(),
        maxRecoveryTimeoutMs: timerMs.refine((v) => v >= 1, 'at least 1ms').optional(),
      })
      .optional(),
    clock: clockSchema.optional(),
    logger: loggerSchema
      .optional(),
  })
  .superRefine((o, ctx) => {
    const sources = (['url', 'client', 'cluster', 'sentinel'] as const).filter((k) => o[k] !== undefined);
    if (sources.length > 1) {
      ctx.addIssue({ code: 'custom', path: [sources[1]!], message: `only one of url, client, cluster, sentinel (got ${sources.join(' and ')})`, input: o[sources[1]!] });
    }
    const b = o.breaker;
    if (b?.recoveryTimeoutMs !== undefined && b.maxRecoveryTimeoutMs !== undefined && b.maxRecoveryTimeoutMs < b.recoveryTimeoutMs) {
      ctx.addIssue({ code: 'custom', path: ['breaker', 'maxRecoveryTimeoutMs'], message: 'at least breaker.recoveryTimeoutMs', input: b.maxRecoveryTimeoutMs });
    }
  });
