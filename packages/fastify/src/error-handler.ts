import { isAmasError, recordResponseError, renderRejection, type Amas, type AmasError } from '@amas/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ErrorHandlerMode } from './options.js';
import { sendRejection } from './rejection-reply.js';

export type FastifyErrorHandler<E = Error> = (this: FastifyInstance, error: E, request: FastifyRequest, reply: FastifyReply) => unknown;

/** Renders an AMAS error exactly like a pipeline rejection (same status, headers and JSON body). */
export function replyWithAmasError(reply: FastifyReply, error: AmasError, amas?: Amas): FastifyReply {
  recordResponseError(reply.raw, error);
  const rejection = amas ? amas.http.rejectionFor(error) : undefined;
  return sendRejection(reply, rejection ?? renderRejection(error));
}

/**
 * An error handler for `app.setErrorHandler(...)` that renders AMAS errors like pipeline rejections and hands
 * every other error to `next` (or, without `next`, to the enclosing error handler, e.g. Fastify's default):
 *
 *   app.setErrorHandler(amasErrorHandler((error, request, reply) => { ...your handling... }))
 */
export function amasErrorHandler<E = Error>(next?: FastifyErrorHandler<E>): FastifyErrorHandler<E> {
  return function amasErrorHandler(this: FastifyInstance, error: E, request: FastifyRequest, reply: FastifyReply) {
    if (isAmasError(error)) {
      replyWithAmasError(reply, error, amasOf(request));
      return undefined;
    }
    if (next) return next.call(this, error, request, reply);
    throw error; // Fastify passes a rethrown error to the enclosing handler
  };
}

/**
 * The route-level handler the plugin attaches to covered routes (never through setErrorHandler, so a user's
 * own setErrorHandler is neither replaced nor warned about). Non-AMAS errors are rethrown to the scope's
 * handler. In 'auto' mode AMAS errors are rendered here only while the scope has no custom handler.
 */
export function routeErrorHandler(amas: Amas, mode: Exclude<ErrorHandlerMode, 'never'>) {
  return function amasRouteErrorHandler(error: unknown, request: FastifyRequest, reply: FastifyReply): undefined {
    if (isAmasError(error) && !reply.sent && (mode === 'always' || !hasCustomErrorHandler(request.server))) {
      replyWithAmasError(reply, error, amas);
      return undefined;
    }
    throw error;
  };
}

/** setErrorHandler binds the function, so only Fastify's own default keeps its plain name. */
function hasCustomErrorHandler(server: FastifyInstance): boolean {
  return server.errorHandler.name !== 'defaultErrorHandler';
}

function amasOf(request: FastifyRequest): Amas | undefined {
  return (request.server as { amas?: Amas }).amas;
}
