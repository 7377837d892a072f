import type { AmasError } from '../errors.js';

export interface Rejection {
  status: number;
  headers: Record<string, string>;
  body: unknown;
  error: AmasError;
}

export type RejectionBodyRenderer = (error: AmasError) => unknown;

/** The default JSON body of a 429/503: stable code, message, status and how long to wait. */
export function defaultRejectionBody(error: AmasError): unknown {
  return {
    error: {
      code: error.code,
      message: error.message,
      status: error.status,
      ...(error.retryAfterMs === undefined ? {} : { retryAfterMs: error.retryAfterMs }),
    },
  };
}

/** A rejection response for an AMAS error: its status, its headers (Retry-After) plus `extra`, and a body. */
export function renderRejection(
  error: AmasError,
  extra: Record<string, string> = {},
  renderBody: RejectionBodyRenderer = defaultRejectionBody,
): Rejection {
  let body: unknown;
  try {
    body = renderBody(error);
  } catch {
    // A broken renderer must not turn a clean 429 into a 500.
    body = defaultRejectionBody(error);
  }
  return { status: error.status, headers: { ...extra, ...error.headers }, body, error };
}

/** The content type of every rejection body. */
export const REJECTION_CONTENT_TYPE = 'application/json; charset=utf-8';

/**
 * The rejection body as JSON text, as every adapter sends it. A custom `rejectionBody` that returns something
 * JSON cannot encode (a cycle, a BigInt) falls back to the default body instead of failing the response.
 */
export function rejectionJson(rejection: Rejection): string {
  try {
    const json = JSON.stringify(rejection.body);
    if (json !== undefined) return json;
  } catch {
    // fall through to the default body
  }
  return JSON.stringify(defaultRejectionBody(rejection.error));
}
