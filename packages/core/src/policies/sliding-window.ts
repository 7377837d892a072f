import { z } from 'zod';
import { systemClock, type Clock } from '../clock.js';
import { durationSchema, formatDuration } from '../options/duration.js';
import { clockSchema, nonNegativeInt, parseOptions, positiveInt } from '../options/validate.js';
import { InMemoryLimiter, type LimitDecision, type WindowState, type WindowUsage } from './limit-decision.js';

/**
 * Strict sliding windows, several at once (e.g. 100/minute + 1000/hour + 10000/day): a call is admitted
 * only if every window has room, and then it is charged to all of them.
 *
 * Each window of length W is cut into B sub-buckets (bucket j covers [jW/B, (j+1)W/B)) and a ring of the
 * last B+1 bucket counts is kept. A call at time t sees every unit charged in (t-W, t] because all of
 * them sit in the B+1 buckets ending at t's bucket, so no span of length W ever holds more than `limit`
 * units. The price of strictness: a unit keeps counting for between W and W + W/B ms.
 *
 * The algorithm is a pure state transition over plain numbers and arrays: given (state, config, now,
 * cost) it updates the state and returns the wait, with no clock, timers or I/O. The in-memory store
 * runs it per key; a Redis store can run the same arithmetic inside a Lua script so processes share one
 * window atomically.
 */
export interface SlidingWindowState {
  /** Per window: absolute index of the newest bucket the ring has been rotated to. */
  heads: number[];
  /** Per window: sum of the ring. */
  totals: number[];
  /** The rings back to back: window w owns slots [offsets[w], offsets[w] + buckets[w] + 1). */
  counts: number[];
  /** Time of the last charge (-Infinity when none). */
  lastAt: number;
}

export interface SlidingWindowConfig {
  limits: number[];
  windowMs: number[];
  /** Sub-buckets per window (B); the ring has B + 1 slots. */
  buckets: number[];
  offsets: number[];
}

function slot(index: number, size: number): number {
  const r = index % size;
  return r < 0 ? r + size : r;
}

function bucketIndex(t: number, windowMs: number, buckets: number): number {
  return Math.floor((t * buckets) / windowMs);
}

/** First whole ms that falls in bucket `index` (integer arithmetic where it matters, so no float drift). */
function bucketStart(index: number, windowMs: number, buckets: number): number {
  return Math.ceil((index * windowMs) / buckets);
}

export function slidingWindowInitial(config: SlidingWindowConfig, now: number): SlidingWindowState {
  const n = config.limits.length;
  const heads: number[] = [];
  let slots = 0;
  for (let w = 0; w < n; w++) {
    heads.push(bucketIndex(now, config.windowMs[w]!, config.buckets[w]!));
    slots += config.buckets[w]! + 1;
  }
  return { heads, totals: new Array<number>(n).fill(0), counts: new Array<number>(slots).fill(0), lastAt: -Infinity };
}

/** Rotates every ring to `now`, dropping buckets that left the window. A clock moving back rotates nothing. */
export function slidingWindowAdvance(state: SlidingWindowState, config: SlidingWindowConfig, now: number): void {
  const { heads, totals, counts } = state;
  for (let w = 0; w < heads.length; w++) {
    const buckets = config.buckets[w]!;
    const current = bucketIndex(now, config.windowMs[w]!, buckets);
    let head = heads[w]!;
    if (current <= head) continue;
    const size = buckets + 1;
    const offset = config.offsets[w]!;
    if (current - head >= size || totals[w] === 0) {
      if (totals[w] !== 0) for (let k = 0; k < size; k++) counts[offset + k] = 0;
      totals[w] = 0;
    } else {
      let total = totals[w]!;
      while (head < current) {
        head++;
        const s = offset + slot(head, size);
        total -= counts[s]!;
        counts[s] = 0;
      }
      // Fractional costs can leave float dust; a ring holding nothing must read exactly 0.
      totals[w] = total > 1e-9 ? total : 0;
    }
    heads[w] = current;
  }
}

/** ms until `excess` units have aged out of window `w` (the oldest buckets leave first). */
function waitForExcess(state: SlidingWindowState, config: SlidingWindowConfig, w: number, now: number, excess: number): number {
  const buckets = config.buckets[w]!;
  const windowMs = config.windowMs[w]!;
  const size = buckets + 1;
  const offset = config.offsets[w]!;
  const head = state.heads[w]!;
  let freed = 0;
  for (let index = head - buckets; index <= head; index++) {
    freed += state.counts[offset + slot(index, size)]!;
    // Bucket `index` stops counting once the current bucket is index + B + 1.
    if (freed >= excess - 1e-9) return bucketStart(index + size, windowMs, buckets) - now;
  }
  return bucketStart(head + size, windowMs, buckets) - now;
}

/**
 * Charges `cost` to every window and returns 0 if all have room; otherwise charges nothing and returns
 * ms (> 0) until the call would fit: the longest wait over the windows that deny.
 */
export function slidingWindowConsume(state: SlidingWindowState, config: SlidingWindowConfig, now: number, cost: number): number {
  slidingWindowAdvance(state, config, now);
  const { heads, totals, counts } = state;
  const n = heads.length;
  let wait = 0;
  for (let w = 0; w < n; w++) {
    const excess = totals[w]! + cost - config.limits[w]!;
    if (excess > 0) {
      const ww = waitForExcess(state, config, w, now, excess);
      if (ww > wait) wait = ww;
    }
  }
  if (wait > 0) return wait;
  if (cost > 0) {
    for (let w = 0; w < n; w++) {
      counts[config.offsets[w]! + slot(heads[w]!, config.buckets[w]! + 1)]! += cost;
      totals[w]! += cost;
    }
    if (now > state.lastAt) state.lastAt = now;
  }
  return 0;
}

/** ms until everything window `w` holds now has aged out (0 when empty). */
export function slidingWindowResetMs(state: SlidingWindowState, config: SlidingWindowConfig, w: number, now: number): number {
  if (state.totals[w] === 0) return 0;
  const buckets = config.buckets[w]!;
  const size = buckets + 1;
  const offset = config.offsets[w]!;
  const head = state.heads[w]!;
  for (let index = head; index >= head - buckets; index--) {
    if (state.counts[offset + slot(index, size)]! > 0) {
      return Math.max(0, bucketStart(index + size, config.windowMs[w]!, buckets) - now);
    }
  }
  return 0;
}

/** True when every unit ever charged has left every window, so the state equals a fresh one. */
export function slidingWindowIdle(state: SlidingWindowState, config: SlidingWindowConfig, now: number): boolean {
  if (state.lastAt === -Infinity) return true;
  for (let w = 0; w < config.limits.length; w++) {
    const windowMs = config.windowMs[w]!;
    const buckets = config.buckets[w]!;
    if (bucketIndex(now, windowMs, buckets) - bucketIndex(state.lastAt, windowMs, buckets) <= buckets) return false;
  }
  return true;
}

const windowSpecSchema = z.strictObject({
  name: z.string().min(1).optional(),
  limit: positiveInt,
  window: durationSchema.refine((ms) => ms >= 1, 'a duration of at least 1ms'),
});

/** Sub-bucket count bounds: more buckets = tighter windows but more memory per key. */
export const MAX_BUCKETS = 3600;

export const windowsSchema = z
  .array(windowSpecSchema)
  .min(1)
  .max(10)
  .superRefine((windows, ctx) => {
    const seen = new Map<string, number>();
    windows.forEach((w, i) => {
      const name = w.name ?? defaultWindowName(w.limit, w.window);
      const first = seen.get(name);
      if (first !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: [i, 'name'],
          message: `a window name not already used by windows.${first} (${JSON.stringify(name)})`,
        });
      } else seen.set(name, i);
    });
  });

export const slidingWindowOptionsSchema = z.strictObject({
  name: z.string().min(1).optional(),
  windows: windowsSchema,
  buckets: z.number().int().min(1).max(MAX_BUCKETS).optional(),
  maxQueue: nonNegativeInt.optional(),
  maxKeys: positiveInt.optional(),
  clock: clockSchema.optional(),
});

export interface SlidingWindowSpec {
  /** Default `<limit>-per-<window>`, e.g. '100-per-1m'. */
  name?: string;
  /** Units admitted per window: an integer >= 1. */
  limit: number;
  /** Window length: ms or a duration string ('1m', '1h', '1d'). */
  window: number | string;
}

export interface SlidingWindowOptions {
  /** Limiter name (errors, metrics). Default 'sliding-window'. */
  name?: string;
  /** 1 to 10 windows enforced together. */
  windows: SlidingWindowSpec[];
  /** Sub-buckets per window, default 60 (capped at the window length in ms). */
  buckets?: number;
  /** Waiters across all keys of this limiter for `take`. Default 1000. */
  maxQueue?: number;
  /** Keys held in memory; beyond it the least recently used key is dropped. Default 100000. */
  maxKeys?: number;
  clock?: Clock;
}

export function defaultWindowName(limit: number, windowMs: number): string {
  return `${limit}-per-${formatDuration(windowMs)}`;
}

interface WindowInfo {
  name: string;
  limit: number;
  windowMs: number;
}

/** In-memory strict sliding-window limiter per key. Costs must be finite numbers from 0 to the smallest limit. */
export class SlidingWindowLimiter extends InMemoryLimiter<SlidingWindowState> {
  readonly windows: readonly Readonly<WindowInfo>[];
  private readonly config: SlidingWindowConfig;

  constructor(options: SlidingWindowOptions) {
    const o = parseOptions(slidingWindowOptionsSchema, options, 'SlidingWindowLimiter options');
    const buckets = o.buckets ?? 60;
    const config: SlidingWindowConfig = { limits: [], windowMs: [], buckets: [], offsets: [] };
    const windows: WindowInfo[] = [];
    let offset = 0;
    for (const w of o.windows) {
      // Buckets shorter than 1 ms buy nothing on a ms clock.
      const b = Math.max(1, Math.min(buckets, Math.floor(w.window)));
      config.limits.push(w.limit);
      config.windowMs.push(w.window);
      config.buckets.push(b);
      config.offsets.push(offset);
      offset += b + 1;
      windows.push({ name: w.name ?? defaultWindowName(w.limit, w.window), limit: w.limit, windowMs: w.window });
    }
    const longest = Math.max(...config.windowMs.map((ms, i) => ms + ms / config.buckets[i]!));
    super({
      name: o.name ?? 'sliding-window',
      clock: o.clock ?? systemClock,
      maxCost: Math.min(...config.limits),
      maxKeys: o.maxKeys ?? 100_000,
      maxQueue: o.maxQueue ?? 1000,
      sweepIntervalMs: Math.min(60_000, Math.max(1000, longest)),
    });
    this.config = config;
    this.windows = windows;
  }

  protected initial(now: number): SlidingWindowState {
    return slidingWindowInitial(this.config, now);
  }

  protected advance(state: SlidingWindowState, now: number): void {
    slidingWindowAdvance(state, this.config, now);
  }

  protected consume(state: SlidingWindowState, now: number, cost: number): number {
    return slidingWindowConsume(state, this.config, now, cost);
  }

  protected idle(state: SlidingWindowState, now: number): boolean {
    return slidingWindowIdle(state, this.config, now);
  }

  protected clone(state: SlidingWindowState): SlidingWindowState {
    return { heads: state.heads.slice(), totals: state.totals.slice(), counts: state.counts.slice(), lastAt: state.lastAt };
  }

  protected decision(state: SlidingWindowState, now: number, cost: number, retryAfterMs: number): LimitDecision {
    const n = this.windows.length;
    const windows: WindowState[] = n === 1 ? [this.windowState(state, 0, now)] : [];
    if (n > 1) for (let w = 0; w < n; w++) windows.push(this.windowState(state, w, now));
    return { allowed: retryAfterMs === 0, cost, retryAfterMs, windows };
  }

  private windowState(state: SlidingWindowState, w: number, now: number): WindowState {
    const info = this.windows[w]!;
    const left = info.limit - state.totals[w]!;
    return {
      name: info.name,
      limit: info.limit,
      windowMs: info.windowMs,
      remaining: left > 0 ? Math.floor(left) : 0,
      resetMs: slidingWindowResetMs(state, this.config, w, now),
    };
  }

  protected usage(state: SlidingWindowState, now: number): WindowUsage[] {
    return this.windows.map((info, w) => {
      const used = state.totals[w]!;
      const left = info.limit - used;
      return {
        name: info.name,
        limit: info.limit,
        windowMs: info.windowMs,
        used,
        remaining: left > 0 ? Math.floor(left) : 0,
        resetMs: slidingWindowResetMs(state, this.config, w, now),
      };
    });
  }
}
