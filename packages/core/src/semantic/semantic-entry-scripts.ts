/**
 * Where semantic cache entries live in a Store: one key per entry (its prompt, partition, vector, value and
 * expiry) and one sorted set of entry ids by expiry, both under the cache's hash tag, so a restarted replica
 * lists every live entry in one script and rebuilds its index from them. Expired ids are trimmed by every write.
 */
import type { MemoryKeyspace } from '../stores/memory-keyspace.js';
import { STORE_LUA_NOW, type StoreScript } from '../stores/store.js';

/** MemoryStore's stand-in for the sorted set: id -> expiry (ms). */
type IdSet = Map<string, number>;

function idSet(space: MemoryKeyspace, key: string): IdSet {
  let set = space.get<IdSet>(key);
  if (!(set instanceof Map)) {
    set = new Map();
    space.set(key, set);
  }
  return set;
}

function trim(set: IdSet, now: number): void {
  for (const [id, at] of set) if (at <= now) set.delete(id);
}

/** KEYS entry, ids; ARGV id, entry JSON, ttlMs, now. */
export const SEMANTIC_PUT: StoreScript<void> = {
  name: 'semantic-put',
  lua: `${STORE_LUA_NOW}
local now = now_ms(ARGV[#ARGV])
local ttl = tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
return 1
`,
  memory(space, keys, args, now) {
    const ttl = Number(args[2]);
    space.set(keys[0]!, args[1]!, ttl);
    const set = idSet(space, keys[1]!);
    trim(set, now);
    set.set(args[0]!, now + ttl);
    return 1;
  },
  decode: () => undefined,
};

/** KEYS entry, ids; ARGV id. */
export const SEMANTIC_DELETE: StoreScript<boolean> = {
  name: 'semantic-delete',
  lua: `${STORE_LUA_NOW}
local removed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return removed
`,
  memory(space, keys, args) {
    const removed = space.delete(keys[0]!) ? 1 : 0;
    idSet(space, keys[1]!).delete(args[0]!);
    return removed;
  },
  decode: (raw) => Number(raw) > 0,
};

/** KEYS ids; returns the ids of entries not yet expired. */
export const SEMANTIC_LIST: StoreScript<string[]> = {
  name: 'semantic-list',
  lua: `${STORE_LUA_NOW}
local now = now_ms(ARGV[#ARGV])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
`,
  memory(space, keys, _args, now) {
    const set = idSet(space, keys[0]!);
    trim(set, now);
    return [...set.keys()];
  },
  decode: (raw) => (Array.isArray(raw) ? raw.map(String) : []),
};
