import 'reflect-metadata';

export { AmasModule, AmasLifecycle, type AmasModuleAsyncOptions, type AmasModuleInput, type AmasModuleOptions } from './amas.module.js';
export { AMAS } from './constants.js';
export {
  AmasRoute,
  Cached,
  CircuitProtected,
  Deduplicate,
  InjectAmas,
  RateLimit,
  SemanticCached,
  SkipAmas,
  type CachedDecoratorOptions,
  type SemanticCachedDecoratorOptions,
  type DeduplicateOptions,
  type RateLimitOptions,
  type RateLimitSpec,
} from './decorators.js';
export { AmasGuard } from './amas.guard.js';
export { AmasResponseInterceptor } from './response.interceptor.js';
export { AmasExceptionFilter } from './amas-exception.filter.js';
export { AmasHttpException } from './exceptions.js';
export { AmasRouteRegistry } from './route-registry.js';
export { AmasExplorer } from './explorer.js';
export { createAmasMetricsController } from './metrics.controller.js';
export { createAmasHealthController } from './health.controller.js';
export { AmasAiHandler } from './ai-handler.js';
