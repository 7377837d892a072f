import { promisify } from 'node:util';
import { brotliCompress, brotliDecompress, constants as zlibConstants, gunzip, gzip } from 'node:zlib';
import type { PayloadEncoding } from './cache-record.js';

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);
const brotliAsync = promisify(brotliCompress);
const unbrotliAsync = promisify(brotliDecompress);

/** Turns values into bytes and back. The default is JSON; pass your own for Dates, Maps, msgpack, ... */
export interface CacheSerializer {
  serialize(value: unknown): string | Buffer;
  deserialize(bytes: Buffer): unknown;
}

export const jsonSerializer: CacheSerializer = {
  serialize: (value) => JSON.stringify(value),
  deserialize: (bytes) => JSON.parse(bytes.toString('utf8')),
};

export interface CompressionOptions {
  algorithm: 'gzip' | 'br';
  /** Payloads smaller than this many bytes are stored as they are. */
  thresholdBytes: number;
  /** Compressed only when it saves at least this share (0.1 = 10%); otherwise the raw bytes are stored. */
  minSavings: number;
}

export interface EncodedValue {
  payload: Buffer;
  encoding: PayloadEncoding;
  /** Serialized size before compression: what L1 counts against its byte bound. */
  size: number;
}

/** Serialization plus optional compression, applied to values on their way to L2/L3. */
export class ValueCodec {
  constructor(
    private readonly serializer: CacheSerializer,
    private readonly compression: CompressionOptions | undefined,
  ) {}

  /** Serializes only (for L1 sizes when no shared level needs bytes). */
  serialize(value: unknown): Buffer {
    const raw = this.serializer.serialize(value);
    return typeof raw === 'string' ? Buffer.from(raw, 'utf8') : raw;
  }

  async encode(value: unknown): Promise<EncodedValue> {
    return this.encodeSerialized(this.serialize(value));
  }

  /** Compresses an already serialized value when that pays (see CompressionOptions). */
  async encodeSerialized(raw: Buffer): Promise<EncodedValue> {
    const c = this.compression;
    if (c === undefined || raw.length < c.thresholdBytes) return { payload: raw, encoding: 'none', size: raw.length };
    const packed =
      c.algorithm === 'br'
        ? await brotliAsync(raw, { params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 5, [zlibConstants.BROTLI_PARAM_SIZE_HINT]: raw.length } })
        : await gzipAsync(raw);
    // Compression that saves little costs CPU on every read for nothing.
    if (packed.length > raw.length * (1 - c.minSavings)) return { payload: raw, encoding: 'none', size: raw.length };
    return { payload: packed, encoding: c.algorithm, size: raw.length };
  }

  /** Synchronous for uncompressed payloads (the common, hot case); a promise when it must inflate. */
  decode(payload: Buffer, encoding: PayloadEncoding): unknown {
    if (encoding === 'none') return this.serializer.deserialize(payload);
    const inflate = encoding === 'gzip' ? gunzipAsync(payload) : unbrotliAsync(payload);
    return inflate.then((raw) => this.serializer.deserialize(raw));
  }
}
