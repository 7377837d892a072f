/**
 * How one cache entry is laid out in L2/L3: a 26-byte header (format, payload encoding, stored-at, fresh-until,
 * stale-until as float64 ms) followed by the payload. Freshness travels with the value, so every replica and
 * every level agrees on when an entry turns stale, whatever TTL the level itself keeps it for.
 */
export type PayloadEncoding = 'none' | 'gzip' | 'br';

export interface CacheRecord {
  /** The serialized value, compressed when `encoding` says so. */
  payload: Buffer;
  encoding: PayloadEncoding;
  storedAt: number;
  /** Until then the entry is fresh. */
  freshUntil: number;
  /** Until then a stale entry may still be served (grace); after it the entry is gone. */
  staleUntil: number;
}

const FORMAT = 0xa1;
const HEADER_BYTES = 26;
const ENCODINGS: readonly PayloadEncoding[] = ['none', 'gzip', 'br'];

export function encodeRecord(record: CacheRecord): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES + record.payload.length);
  out[0] = FORMAT;
  out[1] = ENCODINGS.indexOf(record.encoding);
  out.writeDoubleLE(record.storedAt, 2);
  out.writeDoubleLE(record.freshUntil, 10);
  out.writeDoubleLE(record.staleUntil, 18);
  record.payload.copy(out, HEADER_BYTES);
  return out;
}

/** undefined for bytes that are not a record of this format (written by something else): a miss, never a crash. */
export function decodeRecord(bytes: Buffer): CacheRecord | undefined {
  if (bytes.length < HEADER_BYTES || bytes[0] !== FORMAT) return undefined;
  const encoding = ENCODINGS[bytes[1]!];
  if (encoding === undefined) return undefined;
  return {
    encoding,
    storedAt: bytes.readDoubleLE(2),
    freshUntil: bytes.readDoubleLE(10),
    staleUntil: bytes.readDoubleLE(18),
    payload: bytes.subarray(HEADER_BYTES),
  };
}
