import { healthResponse, parseHealthOptions, type Amas, type CheckHealthOptions, type HealthKind } from '@amas/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { engineOf } from './engine-of.js';

/**
 * A route handler for Kubernetes probes:
 * `app.get('/health/ready', { config: { amas: { skip: true } } }, healthHandler('ready', undefined, { required: ['redis'] }))`.
 * Answers the JSON report of `checkHealth` with 200 (ok, degraded) or 503 (down). Uses `instance` when given,
 * else the `app.amas` the plugin decorated. Options are validated now: a typo fails at start-up.
 */
export function healthHandler(kind: HealthKind, instance?: Amas, options: Omit<CheckHealthOptions, 'kind'> = {}) {
  const checked = parseHealthOptions({ ...options, kind }, 'healthHandler options');
  return async function amasHealthHandler(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const amas = engineOf(request, instance, 'healthHandler');
    const { statusCode, headers, body } = await healthResponse(amas, checked);
    return reply.code(statusCode).headers(headers).send(body);
  };
}
