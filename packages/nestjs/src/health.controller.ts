import { Controller, Get, Inject, Res, type Type } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { healthResponse, parseHealthOptions, type Amas, type CheckHealthOptions } from '@amas/core';
import { AMAS } from './constants.js';
import { SkipAmas } from './decorators.js';

/**
 * A controller for Kubernetes probes at `GET /<path>/live` and `GET /<path>/ready` (on Express and Fastify):
 * the JSON report of `checkHealth`, 200 for ok and degraded, 503 for down. List it in a module next to
 * `AmasModule.forRoot(...)`: `controllers: [createAmasHealthController('health', { required: ['redis'] })]`.
 * Probes skip AMAS's limits and breakers. Options are validated now: a typo fails at start-up.
 */
export function createAmasHealthController(path = 'health', options: Omit<CheckHealthOptions, 'kind'> = {}): Type<unknown> {
  const live = parseHealthOptions({ ...options, kind: 'live' }, 'createAmasHealthController options');
  const ready = parseHealthOptions({ ...options, kind: 'ready' }, 'createAmasHealthController options');

  @Controller(path)
  @SkipAmas()
  class AmasHealthController {
    constructor(
      @Inject(AMAS) private readonly amas: Amas,
      @Inject(HttpAdapterHost) private readonly adapterHost: HttpAdapterHost,
    ) {}

    @Get('live')
    async live(@Res() res: unknown): Promise<void> {
      await this.answer(res, live);
    }

    @Get('ready')
    async ready(@Res() res: unknown): Promise<void> {
      await this.answer(res, ready);
    }

    /** Written through the platform adapter: Nest would otherwise answer every GET with 200. */
    private async answer(res: unknown, options: CheckHealthOptions): Promise<void> {
      const { statusCode, headers, body } = await healthResponse(this.amas, options);
      const adapter = this.adapterHost.httpAdapter;
      for (const [name, value] of Object.entries(headers)) adapter.setHeader(res, name, value);
      adapter.reply(res, body, statusCode);
    }
  }
  return AmasHealthController;
}
