import { z } from 'zod';
import { checkConnectionString, createPgPool } from '../util/pg-connect.js';
import { systemClock, type Clock } from '../clock.js';
import { PeriodicSweep } from './periodic-sweep.js';
import { InvalidOptionError, StoreUnavailableError } from '../errors.js';
import { clockSchema, parseOptions, timerMs } from '../options/validate.js';
import { NAMESPACE_PATTERN, type CacheLevel } from './cache-level.js';

/**
 * The part of a node-postgres Pool this level uses. A `pg.Pool` fits; typing it structurally keeps `pg`'s
 * types out of AMAS's public types, since `pg` is an optional peer dependency.
 */
export interface PgPoolLike {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[]; rowCount: number | null }>;
}

export interface PostgresLevelOptions {
  /** `postgres://user@host:5432/db`: the level creates (and on close ends) its own pool. Needs `pg` installed. */
  connectionString?: string;
  /** Your pool (pg.Pool); the level only queries it and never ends it. Give this or connectionString. */
  pool?: PgPoolLike;
  /** Table name, optionally schema-qualified (`cache.amas`): a plain SQL identifier. Default `amas_cache`. */
  table?: string;
  /** The cache's name: two caches sharing one table never see each other's rows. Default `amas`. */
  name?: string;
  /** How often expired rows are deleted (ms; 0 = never, they are still ignored on read). Default 60 000. */
  sweepIntervalMs?: number;
  /** Connect timeout of the pool the level creates (ms). Default 2 000. */
  connectionTimeoutMs?: number;
  clock?: Clock;
}

/**
 * Table identifiers: letters, digits and `_`, not starting with a digit. The table part stops at 48
 * characters so `<table>_expires_at_idx` stays within PostgreSQL's 63-byte identifier limit (a truncated
 * index name could collide with another table's and silently skip the index).
 */
const TABLE_PATTERN = /^(?:[A-Za-z_][A-Za-z0-9_]{0,62}\.)?[A-Za-z_][A-Za-z0-9_]{0,47}$/;
/** Cache names: like namespaces. No ':', so `<name>:<levelKey>` can never be read two ways. */
const CACHE_NAME_PATTERN = NAMESPACE_PATTERN;

export const postgresLevelOptionsSchema = z.strictObject({
  // Checked separately (checkConnectionString) so an error message never prints a password.
  connectionString: z.unknown().optional(),
  pool: z
    .custom<PgPoolLike>((v) => typeof v === 'object' && v !== null && typeof (v as { query?: unknown }).query === 'function', {
      message: 'a pg.Pool (an object with query(text, values))',
    })
    .optional(),
  table: z.string().regex(TABLE_PATTERN, 'a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]*, at most 48 characters), optionally schema-qualified').optional(),
  name: z.string().regex(CACHE_NAME_PATTERN, 'letters, digits, "_", "-" or ".", 1 to 100 characters').optional(),
  sweepIntervalMs: timerMs.optional(),
  connectionTimeoutMs: timerMs.refine((v) => v >= 1, 'at least 1ms').optional(),
  clock: clockSchema.optional(),
});

const WHERE = 'PostgresLevel options';
/** Rows per INSERT (3 parameters each; PostgreSQL allows 65 535 parameters a statement). */
const INSERT_CHUNK = 10_000;
/** Expired rows deleted per statement, so a sweep never holds many row locks at once. */
const SWEEP_BATCH = 5_000;
/** Statements per sweep at most; what is left waits for the next sweep. */
const SWEEP_MAX_BATCHES = 100;

/** SQL for one table, built once with quoted identifiers (the names are validated, quoting keeps case). */
interface Statements {
  /** `"schema"."table"`, for to_regclass. */
  qualified: string;
  createTable: string;
  createIndex: string;
  get: string;
  getMany: string;
  upsertHead: string;
  upsertTail: string;
  delete: string;
  deleteLike: string;
  sweep: string;
}

/**
 * An L3 cache level in PostgreSQL: one row per key in a table shared by any number of processes.
 *
 * The table is `(key text COLLATE "C" PRIMARY KEY, value bytea, expires_at bigint)` plus an index on
 * expires_at, created on first use. Byte-order collation lets `LIKE '<prefix>%'` (clear, sweep) use the
 * primary key index. Rows are keyed `<name>:<namespace>:<key>`. Reads ignore expired rows; a periodic sweep
 * deletes them.
 */
export class PostgresLevel implements CacheLevel {
  readonly name = 'postgres';
  /** The cache's name inside the table. */
  readonly cacheName: string;
  readonly table: string;
  private readonly sql: Statements;
  private readonly keyPrefix: string;
  private readonly clock: Clock;
  private readonly connectionString: string | undefined;
  private readonly connectionTimeoutMs: number;
  private readonly ownsPool: boolean;
  private pool: PgPoolLike | undefined;
  private creatingPool: Promise<PgPoolLike> | undefined;
  private prepared = false;
  private preparing: Promise<void> | undefined;
  private readonly sweeper: PeriodicSweep;
  private closed = false;

  constructor(options: PostgresLevelOptions) {
    const o = parseOptions(postgresLevelOptionsSchema, options, WHERE);
    const connectionString = checkConnectionString(o.connectionString, WHERE);
    if ((connectionString === undefined) === (o.pool === undefined)) {
      throw new InvalidOptionError(
        [{ path: 'pool', received: o.pool === undefined ? 'neither' : 'both', expected: 'exactly one of pool or connectionString' }],
        WHERE,
      );
    }
    if (o.pool !== undefined && o.connectionTimeoutMs !== undefined) {
      throw new InvalidOptionError(
        [{ path: 'connectionTimeoutMs', received: String(o.connectionTimeoutMs), expected: 'no value with pool (set connectionTimeoutMillis on your pool)' }],
        WHERE,
      );
    }
    this.table = o.table ?? 'amas_cache';
    this.cacheName = o.name ?? 'amas';
    this.keyPrefix = `${this.cacheName}:`;
    this.sql = statements(this.table);
    this.clock = o.clock ?? systemClock;
    // Started after the first successful use (the table exists then).
    this.sweeper = new PeriodicSweep(this.clock, o.sweepIntervalMs ?? 60_000, () => this.sweep());
    this.connectionString = connectionString;
    this.connectionTimeoutMs = o.connectionTimeoutMs ?? 2_000;
    this.ownsPool = o.pool === undefined;
    this.pool = o.pool;
  }

  /** Connects and creates the table if needed; rejects when that fails. Every other method does this first. */
  async ready(): Promise<void> {
    await this.usable();
  }

  async get(key: string): Promise<Buffer | undefined> {
    const pool = await this.usable();
    const { rows } = await pool.query(this.sql.get, [this.keyPrefix + key, readTime(this.clock)]);
    return (rows[0] as { value: Buffer } | undefined)?.value;
  }

  async getMany(keys: readonly string[]): Promise<Array<Buffer | undefined>> {
    if (keys.length === 0) return [];
    const pool = await this.usable();
    const { rows } = await pool.query(this.sql.getMany, [keys.map((k) => this.keyPrefix + k), readTime(this.clock)]);
    const found = new Map<string, Buffer>();
    for (const row of rows as Array<{ key: string; value: Buffer }>) found.set(row.key, row.value);
    return keys.map((k) => found.get(this.keyPrefix + k));
  }

  async set(key: string, value: Buffer, ttlMs: number): Promise<void> {
    await this.setMany([{ key, value, ttlMs }]);
  }

  /**
   * One `INSERT ... ON CONFLICT DO UPDATE` (per 10 000 rows). A key given twice keeps its last value (one
   * statement may not update a row twice). A ttlMs <= 0 deletes the key: the entry is already dead.
   */
  async setMany(entries: ReadonlyArray<{ key: string; value: Buffer; ttlMs: number }>): Promise<void> {
    if (entries.length === 0) return;
    const now = this.clock.now();
    const rows = new Map<string, { value: Buffer; expiresAt: number }>();
    const dead = new Set<string>();
    for (const { key, value, ttlMs } of entries) {
      const fullKey = this.keyPrefix + key;
      if (ttlMs > 0) {
        rows.set(fullKey, { value, expiresAt: expiryTime(now, ttlMs) });
        dead.delete(fullKey);
      } else {
        checkTtl(ttlMs);
        rows.delete(fullKey);
        dead.add(fullKey);
      }
    }
    const pool = await this.usable();
    if (dead.size > 0) await pool.query(this.sql.delete, [[...dead]]);
    const all = [...rows];
    for (let start = 0; start < all.length; start += INSERT_CHUNK) {
      const chunk = all.slice(start, start + INSERT_CHUNK);
      const values: unknown[] = [];
      const tuples: string[] = [];
      for (const [key, row] of chunk) {
        const n = values.length;
        tuples.push(`($${n + 1}, $${n + 2}, $${n + 3})`);
        values.push(key, row.value, row.expiresAt);
      }
      await pool.query(`${this.sql.upsertHead}${tuples.join(', ')}${this.sql.upsertTail}`, values);
    }
  }

  async delete(keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return;
    const pool = await this.usable();
    await pool.query(this.sql.delete, [keys.map((k) => this.keyPrefix + k)]);
  }

  async clear(namespace?: string): Promise<void> {
    if (namespace !== undefined && !NAMESPACE_PATTERN.test(namespace)) throw invalidNamespace(namespace);
    const pool = await this.usable();
    const prefix = namespace === undefined ? this.keyPrefix : `${this.keyPrefix}${namespace}:`;
    await pool.query(this.sql.deleteLike, [`${escapeLike(prefix)}%`]);
  }

  /** Deletes this cache's expired rows now; returns how many. The timer calls it every sweepIntervalMs. */
  async sweep(): Promise<number> {
    const pool = await this.usable();
    const pattern = `${escapeLike(this.keyPrefix)}%`;
    let deleted = 0;
    for (let batch = 0; batch < SWEEP_MAX_BATCHES && !this.closed; batch++) {
      const { rowCount } = await pool.query(this.sql.sweep, [readTime(this.clock), pattern]);
      deleted += rowCount ?? 0;
      if ((rowCount ?? 0) < SWEEP_BATCH) break;
    }
    return deleted;
  }

  /** Stops the sweep and, when the level created the pool, ends it. Your pool stays open. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.sweeper.stop();
    if (!this.ownsPool) return;
    const pool = this.pool ?? (await this.creatingPool?.catch(() => undefined));
    await (pool as { end?: () => Promise<void> } | undefined)?.end?.();
  }

  private async usable(): Promise<PgPoolLike> {
    if (this.closed) throw new StoreUnavailableError('PostgresLevel is closed');
    const pool = this.pool ?? (await this.createPool());
    if (!this.prepared) await this.prepare(pool);
    return pool;
  }

  private createPool(): Promise<PgPoolLike> {
    this.creatingPool ??= createPgPool('PostgresLevel', this.connectionString, this.connectionTimeoutMs).then((pool) => {
      if (this.closed) {
        void pool.end();
        throw new StoreUnavailableError('PostgresLevel is closed');
      }
      this.pool = pool;
      return pool;
    });
    return this.creatingPool;
  }

  /** Creates the table on first use, once per level; a failure (database down) is retried on the next call. */
  private prepare(pool: PgPoolLike): Promise<void> {
    this.preparing ??= createTable(pool, this.sql).then(
      () => {
        this.prepared = true;
        this.sweeper.start();
      },
      (error: unknown) => {
        this.preparing = undefined;
        throw error;
      },
    );
    return this.preparing;
  }
}

/**
 * CREATE TABLE IF NOT EXISTS is not atomic across sessions: two first uses at once can both pass the
 * existence check, and the loser fails with a unique violation on pg_type / pg_class (23505) or "already
 * exists" (42P07, or 42710 for the table's row type) once the winner commits. Then the table is there: check again. The existence check also
 * comes first so a role without CREATE on the schema can use a table made for it in advance.
 */
async function createTable(pool: PgPoolLike, sql: Statements): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const { rows } = await pool.query('SELECT to_regclass($1) IS NOT NULL AS present', [sql.qualified]);
    if ((rows[0] as { present: boolean }).present) return;
    try {
      await pool.query(sql.createTable);
      await pool.query(sql.createIndex);
      return;
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if ((code !== '23505' && code !== '42P07' && code !== '42710') || attempt >= 5) throw error;
    }
  }
}

function statements(table: string): Statements {
  const parts = table.split('.');
  const t = parts.map(quoteIdentifier).join('.');
  const index = quoteIdentifier(`${parts[parts.length - 1]}_expires_at_idx`);
  // E'\\' is one backslash whatever standard_conforming_strings says.
  const like = `LIKE $1 ESCAPE E'\\\\'`;
  return {
    qualified: t,
    createTable: `CREATE TABLE IF NOT EXISTS ${t} (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL, expires_at bigint NOT NULL)`,
    createIndex: `CREATE INDEX IF NOT EXISTS ${index} ON ${t} (expires_at)`,
    get: `SELECT value FROM ${t} WHERE key = $1 AND expires_at > $2`,
    getMany: `SELECT key, value FROM ${t} WHERE key = ANY($1::text[]) AND expires_at > $2`,
    upsertHead: `INSERT INTO ${t} (key, value, expires_at) VALUES `,
    upsertTail: ' ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at',
    delete: `DELETE FROM ${t} WHERE key = ANY($1::text[])`,
    deleteLike: `DELETE FROM ${t} WHERE key ${like}`,
    sweep: `DELETE FROM ${t} WHERE key IN (SELECT key FROM ${t} WHERE expires_at <= $1 AND key LIKE $2 ESCAPE E'\\\\' LIMIT ${SWEEP_BATCH})`,
  };
}

function quoteIdentifier(identifier: string): string {
  // Validated to [A-Za-z0-9_], so there is no '"' to double.
  return `"${identifier}"`;
}

/** `%`, `_` and `\` match literally after this (with ESCAPE '\'). */
export function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/** Whole milliseconds for the bigint column: a row is alive while now < expires_at. */
function readTime(clock: Clock): number {
  return Math.floor(clock.now());
}

function expiryTime(now: number, ttlMs: number): number {
  checkTtl(ttlMs);
  return Math.ceil(now + ttlMs);
}

function checkTtl(ttlMs: number): void {
  if (!Number.isFinite(ttlMs)) throw new RangeError(`PostgresLevel: ttlMs must be a finite number, got ${String(ttlMs)}`);
}

function invalidNamespace(namespace: string): InvalidOptionError {
  return new InvalidOptionError(
    [{ path: 'namespace', received: JSON.stringify(namespace), expected: `a namespace matching ${String(NAMESPACE_PATTERN)}` }],
    'PostgresLevel.clear argument',
  );
}

