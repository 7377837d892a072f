/**
 * Usage records in PostgreSQL: one table (created on first use, the creation race between processes
 * handled), one row per call, indexed by user and time, team and time, and time. Writes are batched
 * (RecordBuffer): one multi-row INSERT per batch, idempotent by record id (a retry after a timeout never
 * inserts twice). Summaries are aggregated by the database (GROUP BY day, provider, model), never by reading
 * every row into the process.
 *
 * `pg` is an optional peer dependency, loaded only when the store creates its own pool.
 */
import { systemClock } from '../clock.js';
import { checkConnectionString, createPgPool } from '../util/pg-connect.js';
import { InvalidOptionError, StoreUnavailableError } from '../errors.js';
import { parseOptions } from '../options/validate.js';
import { DAY_MS, postgresUsageRecordsOptionsSchema, type PgQueryable, type PostgresUsageRecordsOptions } from './cost-options.js';
import {
  addFields,
  groupFields,
  RecordBuffer,
  type DailyUsage,
  type DayRange,
  type PromptStat,
  type RecordBatch,
  type RecordQuery,
  type UsageRecord,
  type UsageRecordStats,
  type UsageRecordStore,
  type UsageScope,
  type UsageSums,
} from './usage-records.js';

export type { PostgresUsageRecordsOptions, PgQueryable } from './cost-options.js';

const WHERE = 'PostgresUsageRecords options';
const COLUMNS = [
  'id',
  'at',
  'user_id',
  'team',
  'provider',
  'model',
  'input_tokens',
  'output_tokens',
  'cached_input_tokens',
  'cost',
  'cost_known',
  'saved_cost',
  'status',
  'error',
  'finish_reason',
  'cached',
  'prompt_hash',
  'metadata',
] as const;
/** Rows per INSERT: PostgreSQL allows 65 535 parameters a statement. */
const INSERT_CHUNK = Math.floor(65_535 / COLUMNS.length);
/** Nano-dollars of a numeric sum, exact (numeric arithmetic), as bigint. */
const nanos = (expr: string) => `coalesce(round(${expr} * 1000000000), 0)::bigint`;

interface Statements {
  qualified: string;
  create: string[];
  insertHead: string;
  insertTail: string;
  daily: string;
  prompts: string;
  list: string;
}

function statements(table: string): Statements {
  const parts = table.split('.');
  const t = parts.map((p) => `"${p}"`).join('.');
  const base = parts[parts.length - 1]!;
  const index = (suffix: string) => `"${base}_${suffix}"`;
  return {
    qualified: t,
    create: [
      `CREATE TABLE IF NOT EXISTS ${t} (
        id text PRIMARY KEY,
        at timestamptz NOT NULL,
        user_id text NOT NULL,
        team text,
        provider text NOT NULL,
        model text NOT NULL,
        input_tokens bigint NOT NULL,
        output_tokens bigint NOT NULL,
        cached_input_tokens bigint NOT NULL DEFAULT 0,
        cost numeric(20, 9) NOT NULL,
        cost_known boolean NOT NULL,
        saved_cost numeric(20, 9) NOT NULL DEFAULT 0,
        status text NOT NULL,
        error text,
        finish_reason text,
        cached boolean NOT NULL DEFAULT false,
        prompt_hash text,
        metadata jsonb
      )`,
      `CREATE INDEX IF NOT EXISTS ${index('user_at_idx')} ON ${t} (user_id, at)`,
      `CREATE INDEX IF NOT EXISTS ${index('team_at_idx')} ON ${t} (team, at) WHERE team IS NOT NULL`,
      `CREATE INDEX IF NOT EXISTS ${index('at_idx')} ON ${t} (at)`,
    ],
    insertHead: `INSERT INTO ${t} (${COLUMNS.join(', ')}) VALUES `,
    insertTail: ' ON CONFLICT (id) DO NOTHING',
    // The same counters as usage-records.ts recordSums, per day, provider and model.
    daily: `SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, provider, model,
        count(*) AS n,
        coalesce(sum(input_tokens) FILTER (WHERE NOT cached), 0) AS i,
        coalesce(sum(output_tokens) FILTER (WHERE NOT cached), 0) AS o,
        coalesce(sum(cached_input_tokens) FILTER (WHERE NOT cached), 0) AS ci,
        ${nanos('sum(cost) FILTER (WHERE NOT cached)')} AS c,
        count(*) FILTER (WHERE status = 'error') AS e,
        ${nanos("sum(cost) FILTER (WHERE status = 'error' AND NOT cached)")} AS ec,
        count(*) FILTER (WHERE cached) AS h,
        ${nanos('sum(saved_cost) FILTER (WHERE cached)')} AS hs,
        count(*) FILTER (WHERE finish_reason = 'length' AND NOT cached) AS l,
        ${nanos("sum(cost) FILTER (WHERE finish_reason = 'length' AND NOT cached)")} AS lc,
        count(*) FILTER (WHERE NOT cost_known) AS x
      FROM ${t}`,
    prompts: `SELECT prompt_hash AS hash, count(*) AS n, ${nanos('sum(cost)')} AS c FROM ${t}`,
    list: `SELECT ${COLUMNS.join(', ')} FROM ${t}`,
  };
}

/**
 * Usage records in a PostgreSQL table. Give `pool` (yours, never ended) or `connectionString` (the store
 * creates a pool and ends it on close()).
 */
export class PostgresUsageRecords implements UsageRecordStore {
  readonly kind = 'postgres';
  readonly table: string;
  private readonly sql: Statements;
  private readonly buffer: RecordBuffer;
  private readonly connectionString: string | undefined;
  private readonly connectionTimeoutMs: number;
  private readonly ownsPool: boolean;
  private pool: PgQueryable | undefined;
  private creatingPool: Promise<PgQueryable> | undefined;
  private preparing: Promise<void> | undefined;
  private prepared = false;
  private closed = false;
  /** INSERT statements sent (one per batch of up to INSERT_CHUNK rows). */
  inserts = 0;

  constructor(options: PostgresUsageRecordsOptions) {
    const o = parseOptions(postgresUsageRecordsOptionsSchema, options ?? {}, WHERE);
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
    this.table = o.table ?? 'amas_usage_records';
    this.sql = statements(this.table);
    this.connectionString = connectionString;
    this.connectionTimeoutMs = o.connectionTimeoutMs ?? 2000;
    this.ownsPool = o.pool === undefined;
    this.pool = o.pool;
    this.buffer = new RecordBuffer({
      label: `PostgresUsageRecords "${this.table}"`,
      write: (batch) => this.insert(batch),
      batchSize: o.batchSize,
      flushIntervalMs: o.flushIntervalMs,
      maxPending: o.maxPending,
      maxRetryDelayMs: o.maxRetryDelayMs,
      clock: o.clock ?? systemClock,
      logger: o.logger,
    });
  }

  /** Connects and creates the table if needed; rejects when that fails. */
  async ready(): Promise<void> {
    await this.usable();
  }

  add(record: UsageRecord): void {
    this.buffer.add(record);
  }

  flush(): Promise<void> {
    return this.buffer.flush();
  }

  async daily(scope: UsageScope, range: DayRange): Promise<DailyUsage> {
    await this.flushQuietly();
    const pool = await this.usable();
    const { where, values } = this.filter(scope, range);
    const { rows } = await pool.query(`${this.sql.daily}${where} GROUP BY 1, 2, 3`, values);
    const out: DailyUsage = new Map();
    for (const row of rows as Array<Record<string, string | number>>) {
      const day = String(row.day);
      let fields = out.get(day);
      if (fields === undefined) out.set(day, (fields = new Map()));
      const sums = {} as UsageSums;
      for (const f of ['n', 'i', 'o', 'ci', 'c', 'e', 'ec', 'h', 'hs', 'l', 'lc', 'x'] as const) sums[f] = Number(row[f]);
      addFields(fields, groupFields(String(row.provider), String(row.model), sums));
    }
    return out;
  }

  /** Only prompts answered more than once (the others cannot show a repeat). */
  async prompts(user: string, range: DayRange): Promise<Map<string, PromptStat>> {
    await this.flushQuietly();
    const pool = await this.usable();
    const { where, values } = this.filter({ kind: 'user', id: user }, range);
    const { rows } = await pool.query(
      `${this.sql.prompts}${where} AND prompt_hash IS NOT NULL AND status = 'ok' AND NOT cached GROUP BY prompt_hash HAVING count(*) > 1`,
      values,
    );
    const out = new Map<string, PromptStat>();
    for (const row of rows as Array<{ hash: string; n: string; c: string }>) out.set(row.hash, { count: Number(row.n), cost: Number(row.c) });
    return out;
  }

  async list(query: RecordQuery): Promise<UsageRecord[]> {
    await this.flushQuietly();
    if (query.limit <= 0) return [];
    const pool = await this.usable();
    const { where, values } = this.filter({ kind: 'user', id: query.user }, query.range);
    values.push(query.limit);
    const { rows } = await pool.query(`${this.sql.list}${where} ORDER BY at DESC, id LIMIT $${values.length}`, values);
    return (rows as Array<Record<string, unknown>>).map(fromRow);
  }

  stats(): UsageRecordStats {
    return this.buffer.stats();
  }

  /** Writes what is pending, then ends the pool when the store created it (your pool stays open). */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.buffer.close();
    this.closed = true;
    if (!this.ownsPool) return;
    const pool = this.pool ?? (await this.creatingPool?.catch(() => undefined));
    await (pool as { end?: () => Promise<void> } | undefined)?.end?.();
  }

  private async flushQuietly(): Promise<void> {
    await this.buffer.flush().catch(() => undefined);
  }

  private filter(scope: UsageScope, range: DayRange): { where: string; values: unknown[] } {
    const clauses: string[] = [];
    const values: unknown[] = [];
    if (scope.kind !== 'all') {
      values.push(scope.id);
      clauses.push(`${scope.kind === 'user' ? 'user_id' : 'team'} = $${values.length}`);
    }
    if (range.from !== undefined) {
      values.push(new Date(range.from * DAY_MS));
      clauses.push(`at >= $${values.length}`);
    }
    if (range.to !== undefined) {
      values.push(new Date((range.to + 1) * DAY_MS));
      clauses.push(`at < $${values.length}`);
    }
    return { where: ` WHERE ${clauses.length ? clauses.join(' AND ') : 'TRUE'}`, values };
  }

  private async insert(batch: RecordBatch): Promise<void> {
    const pool = await this.usable();
    for (let start = 0; start < batch.records.length; start += INSERT_CHUNK) {
      const chunk = batch.records.slice(start, start + INSERT_CHUNK);
      const values: unknown[] = [];
      const tuples: string[] = [];
      for (const r of chunk) {
        const n = values.length;
        tuples.push(`(${COLUMNS.map((_, i) => `$${n + i + 1}`).join(', ')})`);
        values.push(
          r.id,
          new Date(r.at),
          r.user,
          r.team ?? null,
          r.provider,
          r.model,
          r.inputTokens,
          r.outputTokens,
          r.cachedInputTokens,
          r.cost.toFixed(9),
          r.costKnown,
          (r.savedCost ?? 0).toFixed(9),
          r.status,
          r.error ?? null,
          r.finishReason ?? null,
          r.cached,
          r.promptHash ?? null,
          r.metadata === undefined ? null : JSON.stringify(r.metadata),
        );
      }
      this.inserts++;
      await pool.query(`${this.sql.insertHead}${tuples.join(', ')}${this.sql.insertTail}`, values);
    }
  }

  private async usable(): Promise<PgQueryable> {
    if (this.closed) throw new StoreUnavailableError('PostgresUsageRecords is closed');
    const pool = this.pool ?? (await this.createPool());
    if (!this.prepared) await this.prepare(pool);
    return pool;
  }

  private createPool(): Promise<PgQueryable> {
    this.creatingPool ??= createPgPool('PostgresUsageRecords', this.connectionString, this.connectionTimeoutMs).then((pool) => {
      this.pool = pool;
      return pool;
    });
    // A failed load or connect is retried by the next call.
    this.creatingPool.catch(() => {
      this.creatingPool = undefined;
    });
    return this.creatingPool;
  }

  private prepare(pool: PgQueryable): Promise<void> {
    this.preparing ??= createTable(pool, this.sql).then(
      () => {
        this.prepared = true;
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
 * CREATE ... IF NOT EXISTS is not atomic across sessions: two first uses at once may both pass the check and
 * the loser fails with 23505 (unique violation on pg_type / pg_class), 42P07 or 42710 once the winner
 * commits; the table is there then, so check again. Checking first also lets a role without CREATE use a
 * table made for it in advance.
 */
async function createTable(pool: PgQueryable, sql: Statements): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const { rows } = await pool.query('SELECT to_regclass($1) IS NOT NULL AS present', [sql.qualified]);
    // Present: done (the process that created it creates its indexes too, right after the table).
    if ((rows[0] as { present: boolean }).present) return;
    try {
      for (const statement of sql.create) await pool.query(statement);
      return;
    } catch (error) {
      if (!isCreateRace(error) || attempt >= 5) throw error;
    }
  }
}

function isCreateRace(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return code === '23505' || code === '42P07' || code === '42710';
}

function fromRow(row: Record<string, unknown>): UsageRecord {
  const record: UsageRecord = {
    id: String(row.id),
    at: (row.at as Date).getTime(),
    user: String(row.user_id),
    provider: String(row.provider),
    model: String(row.model),
    inputTokens: Number(row.input_tokens),
    outputTokens: Number(row.output_tokens),
    cachedInputTokens: Number(row.cached_input_tokens),
    cost: Number(row.cost),
    costKnown: row.cost_known === true,
    status: row.status === 'error' ? 'error' : 'ok',
    cached: row.cached === true,
  };
  if (row.team !== null && row.team !== undefined) record.team = String(row.team);
  if (record.cached) record.savedCost = Number(row.saved_cost);
  if (row.error !== null && row.error !== undefined) record.error = String(row.error);
  if (row.finish_reason !== null && row.finish_reason !== undefined) record.finishReason = String(row.finish_reason);
  if (row.prompt_hash !== null && row.prompt_hash !== undefined) record.promptHash = String(row.prompt_hash);
  if (row.metadata !== null && row.metadata !== undefined) record.metadata = row.metadata as Record<string, unknown>;
  return record;
}

