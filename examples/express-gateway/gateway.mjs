/**
 * An OpenAI-compatible LLM gateway on Express 5 + AMAS.
 *
 * Per request: identify the caller (Bearer token or x-user) -> per-user limit (amasMiddleware route limit)
 * -> for deterministic chat completions (temperature 0), the response cache and the semantic cache -> the provider call through the engine's resilience stack: dedup -> retry -> breaker 'provider' -> timeout.
 * Streaming bodies are passed through as they arrive; a client that hangs up aborts the upstream fetch.
 */
import { once } from 'node:events';
import express from 'express';
import { amasMiddleware as createAmasMiddleware } from '@amas/express';
import { isAmasError, PER_RESPONSE_HEADERS, stableKey } from '@amas/core';

/** Gateway defaults; every one can be overridden through `createGateway({ amas, retry, timeoutMs })`. */
export const GATEWAY_DEFAULTS = Object.freeze({
  /** Named limit applied to both endpoints, keyed by user. */
  limit: { limit: 60, window: '1m' },
  breaker: { failureThreshold: 5, recoveryTimeoutMs: 10_000 },
  retry: { maxAttempts: 3, baseDelayMs: 100, maxDelayMs: 2_000, maxRetryAfterMs: 5_000 },
  timeoutMs: 30_000,
});

const ENDPOINTS = ['/v1/chat/completions', '/v1/embeddings'];
/**
 * Upstream headers not forwarded: the ones that describe one response on one connection (hop-by-hop, length,
 * date, cookies, and the limit and timing headers the gateway sets itself), plus content-encoding, because
 * fetch has already decoded the body.
 */
const NOT_FORWARDED = new Set([...PER_RESPONSE_HEADERS, 'content-encoding']);

/** A non-2xx answer (or no answer at all: status 502) from the provider. Carries what retry needs. */
export class UpstreamError extends Error {
  /**
   * @param {number} status
   * @param {string} message
   * @param {{ headers?: Headers, body?: unknown, cause?: unknown }} [init]
   */
  constructor(status, message, init = {}) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'UpstreamError';
    this.status = status;
    // `headers` lets the retry policy read Retry-After / retry-after-ms.
    this.headers = init.headers;
    this.body = init.body;
  }
}

/** Only the provider's own trouble counts against its breaker: 5xx, network errors, timeouts; not 4xx or caller aborts. */
function countsAgainstProvider(error) {
  if (error instanceof UpstreamError) return error.status >= 500;
  return !(isAmasError(error) && error.code === 'AMAS_ABORTED');
}

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

function isOpenAiErrorBody(body) {
  return typeof body === 'object' && body !== null && typeof body.error === 'object' && body.error !== null && typeof body.error.message === 'string';
}

/** AMAS defaults for the gateway <- the caller's overrides (limits and breakers merged per name). */
function amasOptionsFor(overrides = {}, logger) {
  const { limits, breakers, http, ...rest } = overrides;
  return {
    ...(logger ? { logger } : {}),
    ...rest,
    limits: { 'per-user': { ...GATEWAY_DEFAULTS.limit }, ...limits },
    breakers: {
      ...breakers,
      provider: { ...GATEWAY_DEFAULTS.breaker, isFailure: countsAgainstProvider, ...breakers?.provider },
    },
    ...(http ? { http } : {}),
  };
}

/**
 * @param {{
 *   providerUrl: string,
 *   amas?: import('@amas/core').AmasOptions,
 *   logger?: { warn(...a: unknown[]): void, error(...a: unknown[]): void },
 *   retry?: import('@amas/core').RetryOptions,
 *   timeoutMs?: number,
 *   providerApiKey?: string,
 * }} options
 */
export function createGateway(options) {
  const { providerUrl, amas: amasOverrides, logger, retry, timeoutMs = GATEWAY_DEFAULTS.timeoutMs, providerApiKey } = options ?? {};
  if (typeof providerUrl !== 'string' || !/^https?:\/\//.test(providerUrl)) {
    throw new TypeError(`createGateway: providerUrl must be an http(s) URL, received ${JSON.stringify(providerUrl)}`);
  }
  const base = providerUrl.replace(/\/+$/, '');
  const log = logger ?? { warn: (...a) => console.warn('[gateway]', ...a), error: (...a) => console.error('[gateway]', ...a) };

  const amasMiddleware = createAmasMiddleware(amasOptionsFor(amasOverrides, logger));
  const engine = amasMiddleware.amas;
  let resilience;
  try {
    resilience = engine.resilience({
      dedup: engine.singleFlight(),
      retry: engine.retry({ ...GATEWAY_DEFAULTS.retry, ...retry }),
      breaker: engine.breaker('provider'),
      timeout: engine.timeout(timeoutMs),
    });
  } catch (error) {
    // A bad retry/timeout option: release the engine we just created before reporting it.
    void amasMiddleware.close();
    throw error;
  }

  /** One attempt. Buffered calls read the whole body inside the attempt (so the timeout and retry cover it). */
  async function callProvider(path, body, ctx, clientSignal, stream) {
    // A stream outlives the attempt: after the headers, only the client hanging up may abort it.
    const signal = stream ? AbortSignal.any([ctx.signal, clientSignal]) : ctx.signal;
    let response;
    try {
      response = await fetch(base + path, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: stream ? 'text/event-stream' : 'application/json',
          ...(providerApiKey ? { authorization: `Bearer ${providerApiKey}` } : {}),
        },
        body: JSON.stringify(body),
        signal,
      });
    } catch (error) {
      if (signal.aborted) throw error; // timeout or caller abort: the policies already answered
      throw new UpstreamError(502, `The provider could not be reached: ${error?.cause?.code ?? error?.message ?? error}`, { cause: error });
    }
    if (!response.ok) {
      const text = await response.text().catch(() => '');
      let parsed;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      throw new UpstreamError(response.status, `The provider answered ${response.status}`, { headers: response.headers, body: parsed ?? text });
    }
    const headers = {};
    for (const [name, value] of response.headers) if (!NOT_FORWARDED.has(name)) headers[name] = value;
    if (stream) return { status: response.status, headers, stream: response.body, attempt: ctx.attempt };
    return { status: response.status, headers, body: Buffer.from(await response.arrayBuffer()), attempt: ctx.attempt };
  }

  const proxy = (path) => async (req, res, next) => {
    const body = req.body;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      res.status(400).json(openAiError(400, 'The request body must be a JSON object.', 'invalid_json'));
      return;
    }
    const stream = body.stream === true;
    const client = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) client.abort(new Error('client disconnected'));
    };
    res.once('close', onClose);
    let ran = false;
    try {
      const result = await resilience.execute(
        (ctx) => {
          ran = true;
          return callProvider(path, body, ctx, client.signal, stream);
        },
        {
          // Streams are one-shot bodies: never shared. Buffered calls by the same user with the same body are.
          key: stream ? undefined : stableKey({ user: req.user ?? `ip:${req.socket.remoteAddress}`, path, body }),
          signal: client.signal,
        },
      );
      if (client.signal.aborted) return;
      res.status(result.status).set(result.headers);
      // A caller whose work never ran got another caller's response.
      res.set('x-amas-dedup', ran ? 'leader' : 'shared');
      if (ran) res.set('x-upstream-attempts', String(result.attempt));
      if (stream) await pipeStream(result.stream, res, client.signal);
      else res.end(result.body);
    } catch (error) {
      if (client.signal.aborted) return; // nobody is listening any more
      next(error);
    } finally {
      res.off('close', onClose);
    }
  };

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(identify);
  app.use(amasMiddleware);
  app.get('/health', (_req, res) => {
    res.json({ status: 'ok', provider: { breaker: engine.breaker('provider').getState() } });
  });
  app.get('/metrics', amasMiddleware.metricsHandler());
  const perUser = amasMiddleware.route({ limit: 'per-user' });
  // Deterministic chat completions (temperature 0) are answered from the caches, per user; the body is parsed
  // first because both caches read it. The response cache answers the same body again (not streamed; `user`
  // and `metadata` left out of the key); the semantic cache answers a paraphrase of an earlier question in
  // the same context (model, system prompt, earlier turns, sampling), as JSON or as a stream.
  const deterministic = (req) => req.body?.temperature === 0;
  const cachedChat = amasMiddleware.route({
    limit: 'per-user',
    cache: {
      methods: ['POST'],
      ttl: '10m',
      when: (req) => deterministic(req) && req.body?.stream !== true,
      excludeBodyFields: ['user', 'metadata'],
    },
    semanticCache: { ttl: '10m', when: deterministic },
  });
  const json = express.json({ limit: '1mb' });
  app.post('/v1/chat/completions', json, cachedChat, proxy('/v1/chat/completions'));
  app.post('/v1/embeddings', perUser, json, proxy('/v1/embeddings'));
  app.use((_req, res) => {
    res.status(404).json(openAiError(404, 'Unknown endpoint.', 'unknown_url'));
  });
  // AMAS errors (open breaker, timeout, limits) render exactly like the middleware's own rejections.
  app.use(amasMiddleware.errorHandler());
  app.use((error, _req, res, next) => {
    if (res.headersSent) return next(error);
    if (error instanceof UpstreamError) {
      if (error.headers) {
        for (const name of ['retry-after', 'retry-after-ms']) {
          const value = error.headers.get(name);
          if (value !== null) res.set(name, value);
        }
      }
      const body = isOpenAiErrorBody(error.body)
        ? error.body
        : openAiError(error.status, error.message, error.status === 502 ? 'upstream_unreachable' : 'upstream_error');
      res.status(error.status).json(body);
      return;
    }
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
    resilience,
    /** Listens on host:port (default 127.0.0.1 and a random port); resolves the base URL. */
    async listen(port = 0, host = '127.0.0.1') {
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

/** Writes the provider's SSE chunks as they come, honouring backpressure; stops when the client leaves. */
async function pipeStream(body, res, signal) {
  res.flushHeaders();
  try {
    for await (const chunk of body) {
      if (!res.write(chunk)) await drained(res);
      if (signal.aborted) return;
    }
    res.end();
  } catch (error) {
    if (signal.aborted) return; // the fetch was aborted because the client hung up
    // Headers are gone already: report the broken stream in-band, the way OpenAI streams do.
    res.end(`data: ${JSON.stringify(openAiError(502, `The provider stream broke: ${error?.message ?? error}`, 'upstream_stream_error'))}\n\n`);
  }
}

function drained(res) {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
