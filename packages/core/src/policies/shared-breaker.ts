/**
 * A circuit breaker shared by every replica through a Store (Redis): when it opens in one replica, the
 * others open within one Pub/Sub hop, and while half-open the probes are limited cluster-wide, so a
 * recovering upstream gets `halfOpenMaxProbes` probes in total, not that many per replica.
 *
 * How it fits the in-process CircuitBreaker:
 * - Local decisions stay local and synchronous. SharedBreaker hears every local transition (the breaker's
 *   sync hook), writes it to the shared record with a compare-and-set on the epoch it was based on, and
 *   publishes the written record. A transition based on outdated knowledge loses to the record already
 *   there and the replica adopts that record instead; manual ones (open/close/isolate/reset/restore) always
 *   win, since an operator asked for them.
 * - Received records are applied with `breaker._adopt()`, which is never reported back to the hook, so a
 *   received transition is never re-published (no echo storms). Epochs order them: a record whose epoch is
 *   not above the one this replica has is ignored (late, duplicated or own messages).
 * - Half-open probes need a lease from BREAKER_PROBE (at most halfOpenMaxProbes holders, each with a PX
 *   expiry so a dead prober frees its slot). `execute` waits for the store's answer; the synchronous
 *   `tryAcquire` can only use a lease this replica already holds, so its first half-open call starts
 *   fetching one and is rejected (Retry-After), and the lease waits briefly for the next call.
 * - The closed hot path never touches the store: only transitions and half-open admissions do.
 * - When the store fails, the breaker works alone (logged once per outage) and resyncs when the store is
 *   back: it adopts a newer shared record, or else publishes what it decided meanwhile.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import { consoleLogger, type Logger } from '../logger.js';
import { parseOptions, loggerSchema } from '../options/validate.js';
import { isStore, type Store, type StoreSubscription } from '../stores/store.js';
import { z } from 'zod';
import { clockSchema } from '../options/validate.js';
import {
  BREAKER_PROBE,
  BREAKER_READ,
  BREAKER_TRANSITION,
  decodeMessage,
  encodeMessage,
  type RecordReply,
  type SharedRecord,
} from './breaker-scripts.js';
import type { BreakerState, BreakerSync, CircuitBreaker, ProbeLease } from './circuit-breaker.js';
import { DEFAULT_PROBE_LEASE_MS, DEFAULT_STATE_TTL_MS, sharedBreakerSettingsSchema, type SharedBreakerSettings } from './shared-breaker-options.js';

export { sharedBreakerSettingSchema, sharedBreakerSettingsSchema } from './shared-breaker-options.js';
export type { SharedBreakerSetting, SharedBreakerSettings } from './shared-breaker-options.js';

export interface SharedBreakerOptions extends SharedBreakerSettings {
  store: Store;
  /** Names this process in shared records and events (`stateChange.origin`). Default `<host>:<pid>:<random>`. */
  replicaId?: string;
  /** For the short hold of a prefetched lease and retry hints; use the breaker's clock. Default systemClock. */
  clock?: Clock;
  logger?: Logger;
}

const optionsSchema = sharedBreakerSettingsSchema.extend({
  store: z.custom<Store>(isStore, { message: 'a Store (MemoryStore, RedisStore)' }),
  replicaId: z.string().min(1).max(200).optional(),
  clock: clockSchema.optional(),
  logger: loggerSchema
    .optional(),
});

/** A rejected half-open call is told to come back after this (the probe should settle by then). */
const PROBE_RETRY_MS = 1000;
/** After a store failure only this breaker saw: how soon it subscribes and re-reads the shared state again. */
const RESYNC_RETRY_MS = 1000;
/**
 * A lease fetched for tryAcquire waits this long for the call that will use it, then goes back: an idle
 * replica must not keep the cluster's only probe slot for the whole lease.
 */
const PREFETCH_HOLD_MS = 1000;

/** The lease used when the store cannot be asked: the breaker's local probe limit alone applies. */
const LOCAL_LEASE: ProbeLease = Object.freeze({ release() {} });

/** `<host>:<pid>:<random>`: unique per call, readable in logs. */
export function newReplicaId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}

export class SharedBreaker implements BreakerSync {
  readonly breaker: CircuitBreaker;
  readonly replicaId: string;
  /** Resolves once subscribed and the shared state was read and applied. Never rejects: a store that cannot answer leaves the breaker working locally. */
  readonly ready: Promise<void>;
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly probeLeaseMs: number;
  private readonly stateTtlMs: number;
  private readonly stateKey: string;
  private readonly probeKey: string;
  private readonly channel: string;

  /** Epoch of the shared record the local state corresponds to. */
  private epoch = 0;
  /** Bumped whenever an adopted record changed the local state: local transitions queued before it are void. */
  private adoptions = 0;
  /** Store work runs one at a time, in order: a transition is written before the lease release after it. */
  private tail: Promise<unknown> = Promise.resolve();
  private attached = false;
  private closed = false;
  /** A store call failed and the store has not answered since: logged once, and the store's return triggers a resync. */
  private degraded = false;
  /** A local transition could not be written: resync publishes the local state. */
  private dirty = false;
  private retryTimer: TimerHandle | undefined;
  private subscription: StoreSubscription | undefined;
  private readonly offStoreEvents: Array<() => void> = [];
  /** Leases fetched for tryAcquire, not used yet. */
  private held: HeldLease[] = [];
  private fetching = false;
  /** After "all slots busy", no store call before this (local clock): a busy half-open breaker must not cost a store call per request. */
  private deniedUntil = 0;
  private leaseSeq = 0;

  constructor(breaker: CircuitBreaker, options: SharedBreakerOptions) {
    const o = parseOptions(optionsSchema, options, `shared circuit breaker "${breaker.name}" options`);
    this.breaker = breaker;
    this.store = o.store;
    this.replicaId = o.replicaId ?? newReplicaId();
    this.clock = o.clock ?? systemClock;
    this.logger = o.logger ?? consoleLogger;
    this.probeLeaseMs = o.probeLeaseMs ?? DEFAULT_PROBE_LEASE_MS;
    this.stateTtlMs = o.stateTtlMs ?? DEFAULT_STATE_TTL_MS;
    const tag = `breaker:${breaker.name}`;
    this.stateKey = this.store.key(tag, 'state');
    this.probeKey = this.store.key(tag, 'probes');
    this.channel = tag;
    breaker._attachSync(this);
    this.offStoreEvents.push(
      this.store.on('up', () => this.onStoreUp()),
      this.store.on('down', ({ error }) => this.markDown(error)),
    );
    // Subscribe before reading, so no transition falls between the read and the subscription.
    this.ready = this.enqueue(async () => {
      await this.ensureSubscribed();
      await this.resyncNow();
    })
      .catch((error: unknown) => this.markDown(error))
      .then(() => {
        this.attached = true;
      });
  }

  /** Epoch of the shared state this replica holds (0: none yet). For tests and diagnostics. */
  get currentEpoch(): number {
    return this.epoch;
  }

  /** Re-reads the shared state and reconciles with it (done by itself when the store comes back). */
  resync(): Promise<void> {
    return this.enqueue(async () => {
      await this.ensureSubscribed();
      await this.resyncNow();
    });
  }

  /** Stops syncing: unsubscribes, returns unused leases and detaches from the breaker, which keeps its state. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    systemClock.clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.breaker._attachSync(undefined);
    for (const off of this.offStoreEvents) off();
    this.dropHeld();
    await this.tail;
    await this.subscription?.unsubscribe().catch(() => undefined);
    this.subscription = undefined;
  }

  // ---- BreakerSync: called by the breaker ----

  /** @internal */
  transitioned(change: { from: BreakerState; to: BreakerState; reason: string; manual: boolean }): void {
    if (this.closed) return;
    if (change.to !== 'half-open') this.dropHeld();
    this.deniedUntil = 0;
    const view = this.breaker._syncView();
    const stamp = this.adoptions;
    void this.enqueue(async () => {
      // An adopted record replaced the state this transition came from: it is outdated, as a lost CAS would be.
      if (!change.manual && stamp !== this.adoptions) return;
      if (!this.store.available) {
        this.dirty = true;
        this.markDown(new Error('store unavailable'));
        return;
      }
      await this.write(view.state, change.reason, change.manual ? '' : String(this.epoch), view.openForMs, view.reopenCount);
    }).catch((error: unknown) => this.markDown(error));
  }

  /** @internal */
  takeProbe(): ProbeLease | undefined {
    if (!this.syncing()) return LOCAL_LEASE;
    const lease = this.held.pop();
    if (lease) {
      lease.take();
      return lease;
    }
    if (!this.fetching && this.clock.now() >= this.deniedUntil) {
      this.fetching = true;
      void this.requestLease().then((got) => {
        this.fetching = false;
        // A LOCAL_LEASE here means the store failed: the next call is admitted locally anyway.
        if (got instanceof HeldLease) this.hold(got);
      });
    }
    return undefined;
  }

  /** @internal */
  acquireProbe(): Promise<ProbeLease | undefined> {
    if (!this.syncing()) return Promise.resolve(LOCAL_LEASE);
    const lease = this.held.pop();
    if (lease) {
      lease.take();
      return Promise.resolve(lease);
    }
    if (this.clock.now() < this.deniedUntil) return Promise.resolve(undefined);
    return this.requestLease();
  }

  /** @internal */
  probeRetryAfterMs(): number {
    const wait = this.deniedUntil - this.clock.now();
    return wait > 0 ? wait : PROBE_RETRY_MS;
  }

  // ---- store side ----

  /**
   * Whether probes ask the store. Not while the store says it is unavailable (no call per request to a dead
   * Redis); a call that fails anyway falls back to a local lease.
   */
  private syncing(): boolean {
    return this.attached && !this.closed && this.store.available;
  }

  private enqueue<T>(op: () => Promise<T>): Promise<T> {
    const next = this.tail.then(op, op);
    this.tail = next.catch(() => undefined);
    return next;
  }

  /** CAS-writes one state (base '' = unconditional); publishes it when written, adopts the newer record when not. */
  private async write(state: BreakerState, reason: string, base: string, openForMs: number | undefined, reopen: number): Promise<void> {
    let r: RecordReply;
    try {
      r = await this.store.run(BREAKER_TRANSITION, [this.stateKey], [
        state,
        reason,
        this.replicaId,
        base,
        Math.round(openForMs ?? 0),
        reopen,
        // Outlives the open period however long the backoff made it: a replica starting then must see it open.
        this.stateTtlMs + Math.round(openForMs ?? 0),
      ]);
    } catch (error) {
      this.dirty = true;
      this.markDown(error);
      return;
    }
    this.markUp();
    if (r.code !== 1 || !r.record) {
      this.adopt(r.record, r.now);
      return;
    }
    this.epoch = r.record.epoch;
    try {
      await this.store.publish(this.channel, encodeMessage(r.record, r.now));
    } catch (error) {
      // Written but not announced: the retry writes it again (a new epoch) and announces that.
      this.dirty = true;
      this.markDown(error);
    }
  }

  /** Reads the record and reconciles: a newer shared state wins; otherwise the local state is published if it differs. */
  private async resyncNow(): Promise<void> {
    if (this.closed) return;
    let r: RecordReply;
    try {
      r = await this.store.run(BREAKER_READ, [this.stateKey], []);
    } catch (error) {
      this.markDown(error);
      return;
    }
    this.markUp();
    const rec = r.record;
    if (rec && rec.epoch > this.epoch) {
      // Someone else moved meanwhile: their decision is newer than anything decided here while cut off.
      this.dirty = false;
      this.adopt(rec, r.now);
      return;
    }
    const view = this.breaker._syncView();
    const differs = rec ? rec.state !== view.state : view.state !== 'closed';
    if (this.dirty || differs) {
      this.dirty = false;
      await this.write(view.state, 'resync', rec ? String(rec.epoch) : '', view.openForMs, view.reopenCount);
    }
  }

  private async ensureSubscribed(): Promise<void> {
    if (this.subscription || this.closed) return;
    try {
      this.subscription = await this.store.subscribe(this.channel, (message) => this.onMessage(message));
    } catch (error) {
      this.markDown(error);
    }
  }

  private onMessage(message: string): void {
    if (this.closed) return;
    const decoded = decodeMessage(message);
    if (!decoded || decoded.record.origin === this.replicaId) return;
    this.adopt(decoded.record, decoded.at);
  }

  /** Applies a shared record if it is newer than what this replica has. `storeNow`: the store time the record was read/written at. */
  private adopt(rec: SharedRecord | undefined, storeNow: number): void {
    if (!rec || rec.epoch <= this.epoch || this.closed) return;
    this.epoch = rec.epoch;
    this.deniedUntil = 0;
    const before = this.breaker._syncView().state;
    this.dropHeld(); // leases belong to the epoch they were granted in
    this.breaker._adopt({
      state: rec.state,
      reason: rec.reason,
      origin: rec.origin,
      ...(rec.until === undefined ? {} : { openForMs: Math.max(0, rec.until - storeNow) }),
      ...(rec.openedAt === undefined ? {} : { openedAgoMs: Math.max(0, storeNow - rec.openedAt) }),
      reopenCount: rec.reopen,
    });
    if (before !== rec.state) this.adoptions++;
  }

  /** One cluster-wide probe slot for the current half-open epoch, or undefined. Never rejects. */
  private requestLease(): Promise<ProbeLease | undefined> {
    return this.enqueue(async () => {
      if (this.closed || this.breaker._syncView().state !== 'half-open') return undefined;
      if (!this.store.available) return LOCAL_LEASE;
      const epoch = this.epoch;
      const holder = `${this.replicaId}#${++this.leaseSeq}`;
      let r;
      try {
        r = await this.store.run(BREAKER_PROBE, [this.stateKey, this.probeKey], [
          'acquire',
          String(epoch),
          holder,
          this.breaker._syncView().maxProbes,
          this.probeLeaseMs,
        ]);
      } catch (error) {
        this.markDown(error);
        return LOCAL_LEASE;
      }
      this.markUp();
      if (r.code === 1) return new HeldLease(this, holder, epoch);
      if (r.code === 0) {
        this.deniedUntil = this.clock.now() + Math.min(Math.max(1, r.waitMs), PROBE_RETRY_MS);
        return undefined;
      }
      // Our half-open is not the shared one: a newer record wins; with none newer, publish ours.
      if (r.record && r.record.epoch > this.epoch) this.adopt(r.record, r.now);
      else await this.resyncNow();
      return undefined;
    }).catch(() => undefined);
  }

  /** @internal Called by HeldLease. */
  _release(lease: HeldLease): void {
    this.held = this.held.filter((l) => l !== lease);
    void this.enqueue(() =>
      this.store.run(BREAKER_PROBE, [this.stateKey, this.probeKey], ['release', String(lease.epoch), lease.holder, 0, 0]),
    ).catch(() => undefined); // an unreleased lease expires by itself
  }

  /** Keeps a lease fetched for tryAcquire for the next call, briefly. */
  private hold(lease: HeldLease): void {
    if (this.closed || lease.epoch !== this.epoch || this.breaker._syncView().state !== 'half-open') {
      lease.release();
      return;
    }
    lease.idle = this.clock.setTimeout(() => lease.release(), Math.min(PREFETCH_HOLD_MS, this.probeLeaseMs));
    this.held.push(lease);
  }

  private dropHeld(): void {
    for (const lease of [...this.held]) lease.release();
    this.held = [];
  }

  /** @internal */
  _clearTimer(handle: TimerHandle | undefined): void {
    this.clock.clearTimeout(handle);
  }

  private markDown(error: unknown): void {
    if (this.closed) return;
    // The store's own 'up' event only follows an outage the store noticed; a failure only this breaker saw
    // (a subscription or publish that timed out under load) is retried here, or it would stay deaf.
    this.scheduleRetry();
    if (this.degraded) return;
    this.degraded = true;
    this.logger.warn(`circuit breaker "${this.breaker.name}": shared store unavailable, deciding locally until it is back`, error);
  }

  private scheduleRetry(): void {
    if (this.retryTimer !== undefined) return;
    // Real time, unref'd: retries are about the store coming back, not about the breaker's (test) clock.
    this.retryTimer = systemClock.setTimeout(() => {
      this.retryTimer = undefined;
      if (this.closed || !this.degraded) return;
      this.resync().then(
        () => {
          if (this.degraded) this.scheduleRetry();
        },
        (error: unknown) => this.markDown(error),
      );
    }, RESYNC_RETRY_MS);
  }

  private markUp(): void {
    if (!this.degraded) return;
    this.degraded = false;
    // Back after an outage: pick up what was missed and publish what was decided meanwhile.
    if (!this.closed) this.resync().catch((error: unknown) => this.markDown(error));
  }

  private onStoreUp(): void {
    if (this.closed) return;
    this.degraded = false;
    this.resync().catch((error: unknown) => this.markDown(error));
  }
}

class HeldLease implements ProbeLease {
  idle: TimerHandle | undefined;
  private released = false;

  constructor(
    private readonly owner: SharedBreaker,
    readonly holder: string,
    readonly epoch: number,
  ) {}

  /** Taken by a call: no longer waiting to be used. */
  take(): void {
    this.owner._clearTimer(this.idle);
    this.idle = undefined;
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.take();
    this.owner._release(this);
  }
}
