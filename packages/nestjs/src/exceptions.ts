import { HttpException } from '@nestjs/common';
import type { Rejection, RequestTicket } from '@amas/core';

/**
 * A 429/503 rejection on its way to `AmasExceptionFilter`, which sends exactly its status, headers and JSON
 * body. It is an HttpException, so even without the filter Nest answers with the right status and body.
 */
export class AmasHttpException extends HttpException {
  constructor(
    readonly rejection: Rejection,
    /** @internal The pipeline ticket to finish once the rejection is sent. */
    readonly ticket?: RequestTicket,
  ) {
    super(rejection.body as Record<string, unknown>, rejection.status, { cause: rejection.error });
  }
}

/**
 * @internal Thrown by the guard after it wrote a dedup follower's shared response itself: stops the handler.
 * The filter ignores it (the response is complete).
 */
export class AmasResponseSent extends Error {
  constructor() {
    super('AMAS already sent this response (a shared dedup response)');
    this.name = 'AmasResponseSent';
  }
}
