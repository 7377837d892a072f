import { Inject, Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { instrumentResponse, writeSharedResponse, type Admission, type Amas } from '@amas/core';
import { AMAS } from './constants.js';
import { AmasHttpException, AmasResponseSent } from './exceptions.js';
import { AMAS_TICKET, hijack, rawRequest, rawResponse, toNeutral, type PlatformRequest, type PlatformResponse } from './http-context.js';
import { AmasRouteRegistry } from './route-registry.js';

/**
 * Admission through the AMAS pipeline for every HTTP route (registered globally by AmasModule unless
 * `guard: false`). Rejections are thrown as AmasHttpException and rendered by AmasExceptionFilter; a dedup
 * follower's shared response is written here on the Node response, then AmasResponseSent stops the handler
 * (the same on Express and Fastify: Fastify's reply is hijacked first).
 *
 * Global guards run before controller/method guards: if an auth guard sets `request.user` there, register
 * with `guard: false` and use `@UseGuards(AuthGuard, AmasGuard)` so limits see the user.
 */
/** Marks a request already admitted, so the guard applied twice (globally and by @UseGuards) admits once. */
const ADMITTED = Symbol('amas.nestjs.admitted');

@Injectable()
export class AmasGuard implements CanActivate {
  constructor(
    @Inject(AMAS) private readonly amas: Amas,
    @Inject(AmasRouteRegistry) private readonly routes: AmasRouteRegistry,
  ) {}

  canActivate(context: ExecutionContext): boolean | Promise<boolean> {
    if (context.getType() !== 'http') return true;
    const route = this.routes.admission(context.getClass(), context.getHandler());
    if (route.skip) return true;
    const http = context.switchToHttp();
    const req = http.getRequest<PlatformRequest>();
    const res = http.getResponse<PlatformResponse>();
    const raw = rawRequest(req) as { [ADMITTED]?: true; [AMAS_TICKET]?: unknown };
    if (raw[ADMITTED]) return true;
    raw[ADMITTED] = true;
    const admission = this.amas.http.admit(toNeutral(req, route.pattern), route);
    // Only dedup followers wait: keep the common path synchronous.
    return admission instanceof Promise ? admission.then((a) => this.apply(a, res, raw)) : this.apply(admission, res, raw);
  }

  private apply(admission: Admission, res: PlatformResponse, raw: { [AMAS_TICKET]?: unknown }): boolean {
    switch (admission.action) {
      case 'skip':
        return true;
      case 'pass':
        instrumentResponse(rawResponse(res), admission.ticket, { maxCaptureBytes: this.amas.httpOptions.maxSharedBodyBytes });
        raw[AMAS_TICKET] = admission.ticket; // for AmasResponseInterceptor
        return true;
      case 'reject':
        throw new AmasHttpException(admission.rejection, admission.ticket);
      case 'replay':
        hijack(res);
        writeSharedResponse(rawResponse(res), admission.response, admission.ticket);
        throw new AmasResponseSent();
    }
  }
}
