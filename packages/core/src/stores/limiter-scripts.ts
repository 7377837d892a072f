/**
 * Rate-limiter state on a Store: one key per limiter and user, updated by one script per decision, so a
 * decision costs one round trip however many windows the limiter has. The memory halves run the pure step
 * functions of sliding-window.ts / token-bucket.ts; the Lua halves run the same arithmetic (the same float
 * operations in the same order) on a leaner layout. The conformance tests check both give the in-memory
 * limiters' decisions.
 *
 * The Lua is written for Redis CPU, which it shares with every other client: a redis.call, a tonumber or a
 * table reply each cost a measurable share of a decision. So the scripts leave what JavaScript can finish
 * (clamping, adding the window length) to the caller, and replies carry raw differences that Redis
 * truncates to integers:
 * - sliding-window check: [retryAfterMs (0 = allowed), limit - used per window, t - now per window]
 *   where t is the time of the newest charge still counted (NO_CHARGE when none):
 *   remaining = max(0, limit - used), resetMs = max(0, ceil(t - now + windowMs)) (times are whole ms).
 *   The usual allowed call (every t is now, every used a whole number below slidingWindowPackBase(n))
 *   replies one integer instead, the used counts packed in base slidingWindowPackBase(n), window 1 lowest:
 *   Redis spends about as much turning a Lua table into a reply as on the rest of the decision;
 * - sliding-window usage: per window [used (a string when fractional), t - now];
 * - token-bucket check: [retryAfterMs, remaining, resetMs], or when allowed with remaining and resetMs
 *   below TOKEN_BUCKET_PACK_BASE the one integer remaining * TOKEN_BUCKET_PACK_BASE + resetMs;
 *   usage: [remaining, resetMs];
 * - refund: 1 when the key held state, else 0; reset: 1 when a key was deleted, else 0.
 *
 * Config travels in ARGV on every call (there is no per-key config store): build the ARGV tail once per
 * limiter with `slidingWindowScriptArgs` / `tokenBucketScriptArgs` and put the cost in front.
 */
import type { MemoryKeyspace } from './memory-keyspace.js';
import type { ScriptArg, StoreScript } from './store.js';
import {
  slidingWindowAdvance,
  slidingWindowConsume,
  slidingWindowIdle,
  slidingWindowInitial,
  slidingWindowNewestChargeAt,
  slidingWindowRefund,
  slidingWindowTotal,
  type SlidingWindowConfig,
  type SlidingWindowState,
} from '../policies/sliding-window.js';
import {
  tokenBucketConsume,
  tokenBucketIdle,
  tokenBucketInitial,
  tokenBucketRefill,
  tokenBucketRefund,
  tokenBucketResetMs,
  type TokenBucketConfig,
  type TokenBucketState,
} from '../policies/token-bucket.js';

/** What a limiter script replies: integers, strings for fractional values, or one packed integer. */
export type LimiterReply = number | Array<number | string>;

/** Base of the packed sliding-window reply for `windowCount` windows: the counts fit 52 bits together. */
export function slidingWindowPackBase(windowCount: number): number {
  return 2 ** Math.floor(52 / windowCount);
}

/** Base of the packed token-bucket reply (remaining and resetMs below it: 2^26, about 18.6 hours of ms). */
export const TOKEN_BUCKET_PACK_BASE = 2 ** 26;

/** `t - now` in a sliding-window reply when a window holds no charge (its resetMs is 0). */
export const NO_CHARGE = -1e15;

/**
 * With a test clock the scripts' time is not the server's, whose key expiry runs on real time: keys then
 * live at least this long (and are refreshed on every charge) so a slow test never loses state its clock
 * still counts.
 */
const GIVEN_TIME_MIN_TTL_MS = 60_000;

/** The key expiry is refreshed at most once per this fraction of the TTL (fewer PEXPIREs per decision). */
const EXPIRY_SLACK_FRACTION = 1 / 8;

const decodeReply = (raw: unknown): LimiterReply => raw as LimiterReply;
const decodeFlag = (raw: unknown): boolean => raw === 1;

/** `%.17g`-like text for a fractional value (Lua can only reply fractions as strings). */
function replyNumber(value: number): number | string {
  if (Number.isInteger(value)) return value;
  const text = value.toPrecision(17);
  return text.includes('e') ? text : text.replace(/\.?0+$/, '');
}

/** The time shared by every script: the caller's (a test clock) or Redis TIME (STORE_LUA_NOW, inlined). */
const LUA_NOW = `
local argc = #ARGV
local given = ARGV[argc]
local now
if given ~= '' then
  now = tonumber(given)
else
  local t = redis.call('TIME')
  now = t[1] * 1000 + math.floor(t[2] / 1000)
end
`;

/**
 * Sets \`expire\` (ms for PEXPIRE, or false) before the state is saved. Expiry is refreshed once the time
 * passes the refresh `mark`, then set to TTL + slack and the mark to now + slack: every charge is then
 * followed by at least TTL, at the cost of one PEXPIRE per slack instead of one per decision. With a test
 * clock every charge refreshes it (in real time, at least GIVEN_TIME_MIN_TTL_MS).
 */
function luaExpiry(config: string, mark: string): string {
  return `
  local expire = false
  if given ~= '' or now > ${mark} then
    local ms, slack = string.match(${config}, '^(%S+) (%S+)')
    expire = tonumber(ms)
    if given ~= '' then
      if expire < ${GIVEN_TIME_MIN_TTL_MS} then expire = ${GIVEN_TIME_MIN_TTL_MS} end
    else
      ${mark} = now + tonumber(slack)
    end
  end`;
}

// ---------------------------------------------------------------------------------------------------------
// Sliding window

export interface SlidingWindowScriptConfig {
  limits: readonly number[];
  windowMs: readonly number[];
  /** Sub-buckets per window, already capped at the window length in ms (as SlidingWindowLimiter does). */
  buckets: readonly number[];
}

/**
 * The ARGV after the cost for every sliding-window script: [layout, limit1, limit2, ...] where layout is
 * "expireMs slackMs windowMs1 buckets1 windowMs2 buckets2 ...": parsed only off the fast path, and the name
 * of the hash field holding the hot state, so state written under other windows is never misread. Limits
 * are not part of it: a new limit applies to what was counted. The TTL is the longest window plus one of its
 * buckets (by then every unit has left every window), plus slack.
 */
export function slidingWindowScriptArgs(config: SlidingWindowScriptConfig): ScriptArg[] {
  let ttl = 0;
  config.windowMs.forEach((w, i) => {
    ttl = Math.max(ttl, Math.ceil(w + w / config.buckets[i]!));
  });
  const slack = Math.max(1, Math.ceil(ttl * EXPIRY_SLACK_FRACTION));
  const windows = config.windowMs.map((w, i) => `${w} ${config.buckets[i]}`).join(' ');
  return [`${ttl + slack} ${slack} ${windows}`, ...config.limits];
}

/*
 * Lua state: a hash per key.
 *   <layout>   hot state, struct-packed doubles: rotateAt, expiry refresh mark, then per window
 *              used, headCount, headTime (the bucket being charged)
 *   c          per window: headIndex, frontIndex (-1: none), frontCount, frontTime, newestTime
 *   q<w>       window w's older non-empty buckets, oldest first: struct-packed (index, count, time) records
 *
 * sliding-window.ts keeps a dense ring of B+1 slots per window. Here the head bucket lives in the hot state
 * and only the non-empty older buckets are kept, in q<w>, with copies of the front (oldest) record and the
 * newest record's time in `c`. A bucket in the ring's oldest slot is exactly a front record with index
 * head - B, so expiry and rotateAt (before it, nothing can rotate or expire) are the same as in the ring.
 *
 * An allowed call before rotateAt (the usual case) is TIME, HGET and HSET of the hot field, plus a PEXPIRE
 * once per slack, and replies one integer:
 * no closures, no `c` or `q`. `c` is read when a bucket boundary or an expiry is due, when a call is denied
 * and when nothing was charged; q<w> only when a bucket rotates into it or leaves it, or a denial must look
 * past its oldest bucket.
 */
interface SlidingShape {
  n: number;
  hot: string;
  hotSize: number;
  cold: string;
  coldSize: number;
}

function slidingShape(n: number): SlidingShape {
  return { n, hot: `<${'d'.repeat(2 + 3 * n)}`, hotSize: 2 + 3 * n, cold: `<${'d'.repeat(5 * n)}`, coldSize: 5 * n };
}

function slidingHead(sh: SlidingShape): string {
  return `${LUA_NOW}
local key = KEYS[1]
local hot = redis.call('HGET', key, ARGV[2])
if hot and #hot ~= ${8 * sh.hotSize} then hot = false end
`;
}

/**
 * check only: a call that fits, with nothing due to rotate or expire, touches the hot state alone. Unrolled
 * per window into locals (no tables); limits are read from ARGV by arithmetic coercion (no tonumber calls).
 */
function slidingFastPath(sh: SlidingShape): string {
  const ws = Array.from({ length: sh.n }, (_, i) => i + 1);
  const state = ['rotate_at', 'mark', ...ws.flatMap((w) => [`u${w}`, `c${w}`, `t${w}`])].join(', ');
  const fits = ws.map((w) => `u${w} + cost - ARGV[${2 + w}] <= 0`).join(' and ');
  const charge = ws
    .map((w) => `    c${w} = c${w} + cost; if now > t${w} or c${w} == cost then t${w} = now end; u${w} = u${w} + cost`)
    .join('\n');
  const base = slidingWindowPackBase(sh.n);
  const packable = ws.map((w) => `t${w} == now and u${w} % 1 == 0 and u${w} < ${base}`).join(' and ');
  const packed = ws.reduceRight((inner, w) => (inner === '' ? `u${w}` : `u${w} + ${base} * (${inner})`), '');
  const left = ws.map((w) => `ARGV[${2 + w}] - u${w}`).join(', ');
  const since = ws.map((w) => `t${w} - now`).join(', ');
  return `
if hot then
  local cost = ARGV[1] + 0
  local ${state} = struct.unpack('${sh.hot}', hot)
  if now < rotate_at and cost > 0 and ${fits} then
${charge}${luaExpiry('ARGV[2]', 'mark')}
    redis.call('HSET', key, ARGV[2], struct.pack('${sh.hot}', ${state}))
    if expire then redis.call('PEXPIRE', key, expire) end
    if ${packable} then return ${packed} end
    return { 0, ${left}, ${since} }
  end
end
`;
}

/** Loads (or starts) the whole state and moves it to now: slidingWindowAdvance on the sparse layout. */
function slidingGeneral(sh: SlidingShape): string {
  const limits = Array.from({ length: sh.n }, (_, w) => `tonumber(ARGV[${3 + w}])`).join(', ');
  return `
local cost = tonumber(ARGV[1])
local L = { ${limits} }
local H
local W, B = {}, {}
do
  local i = 0
  for v in string.gmatch(ARGV[2], '%S+') do
    i = i + 1
    if i > 2 then
      if i % 2 == 1 then W[#W + 1] = tonumber(v) else B[#B + 1] = tonumber(v) end
    end
  end
end

local C
if hot then
  local cold = redis.call('HGET', key, 'c')
  if cold and #cold == ${8 * sh.coldSize} then
    if not H then H = { struct.unpack('${sh.hot}', hot) } end
    C = { struct.unpack('${sh.cold}', cold) }
  else
    hot = false
  end
end
local existed = hot and true or false

-- Earliest time a ring must rotate (just before its next bucket) or its oldest bucket expires.
local function next_change()
  local at = math.huge
  for w = 1, ${sh.n} do
    local b = 5 * w - 5
    local head = C[b + 1]
    local rotate = math.ceil((head + 1) * W[w] / B[w]) - 1
    if rotate < at then at = rotate end
    if C[b + 3] > 0 and C[b + 2] == head - B[w] then
      local expires = C[b + 4] + W[w]
      if expires < at then at = expires end
    end
  end
  return at
end

if not existed then
  -- Nothing under these windows: drop what other windows (an older config) left, and start empty.
  redis.call('DEL', key)
  H = { 0, 0 }
  C = {}
  for w = 1, ${sh.n} do
    local i, b = 3 * w, 5 * w - 5
    H[i] = 0; H[i + 1] = 0; H[i + 2] = 0
    C[b + 1] = math.floor(now * B[w] / W[w]); C[b + 2] = -1; C[b + 3] = 0; C[b + 4] = 0; C[b + 5] = 0
  end
  H[1] = next_change()
end

local Q, QC = {}, {}
local function q_of(w)
  local q = Q[w]
  if q == nil then
    q = redis.call('HGET', key, 'q' .. w) or ''
    Q[w] = q
  end
  return q
end
local function set_q(w, q)
  Q[w] = q; QC[w] = true
  local b = 5 * w - 5
  if #q == 0 then
    C[b + 2] = -1; C[b + 3] = 0; C[b + 4] = 0
  else
    C[b + 2], C[b + 3], C[b + 4] = struct.unpack('<ddd', q)
  end
end

local changed = false
if now >= H[1] then
  changed = true
  for w = 1, ${sh.n} do
    local i, b = 3 * w, 5 * w - 5
    local buckets, win = B[w], W[w]
    local cur = math.floor(now * buckets / win)
    local head, used = C[b + 1], H[i]
    if cur > head then
      if used == 0 or cur - head > buckets then
        if C[b + 3] > 0 then set_q(w, '') end
        used = 0
      else
        -- Buckets older than \`keep\` leave the ring, oldest first; the old head joins the older ones.
        local keep = cur - buckets
        if H[i + 1] > 0 or (C[b + 3] > 0 and C[b + 2] < keep) then
          local q = q_of(w)
          if H[i + 1] > 0 then
            q = q .. struct.pack('<ddd', head, H[i + 1], H[i + 2])
            C[b + 5] = H[i + 2]
          end
          local pos, len = 1, #q
          while pos < len do
            local index, count = struct.unpack('<dd', q, pos)
            if index >= keep then break end
            used = used - count
            pos = pos + 24
          end
          if pos > 1 then q = string.sub(q, pos) end
          set_q(w, q)
        end
      end
      H[i + 1] = 0
      C[b + 1] = cur
      head = cur
    end
    if used > 0 and C[b + 3] > 0 and C[b + 2] == head - buckets and C[b + 4] + win <= now then
      -- The oldest bucket: its latest charge has left the window.
      used = used - C[b + 3]
      set_q(w, string.sub(q_of(w), 25))
    end
    if used <= 1e-9 and used ~= 0 then
      -- Fractional costs can leave float dust; a window holding nothing must read exactly 0.
      if C[b + 3] > 0 then set_q(w, '') end
      H[i + 1] = 0
      used = 0
    end
    H[i] = used
  end
  H[1] = next_change()
end

local function save()
  local args = { 'HSET', key, ARGV[2], struct.pack('${sh.hot}', unpack(H, 1, ${sh.hotSize})), 'c', struct.pack('${sh.cold}', unpack(C, 1, ${sh.coldSize})) }
  for w = 1, ${sh.n} do
    if QC[w] then args[#args + 1] = 'q' .. w; args[#args + 1] = Q[w] end
  end
  redis.call(unpack(args))
end

-- The time of the newest charge window w still counts, minus now (slidingWindowResetMs without W).
local function since(w)
  local i = 3 * w
  if H[i] == 0 then return ${NO_CHARGE} end
  if H[i + 1] > 0 then return H[i + 2] - now end
  local b = 5 * w - 5
  if C[b + 3] > 0 then return C[b + 5] - now end
  return ${NO_CHARGE}
end
`;
}

function slidingCheckTail(sh: SlidingShape): string {
  return `
-- waitForExcess: ms until \`excess\` units have left window w, oldest buckets first.
local function wait_for(w, excess)
  local i, b = 3 * w, 5 * w - 5
  local need = excess - 1e-9
  local freed, latest = 0, now
  if C[b + 3] > 0 then
    freed = C[b + 3]; latest = C[b + 4]
    if freed < need then
      local q = q_of(w)
      local pos, len = 25, #q
      while pos < len do
        local _, count, time = struct.unpack('<ddd', q, pos)
        freed = freed + count; latest = time
        if freed >= need then break end
        pos = pos + 24
      end
    end
  end
  if freed < need and H[i + 1] > 0 then latest = H[i + 2] end
  local wait = math.ceil(latest + W[w] - now)
  if wait < 1 then return 1 end
  return wait
end

local wait = 0
for w = 1, ${sh.n} do
  local excess = H[3 * w] + cost - L[w]
  if excess > 0 then
    local ww = wait_for(w, excess)
    if ww > wait then wait = ww end
  end
end
if wait == 0 and cost > 0 then
  for w = 1, ${sh.n} do
    local i = 3 * w
    local count = H[i + 1] + cost
    H[i + 1] = count
    if now > H[i + 2] or count == cost then H[i + 2] = now end
    H[i] = H[i] + cost
  end${luaExpiry('ARGV[2]', 'H[2]')}
  save()
  if expire then redis.call('PEXPIRE', key, expire) end
elseif changed and existed then
  save()
end
local out, packed, scale = { wait }, 0, 1
for w = 1, ${sh.n} do
  local used = H[3 * w]
  out[1 + w] = L[w] - used
  local t = since(w)
  out[${1 + sh.n} + w] = t
  if packed and t == 0 and used % 1 == 0 and used < ${slidingWindowPackBase(sh.n)} then
    packed = packed + scale * used
    scale = scale * ${slidingWindowPackBase(sh.n)}
  else
    packed = false
  end
end
if wait == 0 and packed then return packed end
return out
`;
}

/** slidingWindowRefund: newest buckets first (where a just-admitted charge sits). */
function slidingRefundTail(sh: SlidingShape): string {
  return `
for w = 1, ${sh.n} do
  local i, b = 3 * w, 5 * w - 5
  local left = math.min(cost, H[i])
  H[i] = H[i] - left
  local take = math.min(left, H[i + 1])
  H[i + 1] = H[i + 1] - take
  left = left - take
  if left > 0 and C[b + 3] > 0 then
    local q = q_of(w)
    local records = {}
    for pos = 1, #q - 23, 24 do records[#records + 1] = { struct.unpack('<ddd', q, pos) } end
    for r = #records, 1, -1 do
      if left <= 0 then break end
      local record = records[r]
      take = math.min(left, record[2])
      record[2] = record[2] - take
      left = left - take
    end
    local parts = {}
    for r = 1, #records do
      local record = records[r]
      if record[2] > 0 then
        parts[#parts + 1] = struct.pack('<ddd', record[1], record[2], record[3])
        C[b + 5] = record[3]
      end
    end
    set_q(w, table.concat(parts))
  end
end
save()
return 1
`;
}

function slidingUsageTail(sh: SlidingShape): string {
  return `
if changed then save() end
local out = {}
for w = 1, ${sh.n} do
  local used = H[3 * w]
  if used ~= math.floor(used) then used = string.format('%.17g', used) end
  out[2 * w - 1] = used
  out[2 * w] = since(w)
end
return out
`;
}

interface SlidingEntry {
  /** The layout arg it was written under (the Lua's hot field name). */
  layout: string;
  /** The config args it was parsed from (limits may change between calls; the layout may not). */
  args: string[];
  config: SlidingWindowConfig;
  state: SlidingWindowState;
}

function sameConfigArgs(a: string[], b: string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 1; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The keyspace entry of `key` (dropped when written under other windows) and the config `args` carry. */
function slidingEntry(space: MemoryKeyspace, key: string, args: string[]): { entry: SlidingEntry | undefined; config: SlidingWindowConfig } {
  let entry = space.get<SlidingEntry>(key);
  if (entry !== undefined && entry.layout !== args[1]) {
    space.delete(key);
    entry = undefined;
  }
  if (entry !== undefined && sameConfigArgs(entry.args, args)) return { entry, config: entry.config };
  const config: SlidingWindowConfig = { limits: [], windowMs: [], buckets: [], offsets: [] };
  const parts = args[1]!.split(' ');
  let offset = 0;
  for (let i = 2, w = 2; i + 1 < parts.length; i += 2, w++) {
    const buckets = Number(parts[i + 1]);
    config.limits.push(Number(args[w]));
    config.windowMs.push(Number(parts[i]));
    config.buckets.push(buckets);
    config.offsets.push(offset);
    offset += buckets + 1;
  }
  if (entry !== undefined) {
    entry.args = args;
    entry.config = config;
  }
  return { entry, config };
}

/** What `since(w)` replies: the newest counted charge's time minus now, truncated as Redis does. */
function sinceReply(state: SlidingWindowState, config: SlidingWindowConfig, w: number, now: number): number {
  const newest = slidingWindowNewestChargeAt(state, config, w);
  return newest === undefined ? NO_CHARGE : Math.trunc(newest - now);
}

function slidingCheckMemory(space: MemoryKeyspace, keys: string[], args: string[], now: number): LimiterReply {
  const key = keys[0]!;
  const { entry, config } = slidingEntry(space, key, args);
  const state = entry !== undefined ? entry.state : slidingWindowInitial(config, now);
  const cost = Number(args[0]);
  const wait = slidingWindowConsume(state, config, now, cost);
  if (wait === 0 && cost > 0) {
    // The store's clock is the script's: the exact TTL (no slack needed) keeps keys until idle.
    const ttl = Number(args[1]!.slice(0, args[1]!.indexOf(' ')));
    if (entry === undefined) space.set(key, { layout: args[1]!, args, config, state } satisfies SlidingEntry, ttl);
    else if (space.ttl(key) < ttl) space.expire(key, ttl);
  }
  const n = config.limits.length;
  const base = slidingWindowPackBase(n);
  const out: Array<number | string> = [wait];
  let packed = wait === 0 ? 0 : -1;
  let scale = 1;
  for (let w = 0; w < n; w++) out.push(Math.trunc(config.limits[w]! - slidingWindowTotal(state, w)));
  for (let w = 0; w < n; w++) {
    const since = sinceReply(state, config, w, now);
    out.push(since);
    const used = slidingWindowTotal(state, w);
    if (packed >= 0 && since === 0 && Number.isInteger(used) && used < base) {
      packed += scale * used;
      scale *= base;
    } else packed = -1;
  }
  return packed >= 0 ? packed : out;
}

function slidingRefundMemory(space: MemoryKeyspace, keys: string[], args: string[], now: number): number {
  const { entry, config } = slidingEntry(space, keys[0]!, args);
  const cost = Number(args[0]);
  if (cost === 0 || entry === undefined) return 0;
  slidingWindowRefund(entry.state, config, now, cost);
  return 1;
}

function slidingUsageMemory(space: MemoryKeyspace, keys: string[], args: string[], now: number): LimiterReply {
  const key = keys[0]!;
  const { entry, config } = slidingEntry(space, key, args);
  let state: SlidingWindowState;
  if (entry === undefined || slidingWindowIdle(entry.state, config, now)) {
    if (entry !== undefined) space.delete(key);
    state = slidingWindowInitial(config, now);
  } else {
    state = entry.state;
    slidingWindowAdvance(state, config, now);
  }
  const out: Array<number | string> = [];
  for (let w = 0; w < config.limits.length; w++) out.push(replyNumber(slidingWindowTotal(state, w)), sinceReply(state, config, w, now));
  return out;
}

export interface SlidingWindowScripts {
  check: StoreScript<LimiterReply>;
  refund: StoreScript<boolean>;
  usage: StoreScript<LimiterReply>;
}

const slidingScripts = new Map<number, SlidingWindowScripts>();

/**
 * The scripts for limiters with `windowCount` windows (1 to 10). The Lua is generated per count so struct
 * formats and sizes are constants; the scripts are shared by every limiter with that many windows.
 */
export function slidingWindowScripts(windowCount: number): SlidingWindowScripts {
  let scripts = slidingScripts.get(windowCount);
  if (scripts === undefined) {
    const sh = slidingShape(windowCount);
    const head = slidingHead(sh);
    const general = slidingGeneral(sh);
    scripts = {
      check: {
        name: 'sliding-window-check',
        lua: head + slidingFastPath(sh) + general + slidingCheckTail(sh),
        memory: slidingCheckMemory,
        decode: decodeReply,
      },
      refund: {
        name: 'sliding-window-refund',
        lua: `${head}\nif not hot or tonumber(ARGV[1]) == 0 then return 0 end\n${general}${slidingRefundTail(sh)}`,
        memory: slidingRefundMemory,
        decode: decodeFlag,
      },
      usage: {
        name: 'sliding-window-usage',
        lua: `${head}\nif not hot then\n  local out = {}\n  for w = 1, ${sh.n} do out[2 * w - 1] = 0; out[2 * w] = ${NO_CHARGE} end\n  return out\nend\n${general}${slidingUsageTail(sh)}`,
        memory: slidingUsageMemory,
        decode: decodeReply,
      },
    };
    slidingScripts.set(windowCount, scripts);
  }
  return scripts;
}

// ---------------------------------------------------------------------------------------------------------
// Token bucket

/**
 * The ARGV after the cost for every token-bucket script: [capacity, refill per ms, "expireMs slackMs"].
 * A bucket is full (the same as no key) at most capacity / refill after any charge.
 */
export function tokenBucketScriptArgs(capacity: number, refillPerSecond: number): ScriptArg[] {
  const refillPerMs = refillPerSecond / 1000;
  const ttl = Math.ceil(capacity / refillPerMs) + 1;
  const slack = Math.max(1, Math.ceil(ttl * EXPIRY_SLACK_FRACTION));
  return [capacity, refillPerMs, `${ttl + slack} ${slack}`];
}

/*
 * Lua state: a hash per key with one field `s`, struct-packed doubles: tokens, updatedAt, expiry refresh
 * mark (exact doubles, so the arithmetic matches token-bucket.ts). A missing key is a full bucket.
 */
const TB_HEAD = `${LUA_NOW}
local key = KEYS[1]
local cost = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local rate = tonumber(ARGV[3])
local eps = 1e-9
if capacity > 1 then eps = 1e-9 * capacity end
local raw = redis.call('HGET', key, 's')
local H
if raw then H = { struct.unpack('<ddd', raw) } else H = { capacity, now, 0 } end
-- tokenBucketRefill
local refilled = false
if now > H[2] then
  local tokens = H[1] + (now - H[2]) * rate
  if tokens < capacity then H[1] = tokens else H[1] = capacity end
  H[2] = now
  refilled = true
end
local function reset_ms()
  local missing = capacity - H[1] - eps
  if missing > 0 then return math.ceil(missing / rate) end
  return 0
end
`;

const TB_CHECK_LUA = `${TB_HEAD}
local wait = 0
local missing = cost - H[1]
if missing <= eps then
  local left = H[1] - cost
  if left > 0 then H[1] = left else H[1] = 0 end
else
  wait = math.ceil((missing - eps) / rate)
  if wait < 1 then wait = 1 end
end
if wait == 0 and cost > 0 then${luaExpiry('ARGV[4]', 'H[3]')}
  redis.call('HSET', key, 's', struct.pack('<ddd', H[1], H[2], H[3]))
  if expire then redis.call('PEXPIRE', key, expire) end
elseif refilled and raw then
  redis.call('HSET', key, 's', struct.pack('<ddd', H[1], H[2], H[3]))
end
local remaining, reset = math.floor(H[1] + eps), reset_ms()
if wait == 0 and remaining < ${TOKEN_BUCKET_PACK_BASE} and reset < ${TOKEN_BUCKET_PACK_BASE} then
  return remaining * ${TOKEN_BUCKET_PACK_BASE} + reset
end
return { wait, remaining, reset }
`;

const TB_REFUND_LUA = `${TB_HEAD}
if cost == 0 or not raw then return 0 end
H[1] = math.min(capacity, H[1] + cost)
redis.call('HSET', key, 's', struct.pack('<ddd', H[1], H[2], H[3]))
return 1
`;

// tokenBucketIdle before the refill: a bucket full again is dropped, as TokenBucketLimiter.getUsage does.
const TB_USAGE_LUA = `${LUA_NOW}
local key = KEYS[1]
local capacity = tonumber(ARGV[2])
local rate = tonumber(ARGV[3])
local eps = 1e-9
if capacity > 1 then eps = 1e-9 * capacity end
local raw = redis.call('HGET', key, 's')
if not raw then return { capacity + eps, 0 } end
local tokens, updated, mark = struct.unpack('<ddd', raw)
local elapsed = 0
if now > updated then elapsed = now - updated end
if tokens + elapsed * rate >= capacity - eps then
  redis.call('DEL', key)
  return { capacity + eps, 0 }
end
if now > updated then
  local t = tokens + (now - updated) * rate
  if t < capacity then tokens = t else tokens = capacity end
  updated = now
  redis.call('HSET', key, 's', struct.pack('<ddd', tokens, updated, mark))
end
local missing = capacity - tokens - eps
local reset = 0
if missing > 0 then reset = math.ceil(missing / rate) end
return { tokens + eps, reset }
`;

function tokenConfig(args: string[]): TokenBucketConfig {
  return { capacity: Number(args[1]), refillPerMs: Number(args[2]) };
}

/** What Redis replies for `tokens + eps` (a Lua number truncated to an integer): whole tokens left. */
function wholeTokens(state: TokenBucketState, config: TokenBucketConfig): number {
  return Math.trunc(state.tokens + 1e-9 * Math.max(1, config.capacity));
}

export const TOKEN_BUCKET_CHECK: StoreScript<LimiterReply> = {
  name: 'token-bucket-check',
  lua: TB_CHECK_LUA,
  memory(space, keys, args, now) {
    const key = keys[0]!;
    const config = tokenConfig(args);
    const existing = space.get<TokenBucketState>(key);
    const state = existing ?? tokenBucketInitial(config, now);
    const cost = Number(args[0]);
    const wait = tokenBucketConsume(state, config, now, cost);
    if (wait === 0 && cost > 0) {
      const ttl = Number(args[3]!.slice(0, args[3]!.indexOf(' ')));
      if (existing === undefined) space.set(key, state, ttl);
      else space.expire(key, ttl);
    }
    const remaining = wholeTokens(state, config);
    const reset = tokenBucketResetMs(state, config);
    if (wait === 0 && remaining < TOKEN_BUCKET_PACK_BASE && reset < TOKEN_BUCKET_PACK_BASE) return remaining * TOKEN_BUCKET_PACK_BASE + reset;
    return [wait, remaining, reset];
  },
  decode: decodeReply,
};

export const TOKEN_BUCKET_REFUND: StoreScript<boolean> = {
  name: 'token-bucket-refund',
  lua: TB_REFUND_LUA,
  memory(space, keys, args, now) {
    const state = space.get<TokenBucketState>(keys[0]!);
    const cost = Number(args[0]);
    if (cost === 0 || state === undefined) return 0;
    tokenBucketRefund(state, tokenConfig(args), now, cost);
    return 1;
  },
  decode: decodeFlag,
};

export const TOKEN_BUCKET_USAGE: StoreScript<LimiterReply> = {
  name: 'token-bucket-usage',
  lua: TB_USAGE_LUA,
  memory(space, keys, args, now) {
    const key = keys[0]!;
    const config = tokenConfig(args);
    let state = space.get<TokenBucketState>(key);
    if (state !== undefined && tokenBucketIdle(state, config, now)) {
      space.delete(key);
      state = undefined;
    }
    if (state === undefined) state = tokenBucketInitial(config, now);
    else tokenBucketRefill(state, config, now);
    return [wholeTokens(state, config), tokenBucketResetMs(state, config)];
  },
  decode: decodeReply,
};

export const TOKEN_BUCKET_SCRIPTS = { check: TOKEN_BUCKET_CHECK, refund: TOKEN_BUCKET_REFUND, usage: TOKEN_BUCKET_USAGE };

// ---------------------------------------------------------------------------------------------------------

/** KEYS[1] a limiter key (either algorithm). Forgets everything it holds. */
export const LIMITER_RESET: StoreScript<boolean> = {
  name: 'limiter-reset',
  lua: `return redis.call('DEL', KEYS[1])`,
  memory(space: MemoryKeyspace, keys: string[]) {
    return space.delete(keys[0]!) ? 1 : 0;
  },
  decode: decodeFlag,
};
