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
  | 'AMAS_ABORTED'
  | 'AMAS_STORE_UNAVAILABLE'
  | 'AMAS_INVALID_FIELDS'
  | 'AMAS_INVALID_REQUEST'
  | 'AMAS_UPSTREAM_ERROR'
  | 'AMAS_INVALID_EMBEDDING_INPUT'
  | 'AMAS_EMBEDDING_FAILED';

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

  /** `defaultStatus` applies when `init.status` is not given (subclasses pass theirs without copying `init`). */
  constructor(code: AmasErrorCode, message: string, init: AmasErrorInit = {}, defaultStatus = 500) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = new.target.name;
    this.code = code;
    this.status = init.status ?? defaultStatus;
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

// The brand sits on the prototype (non-enumerable), not on each instance: an open breaker builds one error
// per rejected call, and a per-instance defineProperty measurably slows that fast-fail path.
Object.defineProperty(AmasError.prototype, BRAND, { value: true });

/** True for any AMAS error, from any copy of the package. */
export function isAmasError(value: unknown): value is AmasError {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
}

export class RateLimitedError extends AmasError {
  static override readonly code = 'AMAS_RATE_LIMITED' as const;
  constructor(message: string, init: AmasErrorInit & { retryAfterMs: number }) {
    super('AMAS_RATE_LIMITED', message, init, 429);
  }
}

export class BreakerOpenError extends AmasError {
  static override readonly code = 'AMAS_BREAKER_OPEN' as const;
  constructor(message: string, init: AmasErrorInit & { retryAfterMs: number }) {
    super('AMAS_BREAKER_OPEN', message, init, 503);
  }

  /**
   * The open breaker's fast-fail error, one per rejected call. Running the Error constructor is most of the
   * cost of a rejection even without a stack trace, and the trace would only show breaker internals, so this
   * builds the object directly on the prototype: still `instanceof BreakerOpenError`, `AmasError` and
   * `Error`, with the same fields, a one-line `stack`, and the `[object Error]` tag that util.inspect and
   * loggers use to print errors.
   */
  static fast(message: string, retryAfterMs: number, details: Record<string, unknown>): BreakerOpenError {
    const error = Object.create(BreakerOpenError.prototype) as BreakerOpenError & Record<string | symbol, unknown>;
    error.name = 'BreakerOpenError';
    error.message = message;
    error.stack = `BreakerOpenError: ${message}`;
    (error as { code: string }).code = 'AMAS_BREAKER_OPEN';
    (error as { status: number }).status = 503;
    (error as { retryAfterMs: number }).retryAfterMs = Math.max(0, Math.ceil(retryAfterMs));
    (error as { details: Record<string, unknown> }).details = details;
    return error;
  }
}

// Lets Object.prototype.toString (and so util.inspect) recognise errors built by BreakerOpenError.fast.
Object.defineProperty(BreakerOpenError.prototype, Symbol.toStringTag, { value: 'Error', configurable: true });

export class BulkheadFullError extends AmasError {
  static override readonly code = 'AMAS_BULKHEAD_FULL' as const;
  constructor(message: string, init: AmasErrorInit = {}) {
    super('AMAS_BULKHEAD_FULL', message, init, 503);
  }
}

export class TimeoutError extends AmasError {
  static override readonly code = 'AMAS_TIMEOUT' as const;
  constructor(message: string, init: AmasErrorInit = {}) {
    super('AMAS_TIMEOUT', message, init, 504);
  }
}

export class BudgetExceededError extends AmasError {
  static override readonly code = 'AMAS_BUDGET_EXCEEDED' as const;
  constructor(message: string, init: AmasErrorInit = {}) {
    super('AMAS_BUDGET_EXCEEDED', message, init, 429);
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
    super('AMAS_ABORTED', message, init, 499);
  }
}

/**
 * A shared store (Redis) did not answer in time, is disconnected, or its own breaker is open. Features on
 * top of a store catch it and degrade (local limiter, L1-only cache); it reaches a client only when a user
 * chose fail-closed.
 */
export class StoreUnavailableError extends AmasError {
  static override readonly code = 'AMAS_STORE_UNAVAILABLE' as const;
  constructor(message: string, init: AmasErrorInit = {}) {
    super('AMAS_STORE_UNAVAILABLE', message, init, 503);
  }
}

/** What is wrong with a `fields` expression; stable, so clients and tests can branch on it. */
export type FieldsProblem =
  | 'not-text'
  | 'empty-name'
  | 'forbidden-character'
  | 'unexpected-character'
  | 'unbalanced-parentheses'
  | 'too-long'
  | 'too-many-fields'
  | 'too-deep';

/**
 * A client sent a `?fields=` expression that does not parse or exceeds a limit: 400, with the problem and the
 * 0-based character position in `details`, and a message that says what is wrong and where.
 */
export class InvalidFieldsError extends AmasError {
  static override readonly code = 'AMAS_INVALID_FIELDS' as const;
  readonly problem: FieldsProblem;
  /** 0-based offset (UTF-16 code units) in the expression where the problem was found. */
  readonly position: number;
  constructor(message: string, problem: FieldsProblem, position: number, init: AmasErrorInit = {}) {
    super('AMAS_INVALID_FIELDS', message, { ...init, details: { parameter: 'fields', problem, position, ...init.details } }, 400);
    this.problem = problem;
    this.position = position;
  }
}

/**
 * A client sent a request header AMAS reads (e.g. `X-Amas-Cache-Ttl`) with a value it cannot use: 400, the
 * header in `details.header`, and a message naming the header, the value and what was expected.
 */
export class InvalidRequestError extends AmasError {
  static override readonly code = 'AMAS_INVALID_REQUEST' as const;
  constructor(message: string, init: AmasErrorInit = {}) {
    super('AMAS_INVALID_REQUEST', message, init, 400);
  }
}
