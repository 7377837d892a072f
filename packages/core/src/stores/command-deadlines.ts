interface Pending {
  deadline: number;
  settled: boolean;
  reject: (error: unknown) => void;
}

/**
 * Deadlines for Redis commands without a timer per command: pending commands sit in arrival order, and one
 * ticker (running only while something is pending) rejects those past their deadline. Commands mostly settle
 * in order, so the ticker only looks at the head of the queue. A command that answers after its deadline is
 * ignored: its caller has already moved on (to a local fallback).
 */
export class CommandDeadlines {
  static readonly TIMEOUT: unique symbol = Symbol('amas.store.timeout');
  private queue: Pending[] = [];
  private head = 0;
  private ticker: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly timeoutMs: number) {}

  track<T>(promise: Promise<T>, timeoutMs?: number): Promise<T> {
    if (timeoutMs !== undefined && timeoutMs !== this.timeoutMs) return withTimer(promise, timeoutMs);
    return new Promise<T>((resolve, reject) => {
      // Every queued command has the same timeout, so deadlines grow along the queue.
      const pending: Pending = { deadline: performance.now() + this.timeoutMs, settled: false, reject };
      this.queue.push(pending);
      if (this.ticker === undefined) this.start();
      promise.then(
        (value) => {
          if (pending.settled) return;
          pending.settled = true;
          resolve(value);
        },
        (error: unknown) => {
          if (pending.settled) return;
          pending.settled = true;
          reject(error);
        },
      );
    });
  }

  /** Rejects everything still pending (the store is closing). */
  close(error: unknown): void {
    for (let i = this.head; i < this.queue.length; i++) {
      const p = this.queue[i]!;
      if (!p.settled) {
        p.settled = true;
        p.reject(error);
      }
    }
    this.queue = [];
    this.head = 0;
    this.stop();
  }

  private start(): void {
    // A quarter of the timeout bounds how late a timeout fires; 2ms bounds the ticker's own cost.
    const every = Math.max(2, Math.floor(this.timeoutMs / 4));
    this.ticker = setInterval(() => this.tick(), every);
    this.ticker.unref();
  }

  private stop(): void {
    if (this.ticker !== undefined) clearInterval(this.ticker);
    this.ticker = undefined;
  }

  private tick(): void {
    const now = performance.now();
    const q = this.queue;
    let i = this.head;
    while (i < q.length) {
      const p = q[i]!;
      if (!p.settled) {
        if (p.deadline > now) break; // later ones are due later still
        p.settled = true;
        p.reject(CommandDeadlines.TIMEOUT);
      }
      i++;
    }
    this.head = i;
    if (this.head === q.length) {
      this.queue = [];
      this.head = 0;
      this.stop();
    } else if (this.head > 1024 && this.head * 2 > q.length) {
      this.queue = q.slice(this.head);
      this.head = 0;
    }
  }
}

/** A command with its own timeout (rare: slow work) gets a timer of its own. */
function withTimer<T>(promise: Promise<T>, timeoutMs: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(CommandDeadlines.TIMEOUT), timeoutMs);
    timer.unref();
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
