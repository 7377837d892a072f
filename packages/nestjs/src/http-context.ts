import type { IncomingMessage, ServerResponse } from 'node:http';
import type { NeutralRequest } from '@amas/core';

/** What Nest hands us: Express's req/res (Node objects themselves) or Fastify's request/reply (`.raw`). */
export interface PlatformRequest {
  raw?: IncomingMessage & { user?: unknown; originalUrl?: string };
  user?: unknown;
  body?: unknown;
  originalUrl?: string;
}
export interface PlatformResponse {
  raw?: ServerResponse;
  hijack?: () => unknown;
}

/** Where the guard leaves a request's admission ticket for AmasResponseInterceptor (on the raw request). */
export const AMAS_TICKET = Symbol.for('@amas/nestjs:ticket');

export function rawRequest(req: PlatformRequest): IncomingMessage & { user?: unknown; originalUrl?: string } {
  return req.raw ?? (req as unknown as IncomingMessage);
}

export function rawResponse(res: PlatformResponse): ServerResponse {
  return res.raw ?? (res as unknown as ServerResponse);
}

/** The framework-neutral view of a request. Reads only; never parses anything that could throw. */
export function toNeutral(req: PlatformRequest, route: string | undefined): NeutralRequest {
  const raw = rawRequest(req);
  return {
    method: raw.method ?? 'GET',
    url: raw.originalUrl ?? raw.url ?? '/',
    route,
    headers: raw.headers,
    ip: raw.socket?.remoteAddress,
    // Passport and most auth code set request.user; Nest middleware on Fastify only sees the raw request.
    user: req.user ?? raw.user,
    body: req.body,
  };
}

/** Tells Fastify the response is written directly on the Node response (a no-op on Express). */
export function hijack(res: PlatformResponse): void {
  if (res.raw !== undefined && typeof res.hijack === 'function') res.hijack();
}
