/**
 * An OpenAI-compatible LLM gateway on Express 5 + AMAS.
 *
 * Per request: identify the caller (Bearer token or x-user) -> per-user limit -> dedup of identical
 * concurrent requests -> for deterministic chat completions (temperature 0), the response cache and the
 * semantic cache -> `amas.ai`: the caller's budget checked, the call routed to the provider (retries with
 * backoff honouring Retry-After, a breaker per model and endpoint, timeouts), tokens and cost recorded.
 * Streams pass through as they arrive; a client that hangs up aborts the upstream call.
 */
import { once } from 'node:events';
import express from 'express';
import { amasMiddleware as createAmasMiddleware } from '@amas/express';

/** Gateway defaults; every one can be overridden through `createGateway({ amas, retry, timeoutMs, models, budgets })`. */
export const GATEWAY_DEFAULTS = Object.freeze({
  /** Named limit applied to both endpoints, keyed by user. */
  limit: { limit: 60, window: '1m' },
  breaker: { failureThreshold: 5, recoveryTimeoutMs: 10_000 },
  retry: { maxAttempts: 3, baseDelayMs: 100, maxDelayMs: 2_000, maxRetryAfterMs: 5_000 },
  timeoutMs: 30_000,
  /** The models the gateway serves (all from the one provider). */
  models: ['gpt-4o-mini', 'gpt-4o', 'gpt-4.1-mini', 'gpt-4.1', 'text-embedding-3-small', 'text-embedding-3-large'],
});

/** Id of the provider's endpoint: each model's breaker is named `ai:<model>/provider`. */
export const ENDPOINT_ID = 'provider';
export const breakerName = (model) => `ai:${model}/${ENDPOINT_ID}`;

/** `Authorization: Bearer <user>` or `x-user: <user>`; the AMAS identity resolver cleans whatever we pass. */
function identify(req, _res, next) {
  const auth = req.headers.authorization;
  const bearer = typeof auth === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(auth) : null;
  const header = req.headers['x-user'];
  const user = bearer ? bearer[1] : typeof header === 'string' && header.trim() ? header.trim() : undefined;
  if (user !== undefined) req.user = user;
  next();
}

function openAiError(status, message, code, type) {
  return {
    error: {
      message,
      type: type ?? (status === 429 ? 'rate_limit_error' : status >= 500 ? 'server_error' : 'invalid_request_error'),
      param: null,
      code,
    },
  };
}

/**
 * AMAS rejections in the shape OpenAI clients read (`error.message`, `error.type`), keeping AMAS's stable
 * code; a provider that could not be reached or answered too slowly gets the gateway's own codes.
 */
function openAiRejection(error) {
  if (error.code === 'AMAS_UPSTREAM_ERROR') {
    if (error.status === 504) return openAiError(504, error.message, 'AMAS_TIMEOUT');
    return openAiError(error.status, error.message, error.status === 502 ? 'upstream_unreachable' : 'upstream_error');
  }
  return openAiError(error.status, error.message, error.code);
}

/** AMAS defaults for the gateway <- the caller's overrides (limits and breakers merged per name). */
function amasOptionsFor(overrides = {}, logger, ai) {
  const { limits, breakers, http, ...rest } = overrides;
  return {
    ...(logger ? { logger } : {}),
    ...rest,
    limits: { 'per-user': { ...GATEWAY_DEFAULTS.limit }, ...limits },
    ...(breakers ? { breakers } : {}),
    http: { rejectionBody: openAiRejection, ...http },
    ai,
  };
}

/**
 * @param {{
 *   providerUrl: string,
 *   amas?: import('@amas/core').AmasOptions,
 *   logger?: { warn(...a: unknown[]): void, error(...a: unknown[]): void },
 *   retry?: { maxAttempts?: number, baseDelayMs?: number, maxDelayMs?: number, maxRetryAfterMs?: number },
 *   timeoutMs?: number,
 *   providerApiKey?: string,
 *   models?: string[],
 *   budgets?: import('@amas/core').BudgetRules,
 * }} options
 */
export function createGateway(options) {
  const { providerUrl, amas: amasOverrides, logger, retry, timeoutMs = GATEWAY_DEFAULTS.timeoutMs, providerApiKey, models = GATEWAY_DEFAULTS.models, budgets } = options ?? {};
  if (typeof providerUrl !== 'string' || !/^https?:\/\//.test(providerUrl)) {
    throw new TypeError(`createGateway: providerUrl must be an http(s) URL, received ${JSON.stringify(providerUrl)}`);
  }
  const log = logger ?? { warn: (...a) => console.warn('[gateway]', ...a), error: (...a) => console.error('[gateway]', ...a) };
  const endpoint = { id: ENDPOINT_ID, url: providerUrl, ...(providerApiKey ? { apiKey: providerApiKey } : {}) };
  const ai = {
    models: Object.fromEntries(models.map((model) => [model, { endpoints: [endpoint] }])),
    defaults: {
      retry: { ...GATEWAY_DEFAULTS.retry, ...retry },
      // `amas.breakers.provider` (as in earlier versions of this example) tunes every model's breaker.
      breaker: { ...GATEWAY_DEFAULTS.breaker, ...amasOverrides?.breakers?.provider },
    },
    client: { headersTimeout: timeoutMs, bodyTimeout: timeoutMs },
    ...(budgets ? { budgets } : {}),
  };
  const amasMiddleware = createAmasMiddleware(amasOptionsFor(amasOverrides, logger, ai));
  const engine = amasMiddleware.amas;

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(identify);
  app.use(amasMiddleware);
  app.get('/health', (_req, res) => {
    res.json({ status: 'ok', provider: { breaker: engine.breaker(breakerName('gpt-4o-mini')).getState() } });
  });
  app.get('/metrics', amasMiddleware.metricsHandler());
  // The caller's own spend, budgets and recommendations.
  app.get('/v1/usage', amasMiddleware.aiUsageHandler());
  // Deterministic chat completions (temperature 0) are answered from the caches, per user; the body is parsed
  // first because both caches read it. The response cache answers the same body again (not streamed; `user`
  // and `metadata` left out of the key); the semantic cache answers a paraphrase of an earlier question in
  // the same context (model, system prompt, earlier turns, sampling), as JSON or as a stream. Identical
  // concurrent requests of one user share one upstream call (dedup).
  const deterministic = (req) => req.body?.temperature === 0;
  const chatRoute = amasMiddleware.route({
    limit: 'per-user',
    dedup: true,
    cache: {
      methods: ['POST'],
      ttl: '10m',
      when: (req) => deterministic(req) && req.body?.stream !== true,
      excludeBodyFields: ['user', 'metadata'],
    },
    semanticCache: { ttl: '10m', when: deterministic },
  });
  const json = express.json({ limit: '1mb' });
  app.post('/v1/chat/completions', json, chatRoute, amasMiddleware.aiHandler('chat'));
  app.post('/v1/embeddings', amasMiddleware.route({ limit: 'per-user' }), json, amasMiddleware.aiHandler('embeddings'));
  app.use((_req, res) => {
    res.status(404).json(openAiError(404, 'Unknown endpoint.', 'unknown_url'));
  });
  // AMAS errors render exactly like the middleware's own rejections (in OpenAI shape, see openAiRejection).
  app.use(amasMiddleware.errorHandler());
  app.use((error, _req, res, next) => {
    if (res.headersSent) return next(error);
    // body-parser errors carry a 4xx status and `expose`.
    if (typeof error?.status === 'number' && error.status >= 400 && error.status < 500 && error.expose) {
      const code = error.type === 'entity.parse.failed' ? 'invalid_json' : error.type === 'entity.too.large' ? 'request_too_large' : 'invalid_request';
      res.status(error.status).json(openAiError(error.status, error.message, code));
      return;
    }
    log.error('unexpected gateway error', error);
    res.status(500).json(openAiError(500, 'Internal gateway error.', 'internal_error'));
  });

  let server;
  return {
    app,
    amasMiddleware,
    amas: engine,
    /** Listens on host:port (default 127.0.0.1 and a random port); resolves the base URL. */
    async listen(port = 0, host = '127.0.0.1') {
      engine.ai.warmUp(); // the tokenizer tables load now, not on the first request
      server = app.listen(port, host);
      await once(server, 'listening');
      return `http://${host}:${server.address().port}`;
    },
    get server() {
      return server;
    },
    /** Stops the server (if listen() was used), drops open connections and closes the AMAS engine. */
    async close() {
      if (server) {
        const closed = new Promise((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await closed;
        server = undefined;
      }
      await amasMiddleware.close();
    },
  };
}
