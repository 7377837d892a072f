export { amasMiddleware, amasErrorHandler, type AmasMiddleware, type ExpressAdapterOptions } from './middleware.js';
export * from '@amas/core';
export { healthHandler } from './health.js';
