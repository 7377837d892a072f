// Real Redis topologies for multi-process tests: a single redis-server, a 3-master Redis Cluster and a
// Sentinel, each one a child process of the test process (never --daemonize, so we own every pid).
//
// Every process started here is registered. Leftovers are killed by:
//   - stopAllRedis() (call it from an afterAll),
//   - a process 'exit' handler (the test process ends normally),
//   - a small `sh` guard per server that holds a pipe from the test process and, when that pipe closes
//     (the test process died, including SIGTERM from vitest's pool or SIGKILL), SIGKILLs the server and
//     removes its temp dir. The guard checks /proc/<pid>/cmdline names our port before killing anything.
//
// Talking to servers: `redisCommand(port, ...args)` is a tiny RESP client over a fresh loopback socket
// (no dependency on ioredis, which is not resolvable from test/); `redisCli(port, ...args)` runs redis-cli.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const REDIS_HOST = '127.0.0.1' as const;

const START_TIMEOUT_MS = 10_000;
const EXIT_TIMEOUT_MS = 5_000;
const CLUSTER_TIMEOUT_MS = 20_000;
const POLL_MS = 25;

// ---------------------------------------------------------------------------------------------------------
// Public types

export interface RedisServerHandle {
  readonly port: number;
  /** redis://127.0.0.1:PORT */
  readonly url: string;
  /** pid of the current redis-server process (changes after restart()). */
  readonly pid: number;
  /** the server's --dir (removed by stop()). */
  readonly dir: string;
  /** true while the process is running (also true while paused). */
  readonly running: boolean;
  /** Sends `signal` (default SIGKILL) and resolves once the process has exited. No-op when not running. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts redis-server again on the same port and dir (killing the current one first if it runs); waits for PING. */
  restart(): Promise<void>;
  /** SIGSTOP: the server keeps its socket but stops answering (a hung Redis). */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
  /** Kills the process (if running), waits for its exit, removes the temp dir. Idempotent. */
  stop(): Promise<void>;
  /** Tail of the server's log file and stderr, for error messages. */
  logTail(): string;
}

export interface RedisClusterHandle {
  readonly nodes: Array<{ host: typeof REDIS_HOST; port: number }>;
  /** One handle per master, in `nodes` order (kill/restart a node to test failures). */
  readonly servers: RedisServerHandle[];
  /** How long startRedisCluster took, in ms (spawn + `redis-cli --cluster create` + convergence). */
  readonly startMs: number;
  /** The phases of startMs: spawning the nodes, `redis-cli --cluster create`, waiting for every node to agree. */
  readonly timings: { spawnMs: number; createMs: number; convergeMs: number };
  stop(): Promise<void>;
}

export interface SentinelHandle {
  readonly port: number;
  readonly name: 'amasmaster';
  readonly pid: number;
  readonly url: string;
  /** Sentinel's own view of the master, as answered by SENTINEL get-master-addr-by-name. */
  readonly masterPort: number;
  stop(): Promise<void>;
}

export type RedisReply = string | number | null | RedisReplyError | RedisReply[];

export class RedisReplyError extends Error {
  override name = 'RedisReplyError';
}

// ---------------------------------------------------------------------------------------------------------
// Registry and last-resort cleanup

interface Registered {
  killNow(): void; // synchronous SIGKILL of the server and its guard, rm of the dir
  stop(): Promise<void>;
}

const registry = new Set<Registered>();
let exitHookInstalled = false;

function register(entry: Registered): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const e of registry) e.killNow();
      registry.clear();
    });
  }
  registry.add(entry);
}

/** Stops every redis-server / sentinel started by this module in this process (servers, cluster nodes, sentinels). */
export async function stopAllRedis(): Promise<void> {
  const entries = [...registry];
  const results = await Promise.allSettled(entries.map((e) => e.stop()));
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed.length) throw new AggregateError(failed.map((f) => f.reason), `stopAllRedis: ${failed.length} process(es) failed to stop`);
}

// The guard: a `sh` that blocks on a pipe only this process holds. EOF means the test process is gone.
const GUARD_SCRIPT = [
  `trap '' INT TERM HUP`,
  `read _ignored || true`,
  `pid=$(cat "$1/owner.pid" 2>/dev/null)`,
  `if [ -n "$pid" ] && grep -q "127.0.0.1:$2" "/proc/$pid/cmdline" 2>/dev/null; then kill -9 "$pid" 2>/dev/null; sleep 0.2; fi`,
  `rm -rf -- "$1"`,
].join('\n');

function startGuard(dir: string, port: number): ChildProcess {
  const guard = spawn('sh', ['-c', GUARD_SCRIPT, 'amas-redis-guard', dir, String(port)], {
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  guard.on('error', () => {}); // no sh: we still have the exit handler and stopAllRedis()
  guard.unref();
  (guard.stdin as unknown as net.Socket | null)?.unref?.();
  guard.stdin?.on('error', () => {});
  return guard;
}

// ---------------------------------------------------------------------------------------------------------
// Small utilities

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Polls `check` until it returns a value other than undefined/false. Rejects after `timeoutMs` with an error
 * naming `what` and the last error `check` threw. `abort` is consulted before each try: a string aborts with it.
 */
export async function waitUntil<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  opts: { timeoutMs?: number; intervalMs?: number; abort?: () => string | undefined } = {},
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? START_TIMEOUT_MS;
  const intervalMs = opts.intervalMs ?? POLL_MS;
  const deadline = Date.now() + timeoutMs;
  let last = 'no attempt finished';
  for (;;) {
    const aborted = opts.abort?.();
    if (aborted) throw new Error(`gave up waiting for ${what}: ${aborted}`);
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value as T;
      last = `condition not met yet (got ${JSON.stringify(value)})`;
    } catch (err) {
      last = errorText(err);
    }
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last})`);
    await sleep(intervalMs);
  }
}

function tailOf(text: string, max = 4000): string {
  return text.length > max ? `...${text.slice(-max)}` : text;
}

// ---------------------------------------------------------------------------------------------------------
// Minimal RESP client

function encodeCommand(args: Array<string | number | Buffer>): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a));
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/** Parses one RESP2 reply from buf at pos; undefined when the buffer does not yet hold a whole reply. */
function parseReply(buf: Buffer, pos: number): { value: RedisReply; pos: number } | undefined {
  const eol = buf.indexOf('\r\n', pos);
  if (eol < 0) return undefined;
  const type = String.fromCharCode(buf[pos]!);
  const line = buf.toString('utf8', pos + 1, eol);
  const next = eol + 2;
  switch (type) {
    case '+':
      return { value: line, pos: next };
    case '-':
      return { value: new RedisReplyError(line), pos: next };
    case ':':
      return { value: Number(line), pos: next };
    case '$': {
      const len = Number(line);
      if (len < 0) return { value: null, pos: next };
      if (buf.length < next + len + 2) return undefined;
      return { value: buf.toString('utf8', next, next + len), pos: next + len + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, pos: next };
      const items: RedisReply[] = [];
      let p = next;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buf, p);
        if (!item) return undefined;
        items.push(item.value);
        p = item.pos;
      }
      return { value: items, pos: p };
    }
    default:
      throw new Error(`unexpected RESP type byte ${JSON.stringify(type)}`);
  }
}

/**
 * Sends one command to 127.0.0.1:port on a fresh connection and resolves with the reply. An error reply
 * rejects with RedisReplyError. `target` may carry a timeout (default 2000 ms).
 */
export function redisCommand(target: number | { port: number; timeoutMs?: number }, ...args: Array<string | number | Buffer>): Promise<RedisReply> {
  const port = typeof target === 'number' ? target : target.port;
  const timeoutMs = typeof target === 'number' ? 2_000 : (target.timeoutMs ?? 2_000);
  const cmd = args.map((a) => (Buffer.isBuffer(a) ? '<buffer>' : String(a))).join(' ');
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    let settled = false;
    const socket = net.connect({ host: REDIS_HOST, port });
    const finish = (err: Error | undefined, value?: RedisReply) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(value as RedisReply);
    };
    const timer = setTimeout(() => finish(new Error(`redis 127.0.0.1:${port}: no reply to "${cmd}" within ${timeoutMs} ms`)), timeoutMs);
    socket.on('error', (err) => finish(new Error(`redis 127.0.0.1:${port}: "${cmd}" failed: ${err.message}`)));
    socket.on('close', () => finish(new Error(`redis 127.0.0.1:${port}: connection closed before a reply to "${cmd}"`)));
    socket.on('connect', () => socket.write(encodeCommand(args)));
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      let parsed: ReturnType<typeof parseReply>;
      try {
        parsed = parseReply(buf, 0);
      } catch (err) {
        finish(err as Error);
        return;
      }
      if (!parsed) return;
      if (parsed.value instanceof RedisReplyError) finish(new RedisReplyError(`redis 127.0.0.1:${port}: "${cmd}": ${parsed.value.message}`));
      else finish(undefined, parsed.value);
    });
  });
}

/** Runs `redis-cli -h 127.0.0.1 -p PORT ...args` and resolves with its trimmed stdout. Use '-c' first for cluster redirects. */
export function redisCli(port: number, ...args: string[]): Promise<string> {
  return runRedisCli(['-h', REDIS_HOST, '-p', String(port), ...args], 10_000);
}

function runRedisCli(args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('redis-cli', args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        const why = (err as NodeJS.ErrnoException & { killed?: boolean }).killed ? `timed out after ${timeoutMs} ms` : err.message;
        reject(new Error(`redis-cli ${args.join(' ')}: ${why}\nstdout: ${tailOf(stdout)}\nstderr: ${tailOf(stderr)}`));
      } else resolve(stdout.trim());
    });
  });
}

/** Parses "key:value" lines (INFO, CLUSTER INFO) into an object. */
export function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0 && !line.startsWith('#')) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Free ports

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen({ host: REDIS_HOST, port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

// Below the kernel's ephemeral range (32768+), so outgoing connections never sit on our ports; a cluster
// node also needs port + 10000 (its bus port) free.
const PORT_MIN = 20_000;
const PORT_MAX = 32_000;
const recentlyPicked = new Set<number>();

async function pickFreePort(opts: { bus?: boolean } = {}): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = PORT_MIN + Math.floor(Math.random() * (PORT_MAX - PORT_MIN));
    if (port === 6379 || recentlyPicked.has(port)) continue;
    if (!(await canBind(port))) continue;
    if (opts.bus && !(await canBind(port + 10_000))) continue;
    recentlyPicked.add(port);
    return port;
  }
  throw new Error(`no free port found in ${PORT_MIN}-${PORT_MAX}${opts.bus ? ' (with a free cluster bus port at +10000)' : ''}`);
}

// ---------------------------------------------------------------------------------------------------------
// One managed redis-server (or sentinel) process

interface ProcessSpec {
  port: number;
  dir: string;
  /** arguments for redis-server, built once; reused on restart */
  args: string[];
  /** label for error messages, e.g. "redis-server" or "sentinel" */
  label: string;
  logFile: string;
}

class ManagedRedis implements RedisServerHandle {
  readonly url: string;
  private child: ChildProcess | undefined;
  private childExited: Promise<void> = Promise.resolve();
  private exitInfo: string | undefined;
  private stderrBuf = '';
  private guard: ChildProcess | undefined;
  private stopped = false;
  private paused = false;
  private readonly entry: Registered;

  constructor(private readonly spec: ProcessSpec) {
    this.url = `redis://${REDIS_HOST}:${spec.port}`;
    this.entry = { killNow: () => this.killNow(), stop: () => this.stop() };
    register(this.entry);
    this.guard = startGuard(spec.dir, spec.port);
  }

  get port(): number {
    return this.spec.port;
  }
  get dir(): string {
    return this.spec.dir;
  }
  get pid(): number {
    return this.child?.pid ?? -1;
  }
  get running(): boolean {
    return this.child !== undefined && this.exitInfo === undefined;
  }

  logTail(): string {
    let log = '';
    try {
      log = readFileSync(this.spec.logFile, 'utf8');
    } catch {
      log = '(no log file)';
    }
    return `--- ${this.spec.label} log (${this.spec.logFile}) ---\n${tailOf(log, 3000)}${this.stderrBuf ? `\n--- stderr ---\n${tailOf(this.stderrBuf, 2000)}` : ''}`;
  }

  /** Spawns the process and waits until it answers PING with its own pid (not some other server's). */
  async start(): Promise<void> {
    if (this.stopped) throw new Error(`${this.spec.label} on port ${this.spec.port} was stopped; start a new one`);
    this.exitInfo = undefined;
    this.stderrBuf = '';
    this.paused = false;
    const child = spawn('redis-server', this.spec.args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    let spawnError: Error | undefined;
    this.childExited = new Promise<void>((resolve) => {
      child.once('error', (err) => {
        spawnError = err;
        this.exitInfo ??= `failed to spawn: ${err.message}`;
        resolve();
      });
      child.once('exit', (code, signal) => {
        this.exitInfo = signal ? `killed by ${signal}` : `exited with code ${code}`;
        resolve();
      });
    });
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (d: string) => {
      this.stderrBuf = tailOf(this.stderrBuf + d, 8000);
    });
    child.unref();
    (child.stderr as unknown as net.Socket | null)?.unref?.();
    if (child.pid !== undefined) writeFileSync(path.join(this.spec.dir, 'owner.pid'), String(child.pid));

    const what = `${this.spec.label} (pid ${child.pid}) on 127.0.0.1:${this.spec.port} to answer PING`;
    try {
      await waitUntil(
        what,
        async () => {
          const info = await redisCommand({ port: this.spec.port, timeoutMs: 1000 }, 'INFO', 'server');
          const pid = Number(parseInfo(String(info)).process_id);
          if (pid !== child.pid) throw new Error(`port ${this.spec.port} is answered by another process (pid ${pid})`);
          return (await redisCommand({ port: this.spec.port, timeoutMs: 1000 }, 'PING')) === 'PONG';
        },
        { timeoutMs: START_TIMEOUT_MS, abort: () => (this.child === child ? this.exitInfo : 'superseded by another start') },
      );
    } catch (err) {
      if (spawnError && (spawnError as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new Error('redis-server is not installed (spawn redis-server: ENOENT)');
      }
      await this.killChild('SIGKILL');
      throw new Error(`${errorText(err)}\n${this.logTail()}`);
    }
  }

  private async killChild(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (!child || this.exitInfo !== undefined) return;
    if (this.paused && signal !== 'SIGKILL') child.kill('SIGCONT');
    child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${this.spec.label} pid ${child.pid} on 127.0.0.1:${this.spec.port} did not exit within ${EXIT_TIMEOUT_MS} ms of ${signal}`)),
        EXIT_TIMEOUT_MS,
      );
    });
    try {
      await Promise.race([this.childExited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (signal === 'SIGSTOP' || signal === 'SIGCONT' || signal === 'SIGTSTP') {
      return Promise.reject(new Error(`kill(${signal}) would never see the process exit: use pause()/resume()`));
    }
    return this.killChild(signal);
  }

  pause(): void {
    if (!this.running) throw new Error(`${this.spec.label} on port ${this.spec.port} is not running`);
    this.child!.kill('SIGSTOP');
    this.paused = true;
  }

  resume(): void {
    if (!this.running) throw new Error(`${this.spec.label} on port ${this.spec.port} is not running`);
    this.child!.kill('SIGCONT');
    this.paused = false;
  }

  async restart(): Promise<void> {
    await this.killChild('SIGKILL');
    await this.start();
  }

  private killNow(): void {
    try {
      if (this.running) this.child!.kill('SIGKILL');
    } catch {
      /* already gone */
    }
    try {
      this.guard?.kill('SIGKILL');
    } catch {
      /* already gone */
    }
    rmSync(this.spec.dir, { recursive: true, force: true });
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    try {
      // Tests do not need a graceful shutdown (no persistence): SIGKILL is immediate and works while paused.
      await this.killChild('SIGKILL');
    } finally {
      this.guard?.kill('SIGKILL');
      this.guard = undefined;
      rmSync(this.spec.dir, { recursive: true, force: true });
      registry.delete(this.entry);
    }
  }
}

function looksLikePortClash(err: unknown): boolean {
  return /Address already in use|answered by another process|Could not create server TCP|cluster bus/i.test(errorText(err));
}

async function launch(label: string, explicitPort: number | undefined, buildArgs: (port: number, dir: string) => string[], logName: string, bus = false): Promise<ManagedRedis> {
  if (explicitPort === 6379) throw new Error('refusing to start a test redis on 6379 (the shared Redis lives there)');
  const attempts = explicitPort === undefined ? 5 : 1;
  let lastErr: unknown;
  for (let i = 0; i < attempts; i++) {
    const port = explicitPort ?? (await pickFreePort({ bus }));
    const dir = mkdtempSync(path.join(os.tmpdir(), `amas-${label.replace(/\W+/g, '-')}-${port}-`));
    const logFile = path.join(dir, logName);
    const server = new ManagedRedis({ port, dir, label, logFile, args: buildArgs(port, dir) });
    try {
      await server.start();
      return server;
    } catch (err) {
      lastErr = err;
      await server.stop().catch(() => {});
      if (!looksLikePortClash(err)) throw err;
    }
  }
  throw lastErr;
}

// ---------------------------------------------------------------------------------------------------------
// Public starters

/** What every redis-server the harness starts gets: loopback only, no persistence, its own dir and log. */
function serverArgs(port: number, dir: string): string[] {
  // prettier-ignore
  return [
    '--port', String(port),
    '--bind', REDIS_HOST,
    '--save', '',
    '--appendonly', 'no',
    '--daemonize', 'no',
    '--dir', dir,
    '--logfile', path.join(dir, 'redis.log'),
  ];
}

/** Starts one redis-server on 127.0.0.1 (a free port unless given), no persistence, a fresh temp --dir. */
export async function startRedisServer(opts: { port?: number; args?: string[] } = {}): Promise<RedisServerHandle> {
  return launch(
    'redis-server',
    opts.port,
    (port, dir) => [...serverArgs(port, dir), ...(opts.args ?? [])],
    'redis.log',
    (opts.args ?? []).some((a) => /cluster-enabled/i.test(a)),
  );
}

/**
 * Starts `masters` (default and minimum 3) cluster-enabled redis-servers, joins them with
 * `redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes`, and waits until every node reports
 * cluster_state:ok, all 16384 slots assigned and ok, and knows every other node.
 */
export async function startRedisCluster(opts: { masters?: number } = {}): Promise<RedisClusterHandle> {
  const masters = opts.masters ?? 3;
  if (!Number.isInteger(masters) || masters < 3) throw new Error(`startRedisCluster: masters must be an integer >= 3 (redis-cli needs 3), got ${masters}`);
  const started = Date.now();
  const servers: RedisServerHandle[] = [];
  const stop = async () => {
    await Promise.allSettled(servers.map((s) => s.stop()));
  };
  try {
    const results = await Promise.allSettled(
      Array.from({ length: masters }, () =>
        launch(
          'redis-cluster-node',
          undefined,
          (port, dir) => [
            ...serverArgs(port, dir),
            '--cluster-enabled', 'yes',
            '--cluster-config-file', path.join(dir, 'nodes.conf'),
            '--cluster-node-timeout', '2000',
          ],
          'redis.log',
          true,
        ),
      ),
    );
    for (const r of results) if (r.status === 'fulfilled') servers.push(r.value);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;

    const spawned = Date.now();
    const addrs = servers.map((s) => `${REDIS_HOST}:${s.port}`);
    await runRedisCli(['--cluster', 'create', ...addrs, '--cluster-replicas', '0', '--cluster-yes'], CLUSTER_TIMEOUT_MS);

    const created = Date.now();
    await waitForClusterOk(servers, { timeoutMs: Math.max(1000, CLUSTER_TIMEOUT_MS - (Date.now() - started)) });
    return {
      nodes: servers.map((s) => ({ host: REDIS_HOST, port: s.port })),
      servers,
      startMs: Date.now() - started,
      timings: { spawnMs: spawned - started, createMs: created - spawned, convergeMs: Date.now() - created },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * Waits until every given node reports cluster_state:ok, all 16384 slots assigned and ok, and knows
 * `nodes.length` masters (use it after restarting a cluster node). Rejects naming the node and its last
 * CLUSTER INFO after `timeoutMs` (default 20 s).
 */
export async function waitForClusterOk(nodes: Array<{ port: number; running?: boolean; logTail?: () => string }>, opts: { timeoutMs?: number } = {}): Promise<void> {
  const n = nodes.length;
  await Promise.all(
    nodes.map((node) =>
      waitUntil(
        `cluster node 127.0.0.1:${node.port} to report cluster_state:ok, 16384 slots assigned and ok, ${n} known nodes`,
        async () => {
          const info = parseInfo(String(await redisCommand(node.port, 'CLUSTER', 'INFO')));
          const ok =
            info.cluster_state === 'ok' &&
            info.cluster_slots_assigned === '16384' &&
            info.cluster_slots_ok === '16384' &&
            info.cluster_known_nodes === String(n) &&
            info.cluster_size === String(n);
          if (!ok) throw new Error(`CLUSTER INFO: state=${info.cluster_state} assigned=${info.cluster_slots_assigned} ok=${info.cluster_slots_ok} known=${info.cluster_known_nodes} size=${info.cluster_size}`);
          // cluster_state:ok does not mean every bus link is up yet, and PUBLISH travels over those links:
          // a message published right after start could miss a node. Wait for every link too.
          const lines = String(await redisCommand(node.port, 'CLUSTER', 'NODES')).trim().split('\n');
          const down = lines.filter((line) => line.split(' ')[7] !== 'connected');
          if (lines.length !== n || down.length > 0) throw new Error(`CLUSTER NODES: links not all connected: ${down.join(' | ')}`);
          return true;
        },
        {
          timeoutMs: opts.timeoutMs ?? CLUSTER_TIMEOUT_MS,
          abort: () => (node.running === false ? `node 127.0.0.1:${node.port} is not running${node.logTail ? `\n${node.logTail()}` : ''}` : undefined),
        },
      ),
    ),
  );
}

/**
 * Starts a Sentinel on a free port monitoring 127.0.0.1:masterPort as "amasmaster" (quorum 1,
 * down-after 1000 ms), and waits until it answers SENTINEL get-master-addr-by-name and has a live link to the master.
 */
export async function startRedisSentinel(masterPort: number): Promise<SentinelHandle> {
  const name = 'amasmaster' as const;
  const server = await launch(
    'sentinel',
    undefined,
    (port, dir) => {
      const conf = path.join(dir, 'sentinel.conf');
      writeFileSync(
        conf,
        [
          `port ${port}`,
          `bind ${REDIS_HOST}`,
          `daemonize no`,
          `dir ${dir}`,
          `logfile ${path.join(dir, 'sentinel.log')}`,
          `sentinel monitor ${name} ${REDIS_HOST} ${masterPort} 1`,
          `sentinel down-after-milliseconds ${name} 1000`,
          `sentinel failover-timeout ${name} 5000`,
          `sentinel parallel-syncs ${name} 1`,
          '',
        ].join('\n'),
      );
      return [conf, '--sentinel'];
    },
    'sentinel.log',
  );
  try {
    await waitUntil(
      `sentinel 127.0.0.1:${server.port} to answer SENTINEL get-master-addr-by-name ${name} with 127.0.0.1:${masterPort} and see the master up`,
      async () => {
        const addr = await redisCommand(server.port, 'SENTINEL', 'get-master-addr-by-name', name);
        if (!Array.isArray(addr) || addr[0] !== REDIS_HOST || addr[1] !== String(masterPort)) throw new Error(`master address is ${JSON.stringify(addr)}`);
        const master = await redisCommand(server.port, 'SENTINEL', 'master', name);
        const flags = Array.isArray(master) ? master[master.indexOf('flags') + 1] : undefined;
        if (flags !== 'master') throw new Error(`master flags are ${JSON.stringify(flags)}`);
        return true;
      },
      { timeoutMs: START_TIMEOUT_MS, abort: () => (server.running ? undefined : `sentinel exited\n${server.logTail()}`) },
    );
  } catch (err) {
    await server.stop();
    throw new Error(`${errorText(err)}\n${server.logTail()}`);
  }
  return {
    port: server.port,
    name,
    get pid() {
      return server.pid;
    },
    url: server.url,
    masterPort,
    stop: () => server.stop(),
  };
}
