/**
 * Store scripts of the shared circuit breaker (see shared-breaker.ts). Two keys per breaker, one hash tag:
 *
 *   <prefix>{breaker:<name>}:state   hash: state, epoch, reason, origin, openedAt, until, reopen (TTL stateTtlMs)
 *   <prefix>{breaker:<name>}:probes  hash: '#epoch' -> the half-open epoch the leases belong to,
 *                                         <holder> -> lease expiry (store ms)                    (TTL = last lease)
 *
 * Times are store times (the caller's clock when the store was given one, else Redis TIME), and replies
 * carry `now`, so a replica converts `until` into "ms from now" and never compares its own clock with
 * another host's. Every reply that carries a record is `{code, now, state, epoch, reason, origin,
 * openedAt, until, reopen}` with the record fields as strings ('' when absent; state '' when no record).
 */
import type { BreakerState } from './circuit-breaker.js';
import type { MemoryKeyspace } from '../stores/memory-keyspace.js';
import { STORE_LUA_NOW, type StoreScript } from '../stores/store.js';

export interface SharedRecord {
  state: BreakerState;
  /** Orders transitions: a replica ignores any record whose epoch is not above the one it has. */
  epoch: number;
  reason: string;
  /** Replica id of the writer. */
  origin: string;
  /** Store time (ms) it opened / was isolated. */
  openedAt?: number;
  /** Store time (ms) when probes are allowed (open only). */
  until?: number;
  /** Reopens from half-open since it last closed (drives recoveryBackoff). */
  reopen: number;
}

export interface RecordReply {
  code: number;
  /** Store time of the reply. */
  now: number;
  record: SharedRecord | undefined;
}

export interface ProbeReply extends RecordReply {
  /** busy (code 0): ms until the earliest lease expires. */
  waitMs: number;
}

const FIELDS = ['state', 'epoch', 'reason', 'origin', 'openedAt', 'until', 'reopen'] as const;
type Hash = Record<(typeof FIELDS)[number], string>;
const STATES: ReadonlySet<string> = new Set(['closed', 'open', 'half-open', 'isolated']);

/** '%.0f': integer ms without Lua's exponent notation, the same digits String() writes in JS. */
const LUA_COMMON = `${STORE_LUA_NOW}
local now = now_ms(ARGV[#ARGV])
local function int(x) return string.format('%.0f', x) end
local function reply(code, key)
  local r = redis.call('HMGET', key, 'state', 'epoch', 'reason', 'origin', 'openedAt', 'until', 'reopen')
  local out = { code, now }
  for i = 1, 7 do out[i + 2] = r[i] or '' end
  return out
end
`;

function memoryReply(space: MemoryKeyspace, key: string, code: number, now: number): unknown[] {
  const h = space.get<Hash>(key);
  return [code, now, ...FIELDS.map((f) => (h ? h[f] : ''))];
}

/**
 * KEYS[1] state; ARGV state, reason, origin, base epoch ('' = unconditional), openForMs, reopen, ttlMs.
 * Writes the transition only when the record still has the epoch the transition was based on (or there is
 * no record): a replica acting on outdated knowledge gets the newer record back (code 0) and adopts it.
 * The new epoch is max(old + 1, now), so it keeps growing even after the key expired and was re-created.
 */
export const BREAKER_TRANSITION: StoreScript<RecordReply> = {
  name: 'breaker-transition',
  lua: `${LUA_COMMON}
local key = KEYS[1]
local cur = redis.call('HGET', key, 'epoch')
if cur and ARGV[4] ~= '' and tonumber(cur) ~= tonumber(ARGV[4]) then return reply(0, key) end
local epoch = math.max((tonumber(cur) or 0) + 1, now)
local state = ARGV[1]
local openedAt, untilAt = '', ''
if state == 'open' or state == 'isolated' then openedAt = int(now) end
if state == 'open' then untilAt = int(now + tonumber(ARGV[5])) end
redis.call('HSET', key, 'state', state, 'epoch', int(epoch), 'reason', ARGV[2], 'origin', ARGV[3],
  'openedAt', openedAt, 'until', untilAt, 'reopen', ARGV[6])
redis.call('PEXPIRE', key, ARGV[7])
return reply(1, key)
`,
  memory(space, keys, args, now) {
    const key = keys[0]!;
    const [state, reason, origin, base, openForMs, reopen, ttlMs] = args as [string, string, string, string, string, string, string];
    const cur = space.get<Hash>(key);
    if (cur && base !== '' && Number(cur.epoch) !== Number(base)) return memoryReply(space, key, 0, now);
    const epoch = Math.max((cur ? Number(cur.epoch) : 0) + 1, now);
    const hash: Hash = {
      state,
      epoch: String(epoch),
      reason,
      origin,
      openedAt: state === 'open' || state === 'isolated' ? String(now) : '',
      until: state === 'open' ? String(now + Number(openForMs)) : '',
      reopen,
    };
    space.set(key, hash, Number(ttlMs));
    return memoryReply(space, key, 1, now);
  },
  decode: decodeRecordReply,
};

/** KEYS[1] state. The current record (code 1) or none (state ''). */
export const BREAKER_READ: StoreScript<RecordReply> = {
  name: 'breaker-read',
  lua: `${LUA_COMMON}
return reply(1, KEYS[1])
`,
  memory: (space, keys, _args, now) => memoryReply(space, keys[0]!, 1, now),
  decode: decodeRecordReply,
};

/**
 * KEYS[1] state, KEYS[2] probes; ARGV 'acquire' | 'release', epoch, holder, maxProbes, leaseMs.
 * acquire: granted (1) only while the record is half-open at `epoch` and fewer than maxProbes unexpired
 * leases exist; busy (0) with ms until the earliest lease expires; stale (-1) with the record when the
 * caller's half-open is not the shared one (it adopts the record). Leases of an older half-open period are
 * dropped, so a prober that never released cannot block the next recovery. release: deletes `holder`.
 */
export const BREAKER_PROBE: StoreScript<ProbeReply> = {
  name: 'breaker-probe',
  lua: `${LUA_COMMON}
local skey, lkey, holder = KEYS[1], KEYS[2], ARGV[3]
if ARGV[1] == 'release' then
  redis.call('HDEL', lkey, holder)
  return { 1, now }
end
local epoch = ARGV[2]
local st = redis.call('HMGET', skey, 'state', 'epoch')
if st[1] ~= 'half-open' or tonumber(st[2]) ~= tonumber(epoch) then return reply(-1, skey) end
if redis.call('HGET', lkey, '#epoch') ~= epoch then
  redis.call('DEL', lkey)
  redis.call('HSET', lkey, '#epoch', epoch)
end
local max, lease = tonumber(ARGV[4]), tonumber(ARGV[5])
local all = redis.call('HGETALL', lkey)
local live, earliest, latest = 0, nil, now + lease
for i = 1, #all, 2 do
  if all[i] ~= '#epoch' then
    local exp = tonumber(all[i + 1])
    if exp <= now then
      redis.call('HDEL', lkey, all[i])
    else
      live = live + 1
      if earliest == nil or exp < earliest then earliest = exp end
      if exp > latest then latest = exp end
    end
  end
end
if live < max then
  redis.call('HSET', lkey, holder, int(now + lease))
  redis.call('PEXPIRE', lkey, int(latest - now))
  return { 1, now }
end
return { 0, now, int(earliest - now) }
`,
  memory(space, keys, args, now) {
    const [skey, lkey] = keys as [string, string];
    const [op, epoch, holder, maxArg, leaseArg] = args as [string, string, string, string, string];
    if (op === 'release') {
      space.get<Map<string, string>>(lkey)?.delete(holder);
      return [1, now];
    }
    const st = space.get<Hash>(skey);
    if (!st || st.state !== 'half-open' || Number(st.epoch) !== Number(epoch)) return memoryReply(space, skey, -1, now);
    let leases = space.get<Map<string, string>>(lkey);
    if (!leases || leases.get('#epoch') !== epoch) {
      leases = new Map([['#epoch', epoch]]);
      space.set(lkey, leases); // no expiry until a lease is granted, as in Lua
    }
    const max = Number(maxArg);
    const lease = Number(leaseArg);
    let live = 0;
    let earliest: number | undefined;
    let latest = now + lease;
    for (const [h, v] of [...leases]) {
      if (h === '#epoch') continue;
      const exp = Number(v);
      if (exp <= now) leases.delete(h);
      else {
        live++;
        if (earliest === undefined || exp < earliest) earliest = exp;
        if (exp > latest) latest = exp;
      }
    }
    if (live < max) {
      leases.set(holder, String(now + lease));
      space.expire(lkey, latest - now);
      return [1, now];
    }
    return [0, now, String(earliest! - now)];
  },
  decode(raw) {
    const r = raw as unknown[];
    const base = decodeRecordReply(r.length > 3 ? r : [r[0], r[1]]);
    return { ...base, waitMs: r[0] === 0 ? Number(r[2]) : 0 };
  },
};

function decodeRecordReply(raw: unknown): RecordReply {
  const r = raw as unknown[];
  return { code: Number(r[0]), now: Number(r[1]), record: r.length >= 9 ? toRecord(r.slice(2, 9).map((v) => String(v ?? ''))) : undefined };
}

function toRecord(f: string[]): SharedRecord | undefined {
  const [state, epoch, reason, origin, openedAt, until, reopen] = f as [string, string, string, string, string, string, string];
  if (!STATES.has(state) || !(Number(epoch) > 0)) return undefined;
  return {
    state: state as BreakerState,
    epoch: Number(epoch),
    reason,
    origin,
    ...(openedAt === '' ? {} : { openedAt: Number(openedAt) }),
    ...(until === '' ? {} : { until: Number(until) }),
    reopen: Number(reopen) || 0,
  };
}

/** The Pub/Sub message: the record plus the store time it was written at (`at`), as JSON. */
export function encodeMessage(record: SharedRecord, at: number): string {
  return JSON.stringify({ v: 1, ...record, at });
}

/** Undefined for anything malformed (e.g. from a future version): such a message is ignored, not fatal. */
export function decodeMessage(message: string): { record: SharedRecord; at: number } | undefined {
  let m: Record<string, unknown>;
  try {
    m = JSON.parse(message) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (typeof m !== 'object' || m === null || m.v !== 1) return undefined;
  const num = (v: unknown) => typeof v === 'number' && Number.isFinite(v);
  if (typeof m.state !== 'string' || !STATES.has(m.state) || !num(m.epoch) || !num(m.at)) return undefined;
  if (typeof m.reason !== 'string' || typeof m.origin !== 'string' || !num(m.reopen)) return undefined;
  if ((m.openedAt !== undefined && !num(m.openedAt)) || (m.until !== undefined && !num(m.until))) return undefined;
  if (m.state === 'open' && m.until === undefined) return undefined;
  const record: SharedRecord = {
    state: m.state as BreakerState,
    epoch: m.epoch as number,
    reason: m.reason,
    origin: m.origin,
    ...(m.openedAt === undefined ? {} : { openedAt: m.openedAt as number }),
    ...(m.until === undefined ? {} : { until: m.until as number }),
    reopen: m.reopen as number,
  };
  return { record, at: m.at as number };
}
