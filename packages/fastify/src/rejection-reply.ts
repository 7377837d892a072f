import { defaultRejectionBody, type Rejection } from '@amas/core';
import type { FastifyReply } from 'fastify';

const JSON_TYPE = 'application/json; charset=utf-8';

/**
 * Sends a 429/503 rejection through Fastify's reply (so onSend/onResponse hooks and logging still run).
 * The body goes out as a Buffer: a custom reply serializer or a route's response schema must not reshape it.
 */
export function sendRejection(reply: FastifyReply, rejection: Rejection): FastifyReply {
  let json: string;
  try {
    json = JSON.stringify(rejection.body);
  } catch {
    json = JSON.stringify(defaultRejectionBody(rejection.error)); // a rejectionBody that returned something unserialisable
  }
  return reply.code(rejection.status).headers(rejection.headers).type(JSON_TYPE).send(Buffer.from(json));
}
