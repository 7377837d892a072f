import { Inject, Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { from, mergeMap, type Observable } from 'rxjs';
import { applyResponsePlan, writeSharedResponse, type Amas, type RequestTicket, type ResponseStep } from '@amas/core';
import { AMAS } from './constants.js';
import { AmasHttpException, AmasResponseSent } from './exceptions.js';
import { AMAS_TICKET, hijack, rawRequest, rawResponse, toNeutral, type PlatformRequest, type PlatformResponse } from './http-context.js';
import { AmasRouteRegistry } from './route-registry.js';

/**
 * The response step of routes with `@Cached()` (or `cache`, `compression`, `fields` route options):
 * registered globally by AmasModule, it runs after every guard, so the cache key is partitioned by the user
 * an auth guard set, never by whoever the global AmasGuard saw. A cached answer is written here and the
 * handler never runs; otherwise the handler's response is captured for the cache, compression and fields.
 */
@Injectable()
export class AmasResponseInterceptor implements NestInterceptor {
  constructor(
    @Inject(AMAS) private readonly amas: Amas,
    @Inject(AmasRouteRegistry) private readonly routes: AmasRouteRegistry,
  ) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const route = this.routes.get(context.getClass(), context.getHandler());
    if (route.response === undefined || route.skip) return next.handle();
    const http = context.switchToHttp();
    const req = http.getRequest<PlatformRequest>();
    const res = http.getResponse<PlatformResponse>();
    const ticket = (rawRequest(req) as { [AMAS_TICKET]?: RequestTicket })[AMAS_TICKET];
    // Not admitted by AmasGuard (guard: false and no @UseGuards(AmasGuard)): nothing to attach the step to.
    if (ticket === undefined) return next.handle();
    const step = this.amas.http.respond(toNeutral(req, route.pattern), route, ticket);
    if (step instanceof Promise) return from(step).pipe(mergeMap((s) => this.apply(s, ticket, res, next)));
    return this.apply(step, ticket, res, next);
  }

  private apply(step: ResponseStep, ticket: RequestTicket, res: PlatformResponse, next: CallHandler): Observable<unknown> {
    switch (step.action) {
      case 'pass':
        applyResponsePlan(rawResponse(res), ticket);
        return next.handle();
      case 'reject':
        throw new AmasHttpException(step.rejection, ticket);
      case 'replay':
        hijack(res);
        writeSharedResponse(rawResponse(res), step.response, ticket);
        throw new AmasResponseSent();
    }
  }
}
