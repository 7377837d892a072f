import { ServerResponse } from 'node:http';
import type { RequestTicket, SharedResponse } from './pipeline.js';
import type { ResponsePlan } from './response-layer.js';
import { REJECTION_CONTENT_TYPE, rejectionJson, type Rejection } from './rejection.js';

type WriteHead = ServerResponse['writeHead'];

const responseErrors = new WeakMap<ServerResponse, unknown>();

/**
 * Tells the pipeline which error produced this response (adapters' error handlers call it), so breakers can
 * tell an upstream failure from AMAS's own rejections.
 */
export function recordResponseError(res: ServerResponse, error: unknown): void {
  responseErrors.set(res, error);
}

export interface InstrumentOptions {
  /** Largest body a dedup leader captures for its followers. */
  maxCaptureBytes?: number;
  /** The route pattern when the framework only knows it after routing (Express app-level middleware). */
  routeAtEnd?: (res: ServerResponse) => string | undefined;
  /**
   * When the rate-limit headers (`ticket.headers`) are set. 'now' (default): on the response, at once.
   * 'at-write-head': added to the headers the framework hands to `writeHead` (Fastify does), unless the
   * handler set a header of the same name, which wins as it would have over 'now'. That keeps Node on its
   * fast writeHead path and skips the framework's own header bookkeeping, on every admitted request.
   */
  setLimitHeaders?: 'now' | 'at-write-head';
}

/**
 * Hooks a Node response (Express's `res`, Fastify's `reply.raw`, Nest's underlying response) so that:
 * rate-limit headers are set now, timing headers just before the headers go out (never after), the body is
 * captured when a dedup leader must share it, and the ticket is finished once, when the response closes.
 * Every framework writes through `writeHead` (explicitly or via `_implicitHeader`), so this works for all.
 * It runs on every request: it adds one close listener and one symbol-keyed property to the response, and
 * never replaces the response's own methods (except for dedup capture, on leaders that have followers).
 */
export function instrumentResponse(res: ServerResponse, ticket: RequestTicket, options: InstrumentOptions = {}): void {
  // A later (route-level, nested) admission sets its own limit headers over an earlier one's: the more
  // specific limit is the one a client should see.
  const limitHeaders = ticket.headers;
  const deferLimitHeaders = limitHeaders !== undefined && options.setLimitHeaders === 'at-write-head';
  if (limitHeaders !== undefined && !deferLimitHeaders && !res.headersSent) {
    for (const name in limitHeaders) res.setHeader(name, limitHeaders[name]!);
  }
  if (ticket.timed || deferLimitHeaders) headersAtWriteHead(res, ticket, deferLimitHeaders);
  if (ticket.plan !== undefined) {
    // The response layer buffers the whole response anyway: dedup followers get it from there.
    captureForPlan(res, ticket, ticket.plan);
  } else if (ticket.leads) {
    ticket.captureWith(startBodyCapture, res, options.maxCaptureBytes ?? Infinity);
  }
  const routeAtEnd = options.routeAtEnd;
  // 'close' follows 'finish' on every response, and comes alone on an aborted one: one listener covers both.
  // `on`, not `once`: a response closes once, finish() ignores a second call, and once's wrapper and removal
  // showed up in the Fastify bench profile on every request.
  res.on('close', function closed(this: ServerResponse) {
    ticket.finish({
      status: this.statusCode,
      aborted: !this.writableFinished,
      error: responseErrors.get(this),
      route: routeAtEnd === undefined ? undefined : routeAtEnd(this),
    });
  });
}

/**
 * What the writeHead hook adds to one response: timing headers when the ticket is timed, and the rate-limit
 * headers when they were deferred ('at-write-head').
 */
interface HeadTicket {
  readonly timed: boolean;
  readonly headers: Record<string, string> | undefined;
  /** The limit headers wait for writeHead ('at-write-head'). Kept on the ticket: see HEAD_TICKETS. */
  limitHeadersAtWriteHead: boolean;
  elapsedMs(): string;
}
/**
 * Where a response's ticket waits for its headers. A plain node:http response (Fastify, Nest on Fastify, a
 * bare server) keeps it in a property, the cheapest there. Any other (Express swaps the prototype of every
 * response) keeps it beside the response in a WeakMap: a property added to, or looked up and missing on,
 * such a response misses V8's caches, and cost Express 35-45k instructions a request against 2.4k the
 * WeakMap would cost Fastify (callgrind, bench/instructions.mjs). The hook tries the other place second, so
 * a response whose prototype changes in between (a mounted sub-app) still gets its headers. Both are shared
 * through the global symbol registry, so one hook serves every copy of this package.
 */
const HEAD_TICKET = Symbol.for('amas.headTicket');
type HookedResponse = ServerResponse & { [HEAD_TICKET]?: HeadTicket | undefined };
const HEAD_TICKETS: WeakMap<ServerResponse, HeadTicket> = ((globalThis as Record<symbol, unknown>)[Symbol.for('amas.headTickets')] ??=
  new WeakMap()) as WeakMap<ServerResponse, HeadTicket>;

function isPlainResponse(res: ServerResponse): boolean {
  return Object.getPrototypeOf(res) === ServerResponse.prototype;
}

/** A ticket already waiting where this response keeps it now (a second admission of a request leaves it). */
function peekHeadTicket(res: ServerResponse): HeadTicket | undefined {
  return isPlainResponse(res) ? (res as HookedResponse)[HEAD_TICKET] : HEAD_TICKETS.get(res);
}

/** The response's ticket, removed from wherever it waited (undefined for responses AMAS does not track). */
function takeHeadTicket(res: ServerResponse): HeadTicket | undefined {
  const hooked = res as HookedResponse;
  const plain = isPlainResponse(res);
  if (plain) {
    const ticket = hooked[HEAD_TICKET];
    if (ticket !== undefined) {
      hooked[HEAD_TICKET] = undefined;
      return ticket;
    }
  }
  const kept = HEAD_TICKETS.get(res);
  if (kept !== undefined) {
    HEAD_TICKETS.delete(res);
    return kept;
  }
  if (plain) return undefined;
  const ticket = hooked[HEAD_TICKET];
  if (ticket !== undefined) hooked[HEAD_TICKET] = undefined;
  return ticket;
}

function putHeadTicket(res: ServerResponse, ticket: HeadTicket): void {
  if (isPlainResponse(res)) (res as HookedResponse)[HEAD_TICKET] = ticket;
  else HEAD_TICKETS.set(res, ticket);
}

// Not the first hook's symbol ('amas.writeHeadHook', which read 'amas.timedTicket'): an older copy of this
// package in the same process must not make this copy skip installing the hook its responses rely on.
const PATCHED = Symbol.for('amas.writeHeadHook.v2');

/**
 * Adds headers just before the response's headers are written. For node:http responses (Express, Fastify,
 * Nest) this is ONE hook on ServerResponse.prototype.writeHead, installed on first use, that reads the ticket
 * from the response: replacing `writeHead` on each response object instead measured about 10% of Fastify's
 * throughput. Responses that are not node:http ServerResponses (e.g. HTTP/2 compatibility responses) get a
 * per-object wrapper. Responses AMAS does not track pay two lookups (see HEAD_TICKET).
 */
function headersAtWriteHead(res: ServerResponse, ticket: RequestTicket, deferLimitHeaders: boolean): void {
  if (res instanceof ServerResponse) {
    installWriteHeadHook();
    if (peekHeadTicket(res) === undefined) {
      ticket.limitHeadersAtWriteHead = deferLimitHeaders;
      putHeadTicket(res, ticket);
    }
    return;
  }
  const target = res as unknown as { writeHead: (...a: unknown[]) => ServerResponse };
  const previous = target.writeHead;
  target.writeHead = function writeHeadWithAmasHeaders(this: ServerResponse) {
    if (!this.headersSent) setHeadHeaders(this, ticket, deferLimitHeaders);
    // eslint-disable-next-line prefer-rest-params
    return previous.apply(this, arguments as unknown as unknown[]);
  };
}

/** The slow path: headers added one by one (the framework set its own with setHeader). */
function setHeadHeaders(res: ServerResponse, ticket: HeadTicket, limitHeaders: boolean): void {
  const deferred = limitHeaders ? ticket.headers : undefined;
  if (deferred !== undefined) for (const name in deferred) if (!res.hasHeader(name)) res.setHeader(name, deferred[name]!);
  if (ticket.timed) {
    const ms = ticket.elapsedMs();
    res.setHeader('x-response-time', `${ms}ms`);
    res.setHeader('server-timing', `total;dur=${ms}`);
  }
}

/**
 * The array forms writeHead takes (flat `[name, value, ...]` or `[[name, value], ...]`), with our headers
 * appended in the same form: a copy, never the caller's array; duplicates such as two set-cookie survive.
 */
function withHeadHeaders(res: ServerResponse, headers: unknown[], ticket: HeadTicket, limitHeaders: boolean): unknown[] {
  const nested = headers.length > 0 && Array.isArray(headers[0]);
  const names = new Set<string>();
  if (nested) for (const entry of headers as unknown[][]) names.add(String(entry[0]).toLowerCase());
  else for (let i = 0; i < headers.length; i += 2) names.add(String(headers[i]).toLowerCase());
  const copy = headers.slice();
  const add = (name: string, value: string) => (nested ? copy.push([name, value]) : copy.push(name, value));
  const deferred = limitHeaders ? ticket.headers : undefined;
  if (deferred !== undefined) for (const name in deferred) if (!names.has(name) && !res.hasHeader(name)) add(name, deferred[name]!);
  if (ticket.timed) {
    const ms = ticket.elapsedMs();
    add('x-response-time', `${ms}ms`);
    add('server-timing', `total;dur=${ms}`);
  }
  return copy;
}

function installWriteHeadHook(): void {
  const proto = ServerResponse.prototype as unknown as Record<symbol | string, unknown>;
  if (proto[PATCHED]) return;
  const original = proto.writeHead as (...a: unknown[]) => ServerResponse;
  proto.writeHead = function writeHead(this: ServerResponse, statusCode: unknown, reasonOrHeaders?: unknown, maybeHeaders?: unknown) {
    const ticket = takeHeadTicket(this);
    if (ticket !== undefined) {
      if (!this.headersSent) {
        const reason = typeof reasonOrHeaders === 'string';
        const headers = reason ? maybeHeaders : reasonOrHeaders;
        // When the framework hands its headers to writeHead (Fastify does), add ours to a copy of that object:
        // a setHeader() call here would move Node onto its slower merge-every-header path (about 4 us per
        // response, measured), and the caller's object may be shared, so it is never mutated.
        if (headers !== null && typeof headers === 'object' && !Array.isArray(headers)) {
          // A plain copy loop, not `{ ...headers, extra }`: that spread-plus-keys form costs about 7 us per
          // response here (measured), the loop well under one.
          const given = headers as Record<string, unknown>;
          const copy: Record<string, unknown> = {};
          for (const name in given) copy[name] = given[name];
          const deferred = ticket.limitHeadersAtWriteHead ? ticket.headers : undefined;
          // The framework's names are lower-case (Fastify's are); a handler's own header of the same name wins.
          if (deferred !== undefined) for (const name in deferred) if (copy[name] === undefined && !this.hasHeader(name)) copy[name] = deferred[name];
          if (ticket.timed) {
            const ms = ticket.elapsedMs();
            copy['x-response-time'] = `${ms}ms`;
            copy['server-timing'] = `total;dur=${ms}`;
          }
          return reason ? original.call(this, statusCode, reasonOrHeaders, copy) : original.call(this, statusCode, copy);
        }
        if (Array.isArray(headers)) {
          const withOurs = withHeadHeaders(this, headers, ticket, ticket.limitHeadersAtWriteHead);
          return reason ? original.call(this, statusCode, reasonOrHeaders, withOurs) : original.call(this, statusCode, withOurs);
        }
        setHeadHeaders(this, ticket, ticket.limitHeadersAtWriteHead);
      }
    }
    // eslint-disable-next-line prefer-rest-params
    return original.apply(this, arguments as unknown as unknown[]);
  };
  Object.defineProperty(proto, PATCHED, { value: true });
}

/** A dedup leader's capture start (see RequestTicket.captureWith): only a response not yet started can be captured whole. */
function startBodyCapture(ticket: RequestTicket, target: unknown, maxBytes: number): boolean {
  const res = target as ServerResponse;
  if (res.headersSent || res.writableEnded) return false;
  captureBody(res, ticket, maxBytes);
  return true;
}

/**
 * Dedup leaders only: keep references to the body chunks as they are written, and share the response the
 * moment the handler ends it. The copy into one buffer happens only when a follower is actually waiting.
 */
function captureBody(res: ServerResponse, ticket: RequestTicket, maxCaptureBytes: number): void {
  let chunks: Array<Buffer | Uint8Array | string> | undefined = [];
  let encodings: Array<BufferEncoding | undefined> | undefined = [];
  let size = 0;
  const originalWrite = res.write;
  const originalEnd = res.end;
  const originalWriteHead = res.writeHead as (...a: unknown[]) => ServerResponse;
  // Headers handed straight to writeHead (Fastify does) never reach getHeaders(); fold them in first so the
  // shared copy has them. Only leaders with followers take this path.
  res.writeHead = function writeHead(this: ServerResponse, statusCode: number, reasonOrHeaders?: unknown, maybeHeaders?: unknown) {
    const reason = typeof reasonOrHeaders === 'string';
    const headers = reason ? maybeHeaders : reasonOrHeaders;
    if (headers !== null && typeof headers === 'object' && !this.headersSent) {
      if (Array.isArray(headers)) for (let i = 0; i + 1 < headers.length; i += 2) this.setHeader(String(headers[i]), headers[i + 1] as string);
      else for (const name in headers as Record<string, unknown>) this.setHeader(name, (headers as Record<string, string>)[name]!);
      return reason ? originalWriteHead.call(this, statusCode, reasonOrHeaders) : originalWriteHead.call(this, statusCode);
    }
    // eslint-disable-next-line prefer-rest-params
    return originalWriteHead.apply(this, arguments as unknown as unknown[]);
  } as ServerResponse['writeHead'];
  const capture = (chunk: unknown, encoding: unknown) => {
    if (chunks === undefined || chunk === undefined || chunk === null) return;
    if (typeof chunk === 'string') {
      size += chunk.length; // a lower bound for the byte length: enough to stop at the limit
      chunks.push(chunk);
      encodings!.push(typeof encoding === 'string' ? (encoding as BufferEncoding) : undefined);
    } else if (chunk instanceof Uint8Array) {
      size += chunk.byteLength;
      chunks.push(chunk);
      encodings!.push(undefined);
    } else return;
    if (size > maxCaptureBytes) chunks = encodings = undefined; // too big to share: followers run themselves
  };
  res.write = function write(this: ServerResponse, chunk: unknown, ...rest: unknown[]) {
    if (typeof chunk !== 'function') capture(chunk, rest[0]);
    return (originalWrite as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
  } as ServerResponse['write'];
  res.end = function end(this: ServerResponse, chunk?: unknown, ...rest: unknown[]) {
    if (typeof chunk !== 'function') capture(chunk, rest[0]);
    const result = (originalEnd as (...a: unknown[]) => ServerResponse).call(this, chunk, ...rest);
    if (chunks === undefined) {
      ticket.share({ status: this.statusCode, aborted: true });
    } else {
      const parts = chunks.map((c, i) => (typeof c === 'string' ? Buffer.from(c, encodings![i] ?? 'utf8') : Buffer.isBuffer(c) ? c : Buffer.from(c)));
      ticket.share({
        status: this.statusCode,
        headers: this.getHeaders() as Record<string, string | string[] | number | undefined>,
        body: Buffer.concat(parts),
      });
    }
    chunks = encodings = undefined;
    return result;
  } as ServerResponse['end'];
}

/**
 * Applies the response plan `HttpPipeline.respond` put on the ticket (adapters that run the response step
 * after admission: Nest's interceptor). Admission-time plans are applied by instrumentResponse itself.
 */
export function applyResponsePlan(res: ServerResponse, ticket: RequestTicket): void {
  if (ticket.plan !== undefined && !res.headersSent) captureForPlan(res, ticket, ticket.plan);
}

/**
 * Routes with a response plan (cache, compression, fields): the handler's whole response is held until it
 * ends, handed to `plan.complete`, and what that returns is written instead. Streams (text/event-stream)
 * and bodies over the plan's limit are let through untouched from the moment they show up.
 */
function captureForPlan(res: ServerResponse, ticket: RequestTicket, plan: ResponsePlan): void {
  const originalWriteHead = res.writeHead as (...a: unknown[]) => ServerResponse;
  const originalWrite = res.write as (...a: unknown[]) => boolean;
  const originalEnd = res.end as (...a: unknown[]) => ServerResponse;
  const max = plan.maxBodyBytes;
  let chunks: Buffer[] = [];
  let size = 0;
  let headWritten = false;
  let passing = false;
  let ended = false;
  const restore = () => {
    res.writeHead = originalWriteHead as ServerResponse['writeHead'];
    res.write = originalWrite as ServerResponse['write'];
    res.end = originalEnd as ServerResponse['end'];
  };
  // From here on the response goes out as the handler writes it.
  const passThrough = () => {
    passing = true;
    restore();
    plan.filled();
    if (ticket.leads) ticket.share({ status: res.statusCode, aborted: true });
    if (!res.headersSent) {
      const headers = plan.streamHeaders();
      for (const name in headers) res.setHeader(name, headers[name]!);
    }
    if (plan.copiesStream) copyStream(res, plan, chunks);
    if (headWritten && !res.headersSent) originalWriteHead.call(res, res.statusCode);
    for (const chunk of chunks) originalWrite.call(res, chunk);
    chunks = [];
  };
  const hold = (chunk: unknown, encoding: unknown): void => {
    if (chunk === undefined || chunk === null || typeof chunk === 'function') return;
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8') : Buffer.from(chunk as Uint8Array);
    chunks.push(buffer);
    size += buffer.length;
  };
  ticket.captureWith(() => !passing && !ended, undefined, max);
  res.writeHead = function writeHead(this: ServerResponse, statusCode: number, reasonOrHeaders?: unknown, maybeHeaders?: unknown) {
    if (plan.withdrawn) {
      restore();
      // eslint-disable-next-line prefer-rest-params
      return originalWriteHead.apply(this, arguments as unknown as unknown[]);
    }
    const reason = typeof reasonOrHeaders === 'string';
    const headers = reason ? maybeHeaders : reasonOrHeaders;
    if (headers !== null && typeof headers === 'object') {
      if (Array.isArray(headers)) for (let i = 0; i + 1 < headers.length; i += 2) this.setHeader(String(headers[i]), headers[i + 1] as string);
      else for (const name in headers as Record<string, unknown>) this.setHeader(name, (headers as Record<string, string>)[name]!);
    }
    this.statusCode = statusCode;
    if (reason) this.statusMessage = reasonOrHeaders as string;
    headWritten = true;
    if (/text\/event-stream/i.test(String(this.getHeader('content-type') ?? ''))) passThrough();
    return this;
  } as ServerResponse['writeHead'];
  res.write = function write(this: ServerResponse, chunk: unknown, encoding?: unknown, callback?: unknown) {
    if (plan.withdrawn) {
      restore();
      // eslint-disable-next-line prefer-rest-params
      return originalWrite.apply(this, arguments as unknown as unknown[]);
    }
    headWritten = true;
    if (/text\/event-stream/i.test(String(this.getHeader('content-type') ?? ''))) {
      passThrough();
      // eslint-disable-next-line prefer-rest-params
      return originalWrite.apply(this, arguments as unknown as unknown[]);
    }
    hold(chunk, encoding);
    const cb = typeof encoding === 'function' ? encoding : callback;
    if (size > max) passThrough();
    if (typeof cb === 'function') process.nextTick(cb as () => void);
    return true;
  } as ServerResponse['write'];
  res.end = function end(this: ServerResponse, chunk?: unknown, encoding?: unknown, callback?: unknown) {
    if (plan.withdrawn) {
      restore();
      // eslint-disable-next-line prefer-rest-params
      return originalEnd.apply(this, arguments as unknown as unknown[]);
    }
    if (ended) return this;
    ended = true;
    hold(chunk, encoding);
    restore();
    const cb = typeof chunk === 'function' ? chunk : typeof encoding === 'function' ? encoding : callback;
    const body = Buffer.concat(chunks);
    chunks = [];
    const status = this.statusCode;
    const headers = this.getHeaders() as Record<string, string | string[] | number | undefined>;
    if (ticket.leads) ticket.share({ status, headers, body });
    const send = (finalStatus: number, finalBody: Buffer) => {
      if (this.destroyed) return;
      originalWriteHead.call(this, finalStatus);
      originalEnd.call(this, finalBody, cb);
    };
    plan.complete({ status, headers, body }).then(
      (final) => {
        if (this.headersSent) return;
        for (const name of final.removeHeaders) this.removeHeader(name);
        for (const name in final.headers) this.setHeader(name, final.headers[name]!);
        send(final.status, final.body);
      },
      // The plan failed (a compression error): the handler's response goes out as it was.
      () => send(status, body),
    );
    return this;
  } as ServerResponse['end'];
}

/**
 * A streamed answer on a semantic-cache route: the stream goes out as written, and a copy of it (up to the
 * plan's limit) is handed to the plan once the response finished whole. A client that went away, or a
 * handler that destroyed the response, never gets there ('finish' does not fire), so nothing is cached.
 */
function copyStream(res: ServerResponse, plan: ResponsePlan, held: Buffer[]): void {
  const originalWrite = res.write as (...a: unknown[]) => boolean;
  const originalEnd = res.end as (...a: unknown[]) => ServerResponse;
  const max = plan.maxBodyBytes;
  let copy: Buffer[] | undefined = [...held];
  let size = held.reduce((n, b) => n + b.length, 0);
  const keep = (chunk: unknown, encoding: unknown): void => {
    if (copy === undefined || chunk === undefined || chunk === null || typeof chunk === 'function') return;
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8') : Buffer.from(chunk as Uint8Array);
    size += buffer.length;
    if (size > max) copy = undefined;
    else copy.push(buffer);
  };
  res.write = function write(this: ServerResponse, chunk: unknown, encoding?: unknown) {
    keep(chunk, encoding);
    // eslint-disable-next-line prefer-rest-params
    return originalWrite.apply(this, arguments as unknown as unknown[]);
  } as ServerResponse['write'];
  res.end = function end(this: ServerResponse, chunk?: unknown, encoding?: unknown) {
    keep(chunk, encoding);
    res.write = originalWrite as ServerResponse['write'];
    res.end = originalEnd as ServerResponse['end'];
    // eslint-disable-next-line prefer-rest-params
    return originalEnd.apply(this, arguments as unknown as unknown[]);
  } as ServerResponse['end'];
  res.once('finish', () => {
    if (copy !== undefined) plan.streamed(res.statusCode, Buffer.concat(copy));
    copy = undefined;
  });
}

/** Writes a shared (dedup) or cached response, with this request's own per-response headers. */
export function writeSharedResponse(res: ServerResponse, shared: SharedResponse, ticket: RequestTicket): void {
  if (res.headersSent) return;
  for (const name in shared.headers) res.setHeader(name, shared.headers[name]!);
  const limitHeaders = ticket.headers;
  if (limitHeaders !== undefined) for (const name in limitHeaders) res.setHeader(name, limitHeaders[name]!);
  if (ticket.timed) ticket.setTimingHeaders(res);
  if (shared.source !== 'cache') res.setHeader('x-amas-dedup', 'shared');
  if (shared.status !== 304) res.setHeader('content-length', shared.body.length);
  res.writeHead(shared.status);
  res.end(shared.body);
  ticket.finish({ status: shared.status });
}

/** Writes a 429/503 rejection as JSON (used when the framework has no native reply to go through). */
export function writeRejection(res: ServerResponse, rejection: Rejection, ticket?: RequestTicket): void {
  if (res.headersSent) {
    res.end();
  } else {
    const body = Buffer.from(rejectionJson(rejection));
    res.writeHead(rejection.status, {
      ...rejection.headers,
      'content-type': REJECTION_CONTENT_TYPE,
      'content-length': String(body.length),
    });
    res.end(body);
  }
  ticket?.finish({ status: rejection.status, error: rejection.error });
}
