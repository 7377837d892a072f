import { Inject, Injectable } from '@nestjs/common';
import { ApplicationConfig } from '@nestjs/core';
import type { Amas, CompiledRoute } from '@amas/core';
import { AMAS, NEST_PATH_METADATA } from './constants.js';
import { firstPath, joinPath, routeOptionsFor } from './route-options.js';

// eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
type Target = Function;

/**
 * Compiled route options per controller handler. The explorer fills it at start-up (so a bad per-route
 * option fails bootstrap); the guard only looks routes up, compiling lazily for a handler it never saw.
 */
@Injectable()
export class AmasRouteRegistry {
  private readonly routes = new WeakMap<Target, Map<Target, CompiledRoute>>();
  /** The same routes without their response step: the guard admits, the interceptor runs that step later. */
  private readonly admissions = new WeakMap<CompiledRoute, CompiledRoute>();

  constructor(
    @Inject(AMAS) private readonly amas: Amas,
    @Inject(ApplicationConfig) private readonly config: ApplicationConfig,
  ) {}

  get(controller: Target, handler: Target): CompiledRoute {
    const compiled = this.routes.get(controller)?.get(handler);
    return compiled ?? this.compile(controller, handler);
  }

  /** The route as the guard admits it: everything but caching, compression and fields (AmasResponseInterceptor's part). */
  admission(controller: Target, handler: Target): CompiledRoute {
    const route = this.get(controller, handler);
    if (route.response === undefined) return route;
    let admission = this.admissions.get(route);
    if (!admission) this.admissions.set(route, (admission = { ...route, response: undefined }));
    return admission;
  }

  /** Validates and resolves one handler's options; throws InvalidOptionError naming the route and option. */
  compile(controller: Target, handler: Target, modulePath?: string): CompiledRoute {
    const compiled = this.amas.http.compile(routeOptionsFor(controller, handler), this.patternOf(controller, handler, modulePath));
    let byHandler = this.routes.get(controller);
    if (!byHandler) this.routes.set(controller, (byHandler = new Map()));
    byHandler.set(handler, compiled);
    return compiled;
  }

  /** The route pattern from Nest metadata: global prefix + RouterModule path + controller path + method path. */
  patternOf(controller: Target, handler: Target, modulePath?: string): string {
    return joinPath(
      this.config.getGlobalPrefix(),
      modulePath,
      firstPath(Reflect.getMetadata(NEST_PATH_METADATA, controller)),
      firstPath(Reflect.getMetadata(NEST_PATH_METADATA, handler)),
    );
  }
}
