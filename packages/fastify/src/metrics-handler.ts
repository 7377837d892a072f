import type { Amas } from '@amas/core';
import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * A route handler exposing the instance's Prometheus metrics:
 * `app.get('/metrics', { config: { amas: { skip: true } } }, metricsHandler())`.
 * Uses `instance` when given, else the `app.amas` the plugin decorated.
 */
export function metricsHandler(instance?: Amas) {
  return async function amasMetricsHandler(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const amas = instance ?? (request.server as { amas?: Amas }).amas;
    if (!amas) throw new Error('metricsHandler(): register the AMAS plugin first or pass an Amas instance');
    const { contentType, body } = await amas.metrics.expose();
    return reply.type(contentType).send(body);
  };
}
