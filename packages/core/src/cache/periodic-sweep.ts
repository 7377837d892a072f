import type { Clock, TimerHandle } from '../clock.js';

/**
 * Runs `sweep` every `intervalMs` (0: never), one run at a time: the next is scheduled when the previous
 * settles. A failed sweep waits for the next one (readers ignore expired data meanwhile). `stop()` cancels the
 * timer and waits for a run in progress, so a level's `close()` leaves nothing running behind it.
 */
export class PeriodicSweep {
  private timer: TimerHandle | undefined;
  private running: Promise<unknown> | undefined;
  private stopped = false;

  constructor(
    private readonly clock: Clock,
    private readonly intervalMs: number,
    private readonly sweep: () => Promise<unknown>,
  ) {}

  /** Schedules the next run (a no-op when already scheduled, running, stopped, or the interval is 0). */
  start(): void {
    if (this.intervalMs === 0 || this.stopped || this.timer !== undefined || this.running !== undefined) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.running = this.sweep()
        .catch(() => undefined)
        .finally(() => {
          this.running = undefined;
          this.start();
        });
    }, this.intervalMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
