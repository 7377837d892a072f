/** What every policy wraps: a unit of work that may be cancelled through `signal`. */
export interface ExecuteContext {
  /** Aborted when a timeout fires, the caller aborts, or retry gives up. Pass it to fetch/undici. */
  signal: AbortSignal;
  /** 1 for the first attempt, 2 for the first retry, ... (set by retry; 1 otherwise). */
  attempt: number;
}

export type Work<T> = (ctx: ExecuteContext) => Promise<T> | T;

export interface Policy {
  execute<T>(work: Work<T>, signal?: AbortSignal): Promise<T>;
}

const neverAborted = new AbortController().signal;

/** The signal to use when the caller gave none: one shared signal that never aborts. */
export function signalOrNever(signal: AbortSignal | undefined): AbortSignal {
  return signal ?? neverAborted;
}

/** Runs `work` and turns a synchronous throw into a rejection. */
export async function run<T>(work: Work<T>, ctx: ExecuteContext): Promise<T> {
  return work(ctx);
}
