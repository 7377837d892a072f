import type { ServerResponse } from 'node:http';
import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from 'express';
import {
  instrumentResponse,
  recordResponseError,
  REJECTION_CONTENT_TYPE,
  rejectionJson,
  resolveAmas,
  checkAiEndpoint,
  serveAiRequest,
  serveAiUsage,
  writeSharedResponse,
  type AiEndpoint,
  type Admission,
  type Amas,
  type AmasOptions,
  type CompiledRoute,
  type NeutralRequest,
  type Rejection,
  type RequestTicket,
  type RouteOptions,
} from '@amas/core';

export interface ExpressAdapterOptions {
  /**
   * What to do with a 429/503 rejection: 'respond' (default) sends it; 'next' passes the AmasError to
   * `next(err)` so your error handling (or `errorHandler()`) renders it.
   */
  onRejection?: 'respond' | 'next';
}

export interface AmasMiddleware extends RequestHandler {
  readonly amas: Amas;
  /** Route-level options, e.g. `app.post('/chat', amas.route({ limit: { limit: 10, window: '1m' } }), handler)`. */
  route(options: RouteOptions): RequestHandler;
  /** A handler for `GET /metrics` (Prometheus text). */
  metricsHandler(): RequestHandler;
  /** Renders AMAS errors thrown by handlers as the same 429/503/504 responses the middleware sends. */
  errorHandler(): ErrorRequestHandler;
  /**
   * A handler serving OpenAI-compatible calls through `amas.ai` (routing, budgets, usage records), after a
   * JSON body parser: `app.post('/v1/chat/completions', express.json(), amas.aiHandler('chat'))`. Streams pass
   * through as they arrive; the caller is the request's identity, as for limits.
   */
  aiHandler(endpoint: AiEndpoint, options?: { usageHeaders?: boolean }): RequestHandler;
  /** A handler answering the caller's own usage, budgets and recommendations as JSON. */
  aiUsageHandler(): RequestHandler;
  /** Closes the engine if this middleware created it (an instance you passed in stays open). */
  close(): Promise<void>;
}

/**
 * The app-level admission of a request. A route-level `amas.route()` on the same request takes back the parts
 * it sets itself (its limits, breaker or dedup replace the global ones) and applies only its own options.
 */
const ADMITTED = Symbol('amas.admitted');
type AmasRequest = Request & { [ADMITTED]?: { amas: Amas; ticket: RequestTicket }; user?: unknown };

/**
 * Whether any `amas.route()` handler exists in this process. Until one does, nothing reads ADMITTED, and the
 * app-level admission skips recording it: adding a property to an Express request (whose prototype Express
 * swaps per request) measured several microseconds on this machine, on every request.
 */
let routeHelpersExist = false;

/**
 * Express 4 and 5 middleware. `app.use(amasMiddleware())` with no options only times, measures and watches;
 * it rejects nothing until limits or breakers are configured.
 */
export function amasMiddleware(optionsOrInstance?: AmasOptions | Amas, adapterOptions: ExpressAdapterOptions = {}): AmasMiddleware {
  const { amas, owned } = resolveAmas(optionsOrInstance);
  const onRejection = adapterOptions.onRejection ?? 'respond';
  if (onRejection !== 'respond' && onRejection !== 'next') {
    throw new TypeError(`amasMiddleware: onRejection must be 'respond' or 'next', received ${JSON.stringify(onRejection)}`);
  }
  const globalRoute = amas.http.compile({});
  const instrumentOptions = { maxCaptureBytes: amas.httpOptions.maxSharedBodyBytes, routeAtEnd: routePattern };

  const run = (route: CompiledRoute, req: AmasRequest, res: Response, next: NextFunction) => {
    const neutral = neutralOf(req);
    let admission: Admission | Promise<Admission>;
    try {
      admission = amas.http.admit(neutral, route);
    } catch (error) {
      return next(error);
    }
    if (admission instanceof Promise) admission.then((a) => apply(a, req, res, next), next);
    else apply(admission, req, res, next);
  };

  const apply = (admission: Admission, req: AmasRequest, res: Response, next: NextFunction) => {
    switch (admission.action) {
      case 'skip':
        return next();
      case 'pass':
        instrumentResponse(res, admission.ticket, instrumentOptions);
        if (routeHelpersExist && req[ADMITTED] === undefined) req[ADMITTED] = { amas, ticket: admission.ticket };
        return next();
      case 'replay':
        return writeSharedResponse(res, admission.response, admission.ticket);
      case 'reject':
        if (onRejection === 'next') {
          recordResponseError(res, admission.rejection.error);
          admission.ticket.finish({ status: admission.rejection.status, error: admission.rejection.error });
          return next(admission.rejection.error);
        }
        send(res, admission.rejection);
        return admission.ticket.finish({ status: admission.rejection.status, error: admission.rejection.error });
    }
  };

  const middleware = ((req: Request, res: Response, next: NextFunction) => run(globalRoute, req as AmasRequest, res, next)) as AmasMiddleware;

  Object.defineProperty(middleware, 'amas', { value: amas, enumerable: true });
  middleware.route = (options: RouteOptions) => {
    // Compiled now, at route registration: a bad option fails at start-up, not on the first request.
    const full = amas.http.compile(options);
    const nested = amas.http.compile(options, undefined, { nested: true });
    routeHelpersExist = true;
    return (req: Request, res: Response, next: NextFunction) => {
      const r = req as AmasRequest;
      const outer = r[ADMITTED];
      if (outer?.amas !== amas) return run(full, r, res, next);
      // Per-route options override global ones: the app-level admission gives back what this route replaces.
      for (const name of outer.ticket.withdraw(nested.overrides)) res.removeHeader(name);
      run(nested, r, res, next);
    };
  };
  middleware.metricsHandler = () => async (_req: Request, res: Response, next: NextFunction) => {
    try {
      const { contentType, body } = await amas.metrics.expose();
      res.set('content-type', contentType).send(body);
    } catch (error) {
      next(error);
    }
  };
  middleware.errorHandler = () => amasErrorHandler(amas);
  middleware.aiHandler = (endpoint: AiEndpoint, options: { usageHeaders?: boolean } = {}) => {
    checkAiEndpoint(endpoint, 'aiHandler');
    return (req: Request, res: Response) => void serveAiRequest(amas, endpoint, neutralOf(req as AmasRequest), res, options);
  };
  middleware.aiUsageHandler = () => (req: Request, res: Response) => void serveAiUsage(amas, neutralOf(req as AmasRequest), res);
  middleware.close = async () => {
    if (owned) await amas.close();
  };
  return middleware;
}

function neutralOf(req: AmasRequest): NeutralRequest {
  return {
    method: req.method,
    url: req.originalUrl ?? req.url,
    route: req.route ? `${req.baseUrl}${String(req.route.path)}` : undefined,
    headers: req.headers,
    ip: req.socket?.remoteAddress,
    user: req.user,
    body: req.body,
  };
}

/** Express error middleware rendering AMAS errors exactly like the middleware's own rejections. */
export function amasErrorHandler(amas: Amas): ErrorRequestHandler {
  return (error: unknown, _req: Request, res: Response, next: NextFunction) => {
    const rejection = amas.http.rejectionFor(error);
    if (!rejection) return next(error);
    recordResponseError(res, error);
    if (res.headersSent) return next(error);
    send(res, rejection);
  };
}

/** The matched route pattern, known once Express has routed the request (read when the response closes). */
function routePattern(res: ServerResponse): string | undefined {
  const req = (res as ServerResponse & { req?: Request }).req;
  return req?.route ? `${req.baseUrl}${String(req.route.path)}` : undefined;
}

function send(res: Response, rejection: Rejection): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.status(rejection.status).set(rejection.headers).type(REJECTION_CONTENT_TYPE).send(rejectionJson(rejection));
}
