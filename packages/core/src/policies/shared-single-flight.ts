/**
 * Dedup across replicas: identical concurrent calls on different processes run the upstream once.
 *
 * Protocol, per user key (hashed, so any key length is fine), all keys under one hash tag:
 *   lease   `<prefix>{df:<sha1>}:lease`   the holder's random token, PX leaseMs, renewed every leaseMs/3
 *   result  `<prefix>{df:<sha1>}:result`  the outcome entry `<kind>:<at>:<token>:<payload>`, PX resultTtlMs
 *   channel `df:<sha1>`                   the same entry, published when the holder finishes
 * Entry kinds: v = value, e = error, n = not shared (too large / unserializable: waiters run fn themselves),
 * and in messages only: w = value written but too big to publish (re-read it), r = released without an
 * outcome (the holder was aborted: re-claim, one waiter takes over). `at` is the store's time at completion
 * and `token` the holder's lease token.
 *
 * A call first collapses in-process (SingleFlight), then runs CLAIM, one atomic script: return an outcome
 * entry this caller may accept, else take the lease (this replica runs fn), else say who holds it, for how
 * long, and the store's time (`since`). A waiter accepts the outcome of a holder it saw in flight, or of any
 * run completed strictly after its first claim (a takeover it did not see start). Times alone would not do:
 * a run may finish and the next one start within the same millisecond. A fresh caller accepts none (same
 * semantics as SingleFlight: a call that starts after the previous one settled runs again) unless
 * `shareWindowMs` allows a recent value.
 * Waiters subscribe (one subscription per key per instance), then claim again, so an outcome published
 * before the subscription was active is read from the result key (no lost wake-up). They re-claim when the
 * lease should have lapsed and every pollIntervalMs (missed messages), and the first claim that finds the
 * lease free with no outcome takes it over: a dead holder stops renewing, so its lease lapses within
 * leaseMs and exactly one waiter runs fn again.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import { AbortedError, AmasError, isAmasError, TimeoutError, type AmasErrorCode } from '../errors.js';
import { Emitter } from '../events.js';
import { consoleLogger, type Logger } from '../logger.js';
import { clockSchema, fn as fnSchema, MAX_TIMER_MS, nonNegativeInt, parseOptions, positiveInt, loggerSchema } from '../options/validate.js';
import { Lease, LEASE_RELEASE, leaseToken, leaseTtl } from '../stores/lease-scripts.js';
import type { MemoryKeyspace } from '../stores/memory-keyspace.js';
import { isStore, STORE_LUA_NOW, type Store, type StoreRunOptions, type StoreScript, type StoreSubscription } from '../stores/store.js';
import { abortedError, NEVER_ABORTED, type Policy, type Work } from './policy.js';
import { SingleFlight } from './single-flight.js';

export interface SharedSingleFlightOptions {
  /** Where leases and results live: a RedisStore shares them between replicas (a MemoryStore only between instances in one process). */
  store: Store;
  /**
   * Lease on a running call (ms). Renewed every leaseMs/3 while the holder runs, so a long call keeps it;
   * a holder that dies stops renewing and its waiters take over within leaseMs. Default 10 000.
   */
  leaseMs?: number;
  /** How long an outcome stays readable for waiters that missed its message (ms). Default 5 000. */
  resultTtlMs?: number;
  /** Waiters re-check this often in case a Pub/Sub message was lost (ms). Default 250. */
  pollIntervalMs?: number;
  /**
   * Serialized results above this many bytes (UTF-8) are not shared across processes: waiters on other
   * replicas then run the call themselves (local followers still share it). Default 1 MiB.
   */
  maxResultBytes?: number;
  /**
   * Longest a caller waits for another replica's run (ms); then it rejects with TimeoutError instead of
   * calling an upstream that is evidently slow a second time. Default: no limit (a dead holder is detected
   * through its lease anyway).
   */
  waitTimeoutMs?: number;
  /** A value completed this recently (ms) is served to new callers too, like SingleFlight's shareWindowMs. Default 0. */
  shareWindowMs?: number;
  /** Value -> string. Default JSON in which Buffers (and Uint8Arrays, as Buffers) round-trip and `undefined` is kept. */
  serialize?: (value: unknown) => string;
  /** string -> value; given together with `serialize`. */
  deserialize?: (text: string) => unknown;
  clock?: Clock;
  logger?: Logger;
}

const ms = positiveInt.max(MAX_TIMER_MS);

export const sharedSingleFlightOptionsSchema = z
  .strictObject({
    store: z.custom<Store>(isStore, { message: 'a Store (MemoryStore or RedisStore)' }),
    // Renewal runs every leaseMs/3: below 10 ms that is a busy loop against the store.
    leaseMs: ms.min(10).optional(),
    resultTtlMs: ms.optional(),
    pollIntervalMs: ms.optional(),
    // A Redis string holds at most 512 MB.
    maxResultBytes: positiveInt.max(512 * 1024 * 1024).optional(),
    waitTimeoutMs: ms.optional(),
    shareWindowMs: nonNegativeInt.max(MAX_TIMER_MS).optional(),
    serialize: fnSchema.optional(),
    deserialize: fnSchema.optional(),
    clock: clockSchema.optional(),
    logger: loggerSchema.optional(),
  })
  .refine((o) => (o.serialize === undefined) === (o.deserialize === undefined), {
    message: 'serialize and deserialize given together (both or neither)',
    path: ['deserialize'],
  });

export interface SharedSingleFlightStats {
  /** Runs of fn while holding the lease (takeovers included). */
  leaders: number;
  /** Callers that joined a call already in flight in this process. */
  localFollowers: number;
  /** Calls settled by another replica's outcome (its value or its error). */
  remoteFollowers: number;
  /** Leases taken after waiting, because the holder's lease lapsed (or it was aborted) with no outcome. */
  takeovers: number;
  /** Results this process produced and did not share: bigger than maxResultBytes or not serializable. */
  tooLarge: number;
  /** Calls that ran fn themselves because the holder's result was not shared. */
  unshared: number;
  /** Calls that ran with in-process dedup only because the store was unavailable or failed. */
  fallbacks: number;
  /** Waits that ended with TimeoutError (waitTimeoutMs). */
  waitTimeouts: number;
}

export interface SharedSingleFlightEvents extends Record<string, unknown> {
  /** A call got another replica's outcome. */
  remote: { key: string; outcome: 'value' | 'error' };
  /** A waiter took the lease over and runs fn. */
  takeover: { key: string };
  /** A result was not shared (`bytes` is the serialized size when too large). */
  notShared: { key: string; reason: 'too-large' | 'unserializable'; bytes?: number };
  /** A call ran with in-process dedup only. */
  fallback: { key: string; error: unknown };
}

/** The error a waiter rejects with when the holder's fn threw something that is not an AmasError. */
export class RemoteCallError extends Error {
  /** The holder's error code (e.g. 'ECONNRESET'), when it had one. */
  readonly code: string | number | undefined;
  /** The holder's HTTP status (`status` or `statusCode`), when it had one. */
  readonly status: number | undefined;
  /** Always true: tells a shared error from one thrown in this process. */
  readonly remote = true;

  constructor(name: string, message: string, code: string | number | undefined, status: number | undefined) {
    super(message);
    // The holder's name (e.g. 'TypeError') so logs and `error.name` checks read the same on every replica.
    this.name = name;
    this.code = code;
    this.status = status;
  }

  get statusCode(): number | undefined {
    return this.status;
  }
}

const DEFAULT_LEASE_MS = 10_000;
const DEFAULT_RESULT_TTL_MS = 5_000;
const DEFAULT_POLL_MS = 250;
const DEFAULT_MAX_RESULT_BYTES = 1024 * 1024;
/** Entries up to this size ride in the Pub/Sub message; bigger ones are re-read (keeps Pub/Sub buffers small). */
const INLINE_MESSAGE_BYTES = 64 * 1024;
/** Payloads above this go to the store's slow connection so they never delay limiter decisions. */
const SLOW_PAYLOAD_BYTES = 64 * 1024;
/** A shared error message is cut to this length (an upstream may put a whole response body in it). */
const MAX_ERROR_MESSAGE = 8 * 1024;

type EntryKind = 'v' | 'e' | 'n' | 'w' | 'r';

interface Entry {
  kind: EntryKind;
  at: number;
  token: string;
  payload: string;
}

/** `<kind>:<at>:<token>:<payload>`; undefined when malformed. */
function parseEntry(text: string): Entry | undefined {
  const atEnd = text.indexOf(':', 2);
  const tokenEnd = atEnd < 0 ? -1 : text.indexOf(':', atEnd + 1);
  if (text[1] !== ':' || tokenEnd < 0) return undefined;
  const kind = text[0] as EntryKind;
  const at = Number(text.slice(2, atEnd));
  if (!'venwr'.includes(kind) || !Number.isFinite(at)) return undefined;
  return { kind, at, token: text.slice(atEnd + 1, tokenEnd), payload: text.slice(tokenEnd + 1) };
}

/** The waiter's rule (also in DEDUP_CLAIM's Lua): a holder it saw, or completed after it started waiting. */
function acceptable(entry: Pick<Entry, 'at' | 'token'>, since: number, observed: string): boolean {
  return entry.at > since || observed.includes(`,${entry.token},`);
}

type ClaimReply = { kind: 'entry'; entry: string } | { kind: 'acquired' } | { kind: 'held'; ttlMs: number; now: number; holder: string };

/**
 * KEYS lease, result; ARGV token, leaseMs, since ('' for a fresh caller), observed holder tokens (',a,b,'),
 * shareWindowMs, now. Returns {'entry', entry} | {'acquired'} | {'held', pttl, now, holder}. The result is
 * checked before the lease so a waiter never starts a run whose outcome it could have had.
 */
export const DEDUP_CLAIM: StoreScript<ClaimReply> = {
  name: 'dedup-claim',
  lua: `${STORE_LUA_NOW}
local now = now_ms(ARGV[#ARGV])
local entry = redis.call('GET', KEYS[2])
if entry then
  local at_end = string.find(entry, ':', 3, true)
  local token_end = at_end and string.find(entry, ':', at_end + 1, true)
  local at = token_end and tonumber(string.sub(entry, 3, at_end - 1))
  if at then
    local since = tonumber(ARGV[3])
    local token = string.sub(entry, at_end + 1, token_end - 1)
    local window = tonumber(ARGV[5])
    if (since and (at > since or string.find(ARGV[4], ',' .. token .. ',', 1, true)))
      or (window > 0 and string.sub(entry, 1, 1) == 'v' and now - at < window) then
      return {'entry', entry}
    end
  end
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'acquired'} end
return {'held', redis.call('PTTL', KEYS[1]), string.format('%.0f', now), redis.call('GET', KEYS[1])}
`,
  memory(space: MemoryKeyspace, keys: string[], args: string[], now: number) {
    const [leaseKey, resultKey] = keys as [string, string];
    const [token, leaseMs, since, observed, window] = args as [string, string, string, string, string];
    const text = space.get(resultKey);
    const entry = typeof text === 'string' ? parseEntry(text) : undefined;
    if (entry) {
      const accepted =
        (since !== '' && acceptable(entry, Number(since), observed)) ||
        (Number(window) > 0 && entry.kind === 'v' && now - entry.at < Number(window));
      if (accepted) return ['entry', text];
    }
    const holder = space.get<string>(leaseKey);
    if (holder === undefined) {
      space.set(leaseKey, token, Number(leaseMs));
      return ['acquired'];
    }
    return ['held', space.ttl(leaseKey), String(now), holder];
  },
  decode(raw) {
    const r = raw as [string, unknown?, unknown?, unknown?];
    if (r[0] === 'entry') return { kind: 'entry', entry: String(r[1]) };
    if (r[0] === 'acquired') return { kind: 'acquired' };
    return { kind: 'held', ttlMs: Number(r[1]), now: Number(r[2]), holder: String(r[3]) };
  },
};

/**
 * KEYS lease, result; ARGV token, kind, payload, resultTtlMs (0: store nothing), now. Releases the lease if
 * still ours and stores the entry. A holder whose lease lapsed stores its entry only when none exists, so it
 * never overwrites the outcome of the replica that took over. Returns {owned 1|0, at}.
 */
export const DEDUP_COMPLETE: StoreScript<{ owned: boolean; at: string }> = {
  name: 'dedup-complete',
  lua: `${STORE_LUA_NOW}
local at = string.format('%.0f', now_ms(ARGV[#ARGV]))
local owned = redis.call('GET', KEYS[1]) == ARGV[1]
if owned then redis.call('DEL', KEYS[1]) end
if tonumber(ARGV[4]) > 0 and (owned or redis.call('EXISTS', KEYS[2]) == 0) then
  redis.call('SET', KEYS[2], ARGV[2] .. ':' .. at .. ':' .. ARGV[1] .. ':' .. ARGV[3], 'PX', ARGV[4])
end
return {owned and 1 or 0, at}
`,
  memory(space: MemoryKeyspace, keys: string[], args: string[], now: number) {
    const [leaseKey, resultKey] = keys as [string, string];
    const [token, kind, payload, ttl] = args as [string, string, string, string];
    const at = String(Math.round(now));
    const owned = space.get(leaseKey) === token;
    if (owned) space.delete(leaseKey);
    if (Number(ttl) > 0 && (owned || !space.has(resultKey))) space.set(resultKey, `${kind}:${at}:${token}:${payload}`, Number(ttl));
    return [owned ? 1 : 0, at];
  },
  decode(raw) {
    const [owned, at] = raw as [number, string];
    return { owned: owned === 1, at: String(at) };
  },
};

// ---------------------------------------------------------------------------------------------------------
// Default serialization: JSON, with Buffers round-tripping and a top-level undefined kept.

const BUFFER_TAG = '$amas:buffer';

function replaceBuffers(this: unknown, key: string, value: unknown): unknown {
  // Buffer.toJSON has already run on `value`; the holder object still has the original.
  const raw = (this as Record<string, unknown>)[key];
  if (raw instanceof Uint8Array) return { [BUFFER_TAG]: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64') };
  return value;
}

function reviveBuffers(_key: string, value: unknown): unknown {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const tagged = (value as Record<string, unknown>)[BUFFER_TAG];
    if (typeof tagged === 'string' && Object.keys(value).length === 1) return Buffer.from(tagged, 'base64');
  }
  return value;
}

/** JSON never produces '', so '' can stand for undefined (a void call is common). */
export function serializeWithBuffers(value: unknown): string {
  if (value === undefined) return '';
  const text = JSON.stringify(value, replaceBuffers) as string | undefined;
  if (typeof text !== 'string') throw new TypeError(`cannot serialize a ${typeof value} as JSON`);
  return text;
}

export function deserializeWithBuffers(text: string): unknown {
  return text === '' ? undefined : JSON.parse(text, reviveBuffers);
}

// ---------------------------------------------------------------------------------------------------------
// Errors on the wire

interface WireError {
  name: string;
  message: string;
  code?: string | number;
  status?: number;
  retryAfterMs?: number;
  details?: Record<string, unknown>;
  amas?: boolean;
}

function errorToWire(error: unknown): string {
  const e = (typeof error === 'object' && error !== null ? error : {}) as Record<string, unknown>;
  const message = error instanceof Error ? error.message : String(error);
  const wire: WireError = {
    name: typeof e.name === 'string' ? e.name : 'Error',
    message: message.length > MAX_ERROR_MESSAGE ? `${message.slice(0, MAX_ERROR_MESSAGE)}...` : message,
  };
  if (typeof e.code === 'string' || typeof e.code === 'number') wire.code = e.code;
  const status = typeof e.status === 'number' ? e.status : e.statusCode;
  if (typeof status === 'number') wire.status = status;
  if (isAmasError(error)) {
    wire.amas = true;
    if (error.retryAfterMs !== undefined) wire.retryAfterMs = error.retryAfterMs;
    if (Object.keys(error.details).length) wire.details = error.details;
  }
  try {
    return JSON.stringify(wire);
  } catch {
    // details that do not serialize (a cycle, a BigInt) are dropped rather than the whole error.
    delete wire.details;
    return JSON.stringify(wire);
  }
}

function errorFromWire(text: string): Error {
  let wire: WireError;
  try {
    wire = JSON.parse(text) as WireError;
  } catch {
    return new RemoteCallError('Error', 'another replica failed running this call', undefined, undefined);
  }
  if (wire.amas && typeof wire.code === 'string') {
    // A plain AmasError with the same code passes `instanceof RateLimitedError` etc. (they check the code).
    const error = new AmasError(wire.code as AmasErrorCode, wire.message, { status: wire.status, retryAfterMs: wire.retryAfterMs, details: wire.details });
    error.name = wire.name;
    return error;
  }
  return new RemoteCallError(wire.name, wire.message, wire.code, wire.status);
}

// ---------------------------------------------------------------------------------------------------------

interface Ids {
  lease: string;
  result: string;
  channel: string;
}

/** One call waiting for another replica: takes the messages of its key that are not older than its wait. */
class Waiter {
  failure: unknown = undefined;
  /** Holder tokens seen in flight, as ',a,b,' (the form DEDUP_CLAIM takes). */
  observed = ',';
  private pending: Entry | undefined;
  private resolveWake: ((entry: Entry | undefined) => void) | undefined;
  private rejectWake: ((error: unknown) => void) | undefined;
  deadline: TimerHandle | undefined;

  constructor(
    readonly since: number,
    private readonly clock: Clock,
  ) {}

  see(holder: string): void {
    if (!this.observed.includes(`,${holder},`)) this.observed += `${holder},`;
  }

  offer(entry: Entry): void {
    if (!acceptable(entry, this.since, this.observed)) return;
    if (this.resolveWake) return this.resolveWake(entry);
    // Keep an outcome over a mere wake-up when both arrive while the caller is between waits.
    if (!this.pending || this.pending.kind === 'w' || this.pending.kind === 'r') this.pending = entry;
  }

  fail(error: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    this.rejectWake?.(error);
  }

  /** Resolves with a message's entry, or undefined after `ms` (time to re-claim). */
  wait(ms: number): Promise<Entry | undefined> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.pending) {
      const entry = this.pending;
      this.pending = undefined;
      return Promise.resolve(entry);
    }
    return new Promise((resolve, reject) => {
      const done = (): void => {
        this.clock.clearTimeout(timer);
        this.resolveWake = this.rejectWake = undefined;
      };
      const timer = this.clock.setTimeout(() => {
        done();
        resolve(undefined);
      }, ms);
      this.resolveWake = (entry) => {
        done();
        resolve(entry);
      };
      this.rejectWake = (error) => {
        done();
        reject(error);
      };
    });
  }
}

interface Channel {
  waiters: Set<Waiter>;
  subscribed: Promise<StoreSubscription | undefined>;
}

/**
 * SingleFlight across processes: identical concurrent calls on every replica sharing `store` run fn once.
 * Degrades to in-process dedup while the store is unavailable. See the protocol at the top of this file.
 */
export class SharedSingleFlight {
  private readonly store: Store;
  private readonly leaseMs: number;
  private readonly resultTtlMs: number;
  private readonly pollIntervalMs: number;
  private readonly maxResultBytes: number;
  private readonly waitTimeoutMs: number | undefined;
  private readonly shareWindowMs: number;
  private readonly serialize: (value: unknown) => string;
  private readonly deserialize: (text: string) => unknown;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly local: SingleFlight;
  private readonly events = new Emitter<SharedSingleFlightEvents>();
  private readonly channels = new Map<string, Channel>();
  private readonly waiters = new Set<Waiter>();
  private readonly renewals = new Set<() => void>();
  private readonly offUp: () => void;
  private counts = { leaders: 0, remoteFollowers: 0, takeovers: 0, tooLarge: 0, unshared: 0, fallbacks: 0, waitTimeouts: 0 };
  /** Set while the store is failing, so an outage is logged once, not once per call. */
  private degraded = false;
  private warnedSerialize = false;
  private closed = false;

  constructor(options: SharedSingleFlightOptions) {
    const o = parseOptions(sharedSingleFlightOptionsSchema, options ?? {}, 'SharedSingleFlight options');
    this.store = o.store;
    this.leaseMs = o.leaseMs ?? DEFAULT_LEASE_MS;
    this.resultTtlMs = o.resultTtlMs ?? DEFAULT_RESULT_TTL_MS;
    this.pollIntervalMs = o.pollIntervalMs ?? DEFAULT_POLL_MS;
    this.maxResultBytes = o.maxResultBytes ?? DEFAULT_MAX_RESULT_BYTES;
    this.waitTimeoutMs = o.waitTimeoutMs;
    this.shareWindowMs = o.shareWindowMs ?? 0;
    this.serialize = (o.serialize as ((value: unknown) => string) | undefined) ?? serializeWithBuffers;
    this.deserialize = (o.deserialize as ((text: string) => unknown) | undefined) ?? deserializeWithBuffers;
    this.clock = o.clock ?? systemClock;
    this.logger = o.logger ?? consoleLogger;
    this.local = new SingleFlight({ clock: this.clock });
    this.offUp = this.store.on('up', () => {
      this.degraded = false;
    });
  }

  stats(): SharedSingleFlightStats {
    return { ...this.counts, localFollowers: this.local.stats().followers };
  }

  on<K extends keyof SharedSingleFlightEvents>(event: K, listener: (e: SharedSingleFlightEvents[K]) => void): () => void {
    return this.events.on(event, listener);
  }

  /** Runs `fn` once for all concurrent calls of `key` on every replica; all get its value or its error. */
  do<T>(key: string, fn: () => Promise<T> | T): Promise<T> {
    return this.local.do(key, () => this.remote(key, fn, undefined));
  }

  /**
   * A Policy bound to `key` (for compose()). A caller's signal cancels only its own wait; the run's signal
   * (given to the work) aborts once every local caller aborted, and then waiters elsewhere take over.
   */
  policy(key: string): Policy {
    const local = this.local.policy(key);
    return {
      execute: <T>(work: Work<T>, signal?: AbortSignal) =>
        local.execute(
          (ctx) => this.remote(key, () => work(ctx), ctx.signal === NEVER_ABORTED ? undefined : ctx.signal),
          signal,
        ),
    };
  }

  /**
   * Stops lease renewals (a call still running here keeps running; its lease lapses unless it finishes
   * first), rejects calls waiting on other replicas with AbortedError and drops subscriptions. Later calls
   * run with in-process dedup only. The store is the caller's to close.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const stop of this.renewals) stop();
    this.renewals.clear();
    for (const waiter of this.waiters) waiter.fail(new AbortedError('SharedSingleFlight was closed while waiting for another replica'));
    const subscriptions = [...this.channels.values()].map((c) => c.subscribed);
    this.channels.clear();
    this.offUp();
    this.local.close();
    await Promise.all(subscriptions.map((s) => s.then((sub) => sub?.unsubscribe()).catch(() => undefined)));
  }

  private ids(key: string): Ids {
    const tag = `df:${createHash('sha1').update(key).digest('hex')}`;
    return { lease: this.store.key(tag, 'lease'), result: this.store.key(tag, 'result'), channel: tag };
  }

  private async remote<T>(key: string, fn: () => Promise<T> | T, signal: AbortSignal | undefined): Promise<T> {
    if (this.closed) return fn();
    if (!this.store.available) return this.fallback(key, fn, new Error('store not available'));
    const ids = this.ids(key);
    const token = leaseToken();
    let waiter: Waiter | undefined;
    let slow = false;
    const onAbort = (): void => waiter?.fail(abortedError(signal!));
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for (;;) {
        let reply: ClaimReply;
        try {
          const args = [token, leaseTtl(this.leaseMs), waiter ? String(waiter.since) : '', waiter?.observed ?? '', this.shareWindowMs];
          reply = await this.store.run(DEDUP_CLAIM, [ids.lease, ids.result], args, slow ? SLOW : undefined);
        } catch (error) {
          if (waiter?.failure !== undefined) throw waiter.failure;
          return await this.fallback(key, fn, error);
        }
        this.degraded = false;
        if (reply.kind === 'acquired') {
          if (waiter) {
            this.leave(ids, waiter);
            if (waiter.failure !== undefined) {
              // Timed out, aborted or closed while this claim was in flight: give the lease back.
              await this.store.run(LEASE_RELEASE, [ids.lease], [token]).catch(() => undefined);
              throw waiter.failure;
            }
            this.counts.takeovers++;
            this.events.emit('takeover', { key });
          }
          return await this.lead(key, ids, token, fn, signal);
        }
        if (waiter?.failure !== undefined) throw waiter.failure;
        if (reply.kind === 'entry') {
          const entry = parseEntry(reply.entry)!;
          if (waiter) this.leave(ids, waiter);
          return await this.settle(key, entry, fn);
        }
        if (!waiter) {
          waiter = this.join(ids, reply.now);
          waiter.see(reply.holder);
          if (signal?.aborted) waiter.fail(abortedError(signal));
          // Subscribe, then claim again at once: an outcome published before the subscription was active
          // is in the result key by now.
          await this.channels.get(ids.channel)?.subscribed;
          continue;
        }
        waiter.see(reply.holder);
        // Wake when the lease would lapse (a dead holder), at the poll interval (a lost message), or on a message.
        const delay = reply.ttlMs >= 0 ? Math.min(this.pollIntervalMs, reply.ttlMs + 1) : this.pollIntervalMs;
        const message = await waiter.wait(delay);
        slow = false;
        if (message && message.kind !== 'w' && message.kind !== 'r') {
          this.leave(ids, waiter);
          return await this.settle(key, message, fn);
        }
        // 'w': the value is only in the result key (too big to publish); 'r': the lease is free. Claim now.
        slow = message?.kind === 'w';
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      if (waiter) this.leave(ids, waiter);
    }
  }

  /** This replica holds the lease: run fn, keep the lease alive meanwhile, then publish the outcome. */
  private async lead<T>(key: string, ids: Ids, token: string, fn: () => Promise<T> | T, signal: AbortSignal | undefined): Promise<T> {
    this.counts.leaders++;
    const lease = new Lease(this.store, ids.lease, token, this.leaseMs);
    const stop = lease.keepAlive({
      clock: this.clock,
      onLost: () => {
        if (!this.closed) {
          this.logger.warn(
            `SharedSingleFlight: the lease of a running call lapsed (a stall longer than leaseMs=${this.leaseMs}?); another replica may run it too`,
          );
        }
      },
      onError: (error) => this.storeFailed(error),
    });
    this.renewals.add(stop);
    const done = (): void => {
      stop();
      this.renewals.delete(stop);
    };
    let value: T;
    try {
      value = await fn();
    } catch (error) {
      done();
      // An aborted run is nobody else's failure: release the lease so a waiter runs the call instead.
      if (signal?.aborted || (isAmasError(error) && error.code === 'AMAS_ABORTED')) await this.finish(ids, token, 'r', '');
      else await this.finish(ids, token, 'e', errorToWire(error));
      throw error;
    }
    done();
    const [kind, payload] = this.encode(key, value);
    await this.finish(ids, token, kind, payload);
    return value;
  }

  private encode(key: string, value: unknown): ['v' | 'n', string] {
    let payload: string;
    try {
      payload = this.serialize(value);
      if (typeof payload !== 'string') throw new TypeError(`serialize returned ${typeof payload}, not a string`);
    } catch (error) {
      this.counts.tooLarge++;
      this.events.emit('notShared', { key, reason: 'unserializable' });
      if (!this.warnedSerialize) {
        this.warnedSerialize = true;
        this.logger.warn(`SharedSingleFlight: a result could not be serialized, so it is not shared across replicas: ${String(error)}`);
      }
      return ['n', 'unserializable'];
    }
    // Cheap bound first: a string's UTF-8 size is at most 3 bytes per UTF-16 unit.
    if (payload.length * 3 > this.maxResultBytes) {
      const bytes = Buffer.byteLength(payload);
      if (bytes > this.maxResultBytes) {
        this.counts.tooLarge++;
        this.events.emit('notShared', { key, reason: 'too-large', bytes });
        return ['n', 'too-large'];
      }
    }
    return ['v', payload];
  }

  /** Stores the outcome, releases the lease and tells the waiters. A failure here only costs the waiters a poll. */
  private async finish(ids: Ids, token: string, kind: EntryKind, payload: string): Promise<void> {
    try {
      const ttl = kind === 'r' ? 0 : Math.max(this.resultTtlMs, this.shareWindowMs);
      const big = payload.length > SLOW_PAYLOAD_BYTES;
      const { at } = await this.store.run(DEDUP_COMPLETE, [ids.lease, ids.result], [token, kind, payload, ttl], big ? SLOW : undefined);
      const entry = `${kind}:${at}:${token}:${payload}`;
      await this.store.publish(ids.channel, entry.length <= INLINE_MESSAGE_BYTES ? entry : `w:${at}:${token}:`);
    } catch (error) {
      if (!this.closed) this.storeFailed(error);
    }
  }

  /** Turns another replica's outcome into this call's result. */
  private async settle<T>(key: string, entry: Entry, fn: () => Promise<T> | T): Promise<T> {
    if (entry.kind === 'e') {
      this.counts.remoteFollowers++;
      this.events.emit('remote', { key, outcome: 'error' });
      throw errorFromWire(entry.payload);
    }
    if (entry.kind === 'v') {
      let value: T;
      try {
        value = this.deserialize(entry.payload) as T;
      } catch (error) {
        if (!this.warnedSerialize) {
          this.warnedSerialize = true;
          this.logger.warn(`SharedSingleFlight: another replica's result could not be deserialized; running the call here: ${String(error)}`);
        }
        this.counts.unshared++;
        return fn();
      }
      this.counts.remoteFollowers++;
      this.events.emit('remote', { key, outcome: 'value' });
      return value;
    }
    // 'n': the holder's result was not shared. Run without the lease: every waiter would get a too-large
    // result again, so queueing them behind one another would only add latency.
    this.counts.unshared++;
    return fn();
  }

  private async fallback<T>(key: string, fn: () => Promise<T> | T, error: unknown): Promise<T> {
    this.counts.fallbacks++;
    this.events.emit('fallback', { key, error });
    this.storeFailed(error);
    return fn();
  }

  private storeFailed(error: unknown): void {
    if (this.degraded || this.closed) return;
    this.degraded = true;
    const reason = error instanceof Error ? error.message : String(error);
    this.logger.warn(`SharedSingleFlight: the store failed (${reason}); dedup is per process until it answers again`);
  }

  /** Registers a waiter on its key's channel, subscribing when it is the key's first waiter here. */
  private join(ids: Ids, since: number): Waiter {
    const waiter = new Waiter(since, this.clock);
    this.waiters.add(waiter);
    if (this.waitTimeoutMs !== undefined) {
      const limit = this.waitTimeoutMs;
      waiter.deadline = this.clock.setTimeout(() => {
        waiter.deadline = undefined;
        this.counts.waitTimeouts++;
        waiter.fail(new TimeoutError(`SharedSingleFlight: waited ${limit}ms for another replica running this call`));
      }, limit);
    }
    let channel = this.channels.get(ids.channel);
    if (!channel) {
      const waiters = new Set<Waiter>();
      const subscribed = this.store
        .subscribe(ids.channel, (message) => {
          const entry = parseEntry(message);
          if (entry) for (const w of waiters) w.offer(entry);
        })
        .catch((error: unknown) => {
          // Polling still finds the outcome; only the wake-up is slower.
          this.storeFailed(error);
          return undefined;
        });
      channel = { waiters, subscribed };
      this.channels.set(ids.channel, channel);
    }
    channel.waiters.add(waiter);
    return waiter;
  }

  /** Idempotent. Unsubscribes when the key's last waiter here leaves. */
  private leave(ids: Ids, waiter: Waiter): void {
    if (!this.waiters.delete(waiter)) return;
    if (waiter.deadline !== undefined) this.clock.clearTimeout(waiter.deadline);
    waiter.deadline = undefined;
    const channel = this.channels.get(ids.channel);
    if (!channel || !channel.waiters.delete(waiter) || channel.waiters.size > 0) return;
    this.channels.delete(ids.channel);
    void channel.subscribed.then((sub) => sub?.unsubscribe()).catch(() => undefined);
  }
}

const SLOW: StoreRunOptions = { slow: true };
