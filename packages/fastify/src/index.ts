export { amas, amas as default } from './plugin.js';
export { amasErrorHandler, replyWithAmasError, type FastifyErrorHandler } from './error-handler.js';
export { metricsHandler } from './metrics-handler.js';
export { healthHandler } from './health-handler.js';
export { sendRejection } from './rejection-reply.js';
export type { AmasFastifyOptions, AmasFastifyAdapterOptions, RejectionMode, ErrorHandlerMode } from './options.js';
export { aiHandler, aiUsageHandler } from './ai-handlers.js';
