/**
 * An owner-token lease on a Store: a key that holds the owner's random token and expires after `ttlMs`
 * unless the owner renews it. Only the owner may renew or release it (compare, then act, in one script), so
 * an owner that stalled past its lease can never extend or delete the lease a successor took since.
 *
 * Used by SharedSingleFlight (one replica runs a call, the others wait); reusable for any "one replica at a
 * time" job (leader election, a periodic sweep, a cache refill).
 */
import { randomBytes } from 'node:crypto';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import type { MemoryKeyspace } from './memory-keyspace.js';
import type { Store, StoreScript } from './store.js';

/** A fresh owner token: 96 random bits, hex (no ':' or ',' so scripts may embed it in delimited strings). */
export function leaseToken(): string {
  return randomBytes(12).toString('hex');
}

/** Redis PX needs a positive integer. */
export function leaseTtl(ms: number): number {
  return Math.max(1, Math.ceil(ms));
}

export interface LeaseAcquireResult {
  acquired: boolean;
  /** The token holding the lease now (ours when acquired). */
  holder: string;
  /** Remaining ms of the lease now held (-1: no expiry). */
  ttlMs: number;
}

/** KEYS[1] lease; ARGV token, ttlMs. SET NX PX, and on failure who holds it and for how long. */
export const LEASE_ACQUIRE: StoreScript<LeaseAcquireResult> = {
  name: 'lease-acquire',
  lua: `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1, ARGV[1], tonumber(ARGV[2])} end
return {0, redis.call('GET', KEYS[1]) or '', redis.call('PTTL', KEYS[1])}
`,
  memory(space: MemoryKeyspace, keys: string[], args: string[]) {
    const [key] = keys as [string];
    const holder = space.get<string>(key);
    if (holder === undefined) {
      space.set(key, args[0], Number(args[1]));
      return [1, args[0], Number(args[1])];
    }
    return [0, holder, space.ttl(key)];
  },
  decode(raw) {
    const [acquired, holder, ttl] = raw as [number, string, number];
    return { acquired: acquired === 1, holder: String(holder), ttlMs: Number(ttl) };
  },
};

/** KEYS[1] lease; ARGV token, ttlMs. Extends the lease only while `token` still holds it. */
export const LEASE_RENEW: StoreScript<boolean> = {
  name: 'lease-renew',
  lua: `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`,
  memory(space: MemoryKeyspace, keys: string[], args: string[]) {
    const [key] = keys as [string];
    if (space.get(key) !== args[0]) return 0;
    return space.expire(key, Number(args[1])) ? 1 : 0;
  },
  decode: (raw) => raw === 1,
};

/** KEYS[1] lease; ARGV token. Deletes the lease only while `token` still holds it. */
export const LEASE_RELEASE: StoreScript<boolean> = {
  name: 'lease-release',
  lua: `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`,
  memory(space: MemoryKeyspace, keys: string[], args: string[]) {
    const [key] = keys as [string];
    if (space.get(key) !== args[0]) return 0;
    return space.delete(key) ? 1 : 0;
  },
  decode: (raw) => raw === 1,
};

export interface KeepAliveOptions {
  clock?: Clock;
  /** Renew this often. Default a third of the lease, so two renewals may fail before it lapses. */
  intervalMs?: number;
  /** The lease was gone or someone else's at a renewal: renewing stops. */
  onLost?: () => void;
  /** A renewal failed (store unavailable); renewing goes on, the next attempt may succeed. */
  onError?: (error: unknown) => void;
}

/** One owner's handle on a lease key. */
export class Lease {
  constructor(
    readonly store: Store,
    readonly key: string,
    readonly token: string,
    readonly ttlMs: number,
  ) {}

  /** Takes the lease with a fresh token; undefined when someone holds it. */
  static async acquire(store: Store, key: string, ttlMs: number, token = leaseToken()): Promise<Lease | undefined> {
    const r = await store.run(LEASE_ACQUIRE, [key], [token, leaseTtl(ttlMs)]);
    return r.acquired ? new Lease(store, key, token, ttlMs) : undefined;
  }

  /** False when the lease is no longer ours (it expired, maybe someone else holds it now). */
  renew(): Promise<boolean> {
    return this.store.run(LEASE_RENEW, [this.key], [this.token, leaseTtl(this.ttlMs)]);
  }

  /** False when the lease was no longer ours (nothing was deleted). */
  release(): Promise<boolean> {
    return this.store.run(LEASE_RELEASE, [this.key], [this.token]);
  }

  /**
   * Renews every `intervalMs` until the returned stop function is called or the lease is found lost. The
   * next renewal is armed only after the previous one answered, so a slow store never stacks renewals.
   */
  keepAlive(options: KeepAliveOptions = {}): () => void {
    const clock = options.clock ?? systemClock;
    const interval = Math.max(1, Math.floor(options.intervalMs ?? this.ttlMs / 3));
    let timer: TimerHandle | undefined;
    let stopped = false;
    const tick = (): void => {
      timer = undefined;
      this.renew().then(
        (held) => {
          if (stopped) return;
          if (!held) {
            stopped = true;
            options.onLost?.();
            return;
          }
          timer = clock.setTimeout(tick, interval);
        },
        (error: unknown) => {
          if (stopped) return;
          options.onError?.(error);
          timer = clock.setTimeout(tick, interval);
        },
      );
    };
    timer = clock.setTimeout(tick, interval);
    return () => {
      stopped = true;
      if (timer !== undefined) clock.clearTimeout(timer);
      timer = undefined;
    };
  }
}
