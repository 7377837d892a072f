/**
 * The AMAS error catalogue. Every error has a stable `code`, an HTTP `status` and, where waiting helps,
 * `retryAfterMs`. `instanceof` works across duplicate copies of this package (two versions in one
 * node_modules tree, or the ESM and CJS builds side by side): it checks a global brand and the code,
 * never the class identity.
 */
const BRAND = Symbol.for('amas.error');

export type AmasErrorCode =
  | 'AMAS_RATE_LIMITED'
  | 'AMAS_BREAKER_OPEN'
  | 'AMAS_BULKHEAD_FULL'
  | 'AMAS_TIMEOUT'
  | 'AMAS_BUDGET_EXCEEDED'
  | 'AMAS_INVALID_OPTION'
  | 'AMAS_ABORTED';

export interface AmasErrorInit {
  status?: number;
  retryAfterMs?: number;
  details?: Record<string, unknown>;
  cause?: unknown;
}

export class AmasError extends Error {
  /** Matched by subclasses' `instanceof`; the base class matches every AMAS error. */
  static readonly code: AmasErrorCode | undefined = undefined;
  readonly code: AmasErrorCode;
  readonly status: number;
  readonly retryAfterMs: number | undefined;
  readonly details: Record<string, unknown>;

  constructor(code: AmasErrorCode, message: string, init: AmasErrorInit = {}) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    Object.defineProperty(this, BRAND, { value: true });
    this.name = new.target.name;
    this.code = code;
    this.status = init.status ?? 500;
    this.retryAfterMs = init.retryAfterMs === undefined ? undefined : Math.max(0, Math.ceil(init.retryAfterMs));
    this.details = init.details ?? {};
  }

  /** Same as `status`: the name Fastify, Nest and http-errors read. */
  get statusCode(): number {
    return this.status;
  }

  /** Response headers a server should send with this error (Retry-After in whole seconds, rounded up). */
  get headers(): Record<string, string> {
    return this.retryAfterMs === undefined ? {} : { 'retry-after': String(Math.ceil(this.retryAfterMs / 1000)) };
  }

  toJSON(): Record<string, unknown> {
    return {
      error: this.code,
      message: this.message,
      status: this.status,
      ...(this.retryAfterMs === undefined ? {} : { retryAfterMs: this.retryAfterMs }),
      ...(Object.keys(this.details).length ? { details: this.details } : {}),
    };
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    if (typeof value !== 'object' || value === null || (value as Record<symbol, unknown>)[BRAND] !== true) return false;
    const code = (this as typeof AmasError).code;
    return code === undefined || (value as AmasError).code === code;
  }
}

/** True for any AMAS error, from any copy of the package. */
export function isAmasError(value: unknown): value is AmasError {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
}

export class RateLimitedError extends AmasError {
  static override readonly code = 'AMAS_RATE_LIMITED' as const;
  constructor(message: string, init: AmasErrorInit & { retryAfterMs: number }) {
    super('AMAS_RATE_LIMITED', message, { status: 429, ...init });
  }
}

export class BreakerOpenError extends AmasError {
  static override readonly code = 'AMAS_BREAKER_OPEN' as const;
  constructor(message: string, init: AmasErrorInit & { retryAfterMs: number }) {
    super('AMAS_BREAKER_OPEN', message, { status: 503, ...init });
  }
}

export class BulkheadFullError extends AmasError {
  static override readonly code = 'AMAS_BULKHEAD_FULL' as const;
  constructor(message: string, init: AmasErrorInit = {}) {
    super('AMAS_BULKHEAD_FULL', message, { status: 503, ...init });
  }
}

export class TimeoutError extends AmasError {
  static override readonly code = 'AMAS_TIMEOUT' as const;
  constructor(message: string, init: AmasErrorInit = {}) {
    super('AMAS_TIMEOUT', message, { status: 504, ...init });
  }
}

export class BudgetExceededError extends AmasError {
  static override readonly code = 'AMAS_BUDGET_EXCEEDED' as const;
  constructor(message: string, init: AmasErrorInit = {}) {
    super('AMAS_BUDGET_EXCEEDED', message, { status: 429, ...init });
  }
}

export interface OptionIssue {
  /** Dotted path of the option, e.g. `breakers.openai.failureThreshold`. */
  path: string;
  received: string;
  expected: string;
}

export class InvalidOptionError extends AmasError {
  static override readonly code = 'AMAS_INVALID_OPTION' as const;
  readonly issues: OptionIssue[];
  constructor(issues: OptionIssue[], where = 'AMAS options') {
    const lines = issues.map((i) => `  - ${i.path || '(root)'}: expected ${i.expected}, received ${i.received}`);
    super('AMAS_INVALID_OPTION', `Invalid ${where}:\n${lines.join('\n')}`, { status: 500, details: { issues } });
    this.issues = issues;
  }
}

export class AbortedError extends AmasError {
  static override readonly code = 'AMAS_ABORTED' as const;
  constructor(message = 'The operation was aborted', init: AmasErrorInit = {}) {
    super('AMAS_ABORTED', message, { status: 499, ...init });
  }
}
