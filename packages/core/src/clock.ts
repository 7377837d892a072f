/**
 * Time is injected everywhere a policy measures or waits, so tests drive windows and timeouts with a
 * ManualClock instead of sleeping.
 */
export type TimerHandle = { readonly __timer: unique symbol } | object;

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle | undefined): void;
}

/** Wall clock. Timers are unref'd: a pending AMAS timer never keeps a process alive. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, Math.max(0, ms));
    t.unref?.();
    return t;
  },
  clearTimeout(handle) {
    if (handle !== undefined) clearTimeout(handle as NodeJS.Timeout);
  },
};

/**
 * systemClock's time for hot paths (a limiter decision, an L1 hit), where reading the system clock costs more
 * than the rest of the work (70 to 100 ns on virtual machines). Date.now() is read once and reused until a 1 ms
 * timer forgets it, or after COARSE_READS reads, whichever comes first: a reading lags the true time by about
 * a millisecond at most (no more than a few dozen calls' time while one synchronous run keeps the timer from
 * firing) and never runs ahead. A span measured between two readings is therefore off by up to ~1 ms either
 * way: a TTL or a limit window of W acts as W +/- 1 ms. Injected clocks are read directly by the callers,
 * so tests stay exact.
 */
export function coarseNow(): number {
  if (coarseReadsLeft-- > 0) return coarseTime;
  coarseTime = Date.now();
  coarseReadsLeft = COARSE_READS - 1;
  if (!coarseTimerArmed) {
    coarseTimerArmed = true;
    setTimeout(forgetCoarseTime, 1).unref();
  }
  return coarseTime;
}

const COARSE_READS = 64;
let coarseTime = 0;
let coarseReadsLeft = 0;
let coarseTimerArmed = false;
function forgetCoarseTime(): void {
  coarseTimerArmed = false;
  coarseReadsLeft = 0;
}

interface ManualTimer {
  id: number;
  at: number;
  fn: () => void;
}

/** A clock that only moves when told to. `advance` fires due timers in order, letting promises settle between them. */
export class ManualClock implements Clock {
  private current: number;
  private timers: ManualTimer[] = [];
  private nextId = 1;

  constructor(start = 1_700_000_000_000) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const timer: ManualTimer = { id: this.nextId++, at: this.current + Math.max(0, ms), fn };
    this.timers.push(timer);
    return timer;
  }

  clearTimeout(handle: TimerHandle | undefined): void {
    this.timers = this.timers.filter((t) => t !== handle);
  }

  /** Number of timers not yet fired or cleared. */
  get pendingTimers(): number {
    return this.timers.length;
  }

  /** Moves time forward by `ms`, firing every timer that falls due, in due order. */
  async advance(ms: number): Promise<void> {
    const target = this.current + ms;
    for (;;) {
      await flushMicrotasks();
      const due = this.timers.filter((t) => t.at <= target).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.timers = this.timers.filter((t) => t !== due);
      this.current = Math.max(this.current, due.at);
      due.fn();
    }
    this.current = target;
    await flushMicrotasks();
  }

  /** Sets the time without firing timers (for tests of pure decisions). */
  set(time: number): void {
    this.current = time;
  }
}

async function flushMicrotasks(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
  await new Promise<void>((resolve) => setImmediate(resolve));
}

/** Waits `ms` on `clock`; rejects with the signal's reason when aborted. */
export function sleep(ms: number, clock: Clock = systemClock, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clock.clearTimeout(handle);
      reject(signal!.reason);
    };
    const handle = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
