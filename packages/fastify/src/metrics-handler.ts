import type { Amas } from '@amas/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { engineOf } from './engine-of.js';

/**
 * A route handler exposing the instance's Prometheus metrics:
 * `app.get('/metrics', { config: { amas: { skip: true } } }, metricsHandler())`.
 * Uses `instance` when given, else the `app.amas` the plugin decorated.
 */
export function metricsHandler(instance?: Amas) {
  return async function amasMetricsHandler(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const amas = engineOf(request, instance, 'metricsHandler');
    const { contentType, body } = await amas.metrics.expose();
    return reply.type(contentType).send(body);
  };
}
