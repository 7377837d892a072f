import type { ServerResponse } from 'node:http';
import type { RequestTicket, SharedResponse } from './pipeline.js';
import type { Rejection } from './rejection.js';

type WriteHead = ServerResponse['writeHead'];

const responseErrors = new WeakMap<ServerResponse, unknown>();

/**
 * Tells the pipeline which error produced this response (adapters' error handlers call it), so breakers can
 * tell an upstream failure from AMAS's own rejections.
 */
export function recordResponseError(res: ServerResponse, error: unknown): void {
  responseErrors.set(res, error);
}

/**
 * Hooks a Node response (Express's `res`, Fastify's `reply.raw`, Nest's underlying response) so that:
 * timing and rate-limit headers are set just before the headers go out (never after), the body is captured
 * when a dedup leader must share it, and the ticket is finished once, on 'finish' or on a client abort.
 * Every framework writes through `writeHead` (explicitly or via `_implicitHeader`), so this works for all.
 */
export function instrumentResponse(
  res: ServerResponse,
  ticket: RequestTicket,
  options: { maxCaptureBytes?: number; routeAtEnd?: () => string | undefined } = {},
): void {
  const maxCaptureBytes = options.maxCaptureBytes ?? Infinity;
  const originalWriteHead = res.writeHead;
  res.writeHead = function writeHead(this: ServerResponse, ...args: unknown[]) {
    if (!res.headersSent) {
      // A header already set wins: an inner (route-level) admission's limit headers are more specific
      // than an outer one's, and a handler's own headers are the handler's choice.
      const limitHeaders = ticket.headers;
      if (limitHeaders) for (const name in limitHeaders) if (!res.hasHeader(name)) res.setHeader(name, limitHeaders[name]!);
      const timing = ticket.timingHeaders();
      for (const name in timing) res.setHeader(name, timing[name]!);
    }
    return (originalWriteHead as (...a: unknown[]) => ServerResponse).apply(this, args);
  } as WriteHead;

  let chunks: Buffer[] | undefined = ticket.capturesBody ? [] : undefined;
  let size = 0;
  if (chunks) {
    const originalWrite = res.write;
    const originalEnd = res.end;
    const capture = (chunk: unknown, encoding: unknown) => {
      if (!chunks || chunk === undefined || chunk === null || typeof chunk === 'function') return;
      const buf = Buffer.isBuffer(chunk)
        ? chunk
        : typeof chunk === 'string'
          ? Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8')
          : chunk instanceof Uint8Array
            ? Buffer.from(chunk)
            : undefined;
      if (!buf) return;
      size += buf.length;
      if (size > maxCaptureBytes) chunks = undefined; // too big to share: followers will run themselves
      else chunks.push(buf);
    };
    res.write = function write(this: ServerResponse, chunk: unknown, ...rest: unknown[]) {
      capture(chunk, rest[0]);
      return (originalWrite as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
    } as ServerResponse['write'];
    res.end = function end(this: ServerResponse, chunk?: unknown, ...rest: unknown[]) {
      capture(chunk, rest[0]);
      return (originalEnd as (...a: unknown[]) => ServerResponse).call(this, chunk, ...rest);
    } as ServerResponse['end'];
  }

  const onFinish = () => {
    cleanup();
    ticket.finish({
      status: res.statusCode,
      headers: res.getHeaders() as Record<string, string | string[] | number | undefined>,
      body: chunks ? Buffer.concat(chunks) : undefined,
      error: responseErrors.get(res),
      route: options.routeAtEnd?.(),
    });
  };
  const onClose = () => {
    cleanup();
    if (!res.writableFinished) ticket.finish({ status: res.statusCode, aborted: true, route: options.routeAtEnd?.() });
  };
  const cleanup = () => {
    res.removeListener('finish', onFinish);
    res.removeListener('close', onClose);
  };
  res.once('finish', onFinish);
  res.once('close', onClose);
}

/** Writes a shared (dedup) response for a follower, with the follower's own per-response headers. */
export function writeSharedResponse(res: ServerResponse, shared: SharedResponse, ticket: RequestTicket): void {
  if (res.headersSent) return;
  const headers: Record<string, string | string[]> = { ...shared.headers, ...ticket.headers, ...ticket.timingHeaders(), 'x-amas-dedup': 'shared' };
  headers['content-length'] = String(shared.body.length);
  res.writeHead(shared.status, headers);
  res.end(shared.body);
  ticket.finish({ status: shared.status });
}

/** Writes a 429/503 rejection as JSON (used when the framework has no native reply to go through). */
export function writeRejection(res: ServerResponse, rejection: Rejection, ticket?: RequestTicket): void {
  if (res.headersSent) {
    res.end();
  } else {
    const body = Buffer.from(JSON.stringify(rejection.body));
    res.writeHead(rejection.status, {
      ...rejection.headers,
      'content-type': 'application/json; charset=utf-8',
      'content-length': String(body.length),
    });
    res.end(body);
  }
  ticket?.finish({ status: rejection.status, error: rejection.error });
}
