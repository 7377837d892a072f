import { Controller, Get, Inject, Res, type Type } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { Amas } from '@amas/core';
import { AMAS } from './constants.js';
import { SkipAmas } from './decorators.js';

/**
 * A controller serving the instance's Prometheus metrics at `GET /<path>` (on Express and Fastify). AmasModule
 * adds it when given `metricsPath`; or list `createAmasMetricsController('metrics')` in your own module.
 */
export function createAmasMetricsController(path = 'metrics'): Type<unknown> {
  @Controller(path)
  @SkipAmas()
  class AmasMetricsController {
    constructor(
      @Inject(AMAS) private readonly amas: Amas,
      @Inject(HttpAdapterHost) private readonly adapterHost: HttpAdapterHost,
    ) {}

    @Get()
    async metrics(@Res({ passthrough: true }) res: unknown): Promise<string> {
      const { contentType, body } = await this.amas.metrics.expose();
      this.adapterHost.httpAdapter.setHeader(res, 'content-type', contentType);
      return body;
    }
  }
  return AmasMetricsController;
}
