import { createHash } from 'node:crypto';

/**
 * A deterministic string for any JSON-like value: object key order does not matter, so `{a:1,b:2}` and
 * `{b:2,a:1}` give the same key. Used for dedup keys (and later cache keys).
 */
export function stableStringify(value: unknown): string {
  return write(value, new WeakSet());
}

function write(value: unknown, seen: WeakSet<object>): string {
  if (value === null || value === undefined) return 'null';
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      return Number.isFinite(value) ? String(value) : JSON.stringify(String(value));
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      return `"${value}n"`;
    case 'function':
    case 'symbol':
      return 'null';
  }
  const obj = value as object;
  if (seen.has(obj)) throw new TypeError('stableStringify: circular structure');
  seen.add(obj);
  try {
    if (Array.isArray(obj)) return `[${obj.map((v) => write(v, seen)).join(',')}]`;
    if (obj instanceof Date) return JSON.stringify(obj.toISOString());
    if (Buffer.isBuffer(obj) || obj instanceof Uint8Array) return `"b64:${Buffer.from(obj as Uint8Array).toString('base64')}"`;
    const keys = Object.keys(obj).sort();
    const parts: string[] = [];
    for (const k of keys) {
      const v = (obj as Record<string, unknown>)[k];
      if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue;
      parts.push(`${JSON.stringify(k)}:${write(v, seen)}`);
    }
    return `{${parts.join(',')}}`;
  } finally {
    seen.delete(obj);
  }
}

/** A short fixed-length hash of `stableStringify(value)`. */
export function stableKey(value: unknown): string {
  return createHash('sha256').update(stableStringify(value)).digest('base64url').slice(0, 27);
}
