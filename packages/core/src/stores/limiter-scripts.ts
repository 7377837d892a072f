/**
 * Rate-limiter state on a Store: one key per limiter and user, updated by one script per decision, so a
 * decision costs one round trip however many windows the limiter has. The memory halves run the pure step
 * functions of sliding-window.ts / token-bucket.ts; the Lua halves run the same arithmetic (same float
 * operations in the same order) on a leaner layout, and the conformance tests check both give the
 * in-memory limiters' decisions.
 *
 * Replies (integers; a fractional `used` as a string):
 * - check:  [retryAfterMs (0 = allowed), then remaining, resetMs per window]
 * - usage:  sliding window [used, remaining, resetMs per window]; token bucket [remaining, resetMs]
 * - refund: 1 when the key held state, else 0
 * - reset:  1 when a key was deleted, else 0
 *
 * Config travels in ARGV on every call (there is no per-key config store): build it once per limiter with
 * `slidingWindowScriptArgs` / `tokenBucketScriptArgs`; ARGV[1] is the cost.
 */
import { STORE_LUA_NOW, type ScriptArg, type StoreScript } from './store.js';
import type { MemoryKeyspace } from './memory-keyspace.js';
import {
  slidingWindowAdvance,
  slidingWindowConsume,
  slidingWindowIdle,
  slidingWindowInitial,
  slidingWindowRefund,
  slidingWindowResetMs,
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

/** What a limiter script replies: integers, and strings for fractional values. */
export type LimiterReply = Array<number | string>;

/**
 * With a test clock the scripts' time is not the server's, whose key expiry runs on real time: keys then
 * live at least this long so a slow test never loses state its clock still counts.
 */
const GIVEN_TIME_MIN_TTL_MS = 60_000;

const decodeReply = (raw: unknown): LimiterReply => raw as LimiterReply;
const decodeFlag = (raw: unknown): boolean => raw === 1;

/** `%.17g`-like text for a fractional value (both halves send fractions as strings; integers as numbers). */
function replyNumber(value: number): number | string {
  if (Number.isInteger(value)) return value;
  const text = value.toPrecision(17);
  return text.includes('e') ? text : text.replace(/\.?0+$/, '');
}

// ---------------------------------------------------------------------------------------------------------
// Sliding window

export interface SlidingWindowScriptConfig {
  limits: readonly number[];
  windowMs: readonly number[];
  /** Sub-buckets per window, already capped at the window length in ms (as SlidingWindowLimiter does). */
  buckets: readonly number[];
}

/** FNV-1a over the windows' lengths and bucket counts: state written under another layout is dropped. */
function slidingLayout(config: SlidingWindowScriptConfig): number {
  let hash = 0x811c9dc5;
  const text = config.windowMs.map((w, i) => `${w}/${config.buckets[i]}`).join(',');
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

/**
 * ARGV after the cost, for every sliding-window script: layout, ttlMs, then limit, windowMs, buckets per
 * window. The TTL is the longest window plus one of its buckets: by then every unit has left every window.
 */
export function slidingWindowScriptArgs(config: SlidingWindowScriptConfig): ScriptArg[] {
  let longest = 0;
  let ttl = 0;
  config.windowMs.forEach((w, i) => {
    if (w > longest) {
      longest = w;
      ttl = Math.ceil(w + w / config.buckets[i]!);
    }
  });
  const args: ScriptArg[] = [slidingLayout(config), ttl];
  config.limits.forEach((limit, i) => args.push(limit, config.windowMs[i]!, config.buckets[i]!));
  return args;
}

/*
 * Lua state: a hash per key.
 *   s   header, struct-packed doubles: layout, rotateAt, then per window
 *       head (bucket index), total, headCount, headTime, frontIndex (-1: none), frontCount, frontTime, newestTime
 *   qW  window W's older non-empty buckets, oldest first, struct-packed (index, count, time) records
 *
 * sliding-window.ts keeps a dense ring of B+1 slots per window. Here the head bucket (the one being charged)
 * lives in the header, and only the non-empty older buckets sit in qW, with copies of its front (oldest) and
 * newest time in the header. An allowed call inside the current buckets is HGET s, HSET s, PEXPIRE: qW is
 * read only when a bucket rotates into it or leaves it (once per bucket length), and when a denial must
 * look past the oldest bucket. A bucket lying in the dense ring's oldest slot is exactly a front record with
 * index head - B, so expiry and the early-exit time (rotateAt) are the same as in the ring.
 */
const SW_PRELUDE = `${STORE_LUA_NOW}
local key = KEYS[1]
local argc = #ARGV
local now = now_ms(ARGV[argc])
local cost = tonumber(ARGV[1])
local layout = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
if ARGV[argc] ~= '' and ttl < ${GIVEN_TIME_MIN_TTL_MS} then ttl = ${GIVEN_TIME_MIN_TTL_MS} end
local n = (argc - 4) / 3
local L, W, B = {}, {}, {}
for w = 1, n do
  local a = 1 + 3 * w
  L[w] = tonumber(ARGV[a]); W[w] = tonumber(ARGV[a + 1]); B[w] = tonumber(ARGV[a + 2])
end
local size = 2 + 8 * n
local FMT = '<' .. string.rep('d', size)

local S
local existed = false
local raw = redis.call('HGET', key, 's')
if raw then
  if #raw == 8 * size then
    S = { struct.unpack(FMT, raw) }
    existed = S[1] == layout
  end
  -- Written under other windows: start over.
  if not existed then redis.call('DEL', key) end
end

-- Earliest time a ring must rotate (just before its next bucket) or its oldest bucket expires.
local function next_change()
  local at = math.huge
  for w = 1, n do
    local k = 8 * w - 6
    local rotate = math.ceil((S[k + 1] + 1) * W[w] / B[w]) - 1
    if rotate < at then at = rotate end
    if S[k + 6] > 0 and S[k + 5] == S[k + 1] - B[w] then
      local expires = S[k + 7] + W[w]
      if expires < at then at = expires end
    end
  end
  return at
end

if not existed then
  S = { layout, 0 }
  for w = 1, n do
    local k = 8 * w - 6
    S[k + 1] = math.floor(now * B[w] / W[w])
    S[k + 2] = 0; S[k + 3] = 0; S[k + 4] = 0; S[k + 5] = -1; S[k + 6] = 0; S[k + 7] = 0; S[k + 8] = 0
  end
  S[2] = next_change()
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
local function set_q(w, k, q)
  Q[w] = q; QC[w] = true
  if #q == 0 then
    S[k + 5] = -1; S[k + 6] = 0; S[k + 7] = 0
  else
    S[k + 5], S[k + 6], S[k + 7] = struct.unpack('<ddd', q)
  end
end

local dirty = false
-- slidingWindowAdvance: rotate past buckets that left, drop the oldest once W passed since its last charge.
local function advance()
  if now < S[2] then return end
  dirty = true
  for w = 1, n do
    local k = 8 * w - 6
    local b, win = B[w], W[w]
    local cur = math.floor(now * b / win)
    local head, total = S[k + 1], S[k + 2]
    if cur > head then
      if total == 0 or cur - head > b then
        if S[k + 6] > 0 then set_q(w, k, '') end
        total = 0
      else
        local keep = cur - b
        if S[k + 3] > 0 or (S[k + 6] > 0 and S[k + 5] < keep) then
          local q = q_of(w)
          if S[k + 3] > 0 then
            q = q .. struct.pack('<ddd', head, S[k + 3], S[k + 4])
            S[k + 8] = S[k + 4]
          end
          local pos, len = 1, #q
          while pos < len do
            local index, count = struct.unpack('<dd', q, pos)
            if index >= keep then break end
            total = total - count
            pos = pos + 24
          end
          if pos > 1 then q = string.sub(q, pos) end
          set_q(w, k, q)
        end
      end
      S[k + 3] = 0
      S[k + 1] = cur
      head = cur
    end
    if total > 0 and S[k + 6] > 0 and S[k + 5] == head - b and S[k + 7] + win <= now then
      total = total - S[k + 6]
      set_q(w, k, string.sub(q_of(w), 25))
    end
    if total <= 1e-9 and total ~= 0 then
      -- Fractional costs can leave float dust; a window holding nothing must read exactly 0.
      if S[k + 6] > 0 then set_q(w, k, '') end
      S[k + 3] = 0
      total = 0
    end
    S[k + 2] = total
  end
  S[2] = next_change()
end

local function save()
  local packed = struct.pack(FMT, unpack(S, 1, size))
  if next(QC) == nil then
    redis.call('HSET', key, 's', packed)
  else
    local args = { 'HSET', key, 's', packed }
    for w = 1, n do
      if QC[w] then args[#args + 1] = 'q' .. w; args[#args + 1] = Q[w] end
    end
    redis.call(unpack(args))
  end
end

local function remaining(w)
  local left = L[w] - S[8 * w - 4]
  if left > 0 then return math.floor(left) end
  return 0
end

-- slidingWindowResetMs: until the newest non-empty bucket has left the window.
local function reset_ms(w)
  local k = 8 * w - 6
  if S[k + 2] == 0 then return 0 end
  local t
  if S[k + 3] > 0 then t = S[k + 4] elseif S[k + 6] > 0 then t = S[k + 8] else return 0 end
  local left = t + W[w] - now
  if left > 0 then return math.ceil(left) end
  return 0
end
`;

const SW_CHECK_LUA = `${SW_PRELUDE}
-- waitForExcess: ms until \`excess\` units have left window w, oldest buckets first.
local function wait_for(w, excess)
  local k = 8 * w - 6
  local need = excess - 1e-9
  local freed, latest = 0, now
  if S[k + 6] > 0 then
    freed = S[k + 6]; latest = S[k + 7]
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
  if freed < need and S[k + 3] > 0 then latest = S[k + 4] end
  local wait = math.ceil(latest + W[w] - now)
  if wait < 1 then return 1 end
  return wait
end

advance()
local wait = 0
for w = 1, n do
  local excess = S[8 * w - 4] + cost - L[w]
  if excess > 0 then
    local ww = wait_for(w, excess)
    if ww > wait then wait = ww end
  end
end
if wait == 0 and cost > 0 then
  for w = 1, n do
    local k = 8 * w - 6
    local count = S[k + 3] + cost
    S[k + 3] = count
    if now > S[k + 4] or count == cost then S[k + 4] = now end
    S[k + 2] = S[k + 2] + cost
  end
  save()
  -- Only ever later: after a clock step back, units charged before it still count until their own end.
  if existed then redis.call('PEXPIRE', key, ttl, 'GT') else redis.call('PEXPIRE', key, ttl) end
elseif dirty and existed then
  save()
end
local out = { wait }
for w = 1, n do
  out[2 * w] = remaining(w)
  out[2 * w + 1] = reset_ms(w)
end
return out
`;

const SW_REFUND_LUA = `${SW_PRELUDE}
if cost == 0 or not existed then return 0 end
advance()
-- slidingWindowRefund: newest buckets first (where a just-admitted charge sits).
for w = 1, n do
  local k = 8 * w - 6
  local left = math.min(cost, S[k + 2])
  S[k + 2] = S[k + 2] - left
  local take = math.min(left, S[k + 3])
  S[k + 3] = S[k + 3] - take
  left = left - take
  if left > 0 and S[k + 6] > 0 then
    local q = q_of(w)
    local records = {}
    for pos = 1, #q - 23, 24 do records[#records + 1] = { struct.unpack('<ddd', q, pos) } end
    for i = #records, 1, -1 do
      if left <= 0 then break end
      local r = records[i]
      take = math.min(left, r[2])
      r[2] = r[2] - take
      left = left - take
    end
    local parts = {}
    for i = 1, #records do
      local r = records[i]
      if r[2] > 0 then
        parts[#parts + 1] = struct.pack('<ddd', r[1], r[2], r[3])
        S[k + 8] = r[3]
      end
    end
    set_q(w, k, table.concat(parts))
  end
end
save()
return 1
`;

const SW_USAGE_LUA = `${SW_PRELUDE}
if existed then
  advance()
  if dirty then save() end
end
local out = {}
for w = 1, n do
  local total = S[8 * w - 4]
  if total ~= math.floor(total) then total = string.format('%.17g', total) end
  out[3 * w - 2] = total
  out[3 * w - 1] = remaining(w)
  out[3 * w] = reset_ms(w)
end
return out
`;

interface SlidingEntry {
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

/** The keyspace entry of `key` (dropped when written under another layout) and the config `args` carry. */
function slidingEntry(space: MemoryKeyspace, key: string, args: string[]): { entry: SlidingEntry | undefined; config: SlidingWindowConfig } {
  let entry = space.get<SlidingEntry>(key);
  if (entry !== undefined && entry.layout !== args[1]) {
    space.delete(key);
    entry = undefined;
  }
  if (entry !== undefined && sameConfigArgs(entry.args, args)) return { entry, config: entry.config };
  const config: SlidingWindowConfig = { limits: [], windowMs: [], buckets: [], offsets: [] };
  let offset = 0;
  for (let i = 3; i + 2 < args.length; i += 3) {
    const buckets = Number(args[i + 2]);
    config.limits.push(Number(args[i]));
    config.windowMs.push(Number(args[i + 1]));
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

function slidingRemaining(config: SlidingWindowConfig, state: SlidingWindowState, w: number): number {
  const left = config.limits[w]! - state.totals[w]!;
  return left > 0 ? Math.floor(left) : 0;
}

export const SLIDING_WINDOW_CHECK: StoreScript<LimiterReply> = {
  name: 'sliding-window-check',
  lua: SW_CHECK_LUA,
  memory(space, keys, args, now) {
    const key = keys[0]!;
    const { entry, config } = slidingEntry(space, key, args);
    const state = entry !== undefined ? entry.state : slidingWindowInitial(config, now);
    const cost = Number(args[0]);
    const wait = slidingWindowConsume(state, config, now, cost);
    if (wait === 0 && cost > 0) {
      const ttl = Number(args[2]);
      if (entry === undefined) space.set(key, { layout: args[1]!, args, config, state } satisfies SlidingEntry, ttl);
      else if (space.ttl(key) < ttl) space.expire(key, ttl);
    }
    const out: LimiterReply = [wait];
    for (let w = 0; w < config.limits.length; w++) out.push(slidingRemaining(config, state, w), slidingWindowResetMs(state, config, w, now));
    return out;
  },
  decode: decodeReply,
};

export const SLIDING_WINDOW_REFUND: StoreScript<boolean> = {
  name: 'sliding-window-refund',
  lua: SW_REFUND_LUA,
  memory(space, keys, args, now) {
    const { entry, config } = slidingEntry(space, keys[0]!, args);
    const cost = Number(args[0]);
    if (cost === 0 || entry === undefined) return 0;
    slidingWindowRefund(entry.state, config, now, cost);
    return 1;
  },
  decode: decodeFlag,
};

export const SLIDING_WINDOW_USAGE: StoreScript<LimiterReply> = {
  name: 'sliding-window-usage',
  lua: SW_USAGE_LUA,
  memory(space, keys, args, now) {
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
    const out: LimiterReply = [];
    for (let w = 0; w < config.limits.length; w++) {
      out.push(replyNumber(state.totals[w]!), slidingRemaining(config, state, w), slidingWindowResetMs(state, config, w, now));
    }
    return out;
  },
  decode: decodeReply,
};

// ---------------------------------------------------------------------------------------------------------
// Token bucket

/** ARGV after the cost, for every token-bucket script: capacity, refill per ms. */
export function tokenBucketScriptArgs(capacity: number, refillPerSecond: number): ScriptArg[] {
  return [capacity, refillPerSecond / 1000];
}

/*
 * Lua state: a hash per key with t (tokens) and u (updatedAt), written with full precision (%.17g) so the
 * arithmetic matches token-bucket.ts exactly. It expires once the bucket would be full again: a missing key
 * is a full bucket.
 */
const TB_PRELUDE = `${STORE_LUA_NOW}
local key = KEYS[1]
local argc = #ARGV
local now = now_ms(ARGV[argc])
local cost = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local rate = tonumber(ARGV[3])
local eps = 1e-9 * math.max(1, capacity)
local st = redis.call('HMGET', key, 't', 'u')
local tokens, updated = tonumber(st[1]), tonumber(st[2])
local existed = tokens ~= nil and updated ~= nil
if not existed then tokens = capacity; updated = now end
local function refill()
  if now > updated then
    local t = tokens + (now - updated) * rate
    if t < capacity then tokens = t else tokens = capacity end
    updated = now
    return true
  end
  return false
end
local function reset_ms()
  local missing = capacity - tokens - eps
  if missing > 0 then return math.ceil(missing / rate) end
  return 0
end
`;

const TB_CHECK_LUA = `${TB_PRELUDE}
local changed = refill()
local wait = 0
local missing = cost - tokens
if missing <= eps then
  local left = tokens - cost
  if left > 0 then tokens = left else tokens = 0 end
else
  wait = math.ceil((missing - eps) / rate)
  if wait < 1 then wait = 1 end
end
if wait == 0 and cost > 0 then
  redis.call('HSET', key, 't', tokens, 'u', updated)
  -- Full again (the same as no key) this long after \`updated\`, which a clock stepping back leaves ahead of now.
  local ttl = math.ceil((capacity - tokens) / rate) + 1 + math.max(0, updated - now)
  if ARGV[argc] ~= '' and ttl < ${GIVEN_TIME_MIN_TTL_MS} then ttl = ${GIVEN_TIME_MIN_TTL_MS} end
  redis.call('PEXPIRE', key, ttl)
elseif changed and existed then
  redis.call('HSET', key, 't', tokens, 'u', updated)
end
return { wait, math.floor(tokens + eps), reset_ms() }
`;

const TB_REFUND_LUA = `${TB_PRELUDE}
if cost == 0 or not existed then return 0 end
refill()
tokens = math.min(capacity, tokens + cost)
redis.call('HSET', key, 't', tokens, 'u', updated)
return 1
`;

const TB_USAGE_LUA = `${TB_PRELUDE}
if existed then
  local elapsed = 0
  if now > updated then elapsed = now - updated end
  if tokens + elapsed * rate >= capacity - eps then
    -- Full again: the same as no state at all.
    redis.call('DEL', key)
    tokens = capacity
  elseif refill() then
    redis.call('HSET', key, 't', tokens, 'u', updated)
  end
end
return { math.floor(tokens + eps), reset_ms() }
`;

function tokenConfig(args: string[]): TokenBucketConfig {
  return { capacity: Number(args[1]), refillPerMs: Number(args[2]) };
}

function tokenEpsilon(config: TokenBucketConfig): number {
  return 1e-9 * Math.max(1, config.capacity);
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
      const ttl = Math.ceil((config.capacity - state.tokens) / config.refillPerMs) + 1 + Math.max(0, state.updatedAt - now);
      if (existing === undefined) space.set(key, state, ttl);
      else space.expire(key, ttl);
    }
    return [wait, Math.floor(state.tokens + tokenEpsilon(config)), tokenBucketResetMs(state, config)];
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
    return [Math.floor(state.tokens + tokenEpsilon(config)), tokenBucketResetMs(state, config)];
  },
  decode: decodeReply,
};

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
