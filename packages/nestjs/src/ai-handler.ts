import { Inject, Injectable } from '@nestjs/common';
import { checkAiEndpoint, serveAiRequest, serveAiUsage, type Amas, type AiEndpoint } from '@amas/core';
import { AMAS } from './constants.js';
import { hijack, rawResponse, toNeutral, type PlatformRequest, type PlatformResponse } from './http-context.js';

/**
 * Serves OpenAI-compatible calls through `amas.ai` (routing, budgets, usage records) from a controller method
 * that takes the platform's request and response (Express or Fastify):
 *
 *   @Post('v1/chat/completions') chat(@Req() req, @Res() res) { return this.ai.serve('chat', req, res); }
 *
 * Streams pass through as they arrive; the caller is the request's identity (the user an auth guard set), as
 * for limits. Route decorators (`@SemanticCached()`, `@RateLimit()`, ...) apply as on any route.
 */
@Injectable()
export class AmasAiHandler {
  constructor(@Inject(AMAS) private readonly amas: Amas) {}

  serve(endpoint: AiEndpoint, req: unknown, res: unknown, options: { usageHeaders?: boolean } = {}): Promise<void> {
    checkAiEndpoint(endpoint, 'AmasAiHandler.serve');
    hijack(res as PlatformResponse);
    return serveAiRequest(this.amas, endpoint, toNeutral(req as PlatformRequest, undefined), rawResponse(res as PlatformResponse), options);
  }

  /** The caller's own usage, budgets and recommendations as JSON. */
  usage(req: unknown, res: unknown): Promise<void> {
    hijack(res as PlatformResponse);
    return serveAiUsage(this.amas, toNeutral(req as PlatformRequest, undefined), rawResponse(res as PlatformResponse));
  }
}
