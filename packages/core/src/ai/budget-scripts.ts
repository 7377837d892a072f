/**
 * Budget state on a Store: one script per decision, so check-and-reserve is atomic on Redis (Lua) and on
 * MemoryStore (the synchronous memory half) alike.
 *
 * Per scope (a user or a team) and period (a UTC day or month) there are two keys under the scope's hash tag:
 *   <hash>  a hash: `spent` and `reserved` (integer nano-dollars, so sums are exact), `r:<id>` the amount of
 *           each open reservation, `a:<share>` once an alert for that share of the budget has fired;
 *   <zset>  the open reservations' ids scored by expiry (ms): every script first drops the expired ones
 *           (their amounts leave `reserved`), so a replica that crashed holding a reservation frees it.
 * Each script gets both periods of one scope: KEYS = dayHash, dayZset, monthHash, monthZset.
 *
 * Amounts travel as integer strings and are only ever added as strings (HINCRBY), never formatted from Lua
 * numbers (Lua prints large numbers as 1e+14, which HINCRBY refuses).
 */
import type { MemoryKeyspace } from '../stores/memory-keyspace.js';
import { STORE_LUA_NOW, type StoreScript } from '../stores/store.js';

/** [spent, reserved] of the day and of the month, nano-dollars. */
export interface PeriodTotals {
  daySpent: number;
  dayReserved: number;
  monthSpent: number;
  monthReserved: number;
}

export interface ReserveReply extends PeriodTotals {
  allowed: boolean;
  /** Which budget refused: 'day' or 'month' (undefined when allowed). */
  deniedBy: 'day' | 'month' | undefined;
}

export interface SettleReply extends PeriodTotals {
  /** The reservation was still held (false: unknown id, or expired and freed already). */
  found: boolean;
  /** Alerts that fired now: `d:<share>` or `m:<share>`, as given in ARGV. */
  alerts: string[];
}

const LUA_HEAD = `${STORE_LUA_NOW}
local now = now_ms(ARGV[#ARGV])
local function num(h, f)
  local v = redis.call('HGET', h, f)
  if v then return tonumber(v) end
  return 0
end
local function purge(h, z)
  local ids = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  if #ids == 0 then return end
  for i = 1, #ids do
    local f = 'r:' .. ids[i]
    local amt = redis.call('HGET', h, f)
    if amt then
      redis.call('HDEL', h, f)
      if amt ~= '0' then redis.call('HINCRBY', h, 'reserved', '-' .. amt) end
    end
  end
  redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
end
`;

/** MemoryStore's stand-in for one period's hash and zset (kept together under the hash key). */
interface PeriodState {
  spent: number;
  reserved: number;
  holds: Map<string, { amount: number; expiresAt: number }>;
  alerts: Set<string>;
}

function stateOf(space: MemoryKeyspace, key: string): PeriodState | undefined {
  return space.get<PeriodState>(key);
}

function ensure(space: MemoryKeyspace, key: string): PeriodState {
  let state = stateOf(space, key);
  if (state === undefined) {
    state = { spent: 0, reserved: 0, holds: new Map(), alerts: new Set() };
    space.set(key, state);
  }
  return state;
}

function purgeMemory(state: PeriodState | undefined, now: number): void {
  if (state === undefined) return;
  for (const [id, hold] of state.holds) {
    if (hold.expiresAt <= now) {
      state.holds.delete(id);
      state.reserved -= hold.amount;
    }
  }
}

function totals(space: MemoryKeyspace, keys: string[]): [number, number, number, number] {
  const day = stateOf(space, keys[0]!);
  const month = stateOf(space, keys[2]!);
  return [day?.spent ?? 0, day?.reserved ?? 0, month?.spent ?? 0, month?.reserved ?? 0];
}

function decodeTotals(raw: unknown[], from: number): PeriodTotals {
  return { daySpent: Number(raw[from]), dayReserved: Number(raw[from + 1]), monthSpent: Number(raw[from + 2]), monthReserved: Number(raw[from + 3]) };
}

/**
 * KEYS dayHash, dayZset, monthHash, monthZset; ARGV id, amount (nanos), dayLimit, monthLimit (nanos, -1:
 * none), reservation ttlMs, day key ttlMs, month key ttlMs. Allowed when, for each limited period,
 * spent + reserved < limit and spent + reserved + amount <= limit; then the amount is held in both periods.
 * Returns [allowed 0/1, denied by 0/1 day/2 month, daySpent, dayReserved, monthSpent, monthReserved].
 */
export const BUDGET_RESERVE: StoreScript<ReserveReply> = {
  name: 'budget-reserve',
  lua: `${LUA_HEAD}
purge(KEYS[1], KEYS[2])
purge(KEYS[3], KEYS[4])
local rid, amt = ARGV[1], ARGV[2]
local amount = tonumber(amt)
local dl, ml = tonumber(ARGV[3]), tonumber(ARGV[4])
local ds, dr, ms, mr = num(KEYS[1], 'spent'), num(KEYS[1], 'reserved'), num(KEYS[3], 'spent'), num(KEYS[3], 'reserved')
if dl >= 0 and (ds + dr >= dl or ds + dr + amount > dl) then return {0, 1, ds, dr, ms, mr} end
if ml >= 0 and (ms + mr >= ml or ms + mr + amount > ml) then return {0, 2, ds, dr, ms, mr} end
local expires = now + tonumber(ARGV[5])
local function hold(h, z, ttl)
  if amt ~= '0' then redis.call('HINCRBY', h, 'reserved', amt) end
  redis.call('HSET', h, 'r:' .. rid, amt)
  redis.call('ZADD', z, expires, rid)
  redis.call('PEXPIRE', h, ttl)
  redis.call('PEXPIRE', z, ttl)
end
hold(KEYS[1], KEYS[2], ARGV[6])
hold(KEYS[3], KEYS[4], ARGV[7])
return {1, 0, ds, dr + amount, ms, mr + amount}
`,
  memory(space, keys, args, now) {
    const day = stateOf(space, keys[0]!);
    const month = stateOf(space, keys[2]!);
    purgeMemory(day, now);
    purgeMemory(month, now);
    const [rid, amt] = [args[0]!, args[1]!];
    const amount = Number(amt);
    const [dl, ml] = [Number(args[2]), Number(args[3])];
    const [ds, dr, ms, mr] = totals(space, keys);
    if (dl >= 0 && (ds + dr >= dl || ds + dr + amount > dl)) return [0, 1, ds, dr, ms, mr];
    if (ml >= 0 && (ms + mr >= ml || ms + mr + amount > ml)) return [0, 2, ds, dr, ms, mr];
    const expiresAt = now + Number(args[4]);
    const hold = (key: string, ttl: number) => {
      const state = ensure(space, key);
      state.reserved += amount;
      state.holds.set(rid, { amount, expiresAt });
      space.expire(key, ttl);
    };
    hold(keys[0]!, Number(args[5]));
    hold(keys[2]!, Number(args[6]));
    return [1, 0, ds, dr + amount, ms, mr + amount];
  },
  decode(raw) {
    const r = raw as unknown[];
    const allowed = Number(r[0]) === 1;
    const by = Number(r[1]);
    return { allowed, deniedBy: by === 1 ? 'day' : by === 2 ? 'month' : undefined, ...decodeTotals(r, 2) };
  },
};

/**
 * Settles, releases or charges. KEYS as BUDGET_RESERVE; ARGV id ('' to charge without a reservation), actual
 * cost (nanos, '0' to release), dayLimit, monthLimit (nanos, -1: none), day key ttlMs, month key ttlMs,
 * alert shares ('0.5,0.8,1' or ''). Frees the reservation's hold (when still held), adds the actual cost to
 * `spent` of both periods, then marks every share of a limited period's budget that spent has reached
 * (HSETNX `a:<share>`): a share fires once per period, whichever replica gets there first.
 * Returns [found 0/1, daySpent, dayReserved, monthSpent, monthReserved, ...fired ('d:0.5', 'm:1')].
 */
export const BUDGET_SETTLE: StoreScript<SettleReply> = {
  name: 'budget-settle',
  lua: `${LUA_HEAD}
local rid, actual, shares = ARGV[1], ARGV[2], ARGV[7]
local found = 0
local function apply(h, z, ttl)
  purge(h, z)
  if rid ~= '' then
    local f = 'r:' .. rid
    local amt = redis.call('HGET', h, f)
    if amt then
      found = 1
      redis.call('HDEL', h, f)
      if amt ~= '0' then redis.call('HINCRBY', h, 'reserved', '-' .. amt) end
    end
    redis.call('ZREM', z, rid)
  end
  if actual ~= '0' then
    redis.call('HINCRBY', h, 'spent', actual)
    redis.call('PEXPIRE', h, ttl)
  end
end
apply(KEYS[1], KEYS[2], ARGV[5])
apply(KEYS[3], KEYS[4], ARGV[6])
local out = {found, num(KEYS[1], 'spent'), num(KEYS[1], 'reserved'), num(KEYS[3], 'spent'), num(KEYS[3], 'reserved')}
if shares ~= '' then
  local function alerts(h, limit, tag, spent)
    if limit <= 0 then return end
    for share in string.gmatch(shares, '[^,]+') do
      if spent >= tonumber(share) * limit and redis.call('HSETNX', h, 'a:' .. share, '1') == 1 then
        out[#out + 1] = tag .. share
      end
    end
  end
  alerts(KEYS[1], tonumber(ARGV[3]), 'd:', out[2])
  alerts(KEYS[3], tonumber(ARGV[4]), 'm:', out[4])
end
return out
`,
  memory(space, keys, args, now) {
    const [rid, actualText, shares] = [args[0]!, args[1]!, args[6]!];
    const actual = Number(actualText);
    let found = 0;
    const apply = (key: string, ttl: number) => {
      let state = stateOf(space, key);
      purgeMemory(state, now);
      if (rid !== '' && state !== undefined) {
        const hold = state.holds.get(rid);
        if (hold !== undefined) {
          found = 1;
          state.holds.delete(rid);
          state.reserved -= hold.amount;
        }
      }
      if (actualText !== '0') {
        state ??= ensure(space, key);
        state.spent += actual;
        space.expire(key, ttl);
      }
    };
    apply(keys[0]!, Number(args[4]));
    apply(keys[2]!, Number(args[5]));
    const [ds, dr, ms, mr] = totals(space, keys);
    const out: Array<number | string> = [found, ds, dr, ms, mr];
    if (shares !== '') {
      const alerts = (key: string, limit: number, tag: string, spent: number) => {
        if (limit <= 0) return;
        for (const share of shares.split(',').filter(Boolean)) {
          if (!(spent >= Number(share) * limit)) continue;
          const state = ensure(space, key);
          if (state.alerts.has(share)) continue;
          state.alerts.add(share);
          out.push(tag + share);
        }
      };
      alerts(keys[0]!, Number(args[2]), 'd:', ds);
      alerts(keys[2]!, Number(args[3]), 'm:', ms);
    }
    return out;
  },
  decode(raw) {
    const r = raw as unknown[];
    return { found: Number(r[0]) === 1, ...decodeTotals(r, 1), alerts: r.slice(5).map(String) };
  },
};

/** KEYS as BUDGET_RESERVE; frees expired reservations and returns [daySpent, dayReserved, monthSpent, monthReserved]. */
export const BUDGET_STATUS: StoreScript<PeriodTotals> = {
  name: 'budget-status',
  lua: `${LUA_HEAD}
purge(KEYS[1], KEYS[2])
purge(KEYS[3], KEYS[4])
return {num(KEYS[1], 'spent'), num(KEYS[1], 'reserved'), num(KEYS[3], 'spent'), num(KEYS[3], 'reserved')}
`,
  memory(space, keys, _args, now) {
    purgeMemory(stateOf(space, keys[0]!), now);
    purgeMemory(stateOf(space, keys[2]!), now);
    return totals(space, keys);
  },
  decode: (raw) => decodeTotals(raw as unknown[], 0),
};
