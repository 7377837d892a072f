import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { isAmas, parseHealthOptions, serveHealth, type Amas, type CheckHealthOptions, type HealthKind } from '@amas/core';

/**
 * A handler for Kubernetes probes: `app.get('/health/live', healthHandler('live', amas))` and
 * `app.get('/health/ready', healthHandler('ready', amas, { required: ['redis'] }))`, where `amas` is the
 * middleware (`amasMiddleware()`) or an Amas instance. Answers the JSON report of `checkHealth` with 200 (ok,
 * degraded) or 503 (down). Register it before `app.use(amas)` (or skip it in your limits) so probes are never
 * rate limited. Options are validated now: a typo fails at start-up.
 */
export function healthHandler(kind: HealthKind, source: Amas | { readonly amas: Amas }, options: Omit<CheckHealthOptions, 'kind'> = {}): RequestHandler {
  const amas = isAmas(source) ? source : (source as { amas?: unknown } | undefined)?.amas;
  if (!isAmas(amas)) throw new TypeError('healthHandler(kind, amas): pass the AMAS middleware (amasMiddleware()) or an Amas instance');
  const checked = parseHealthOptions({ ...options, kind }, 'healthHandler options');
  return function amasHealthHandler(_req: Request, res: Response, next: NextFunction): void {
    serveHealth(amas, checked, res).catch(next);
  };
}
