import { InvalidOptionError, describeValue, isAmas, resolveAmas, type Amas, type AmasOptions, type OptionIssue } from '@amas/core';

/** What to do with a pipeline rejection (limit hit, breaker open). */
export type RejectionMode = 'respond' | 'error';

/**
 * How AMAS errors thrown inside covered routes are rendered.
 * - 'auto' (default): like a pipeline rejection, unless the route's scope has a custom error handler
 *   (`setErrorHandler`), which then receives the error (it carries `statusCode` and `headers`).
 * - 'always': like a pipeline rejection even when a custom handler exists (other errors still reach it).
 * - 'never': leave every error to Fastify's / the user's error handler.
 */
export type ErrorHandlerMode = 'auto' | 'always' | 'never';

export interface AmasFastifyAdapterOptions {
  /** 'respond' (default): send the 429/503 reply from the hook. 'error': throw the AmasError into Fastify's error handling. */
  onRejection?: RejectionMode;
  errorHandler?: ErrorHandlerMode;
}

/** `app.register(amas, options)`: AMAS options (an owned instance) or `{ instance }` (shared, never closed by the plugin). */
export type AmasFastifyOptions = (AmasOptions | { instance: Amas }) & AmasFastifyAdapterOptions;

export interface ResolvedPluginOptions {
  amas: Amas;
  owned: boolean;
  onRejection: RejectionMode;
  errorHandler: ErrorHandlerMode;
}

const WHERE = 'AMAS Fastify plugin options';
/** Keys Fastify's `register` itself reads; they are not AMAS options. */
const REGISTER_KEYS = new Set(['prefix', 'logLevel', 'logSerializers']);
const REJECTION_MODES: readonly RejectionMode[] = ['respond', 'error'];
const ERROR_HANDLER_MODES: readonly ErrorHandlerMode[] = ['auto', 'always', 'never'];

/** Splits adapter options from AMAS options, validates the adapter's own, and resolves the instance. */
export function resolvePluginOptions(input: unknown): ResolvedPluginOptions {
  if (input !== undefined && input !== null && (typeof input !== 'object' || Array.isArray(input))) {
    throw new InvalidOptionError([{ path: '', received: describeValue(input), expected: 'an options object' }], WHERE);
  }
  const { onRejection = 'respond', errorHandler = 'auto', instance, ...rest } = (input ?? {}) as Record<string, unknown>;
  const issues: OptionIssue[] = [];
  if (!REJECTION_MODES.includes(onRejection as RejectionMode)) {
    issues.push({ path: 'onRejection', received: describeValue(onRejection), expected: `one of ${REJECTION_MODES.map((m) => `"${m}"`).join(', ')}` });
  }
  if (!ERROR_HANDLER_MODES.includes(errorHandler as ErrorHandlerMode)) {
    issues.push({ path: 'errorHandler', received: describeValue(errorHandler), expected: `one of ${ERROR_HANDLER_MODES.map((m) => `"${m}"`).join(', ')}` });
  }
  const amasOptions: Record<string, unknown> = {};
  for (const key of Object.keys(rest)) if (!REGISTER_KEYS.has(key)) amasOptions[key] = rest[key];
  if (instance !== undefined) {
    if (!isAmas(instance)) {
      issues.push({ path: 'instance', received: describeValue(instance), expected: 'an Amas instance (createAmas())' });
    }
    for (const key of Object.keys(amasOptions)) {
      issues.push({ path: key, received: describeValue(amasOptions[key]), expected: 'nothing: configure the instance passed as `instance` instead' });
    }
  }
  if (issues.length) throw new InvalidOptionError(issues, WHERE);
  const { amas, owned } = resolveAmas(instance !== undefined ? (instance as Amas) : (amasOptions as AmasOptions));
  return { amas, owned, onRejection: onRejection as RejectionMode, errorHandler: errorHandler as ErrorHandlerMode };
}
