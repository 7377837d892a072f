/**
 * Reads a server's "wait this long" hint: `Retry-After` (delay-seconds or HTTP-date, RFC 9110 §10.2.3)
 * and the `retry-after-ms` header OpenAI and Anthropic send. All results are milliseconds >= 0.
 */

const SECONDS = /^\d+(?:\.\d+)?$/;
// asctime dates carry no zone; HTTP says they are GMT, V8 would read them as local time.
const ASCTIME = /^[A-Za-z]{3} [A-Za-z]{3} +\d{1,2} \d\d:\d\d:\d\d \d{4}$/;

/** Parses a Retry-After value: seconds ("120", 120) or an HTTP-date. Garbage gives undefined. */
export function parseRetryAfter(value: string | number | null | undefined, now: number = Date.now()): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value * 1000 : undefined;
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (text === '') return undefined;
  if (SECONDS.test(text)) {
    const ms = Number(text) * 1000;
    return Number.isFinite(ms) ? ms : undefined;
  }
  // A date must name a day or month; this keeps Date.parse from accepting "-5" or "2024".
  if (!/[A-Za-z]{3}/.test(text)) return undefined;
  const at = Date.parse(ASCTIME.test(text) ? `${text} GMT` : text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * The delay an error asks for, if any: `error.retryAfterMs`, then the `retry-after-ms` and `retry-after`
 * headers of `error.headers` or `error.response.headers` (a Headers, a Map or a plain object, any case).
 */
export function retryAfterFromError(error: unknown, now: number = Date.now()): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const e = error as { retryAfterMs?: unknown; headers?: unknown; response?: { headers?: unknown } | null };
  if (typeof e.retryAfterMs === 'number' && Number.isFinite(e.retryAfterMs) && e.retryAfterMs >= 0) return e.retryAfterMs;
  const headers = e.headers ?? (typeof e.response === 'object' && e.response !== null ? e.response.headers : undefined);
  if (typeof headers !== 'object' || headers === null) return undefined;

  const ms = header(headers, 'retry-after-ms');
  if (ms !== undefined) {
    const text = String(ms).trim();
    const value = text === '' ? NaN : Number(text);
    if (Number.isFinite(value) && value >= 0) return value;
  }
  const after = header(headers, 'retry-after');
  return after === undefined ? undefined : parseRetryAfter(typeof after === 'number' ? after : String(after), now);
}

/** One header value from any common header container, case-insensitively; arrays give their first value. */
function header(headers: object, name: string): string | number | undefined {
  let value: unknown;
  if (headers instanceof Map) {
    value = headers.get(name);
    if (value === undefined) {
      for (const [key, v] of headers) {
        if (typeof key === 'string' && key.toLowerCase() === name) {
          value = v;
          break;
        }
      }
    }
  } else if (typeof (headers as { get?: unknown }).get === 'function') {
    // Headers (fetch/undici) is already case-insensitive and returns null when absent.
    value = (headers as { get(name: string): unknown }).get(name);
  } else {
    const record = headers as Record<string, unknown>;
    value = record[name];
    if (value === undefined) {
      for (const key of Object.keys(record)) {
        if (key.toLowerCase() === name) {
          value = record[key];
          break;
        }
      }
    }
  }
  if (Array.isArray(value)) value = value[0];
  return typeof value === 'string' || typeof value === 'number' ? value : undefined;
}
