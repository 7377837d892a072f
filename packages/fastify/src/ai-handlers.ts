import { checkAiEndpoint, serveAiRequest, serveAiUsage, type Amas, type AiEndpoint } from '@amas/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { engineOf } from './engine-of.js';
import { neutralRequest } from './route-hooks.js';

/**
 * A route handler serving OpenAI-compatible calls through `amas.ai` (routing, budgets, usage records):
 * `app.post('/v1/chat/completions', aiHandler('chat'))`, `app.post('/v1/embeddings', aiHandler('embeddings'))`.
 * Streams pass through as they arrive; the caller is the request's identity, as for limits.
 */
export function aiHandler(endpoint: AiEndpoint, options: { instance?: Amas; usageHeaders?: boolean } = {}) {
  checkAiEndpoint(endpoint, 'aiHandler()');
  return async function amasAiHandler(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const amas = engineOf(request, options.instance, 'aiHandler');
    reply.hijack();
    await serveAiRequest(amas, endpoint, neutralRequest(request, request.routeOptions.url ?? request.url), reply.raw, { usageHeaders: options.usageHeaders });
  };
}

/** A route handler answering the caller's own usage, budgets and recommendations as JSON. */
export function aiUsageHandler(instance?: Amas) {
  return async function amasAiUsageHandler(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const amas = engineOf(request, instance, 'aiUsageHandler');
    reply.hijack();
    await serveAiUsage(amas, neutralRequest(request, request.routeOptions.url ?? request.url), reply.raw);
  };
}
