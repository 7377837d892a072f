/**
 * Where ScalingMetrics keeps scaling events in a Store. All keys share one hash tag (`scaling:<name>`), so one
 * script may touch a deployment's events and the deployment index together (scaling events are rare: one
 * slot holds them easily):
 *
 * - `<prefix>{scaling:<name>}:events:<deployment>`: sorted set, member = event id, score = `at` (epoch ms);
 * - `<prefix>{scaling:<name>}:data:<deployment>`: hash, event id -> the event's JSON;
 * - `<prefix>{scaling:<name>}:deployments`: hash, deployment -> `<at of its latest event>|<replicas after it>`
 *   (replicas empty when unknown). It bounds how many deployments are tracked and feeds the replicas gauge.
 *
 * Every key expires `retention` after its last write, and events older than `retention` are trimmed on
 * each write, so a deployment that stops scaling leaves nothing behind.
 */
import type { StoreScript } from '../stores/store.js';

/** The memory half's sorted set: ascending by score, then by member (Redis's order). */
interface MemoryZset {
  items: Array<{ score: number; id: string }>;
}

/** Lua 5.1 unpacks at most ~8000 values at once: bulk commands go in slices of this many. */
const LUA_SLICE = 1000;

const LUA_HELPERS = `
local function hdel_all(key, ids)
  for i = 1, #ids, ${LUA_SLICE} do redis.call('HDEL', key, unpack(ids, i, math.min(i + ${LUA_SLICE - 1}, #ids))) end
end
local function at_of(entry) return tonumber(string.match(entry, '^(%-?[%d%.e%+]+)|')) end
`;

/**
 * KEYS events, data, index. ARGV id, json, at, cutoff, maxEvents, deployment, maxDeployments, ttlMs, replicas.
 * Returns 1 recorded, 0 duplicate (the id is known), -1 refused (maxDeployments deployments are tracked).
 */
export const SCALING_RECORD: StoreScript<'recorded' | 'duplicate' | 'full'> = {
  name: 'scaling-record',
  lua: `${LUA_HELPERS}
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
local at = tonumber(ARGV[3])
local cutoff = tonumber(ARGV[4])
local known = redis.call('HGET', KEYS[3], ARGV[6])
if not known and redis.call('HLEN', KEYS[3]) >= tonumber(ARGV[7]) then
  local all = redis.call('HGETALL', KEYS[3])
  for i = 1, #all, 2 do
    if at_of(all[i + 1]) < cutoff then redis.call('HDEL', KEYS[3], all[i]) end
  end
  if redis.call('HLEN', KEYS[3]) >= tonumber(ARGV[7]) then return -1 end
end
redis.call('ZADD', KEYS[1], at, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff)
if #old > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff)
  hdel_all(KEYS[2], old)
end
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[5])
if excess > 0 then
  local gone = redis.call('ZRANGE', KEYS[1], 0, excess - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1)
  hdel_all(KEYS[2], gone)
end
if not known or at_of(known) <= at then redis.call('HSET', KEYS[3], ARGV[6], ARGV[3] .. '|' .. ARGV[9]) end
redis.call('PEXPIRE', KEYS[1], ARGV[8])
redis.call('PEXPIRE', KEYS[2], ARGV[8])
redis.call('PEXPIRE', KEYS[3], ARGV[8])
return 1
`,
  memory(space, keys, args) {
    const [eventsKey, dataKey, indexKey] = keys as [string, string, string];
    const [id, json, atRaw, cutoffRaw, maxEventsRaw, deployment, maxDeploymentsRaw, ttlRaw, replicas] = args as string[] as [string, string, string, string, string, string, string, string, string];
    const data = space.get<Map<string, string>>(dataKey);
    if (data?.has(id)) return 0;
    const at = Number(atRaw);
    const cutoff = Number(cutoffRaw);
    const index = space.get<Map<string, string>>(indexKey) ?? new Map<string, string>();
    const known = index.get(deployment);
    if (known === undefined && index.size >= Number(maxDeploymentsRaw)) {
      for (const [name, entry] of index) if (atOf(entry) < cutoff) index.delete(name);
      if (index.size >= Number(maxDeploymentsRaw)) return -1;
    }
    const zset = space.get<MemoryZset>(eventsKey) ?? { items: [] };
    const hash = data ?? new Map<string, string>();
    zsetAdd(zset, at, id);
    hash.set(id, json);
    let drop = 0;
    while (drop < zset.items.length && zset.items[drop]!.score < cutoff) drop++;
    const excess = zset.items.length - drop - Number(maxEventsRaw);
    if (excess > 0) drop += excess;
    for (const gone of zset.items.splice(0, drop)) hash.delete(gone.id);
    if (known === undefined || atOf(known) <= at) index.set(deployment, `${atRaw}|${replicas}`);
    const ttl = Number(ttlRaw);
    space.set(eventsKey, zset, ttl);
    space.set(dataKey, hash, ttl);
    space.set(indexKey, index, ttl);
    return 1;
  },
  decode: (raw) => (Number(raw) === 1 ? 'recorded' : Number(raw) === 0 ? 'duplicate' : 'full'),
};

/**
 * KEYS events, data. ARGV min, max (ZRANGEBYSCORE bounds: '-inf', '+inf', '(123' exclusive), reverse ('1' newest
 * first), limit (0: all). Returns the events' JSON in that order.
 */
export const SCALING_RANGE: StoreScript<string[]> = {
  name: 'scaling-range',
  lua: `
local ids
local limit = tonumber(ARGV[4])
if ARGV[3] == '1' then
  if limit > 0 then ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[2], ARGV[1], 'LIMIT', 0, limit)
  else ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[2], ARGV[1]) end
else
  if limit > 0 then ids = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, limit)
  else ids = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2]) end
end
local out = {}
for i = 1, #ids, ${LUA_SLICE} do
  local values = redis.call('HMGET', KEYS[2], unpack(ids, i, math.min(i + ${LUA_SLICE - 1}, #ids)))
  for j = 1, #values do
    if values[j] then out[#out + 1] = values[j] end
  end
end
return out
`,
  memory(space, keys, args) {
    const [eventsKey, dataKey] = keys as [string, string];
    const [minRaw, maxRaw, reverse, limitRaw] = args as [string, string, string, string];
    const zset = space.get<MemoryZset>(eventsKey);
    const data = space.get<Map<string, string>>(dataKey);
    if (zset === undefined || data === undefined) return [];
    const min = bound(minRaw);
    const max = bound(maxRaw);
    let items = zset.items.filter((i) => (min.exclusive ? i.score > min.value : i.score >= min.value) && (max.exclusive ? i.score < max.value : i.score <= max.value));
    if (reverse === '1') items = items.reverse();
    const limit = Number(limitRaw);
    if (limit > 0) items = items.slice(0, limit);
    const out: string[] = [];
    for (const item of items) {
      const json = data.get(item.id);
      if (json !== undefined) out.push(json);
    }
    return out;
  },
  decode: (raw) => (raw as unknown[]).map(String),
};

/** KEYS index. ARGV cutoff. Returns [deployment, '<at>|<replicas>', ...] for deployments with an event since cutoff. */
export const SCALING_DEPLOYMENTS: StoreScript<Array<{ deployment: string; at: number; replicas: number | undefined }>> = {
  name: 'scaling-deployments',
  lua: `${LUA_HELPERS}
local all = redis.call('HGETALL', KEYS[1])
local cutoff = tonumber(ARGV[1])
local out = {}
for i = 1, #all, 2 do
  if at_of(all[i + 1]) >= cutoff then
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  end
end
return out
`,
  memory(space, keys, args) {
    const index = space.get<Map<string, string>>(keys[0]!);
    const cutoff = Number(args[0]);
    const out: string[] = [];
    for (const [name, entry] of index ?? []) if (atOf(entry) >= cutoff) out.push(name, entry);
    return out;
  },
  decode(raw) {
    const flat = (raw as unknown[]).map(String);
    const out: Array<{ deployment: string; at: number; replicas: number | undefined }> = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const [at, replicas] = flat[i + 1]!.split('|');
      out.push({ deployment: flat[i]!, at: Number(at), replicas: replicas === undefined || replicas === '' ? undefined : Number(replicas) });
    }
    return out;
  },
};

function atOf(entry: string): number {
  return Number(entry.slice(0, entry.indexOf('|')));
}

function bound(raw: string): { value: number; exclusive: boolean } {
  const exclusive = raw.startsWith('(');
  const text = exclusive ? raw.slice(1) : raw;
  const value = text === '-inf' ? -Infinity : text === '+inf' ? Infinity : Number(text);
  return { value, exclusive };
}

/** Inserts keeping Redis's order: by score, then by member (byte order; ids are ASCII). */
function zsetAdd(zset: MemoryZset, score: number, id: string): void {
  const items = zset.items;
  let lo = 0;
  let hi = items.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const m = items[mid]!;
    if (m.score < score || (m.score === score && m.id < id)) lo = mid + 1;
    else hi = mid;
  }
  items.splice(lo, 0, { score, id });
}
