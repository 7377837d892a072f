import { AbortedError } from '../errors.js';
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

/** The one shared signal that never aborts: policies compare against it to skip adding listeners (which would leak). */
export const NEVER_ABORTED: AbortSignal = new AbortController().signal;

/** The signal to use when the caller gave none. */
export function signalOrNever(signal: AbortSignal | undefined): AbortSignal {
  return signal ?? NEVER_ABORTED;
}

/** The AbortedError a policy rejects with when the caller's signal aborts (the signal's reason as cause). */
export function abortedError(signal: AbortSignal): AbortedError {
  return new AbortedError(undefined, { cause: signal.reason });
}

/** Runs `work` and turns a synchronous throw into a rejection. */
export async function run<T>(work: Work<T>, ctx: ExecuteContext): Promise<T> {
  return work(ctx);
}
