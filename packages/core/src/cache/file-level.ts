import { createHash, randomUUID } from 'node:crypto';
import { link, mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { systemClock, type Clock } from '../clock.js';
import { PeriodicSweep } from './periodic-sweep.js';
import { InvalidOptionError, StoreUnavailableError } from '../errors.js';
import { clockSchema, parseOptions, timerMs } from '../options/validate.js';
import { NAMESPACE_PATTERN, type CacheLevel } from './cache-level.js';

export interface FileLevelOptions {
  /** Where cache files live (created on first write; relative paths resolve against the working directory). */
  directory: string;
  /** The cache's name: its files live in `<directory>/<name>`. Default `amas`. */
  name?: string;
  /** How often expired files are deleted (ms; 0 = never, they are still ignored on read). Default 60 000. */
  sweepIntervalMs?: number;
  clock?: Clock;
}

/** Path segments: namespace-like, and never `.` or `..` (which NAMESPACE_PATTERN allows). */
const SEGMENT_PATTERN = NAMESPACE_PATTERN;
const isSafeSegment = (s: string): boolean => SEGMENT_PATTERN.test(s) && s !== '.' && s !== '..';

export const fileLevelOptionsSchema = z.strictObject({
  directory: z.string().min(1),
  name: z.string().refine(isSafeSegment, 'letters, digits, "_", "-" or "." (1 to 100 characters, not "." or "..")').optional(),
  sweepIntervalMs: timerMs.optional(),
  clock: clockSchema.optional(),
});

/**
 * File layout: MAGIC, expiresAt (float64 LE, ms), value length (float64 LE), key length (uint32 LE), key
 * (UTF-8), value. The key makes a read verify it got its own key; the value length catches a file cut short
 * (files are not fsynced: a crash may truncate one, and then it reads as absent, never as a shorter value).
 */
const MAGIC = Buffer.from('AMF1', 'latin1');
const HEADER_BYTES = MAGIC.length + 8 + 8 + 4;
/** Names starting with '~' (outside SEGMENT_PATTERN and hex) are the level's own temporary files and dirs. */
const TEMP_PREFIX = '~tmp-';
const REMOVING_PREFIX = '~del-';
const TRASH_PREFIX = '~trash-';
/** A temporary file or dir unchanged this long was left by a process that died mid-write or mid-clear. */
const ABANDONED_AFTER_MS = 10 * 60_000;
const ENTRY_FILE = /^[0-9a-f]{64}$/;
/** Attempts at a write that a concurrent clear (removing the directory under it) interrupts. */
const WRITE_ATTEMPTS = 5;
/** Files the sweep checks at once. */
const SWEEP_CONCURRENCY = 16;
/** Files a batch call (getMany, setMany, delete) works on at once: a batch of thousands must not run out of file descriptors. */
const BATCH_CONCURRENCY = 64;

/**
 * An L3 cache level on the local disk, for a single machine: one file per key at
 * `<directory>/<name>/<namespace>/<sha256(key) hex>`.
 *
 * Writes go to a temporary file in the same directory, then rename over the entry: a reader sees the old
 * file or the new one, never a half-written one. `clear(namespace)` renames the namespace directory away
 * first, so the whole namespace disappears at once and writes racing it land in a fresh directory. Expired
 * files are deleted when read and by a periodic sweep. Files are created 0600 and directories 0700: cached
 * answers may be private.
 */
export class FileLevel implements CacheLevel {
  readonly name = 'file';
  /** `<directory>/<name>`, absolute. */
  readonly root: string;
  private readonly clock: Clock;
  private readonly sweeper: PeriodicSweep;
  private closed = false;

  constructor(options: FileLevelOptions) {
    const o = parseOptions(fileLevelOptionsSchema, options, 'FileLevel options');
    this.root = resolve(o.directory, o.name ?? 'amas');
    this.clock = o.clock ?? systemClock;
    this.sweeper = new PeriodicSweep(this.clock, o.sweepIntervalMs ?? 60_000, () => this.sweep());
    this.sweeper.start();
  }

  /** The file holding `key` (whether or not it exists). */
  pathOf(key: string): string {
    const colon = key.indexOf(':');
    const namespace = colon < 0 ? '' : key.slice(0, colon);
    if (!isSafeSegment(namespace)) throw invalidArgument('key', key, 'a key `<namespace>:<key>` whose namespace is a safe directory name');
    return join(this.root, namespace, createHash('sha256').update(key).digest('hex'));
  }

  async get(key: string): Promise<Buffer | undefined> {
    this.checkOpen();
    const file = this.pathOf(key);
    let data: Buffer;
    try {
      data = await readFile(file);
    } catch (error) {
      if (codeOf(error) === 'ENOENT') return undefined;
      throw error;
    }
    const record = decode(data);
    if (record === undefined || !record.key.equals(Buffer.from(key))) return undefined;
    if (this.clock.now() >= record.expiresAt) {
      await this.removeExpired(file);
      return undefined;
    }
    return record.value;
  }

  getMany(keys: readonly string[]): Promise<Array<Buffer | undefined>> {
    return mapLimited(keys, (key) => this.get(key));
  }

  /** A ttlMs <= 0 deletes the key: the entry is already dead. */
  async set(key: string, value: Buffer, ttlMs: number): Promise<void> {
    this.checkOpen();
    if (!Number.isFinite(ttlMs)) throw new RangeError(`FileLevel: ttlMs must be a finite number, got ${String(ttlMs)}`);
    const file = this.pathOf(key);
    if (ttlMs <= 0) return this.delete([key]);
    const keyBytes = Buffer.from(key);
    const header = Buffer.allocUnsafe(HEADER_BYTES);
    MAGIC.copy(header, 0);
    header.writeDoubleLE(this.clock.now() + ttlMs, MAGIC.length);
    header.writeDoubleLE(value.length, MAGIC.length + 8);
    header.writeUInt32LE(keyBytes.length, MAGIC.length + 16);
    await writeAtomically(file, Buffer.concat([header, keyBytes, value]));
  }

  /** Writes in parallel; a key given twice keeps its last value. */
  async setMany(entries: ReadonlyArray<{ key: string; value: Buffer; ttlMs: number }>): Promise<void> {
    const last = new Map<string, { value: Buffer; ttlMs: number }>();
    for (const { key, value, ttlMs } of entries) {
      last.delete(key);
      last.set(key, { value, ttlMs });
    }
    await mapLimited([...last], ([key, { value, ttlMs }]) => this.set(key, value, ttlMs));
  }

  async delete(keys: readonly string[]): Promise<void> {
    this.checkOpen();
    const files = keys.map((key) => this.pathOf(key));
    await mapLimited(files, unlinkIfPresent);
  }

  async clear(namespace?: string): Promise<void> {
    this.checkOpen();
    if (namespace !== undefined) {
      if (!isSafeSegment(namespace)) throw invalidArgument('namespace', namespace, `a namespace matching ${String(NAMESPACE_PATTERN)}, not "." or ".."`);
      await this.removeDirectory(namespace);
      return;
    }
    for (const name of await this.namespaces()) await this.removeDirectory(name);
  }

  /** Deletes expired entry files now, and temporary files abandoned by a crashed process; returns how many. */
  async sweep(): Promise<number> {
    this.checkOpen();
    const now = this.clock.now();
    let removed = 0;
    let entries: Array<{ name: string; isDirectory(): boolean }>;
    try {
      entries = await readdir(this.root, { withFileTypes: true });
    } catch (error) {
      if (codeOf(error) === 'ENOENT') return 0;
      throw error;
    }
    for (const entry of entries) {
      if (this.closed) break;
      const path = join(this.root, entry.name);
      if (entry.name.startsWith('~')) {
        if (await isAbandoned(path)) await rm(path, { recursive: true, force: true });
      } else if (entry.isDirectory()) {
        removed += await this.sweepNamespace(path, now);
      }
    }
    return removed;
  }

  /** Stops the sweep (waiting for one in progress). Files stay: they are the persistent cache. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.sweeper.stop();
  }

  private async sweepNamespace(directory: string, now: number): Promise<number> {
    let names: string[];
    try {
      names = await readdir(directory);
    } catch (error) {
      if (codeOf(error) === 'ENOENT' || codeOf(error) === 'ENOTDIR') return 0;
      throw error;
    }
    let removed = 0;
    for (let i = 0; i < names.length && !this.closed; i += SWEEP_CONCURRENCY) {
      const batch = names.slice(i, i + SWEEP_CONCURRENCY);
      const results = await Promise.all(
        batch.map(async (name) => {
          const file = join(directory, name);
          if (name.startsWith('~')) {
            if (await isAbandoned(file)) await unlinkIfPresent(file);
            return 0;
          }
          if (!ENTRY_FILE.test(name)) return 0;
          const expiresAt = await readExpiry(file);
          // Unreadable headers count as expired: only this level writes here, so it is a broken file.
          if (expiresAt !== undefined && now < expiresAt) return 0;
          return (await this.removeExpired(file)) ? 1 : 0;
        }),
      );
      for (const r of results) removed += r;
    }
    return removed;
  }

  /**
   * Deletes an entry file that was read as expired, without losing a fresh value a concurrent set may
   * have renamed into place since: move the file aside (atomic), look at what was moved, and if it is
   * fresh link it back (link never replaces an even newer file).
   */
  private async removeExpired(file: string): Promise<boolean> {
    const aside = join(dirname(file), `${REMOVING_PREFIX}${randomUUID()}`);
    try {
      await rename(file, aside);
    } catch (error) {
      if (codeOf(error) === 'ENOENT') return false;
      throw error;
    }
    const expiresAt = await readExpiry(aside);
    let removed = true;
    if (expiresAt !== undefined && this.clock.now() < expiresAt) {
      removed = false;
      await link(aside, file).catch(() => undefined);
    }
    await unlinkIfPresent(aside);
    return removed;
  }

  /** Moves the namespace directory aside, then deletes it: the namespace vanishes at once. */
  private async removeDirectory(namespace: string): Promise<void> {
    const aside = join(this.root, `${TRASH_PREFIX}${randomUUID()}`);
    try {
      await rename(join(this.root, namespace), aside);
    } catch (error) {
      if (codeOf(error) === 'ENOENT') return;
      throw error;
    }
    await rm(aside, { recursive: true, force: true, maxRetries: 3 });
  }

  private async namespaces(): Promise<string[]> {
    try {
      return (await readdir(this.root)).filter((name) => !name.startsWith('~'));
    } catch (error) {
      if (codeOf(error) === 'ENOENT') return [];
      throw error;
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new StoreUnavailableError('FileLevel is closed');
  }
}

/** `fn` over `items` with at most BATCH_CONCURRENCY calls in flight; results in the order of `items`. */
async function mapLimited<T, R>(items: readonly T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(BATCH_CONCURRENCY, items.length) }, worker));
  return results;
}

/** Temp file in the entry's directory, then rename over it; retried when a clear removes the directory. */
async function writeAtomically(file: string, data: Buffer): Promise<void> {
  const directory = dirname(file);
  for (let attempt = 1; ; attempt++) {
    const temp = join(directory, `${TEMP_PREFIX}${randomUUID()}`);
    try {
      try {
        await writeFile(temp, data, { flag: 'wx', mode: 0o600 });
      } catch (error) {
        if (codeOf(error) !== 'ENOENT') throw error;
        await mkdir(directory, { recursive: true, mode: 0o700 });
        await writeFile(temp, data, { flag: 'wx', mode: 0o600 });
      }
      await rename(temp, file);
      return;
    } catch (error) {
      await unlinkIfPresent(temp);
      if (codeOf(error) !== 'ENOENT' || attempt >= WRITE_ATTEMPTS) throw error;
    }
  }
}

interface FileRecord {
  expiresAt: number;
  key: Buffer;
  value: Buffer;
}

/** undefined for a file that is not a whole entry (foreign, truncated). */
function decode(data: Buffer): FileRecord | undefined {
  if (data.length < HEADER_BYTES || !data.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  const expiresAt = data.readDoubleLE(MAGIC.length);
  const valueLength = data.readDoubleLE(MAGIC.length + 8);
  const keyLength = data.readUInt32LE(MAGIC.length + 16);
  const valueStart = HEADER_BYTES + keyLength;
  if (data.length !== valueStart + valueLength) return undefined;
  return { expiresAt, key: data.subarray(HEADER_BYTES, valueStart), value: data.subarray(valueStart) };
}

/** The expiry in a file's header, reading only the header; undefined when absent or not an entry file. */
async function readExpiry(file: string): Promise<number | undefined> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch {
    return undefined;
  }
  try {
    const header = Buffer.alloc(MAGIC.length + 8);
    const { bytesRead } = await handle.read(header, 0, header.length, 0);
    if (bytesRead < header.length || !header.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
    return header.readDoubleLE(MAGIC.length);
  } finally {
    await handle.close();
  }
}

/**
 * A '~' file or dir left behind: not modified for ABANDONED_AFTER_MS. A `~del-` file keeps the mtime of the
 * entry it was, so one in flight can look old; deleting it is still right: an old one is the expired entry
 * that was read, while a fresh one (to be linked back) was written by a concurrent set just now.
 */
async function isAbandoned(path: string): Promise<boolean> {
  try {
    return Date.now() - (await stat(path)).mtimeMs > ABANDONED_AFTER_MS;
  } catch {
    return false;
  }
}

async function unlinkIfPresent(file: string): Promise<boolean> {
  try {
    await unlink(file);
    return true;
  } catch (error) {
    if (codeOf(error) === 'ENOENT') return false;
    throw error;
  }
}

function codeOf(error: unknown): unknown {
  return (error as { code?: unknown } | null)?.code;
}

function invalidArgument(path: string, value: string, expected: string): InvalidOptionError {
  const shown = value.length > 60 ? `${value.slice(0, 57)}...` : value;
  return new InvalidOptionError([{ path, received: JSON.stringify(shown), expected }], 'FileLevel argument');
}
