// Node child-process "replicas" for multi-instance tests. Each replica is `child_process.fork(fixture)`
// with an IPC channel; the fixture (an ESM .mjs file) calls `serve(handlers)` from ./replica-child.mjs.
//
//   const replicas = await startReplicas(4, new URL('../fixtures/my-replica.mjs', import.meta.url), { REDIS_URL });
//   const results = await Promise.all(replicas.map((r) => r.request({ type: 'hit', key: 'k' })));
//   await replicas.stopAll();
//
// A child's stdout and stderr are collected (never streamed, to keep test output clean); they are printed
// to the parent's stderr when the child fails (fails to start, exits on its own with an error, or a request
// times out) and included in the error thrown.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const READY_TYPE = '__amas_replica_ready'; // keep in sync with replica-child.mjs
const DEFAULT_READY_TIMEOUT_MS = 10_000;
const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 3_000;
const OUTPUT_LIMIT = 64 * 1024;

export interface ReplicaExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ReplicaRequest {
  type: string;
  [field: string]: unknown;
}

export interface ReplicaHandle {
  /** 0-based position in its group. */
  readonly index: number;
  readonly pid: number;
  /** Resolves (never rejects) when the child has exited. */
  readonly exited: Promise<ReplicaExit>;
  /** Sends `{ id, ...message }` and resolves with the handler's result; rejects with the handler's error, on timeout, or when the child exits first. */
  request<T = unknown>(message: ReplicaRequest, opts?: { timeoutMs?: number }): Promise<T>;
  /** Sends `signal` (default SIGTERM) and resolves with the exit once the child has exited. */
  kill(signal?: NodeJS.Signals): Promise<ReplicaExit>;
  /** Collected output so far (last 64 KiB of each). */
  stdout(): string;
  stderr(): string;
}

export type ReplicaGroup = ReplicaHandle[] & {
  /** SIGTERM to every live replica, SIGKILL after 3 s; resolves when all have exited. */
  stopAll(): Promise<void>;
};

export interface StartReplicasOptions {
  /** How long each child may take to call serve(). Default 10 s. */
  readyTimeoutMs?: number;
  /** Default timeout of request(). Default 10 s. */
  requestTimeoutMs?: number;
  /** argv for the fixture. */
  args?: string[];
  /** Node flags for the child. Default [] (the vitest worker's own flags are not passed on). */
  execArgv?: string[];
  cwd?: string;
  /** Print a failing child's stderr to this process's stderr (default true; errors always include it). */
  echoStderrOnFailure?: boolean;
}

interface Pending {
  resolve(value: unknown): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
  type: string;
}

const live = new Set<Replica>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const r of live) r.killNow();
  });
}

function appendBounded(current: string, chunk: string): string {
  const next = current + chunk;
  return next.length > OUTPUT_LIMIT ? next.slice(-OUTPUT_LIMIT) : next;
}

function describeExit(exit: ReplicaExit): string {
  return exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
}

class Replica implements ReplicaHandle {
  readonly exited: Promise<ReplicaExit>;
  readonly ready: Promise<void>;
  private exitInfo: ReplicaExit | undefined;
  private out = '';
  private err = '';
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private killRequested = false;
  private reportedFailure = false;

  constructor(
    readonly index: number,
    private readonly child: ChildProcess,
    private readonly fixture: string,
    private readonly requestTimeoutMs: number,
    readyTimeoutMs: number,
    private readonly echoStderr: boolean,
  ) {
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    child.stdout?.on('data', (d: string) => (this.out = appendBounded(this.out, d)));
    child.stderr?.on('data', (d: string) => (this.err = appendBounded(this.err, d)));

    let spawnError: Error | undefined;
    this.exited = new Promise<ReplicaExit>((resolve) => {
      child.once('error', (e) => {
        // spawn failure: no 'exit' will follow
        spawnError = e;
        if (child.pid === undefined) {
          this.exitInfo = { code: null, signal: null };
          resolve(this.exitInfo);
        }
      });
      child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        live.delete(this);
        // Resolve once stdout/stderr are drained ('close'), so the collected stderr is complete; do not
        // wait forever if a grandchild still holds them open.
        const exit = this.exitInfo;
        const timer = setTimeout(() => resolve(exit), 500);
        child.once('close', () => {
          clearTimeout(timer);
          resolve(exit);
        });
      });
    });

    void this.exited.then((exit) => {
      const failed = !this.killRequested && (exit.code !== 0 || exit.signal !== null);
      const why = spawnError ? `could not be started: ${spawnError.message}` : describeExit(exit);
      for (const [, p] of this.pending) {
        clearTimeout(p.timer);
        p.reject(this.failure(`${why} before answering a ${JSON.stringify(p.type)} request`));
      }
      this.pending.clear();
      if (failed) this.reportFailure(why);
    });

    child.on('message', (message: unknown) => this.onMessage(message));

    this.ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.reportFailure(`did not call serve() within ${readyTimeoutMs} ms`);
        reject(this.failure(`did not call serve() within ${readyTimeoutMs} ms`));
      }, readyTimeoutMs);
      const onMessage = (m: unknown) => {
        if (m && typeof m === 'object' && (m as { type?: unknown }).type === READY_TYPE) {
          clearTimeout(timer);
          child.off('message', onMessage);
          resolve();
        }
      };
      child.on('message', onMessage);
      void this.exited.then((exit) => {
        clearTimeout(timer);
        reject(this.failure(spawnError ? `could not be started: ${spawnError.message}` : `${describeExit(exit)} before calling serve()`));
      });
    });
    this.ready.catch(() => {}); // observed by startReplicas; avoid unhandled rejections if not
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  stdout(): string {
    return this.out;
  }

  stderr(): string {
    return this.err;
  }

  private label(): string {
    return `replica #${this.index} (pid ${this.pid}, ${this.fixture})`;
  }

  private failure(message: string): Error {
    const stderr = this.err.trim();
    return new Error(`${this.label()} ${message}${stderr ? `\n--- replica stderr ---\n${stderr}` : '\n(replica stderr is empty)'}`);
  }

  private reportFailure(why: string): void {
    if (this.reportedFailure || !this.echoStderr) return;
    this.reportedFailure = true;
    const stderr = this.err.trim();
    process.stderr.write(`[startReplicas] ${this.label()} ${why}${stderr ? `; its stderr:\n${stderr}\n` : ' (stderr empty)\n'}`);
  }

  private onMessage(message: unknown): void {
    if (!message || typeof message !== 'object') return;
    const { id, ok, result, error } = message as { id?: unknown; ok?: unknown; result?: unknown; error?: { name?: string; message?: string; code?: unknown; stack?: string } };
    if (typeof id !== 'number') return;
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    if (ok) {
      p.resolve(result);
    } else {
      const e = new Error(`${this.label()} failed ${JSON.stringify(p.type)}: ${error?.message ?? 'unknown error'}`) as Error & { code?: unknown; remoteStack?: string };
      e.name = error?.name ?? 'Error';
      if (error?.code !== undefined) e.code = error.code;
      if (error?.stack) e.remoteStack = error.stack;
      p.reject(e);
    }
  }

  request<T = unknown>(message: ReplicaRequest, opts: { timeoutMs?: number } = {}): Promise<T> {
    if (!message || typeof message.type !== 'string') return Promise.reject(new TypeError(`request() needs a message with a string "type", got ${JSON.stringify(message)}`));
    if (this.exitInfo) return Promise.reject(this.failure(`is not running (it ${describeExit(this.exitInfo)}); cannot send a ${JSON.stringify(message.type)} request`));
    const id = this.nextId++;
    const timeoutMs = opts.timeoutMs ?? this.requestTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.reportFailure(`did not answer a ${JSON.stringify(message.type)} request within ${timeoutMs} ms`);
        reject(this.failure(`did not answer a ${JSON.stringify(message.type)} request within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer, type: message.type });
      try {
        this.child.send({ ...message, id }, (err) => {
          if (!err) return;
          const p = this.pending.get(id);
          if (!p) return;
          this.pending.delete(id);
          clearTimeout(timer);
          reject(this.failure(`could not be sent a ${JSON.stringify(message.type)} request: ${err.message}`));
        });
      } catch (err) {
        this.pending.delete(id);
        clearTimeout(timer);
        reject(this.failure(`could not be sent a ${JSON.stringify(message.type)} request: ${(err as Error).message}`));
      }
    });
  }

  async kill(signal: NodeJS.Signals = 'SIGTERM'): Promise<ReplicaExit> {
    if (!this.exitInfo) {
      this.killRequested = true;
      try {
        this.child.kill(signal);
      } catch {
        /* already gone */
      }
    }
    return this.exited;
  }

  /** SIGTERM, SIGKILL after a grace period; resolves when exited. */
  async stop(): Promise<ReplicaExit> {
    if (this.exitInfo) return this.exited;
    const grace = setTimeout(() => {
      try {
        this.child.kill('SIGKILL');
      } catch {
        /* already gone */
      }
    }, STOP_GRACE_MS);
    try {
      return await this.kill('SIGTERM');
    } finally {
      clearTimeout(grace);
    }
  }

  killNow(): void {
    if (this.exitInfo) return;
    this.killRequested = true;
    try {
      this.child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

/**
 * Forks `count` replicas of `fixturePath` (an ESM .mjs that calls serve() from replica-child.mjs) and
 * resolves once every one has called serve(). `env` is added to the parent's environment (undefined
 * removes a variable). If any replica fails to start, all are killed and the error names the failing one
 * and includes its stderr.
 */
export async function startReplicas(
  count: number,
  fixturePath: string | URL,
  env: Record<string, string | undefined> = {},
  opts: StartReplicasOptions = {},
): Promise<ReplicaGroup> {
  if (!Number.isInteger(count) || count < 1) throw new Error(`startReplicas: count must be a positive integer, got ${count}`);
  installExitHook();
  const fixture = fixturePath instanceof URL || String(fixturePath).startsWith('file:') ? fileURLToPath(fixturePath) : String(fixturePath);
  const childEnv: NodeJS.ProcessEnv = { ...process.env };
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete childEnv[k];
    else childEnv[k] = v;
  }
  const replicas: Replica[] = [];
  for (let i = 0; i < count; i++) {
    const child = fork(fixture, opts.args ?? [], {
      env: childEnv,
      cwd: opts.cwd,
      execArgv: opts.execArgv ?? [],
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      serialization: 'advanced',
    });
    const replica = new Replica(i, child, fixture, opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS, opts.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS, opts.echoStderrOnFailure ?? true);
    live.add(replica);
    replicas.push(replica);
  }
  const stopAll = async () => {
    await Promise.all(replicas.map((r) => r.stop()));
  };
  const started = await Promise.allSettled(replicas.map((r) => r.ready));
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.all(replicas.map((r) => r.kill('SIGKILL')));
    throw failed.reason;
  }
  return Object.assign(replicas as ReplicaHandle[], { stopAll });
}

/** Stops every replica started by startReplicas in this process that is still running. */
export async function stopAllReplicas(): Promise<void> {
  await Promise.all([...live].map((r) => r.stop()));
}
