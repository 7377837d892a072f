import { InvalidOptionError, type Amas, type CompiledRoute, type RouteOptions } from '@amas/core';
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import fp from 'fastify-plugin';
import { routeErrorHandler } from './error-handler.js';
import { resolvePluginOptions, type AmasFastifyOptions, type ResolvedPluginOptions } from './options.js';
import { admissionHook, recordErrorHook } from './route-hooks.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The AMAS engine the plugin uses (breakers, limiters, metrics). */
    amas: Amas;
  }
  interface FastifyContextConfig {
    /** Per-route AMAS options; validated once, when the route is registered. */
    amas?: RouteOptions;
  }
}

type HookList = unknown[] | ((...args: never[]) => unknown) | undefined;
/** The route options fields the plugin reads or extends (onRoute hooks may mutate them). */
interface MutableRoute {
  url: string;
  method: string | string[];
  config?: { amas?: RouteOptions };
  onRequest?: HookList;
  preHandler?: HookList;
  onError?: HookList;
  errorHandler?: unknown;
}

/**
 * AMAS for Fastify 5: `await app.register(amas, options)`, then declare routes.
 *
 * - Covers the routes registered AFTER the plugin (it hooks `onRoute`). Routes declared earlier, or at the
 *   top level before `await app.register(amas, ...)` completes, are not covered: await the registration.
 * - Per-route options come from `config: { amas: {...} }` and are compiled once, when the route is
 *   registered; a bad one fails registration / `ready()` with an InvalidOptionError naming the route.
 * - Admission runs in the route's `onRequest` hook (before body parsing), or in `preHandler` for routes with
 *   dedup, a response cache or a semantic cache (their keys need the parsed body and the user your auth hooks set). Both run after the app's and the route's own hooks of that phase,
 *   so an auth hook that sets `request.user` first is seen.
 * - Error handling: covered routes get a route-level error handler (never `setErrorHandler`, so a user's own
 *   handler is neither replaced nor warned about); see ErrorHandlerMode. AMAS errors also carry
 *   `statusCode` and `headers`, so Fastify's default handler and users' handlers get the status right.
 * - An instance passed as `{ instance }` is shared and left open; options create an owned instance that is
 *   closed when the app closes.
 */
const plugin: FastifyPluginAsync<AmasFastifyOptions> = async (fastify: FastifyInstance, options) => {
  const settings = resolvePluginOptions(options);
  try {
    fastify.decorate('amas', settings.amas);
    if (settings.owned) fastify.addHook('onClose', () => settings.amas.close());
    // Connect to the shared store (if any) before the server listens; a missing Redis never blocks start-up.
    fastify.addHook('onReady', async () => {
      await settings.amas.warmUp();
    });
    fastify.addHook('onRoute', (route) => attachRoute(route as unknown as MutableRoute, settings));
  } catch (error) {
    if (settings.owned) await settings.amas.close();
    throw error;
  }
};

function attachRoute(route: MutableRoute, settings: ResolvedPluginOptions): void {
  const { amas, onRejection, errorHandler } = settings;
  const url = route.url;
  let compiled: CompiledRoute;
  try {
    compiled = amas.http.compile(route.config?.amas, url);
  } catch (error) {
    if (error instanceof InvalidOptionError) {
      throw new InvalidOptionError(error.issues, `AMAS route options (config.amas) for ${methods(route.method)} ${url}`);
    }
    throw error;
  }
  if (compiled.skip) return;
  // Dedup and cache keys need the parsed body and the user your auth hooks set: those admit in preHandler.
  const phase = compiled.dedup || compiled.response?.cache || compiled.response?.semantic ? 'preHandler' : 'onRequest';
  route[phase] = append(route[phase], admissionHook(amas, compiled, url, onRejection));
  route.onError = append(route.onError, recordErrorHook);
  if (errorHandler !== 'never' && !route.errorHandler) {
    route.errorHandler = routeErrorHandler(amas, errorHandler);
  }
}

/** A new array: the user's hook array may be shared between routes. */
function append(existing: HookList, hook: unknown): unknown[] {
  if (existing === undefined) return [hook];
  return Array.isArray(existing) ? [...existing, hook] : [existing, hook];
}

function methods(method: string | string[]): string {
  return Array.isArray(method) ? method.join(',') : method;
}

/** `app.register(amas, options)`; see the module comment in plugin.ts for what it covers. */
export const amas = fp(plugin, { name: 'amas', fastify: '5.x' });
