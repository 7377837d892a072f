import { Catch, Inject, Injectable, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { throwError } from 'rxjs';
import { AmasError, REJECTION_CONTENT_TYPE, recordResponseError, rejectionJson, writeRejection, type Amas, type Rejection } from '@amas/core';
import { AMAS } from './constants.js';
import { AmasHttpException, AmasResponseSent } from './exceptions.js';
import { rawResponse, type PlatformResponse } from './http-context.js';

/**
 * Renders AMAS rejections (AmasHttpException from the guard) and AMAS errors thrown by handlers (e.g.
 * BreakerOpenError from `amas.breaker(...).execute`) as the same status, headers and JSON body the
 * pipeline sends. It catches only AMAS types: every other exception keeps Nest's normal handling.
 */
@Catch(AmasError, AmasHttpException, AmasResponseSent)
@Injectable()
export class AmasExceptionFilter implements ExceptionFilter {
  constructor(
    @Inject(AMAS) private readonly amas: Amas,
    @Inject(HttpAdapterHost) private readonly adapterHost: HttpAdapterHost,
  ) {}

  catch(exception: unknown, host: ArgumentsHost): unknown {
    if (exception instanceof AmasResponseSent) return undefined;
    // Outside HTTP: microservices expect an erroring Observable; GraphQL and others take the error back.
    if (host.getType() === 'rpc') return throwError(() => exception);
    if (host.getType() !== 'http') return exception;
    const res = host.switchToHttp().getResponse<PlatformResponse>();
    if (exception instanceof AmasHttpException) {
      this.send(res, exception.rejection);
      exception.ticket?.finish({ status: exception.rejection.status, error: exception.rejection.error });
      return undefined;
    }
    const rejection = this.amas.http.rejectionFor(exception)!;
    // Lets the breaker watching this route tell AMAS's own 503/429 from an upstream failure.
    recordResponseError(rawResponse(res), exception);
    this.send(res, rejection);
    return undefined;
  }

  /** Through the framework's own reply (keeps its hooks and headers); JSON-encoded here so both platforms send the same bytes. */
  private send(res: PlatformResponse, rejection: Rejection): void {
    const adapter = this.adapterHost?.httpAdapter;
    if (!adapter) return writeRejection(rawResponse(res), rejection);
    if (adapter.isHeadersSent(res)) {
      adapter.end(res);
      return;
    }
    for (const name in rejection.headers) adapter.setHeader(res, name, rejection.headers[name]!);
    adapter.setHeader(res, 'content-type', REJECTION_CONTENT_TYPE);
    // A string (not an object or Buffer): sent as is by both Express and Fastify, never re-serialised.
    adapter.reply(res, rejectionJson(rejection), rejection.status);
  }
}
