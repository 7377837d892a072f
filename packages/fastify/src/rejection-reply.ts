import { REJECTION_CONTENT_TYPE, rejectionJson, type Rejection } from '@amas/core';
import type { FastifyReply } from 'fastify';

/**
 * Sends a 429/503 rejection through Fastify's reply (so onSend/onResponse hooks and logging still run).
 * The body goes out as a Buffer: a custom reply serializer or a route's response schema must not reshape it.
 */
export function sendRejection(reply: FastifyReply, rejection: Rejection): FastifyReply {
  return reply.code(rejection.status).headers(rejection.headers).type(REJECTION_CONTENT_TYPE).send(Buffer.from(rejectionJson(rejection)));
}
