import { serveAiRequest, serveAiUsage, type Amas, type AiEndpoint } from '@amas/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { neutralRequest } from './route-hooks.js';

function engineOf(request: FastifyRequest, instance: Amas | undefined, name: string): Amas {
  const amas = instance ?? (request.server as { amas?: Amas }).amas;
  if (!amas) throw new Error(`${name}(): register the AMAS plugin first or pass an Amas instance`);
  return amas;
}

/**
 * A route handler serving OpenAI-compatible calls through `amas.ai` (routing, budgets, usage records):
 * `app.post('/v1/chat/completions', aiHandler('chat'))`, `app.post('/v1/embeddings', aiHandler('embeddings'))`.
 * Streams pass through as they arrive; the caller is the request's identity, as for limits.
 */
export function aiHandler(endpoint: AiEndpoint, options: { instance?: Amas; usageHeaders?: boolean } = {}) {
  if (endpoint !== 'chat' && endpoint !== 'embeddings') throw new TypeError(`aiHandler(): endpoint must be 'chat' or 'embeddings', received ${JSON.stringify(endpoint)}`);
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
