/**
 * Usage records on a Store (a RedisStore persists them and shares them between replicas; a MemoryStore runs
 * the same scripts in one process). Keys, per scope (user `u:<id>`, team `t:<id>`, everyone `all`) under
 * the scope's hash tag `usage:<name>:<scope>`:
 *   days        sorted set of the days that have data (score: day index), trimmed to retentionDays
 *   d:<day>     hash of the day's aggregate counters (usage-records.ts field names), kept retentionDays
 *   p:<day>     (users) hash `n|<promptHash>` / `c|<promptHash>`: calls and cost per prompt, kept recordRetentionDays
 *   r:<day>     (users) stream of the day's records as JSON, capped at maxRecordsPerUserDay, kept recordRetentionDays
 *   b:<batch>   marker of a batch already applied (a retry after a timeout never counts twice)
 * A batch is written as one script per scope it touches, all sent together (one pipeline); summaries read
 * the day hashes, never the records.
 */
import { systemClock } from '../clock.js';
import type { MemoryKeyspace } from '../stores/memory-keyspace.js';
import { STORE_LUA_NOW, type Store, type StoreRunOptions, type StoreScript } from '../stores/store.js';
import { parseOptions } from '../options/validate.js';
import { DAY_MS, redisUsageRecordsOptionsSchema, type RedisUsageRecordsOptions } from './cost-options.js';
import {
  addFields,
  dayIndex,
  dayString,
  recordFields,
  RecordBuffer,
  scopeKey,
  toNanos,
  type DailyUsage,
  type DayRange,
  type PromptStat,
  type RecordBatch,
  type RecordQuery,
  type UsageRecord,
  type UsageRecordStats,
  type UsageRecordStore,
  type UsageScope,
} from './usage-records.js';

export type { RedisUsageRecordsOptions } from './cost-options.js';

/** One day of one scope in a write: aggregate deltas, prompt counts, records. Numbers as strings (HINCRBY). */
interface DayWrite {
  d: string;
  x: number;
  f: string[];
  p?: string[];
  r?: string[];
}

type Hash = Map<string, number>;

function hashOf(space: MemoryKeyspace, key: string): Hash {
  let hash = space.get<Hash>(key);
  if (!(hash instanceof Map)) {
    hash = new Map();
    space.set(key, hash);
  }
  return hash;
}

/**
 * KEYS marker, days, then per day: aggregates, prompts, records. ARGV payload (JSON DayWrite[]), marker
 * ttlMs, aggregate ttlMs, record ttlMs, max records per day, oldest day index kept. Returns 1, or 0 when the
 * batch was applied before (its marker exists).
 */
export const USAGE_WRITE: StoreScript<boolean> = {
  name: 'usage-write',
  lua: `${STORE_LUA_NOW}
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[2]) then return 0 end
local days = cjson.decode(ARGV[1])
for i = 1, #days do
  local d = days[i]
  local k = 2 + (i - 1) * 3
  local f = d.f
  for j = 1, #f, 2 do redis.call('HINCRBY', KEYS[k + 1], f[j], f[j + 1]) end
  redis.call('PEXPIRE', KEYS[k + 1], ARGV[3])
  local p = d.p
  if p then
    for j = 1, #p, 3 do
      redis.call('HINCRBY', KEYS[k + 2], 'n|' .. p[j], p[j + 1])
      redis.call('HINCRBY', KEYS[k + 2], 'c|' .. p[j], p[j + 2])
    end
    redis.call('PEXPIRE', KEYS[k + 2], ARGV[4])
  end
  local r = d.r
  if r then
    for j = 1, #r do redis.call('XADD', KEYS[k + 3], 'MAXLEN', '~', ARGV[5], '*', 'r', r[j]) end
    redis.call('PEXPIRE', KEYS[k + 3], ARGV[4])
  end
  redis.call('ZADD', KEYS[2], d.x, d.d)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
`,
  memory(space, keys, args) {
    if (space.has(keys[0]!)) return 0;
    space.set(keys[0]!, '1', Number(args[1]));
    const days = JSON.parse(args[0]!) as DayWrite[];
    const zset = space.get<Map<string, number>>(keys[1]!) ?? new Map<string, number>();
    days.forEach((d, i) => {
      const k = 2 + i * 3;
      const agg = hashOf(space, keys[k]!);
      for (let j = 0; j < d.f.length; j += 2) agg.set(d.f[j]!, (agg.get(d.f[j]!) ?? 0) + Number(d.f[j + 1]));
      space.expire(keys[k]!, Number(args[2]));
      if (d.p) {
        const prompts = hashOf(space, keys[k + 1]!);
        for (let j = 0; j < d.p.length; j += 3) {
          prompts.set(`n|${d.p[j]}`, (prompts.get(`n|${d.p[j]}`) ?? 0) + Number(d.p[j + 1]));
          prompts.set(`c|${d.p[j]}`, (prompts.get(`c|${d.p[j]}`) ?? 0) + Number(d.p[j + 2]));
        }
        space.expire(keys[k + 1]!, Number(args[3]));
      }
      if (d.r) {
        let stream = space.get<string[]>(keys[k + 2]!);
        if (!Array.isArray(stream)) space.set(keys[k + 2]!, (stream = []));
        stream.push(...d.r);
        const max = Number(args[4]);
        if (stream.length > max) stream.splice(0, stream.length - max);
        space.expire(keys[k + 2]!, Number(args[3]));
      }
      zset.set(d.d, d.x);
    });
    const oldest = Number(args[5]);
    for (const [day, index] of zset) if (index < oldest) zset.delete(day);
    space.set(keys[1]!, zset, Number(args[2]));
    return 1;
  },
  decode: (raw) => Number(raw) === 1,
};

/** KEYS days; ARGV min, max (day indexes or '-inf' / '+inf'). The days with data, oldest first. */
export const USAGE_DAYS: StoreScript<string[]> = {
  name: 'usage-days',
  lua: `${STORE_LUA_NOW}
return redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2])
`,
  memory(space, keys, args) {
    const zset = space.get<Map<string, number>>(keys[0]!);
    if (!(zset instanceof Map)) return [];
    const bound = (text: string, fallback: number) => (text === '-inf' ? -Infinity : text === '+inf' ? Infinity : Number.isFinite(Number(text)) ? Number(text) : fallback);
    const [min, max] = [bound(args[0]!, -Infinity), bound(args[1]!, Infinity)];
    return [...zset]
      .filter(([, index]) => index >= min && index <= max)
      .sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1))
      .map(([day]) => day);
  },
  decode: (raw) => (Array.isArray(raw) ? raw.map(String) : []),
};

/** KEYS hashes; per key its fields and values, flat (HGETALL), values as strings. */
export const USAGE_READ: StoreScript<Array<Map<string, number>>> = {
  name: 'usage-read',
  lua: `${STORE_LUA_NOW}
local out = {}
for i = 1, #KEYS do out[i] = redis.call('HGETALL', KEYS[i]) end
return out
`,
  memory(space, keys) {
    return keys.map((key) => {
      const hash = space.get<Hash>(key);
      if (!(hash instanceof Map)) return [];
      const flat: string[] = [];
      for (const [field, value] of hash) flat.push(field, String(value));
      return flat;
    });
  },
  decode(raw) {
    return (raw as unknown[][]).map((flat) => {
      const map = new Map<string, number>();
      for (let i = 0; i + 1 < flat.length; i += 2) map.set(String(flat[i]), Number(flat[i + 1]));
      return map;
    });
  },
};

/** KEYS record streams, newest day first; ARGV limit. Up to `limit` records (JSON), newest first. */
export const USAGE_RECORDS: StoreScript<string[]> = {
  name: 'usage-records',
  lua: `${STORE_LUA_NOW}
local limit = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  if #out >= limit then break end
  local entries = redis.call('XREVRANGE', KEYS[i], '+', '-', 'COUNT', limit - #out)
  for j = 1, #entries do out[#out + 1] = entries[j][2][2] end
end
return out
`,
  memory(space, keys, args) {
    const limit = Number(args[0]);
    const out: string[] = [];
    for (const key of keys) {
      const stream = space.get<string[]>(key);
      if (!Array.isArray(stream)) continue;
      for (let i = stream.length - 1; i >= 0 && out.length < limit; i--) out.push(stream[i]!);
      if (out.length >= limit) break;
    }
    return out;
  },
  decode: (raw) => (Array.isArray(raw) ? raw.map(String) : []),
};

const MARKER_TTL_MS = DAY_MS;
/** Store calls here may carry a few hundred records: a longer deadline than a limiter decision's. */
const RUN_OPTIONS: StoreRunOptions = { slow: true, timeoutMs: 5000 };

/**
 * Usage records persisted in Redis (or any Store). Writes are batched (RecordBuffer): every `batchSize`
 * records or `flushIntervalMs`, and on close(). Reads write what is pending first.
 */
export class RedisUsageRecords implements UsageRecordStore {
  readonly kind = 'redis';
  readonly name: string;
  private readonly store: Store;
  private readonly buffer: RecordBuffer;
  private readonly retentionDays: number;
  private readonly aggregateTtlMs: number;
  private readonly recordTtlMs: number;
  private readonly maxRecordsPerUserDay: number;
  private readonly now: () => number;

  constructor(options: RedisUsageRecordsOptions) {
    const o = parseOptions(redisUsageRecordsOptionsSchema, options, 'RedisUsageRecords options');
    this.store = o.store;
    this.name = o.name ?? 'amas';
    this.retentionDays = o.retentionDays ?? 400;
    this.aggregateTtlMs = this.retentionDays * DAY_MS;
    this.recordTtlMs = (o.recordRetentionDays ?? 90) * DAY_MS;
    this.maxRecordsPerUserDay = o.maxRecordsPerUserDay ?? 100_000;
    const clock = o.clock ?? systemClock;
    this.now = () => clock.now();
    this.buffer = new RecordBuffer({
      label: `RedisUsageRecords "${this.name}"`,
      write: (batch) => this.write(batch),
      batchSize: o.batchSize,
      flushIntervalMs: o.flushIntervalMs,
      maxPending: o.maxPending,
      maxRetryDelayMs: o.maxRetryDelayMs,
      clock: o.clock,
      logger: o.logger,
    });
  }

  add(record: UsageRecord): void {
    this.buffer.add(record);
  }

  flush(): Promise<void> {
    return this.buffer.flush();
  }

  async daily(scope: UsageScope, range: DayRange): Promise<DailyUsage> {
    await this.flushQuietly();
    const tag = this.tag(scope);
    const days = await this.days(tag, range);
    const out: DailyUsage = new Map();
    if (days.length === 0) return out;
    const hashes = await this.store.run(USAGE_READ, days.map((d) => this.store.key(tag, 'd', d)), [], RUN_OPTIONS);
    days.forEach((day, i) => {
      if (hashes[i]!.size > 0) out.set(day, hashes[i]!);
    });
    return out;
  }

  async prompts(user: string, range: DayRange): Promise<Map<string, PromptStat>> {
    await this.flushQuietly();
    const tag = this.tag({ kind: 'user', id: user });
    const days = await this.days(tag, range);
    const out = new Map<string, PromptStat>();
    if (days.length === 0) return out;
    const hashes = await this.store.run(USAGE_READ, days.map((d) => this.store.key(tag, 'p', d)), [], RUN_OPTIONS);
    for (const hash of hashes) {
      for (const [field, value] of hash) {
        const name = field.slice(2);
        let stat = out.get(name);
        if (stat === undefined) out.set(name, (stat = { count: 0, cost: 0 }));
        if (field.startsWith('n|')) stat.count += value;
        else if (field.startsWith('c|')) stat.cost += value;
      }
    }
    return out;
  }

  async list(query: RecordQuery): Promise<UsageRecord[]> {
    await this.flushQuietly();
    const tag = this.tag({ kind: 'user', id: query.user });
    const days = await this.days(tag, query.range);
    if (days.length === 0 || query.limit <= 0) return [];
    const keys = days.reverse().map((d) => this.store.key(tag, 'r', d));
    const json = await this.store.run(USAGE_RECORDS, keys, [query.limit], RUN_OPTIONS);
    return json.map((text) => JSON.parse(text) as UsageRecord).sort((a, b) => b.at - a.at);
  }

  stats(): UsageRecordStats {
    return this.buffer.stats();
  }

  /** Writes what is pending (logged and counted as lost when it cannot); the store stays open. */
  close(): Promise<void> {
    return this.buffer.close();
  }

  private async flushQuietly(): Promise<void> {
    // A failed write is logged and retried by the buffer; the read shows what the store has.
    await this.buffer.flush().catch(() => undefined);
  }

  private tag(scope: UsageScope): string {
    return `usage:${this.name}:${scopeKey(scope)}`;
  }

  private days(tag: string, range: DayRange): Promise<string[]> {
    return this.store.run(USAGE_DAYS, [this.store.key(tag, 'days')], [range.from ?? '-inf', range.to ?? '+inf'], RUN_OPTIONS);
  }

  /** One script per scope the batch touches, all sent at once. */
  private async write(batch: RecordBatch): Promise<void> {
    const groups = new Map<string, Map<number, { fields: Map<string, number>; prompts?: Map<string, PromptStat>; records?: string[] }>>();
    const day = (tag: string, index: number) => {
      let days = groups.get(tag);
      if (days === undefined) groups.set(tag, (days = new Map()));
      let entry = days.get(index);
      if (entry === undefined) days.set(index, (entry = { fields: new Map() }));
      return entry;
    };
    for (const record of batch.records) {
      const index = dayIndex(record.at);
      const fields = recordFields(record);
      const user = day(this.tag({ kind: 'user', id: record.user }), index);
      addFields(user.fields, fields);
      (user.records ??= []).push(JSON.stringify(record));
      if (record.promptHash !== undefined && !record.cached && record.status === 'ok') {
        const prompts = (user.prompts ??= new Map());
        const stat = prompts.get(record.promptHash) ?? { count: 0, cost: 0 };
        stat.count++;
        stat.cost += toNanos(record.cost);
        prompts.set(record.promptHash, stat);
      }
      addFields(day(this.tag({ kind: 'all' }), index).fields, fields);
      if (record.team !== undefined) addFields(day(this.tag({ kind: 'team', id: record.team }), index).fields, fields);
    }
    const oldest = dayIndex(this.now()) - this.retentionDays + 1;
    await Promise.all(
      [...groups].map(([tag, days]) => {
        const keys = [this.store.key(tag, 'b', batch.id), this.store.key(tag, 'days')];
        const payload: DayWrite[] = [];
        for (const [index, entry] of [...days].sort((a, b) => a[0] - b[0])) {
          const d = dayString(index);
          keys.push(this.store.key(tag, 'd', d), this.store.key(tag, 'p', d), this.store.key(tag, 'r', d));
          const write: DayWrite = { d, x: index, f: [...entry.fields].flatMap(([f, v]) => [f, String(v)]) };
          if (entry.prompts) write.p = [...entry.prompts].flatMap(([hash, s]) => [hash, String(s.count), String(s.cost)]);
          if (entry.records) write.r = entry.records;
          payload.push(write);
        }
        return this.store.run(
          USAGE_WRITE,
          keys,
          [JSON.stringify(payload), MARKER_TTL_MS, this.aggregateTtlMs, this.recordTtlMs, this.maxRecordsPerUserDay, oldest],
          RUN_OPTIONS,
        );
      }),
    );
  }
}
