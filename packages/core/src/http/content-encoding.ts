import { promisify } from 'node:util';
import { brotliCompress, brotliDecompress, constants, deflate, gzip, gunzip, inflate, type ZlibOptions, type BrotliOptions } from 'node:zlib';
import { InvalidOptionError } from '../errors.js';

/** The content codings AMAS produces. `deflate` is the zlib format (RFC 1950), as RFC 9110 defines it. */
export type Encoding = 'br' | 'gzip' | 'deflate';

/** Server preference when the client weighs codings equally. */
export const DEFAULT_ENCODINGS: readonly Encoding[] = Object.freeze(['br', 'gzip', 'deflate'] as const);

const KNOWN: ReadonlySet<string> = new Set<Encoding>(['br', 'gzip', 'deflate']);

/** RFC 9110 token characters. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;
/** RFC 9110 qvalue: 0 to 1 with at most three decimals. */
const QVALUE = /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/;

/**
 * Picks the response's content coding from Accept-Encoding (RFC 9110 §12.5.3).
 *
 * - No header: `identity`. RFC 9110 lets a server assume any coding is fine, but a client that sends no
 *   Accept-Encoding usually cannot decode one (curl without --compressed, health checks), as Apache, nginx
 *   and the `compression` middleware also assume.
 * - An empty header: `identity` (the client wants no coding).
 * - q-values weigh codings; `*` gives its weight to every coding not listed by name (and to identity);
 *   q=0 refuses. Names and `q` are case-insensitive, whitespace is tolerated, `x-gzip` means gzip.
 * - Ties go to the order of `supported` (by default br, gzip, deflate), and any coding beats identity at
 *   equal weight; identity wins only when the client weighs it strictly higher.
 * - A coding listed twice keeps its lowest weight: a refusal is never overridden by a repeat.
 * - Malformed members (`gzip;q=2`, `gzip;q=abc`, `"gz"`, `;q=1`) are ignored; this never throws.
 *
 * Returns undefined when nothing is acceptable (every supported coding refused and `identity;q=0`, or
 * `*;q=0` with identity not listed). RFC 9110 says the origin SHOULD then send the response without a
 * coding anyway, which is what AMAS's pipeline is meant to do; a caller may answer 406 instead.
 */
export function negotiateEncoding(
  acceptEncoding: string | readonly string[] | undefined,
  supported: readonly Encoding[] = DEFAULT_ENCODINGS,
): Encoding | 'identity' | undefined {
  const header = headerText(acceptEncoding);
  if (header === undefined) return 'identity';
  const weights = parseWeights(header);
  const star = weights.get('*');

  let best: Encoding | undefined;
  let bestWeight = 0;
  for (const coding of supported) {
    if (!KNOWN.has(coding)) continue;
    const weight = weights.get(coding) ?? star ?? 0;
    if (weight > bestWeight) {
      best = coding;
      bestWeight = weight;
    }
  }
  const identity = weights.get('identity') ?? star;
  if (identity !== undefined && identity > bestWeight) return 'identity';
  if (best) return best;
  // Not listed and not covered by `*`: identity is acceptable by default (RFC 9110).
  return identity === undefined || identity > 0 ? 'identity' : undefined;
}

/** Coding name (lower case) to weight; unparseable members are skipped. */
function parseWeights(header: string): Map<string, number> {
  const weights = new Map<string, number>();
  for (const member of header.split(',')) {
    const [rawName = '', ...params] = member.split(';');
    let name = rawName.trim().toLowerCase();
    if (!name || !TOKEN.test(name)) continue;
    if (name === 'x-gzip') name = 'gzip';
    let weight = 1;
    let valid = true;
    for (const param of params) {
      const eq = param.indexOf('=');
      const key = (eq === -1 ? param : param.slice(0, eq)).trim().toLowerCase();
      if (key !== 'q') continue; // Accept-Encoding defines no other parameter; ignore extensions
      const value = eq === -1 ? '' : param.slice(eq + 1).trim();
      if (!QVALUE.test(value)) {
        valid = false;
        break;
      }
      weight = Number(value);
    }
    if (!valid) continue;
    const previous = weights.get(name);
    weights.set(name, previous === undefined ? weight : Math.min(previous, weight));
  }
  return weights;
}

/** The header as one comma-joined string, or undefined when there is no usable header at all. */
function headerText(value: string | readonly string[] | undefined): string | undefined {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const parts = value.filter((part): part is string => typeof part === 'string');
    return parts.length > 0 ? parts.join(',') : undefined;
  }
  return undefined;
}

export interface CompressOptions {
  /** Brotli quality 0..11 (default 4: the speed/ratio point used for dynamic responses). */
  brotliQuality?: number;
  /** gzip and deflate level 0..9 (default 6, zlib's default). */
  gzipLevel?: number;
}

export const DEFAULT_BROTLI_QUALITY = 4;
export const DEFAULT_GZIP_LEVEL = 6;

const brotliCompressAsync = promisify(brotliCompress);
const brotliDecompressAsync = promisify(brotliDecompress);
const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);
const deflateAsync = promisify(deflate);
const inflateAsync = promisify(inflate);

/**
 * Compresses a whole body on the libuv thread pool. Brotli gets the text-mode hint and the body size (both
 * help its speed and ratio; callers only compress text types, see shouldCompress). `identity` returns the
 * body as it is. Rejects with InvalidOptionError for an out-of-range quality or level.
 */
export async function compress(body: Buffer, encoding: Encoding | 'identity', options: CompressOptions = {}): Promise<Buffer> {
  switch (encoding) {
    case 'identity':
      return body;
    case 'br': {
      const quality = checkLevel(options.brotliQuality, DEFAULT_BROTLI_QUALITY, constants.BROTLI_MIN_QUALITY, constants.BROTLI_MAX_QUALITY, 'brotliQuality');
      const brotli: BrotliOptions = {
        params: {
          [constants.BROTLI_PARAM_QUALITY]: quality,
          [constants.BROTLI_PARAM_MODE]: constants.BROTLI_MODE_TEXT,
          [constants.BROTLI_PARAM_SIZE_HINT]: body.length,
        },
      };
      return brotliCompressAsync(body, brotli);
    }
    case 'gzip':
    case 'deflate': {
      const zlib: ZlibOptions = { level: checkLevel(options.gzipLevel, DEFAULT_GZIP_LEVEL, 0, 9, 'gzipLevel') };
      return encoding === 'gzip' ? gzipAsync(body, zlib) : deflateAsync(body, zlib);
    }
    default:
      throw new TypeError(`compress: unknown encoding ${JSON.stringify(encoding)}`);
  }
}

export interface DecompressOptions {
  /** Rejects (zlib's ERR_BUFFER_TOO_LARGE) instead of inflating beyond this many bytes: a guard against bombs. */
  maxOutputLength?: number;
}

/** The inverse of compress, for tests and for reading stored or upstream bodies. Rejects on corrupt input. */
export async function decompress(body: Buffer, encoding: Encoding | 'identity', options: DecompressOptions = {}): Promise<Buffer> {
  const limit = options.maxOutputLength === undefined ? {} : { maxOutputLength: options.maxOutputLength };
  switch (encoding) {
    case 'identity':
      return body;
    case 'br':
      return brotliDecompressAsync(body, limit);
    case 'gzip':
      return gunzipAsync(body, limit);
    case 'deflate':
      return inflateAsync(body, limit);
    default:
      throw new TypeError(`decompress: unknown encoding ${JSON.stringify(encoding)}`);
  }
}

function checkLevel(value: number | undefined, fallback: number, min: number, max: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new InvalidOptionError([{ path: name, received: String(value), expected: `an integer from ${min} to ${max}` }], 'compression options');
  }
  return value;
}

/** Bodies smaller than this are sent as they are: the headers and CPU would cost more than the bytes saved. */
export const DEFAULT_COMPRESS_THRESHOLD = 1024;

const COMPRESSIBLE_APPLICATION: ReadonlySet<string> = new Set([
  'application/json',
  'application/x-ndjson',
  'application/javascript',
  'application/x-javascript',
  'application/ecmascript',
  'application/xml',
  'application/xhtml+xml',
  'application/x-www-form-urlencoded',
  'application/graphql',
  'image/svg+xml',
]);

/**
 * Whether a buffered response body is worth compressing: a textual type (`text/*` except
 * `text/event-stream`, JSON, NDJSON, JavaScript, XML, SVG, any `+json` / `+xml` suffix) of known size at or
 * above `threshold` bytes, not already content-encoded. Images, audio, video, archives and fonts are
 * already compressed (or binary) and are not. Server-sent events are excluded: each event must reach the
 * client when written, which whole-body compression would hold back.
 */
export function shouldCompress(
  contentType: string | undefined,
  size: number | undefined,
  threshold: number = DEFAULT_COMPRESS_THRESHOLD,
  contentEncoding?: string,
): boolean {
  if (typeof size !== 'number' || !Number.isFinite(size) || size < threshold) return false;
  if (typeof contentEncoding === 'string' && contentEncoding.trim() !== '' && contentEncoding.trim().toLowerCase() !== 'identity') return false;
  if (typeof contentType !== 'string') return false;
  const type = contentType.split(';', 1)[0]!.trim().toLowerCase();
  if (type.startsWith('text/')) return type !== 'text/event-stream';
  return COMPRESSIBLE_APPLICATION.has(type) || type.endsWith('+json') || type.endsWith('+xml');
}
