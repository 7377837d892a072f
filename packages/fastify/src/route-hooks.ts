import {
  instrumentResponse,
  recordResponseError,
  type Admission,
  type Amas,
  type CompiledRoute,
  type NeutralRequest,
} from '@amas/core';
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import type { RejectionMode } from './options.js';
import { sendRejection } from './rejection-reply.js';

type Done = HookHandlerDoneFunction;

/** Per-response headers a rejection carries that instrumentResponse sets fresh when the error reply goes out. */
const TIMING = new Set(['x-response-time', 'server-timing']);

/**
 * The admission hook of one route (built once, at route registration). Callback style, and no `await` on the
 * synchronous fast path: only dedup followers wait for a promise.
 */
export function admissionHook(amas: Amas, compiled: CompiledRoute, url: string, onRejection: RejectionMode) {
  const http = amas.http;
  // Limit headers join the headers Fastify hands to writeHead: a raw setHeader() now would put Node on its
  // slower merge-every-header path, and reply.headers() costs Fastify's bookkeeping on every request.
  const instrument = { maxCaptureBytes: amas.httpOptions.maxSharedBodyBytes, routeAtEnd: () => url, setLimitHeaders: 'at-write-head' as const };

  const settle = (admission: Admission, reply: FastifyReply, done: Done): void => {
    switch (admission.action) {
      case 'pass':
        instrumentResponse(reply.raw, admission.ticket, instrument);
        done();
        return;
      case 'reject': {
        const { ticket, rejection } = admission;
        if (onRejection === 'error') {
          // Fastify's error handling renders it; keep the limit headers and time/finish the reply it sends.
          for (const name in rejection.headers) if (!TIMING.has(name)) reply.header(name, rejection.headers[name]);
          instrumentResponse(reply.raw, ticket, instrument);
          done(rejection.error);
          return;
        }
        sendRejection(reply, rejection);
        ticket.finish({ status: rejection.status, error: rejection.error });
        return;
      }
      case 'replay': {
        const { ticket, response } = admission;
        reply.code(response.status).headers(response.headers);
        if (ticket.headers !== undefined) reply.headers(ticket.headers);
        reply.headers(ticket.timingHeaders());
        if (response.source !== 'cache') reply.header('x-amas-dedup', 'shared');
        reply.send(response.body);
        ticket.finish({ status: response.status });
        return;
      }
      default:
        done();
    }
  };

  return function amasAdmission(request: FastifyRequest, reply: FastifyReply, done: Done): void {
    let admission: Admission | Promise<Admission>;
    try {
      admission = http.admit(neutralRequest(request, url), compiled);
    } catch (error) {
      done(error as Error);
      return;
    }
    if (typeof (admission as Promise<Admission>).then === 'function') {
      (admission as Promise<Admission>).then((a) => settle(a, reply, done), done);
    } else {
      settle(admission as Admission, reply, done);
    }
  };
}

/** Tells the ticket which error produced the response, so AMAS's own 429/503 do not count against breakers. */
export function recordErrorHook(_request: FastifyRequest, reply: FastifyReply, error: Error, done: Done): void {
  recordResponseError(reply.raw, error);
  done();
}

/**
 * The framework-neutral view of a Fastify request. `ip` is the socket address: core applies
 * `http.trustProxy` to X-Forwarded-For itself, so Fastify's own trustProxy is deliberately not used.
 */
export function neutralRequest(request: FastifyRequest, route: string): NeutralRequest {
  return {
    method: request.method,
    url: request.url,
    route,
    headers: request.headers,
    ip: request.raw.socket?.remoteAddress,
    user: (request as { user?: unknown }).user,
    body: request.body,
  };
}
