import { performance } from 'node:perf_hooks';

/**
 * Command deadlines for connections AMAS owns, without a timer or wrapper promise per command: it counts
 * commands in flight and remembers when the connection last made progress (a reply arrived, or the first
 * command was sent to an idle connection). Replies on a connection come in order, so "nothing answered for
 * `timeoutMs` while commands wait" is exactly "the oldest command is past its deadline". A ticker, running only
 * while commands are in flight, then calls `onStall`: the store resets the connection, which fails every
 * command in flight at once (they then count as timeouts) and reconnects.
 */
export class StallWatchdog {
  private inFlight = 0;
  private lastProgress = 0;
  private ticker: ReturnType<typeof setInterval> | undefined;
  /** Set from a stall until the connection is ready again: errors in between are the stall's timeouts. */
  stalled = false;

  constructor(
    readonly timeoutMs: number,
    private readonly onStall: (inFlight: number) => void,
  ) {}

  sent(): void {
    if (this.inFlight++ === 0) {
      this.lastProgress = performance.now();
      if (this.ticker === undefined) this.start();
    }
  }

  /** A reply (or error) arrived; `now` is the caller's performance.now() (it measures latency anyway). */
  settled(now: number): void {
    this.inFlight--;
    this.lastProgress = now;
  }

  close(): void {
    if (this.ticker !== undefined) clearInterval(this.ticker);
    this.ticker = undefined;
  }

  private start(): void {
    // A quarter of the timeout bounds how late a stall is noticed; 2ms bounds the ticker's own cost.
    this.ticker = setInterval(() => this.tick(), Math.max(2, Math.floor(this.timeoutMs / 4)));
    this.ticker.unref();
  }

  private tick(): void {
    if (this.inFlight <= 0) {
      this.inFlight = 0;
      this.close();
      return;
    }
    if (this.stalled || performance.now() - this.lastProgress < this.timeoutMs) return;
    this.stalled = true;
    this.onStall(this.inFlight);
  }
}
