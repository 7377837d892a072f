import {
  Inject,
  Injectable,
  Module,
  type DynamicModule,
  type FactoryProvider,
  type ModuleMetadata,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
  type Provider,
} from '@nestjs/common';
import { APP_FILTER, APP_GUARD, APP_INTERCEPTOR, DiscoveryModule } from '@nestjs/core';
import { InvalidOptionError, describeValue, isAmas, resolveAmas, type Amas, type AmasOptions } from '@amas/core';
import { AMAS, AMAS_HANDLE } from './constants.js';
import { AmasExceptionFilter } from './amas-exception.filter.js';
import { AmasGuard } from './amas.guard.js';
import { AmasAiHandler } from './ai-handler.js';
import { AmasResponseInterceptor } from './response.interceptor.js';
import { AmasExplorer } from './explorer.js';
import { createAmasMetricsController } from './metrics.controller.js';
import { AmasRouteRegistry } from './route-registry.js';

/** Options (an instance owned and closed by the module), or a shared instance (never closed by it). */
export type AmasModuleInput = AmasOptions | Amas | { instance: Amas };

export interface AmasModuleOptions {
  /** Register AmasGuard globally (APP_GUARD). Default true; false to place it yourself after auth guards. */
  guard?: boolean;
  /** Register AmasExceptionFilter globally (APP_FILTER). Default true. */
  filter?: boolean;
  /**
   * Register AmasResponseInterceptor globally (APP_INTERCEPTOR): the response cache, compression and fields
   * of `@Cached()` routes, run after every guard. Default true.
   */
  interceptor?: boolean;
  /** Serve Prometheus metrics at `GET /<metricsPath>` (e.g. 'metrics'). Default: not served. */
  metricsPath?: string;
}

export interface AmasModuleAsyncOptions extends AmasModuleOptions {
  imports?: ModuleMetadata['imports'];
  inject?: FactoryProvider['inject'];
  useFactory: (...args: any[]) => AmasModuleInput | Promise<AmasModuleInput>;
}

/** @internal */
export interface AmasHandle {
  amas: Amas;
  owned: boolean;
}

const WHERE = 'AmasModule options';

/** Connects the shared store (if any) at bootstrap; closes the instance on shutdown when the module created it. */
@Injectable()
export class AmasLifecycle implements OnApplicationBootstrap, OnApplicationShutdown {
  constructor(@Inject(AMAS_HANDLE) private readonly handle: AmasHandle) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.handle.amas.warmUp();
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.handle.owned) await this.handle.amas.close();
  }
}

/**
 * AMAS for NestJS (Express or Fastify). Global: inject the engine anywhere with `@InjectAmas()`.
 * Options are validated when the application is created: a bad one fails bootstrap with InvalidOptionError.
 */
@Module({})
export class AmasModule {
  static forRoot(input?: AmasModuleInput, moduleOptions: AmasModuleOptions = {}): DynamicModule {
    return AmasModule.build(moduleOptions, [], { provide: AMAS_HANDLE, useFactory: () => toHandle(input) });
  }

  static forRootAsync(options: AmasModuleAsyncOptions): DynamicModule {
    if (typeof options?.useFactory !== 'function') {
      throw new InvalidOptionError([{ path: 'useFactory', received: describeValue(options?.useFactory), expected: 'a function' }], 'AmasModule.forRootAsync options');
    }
    const { imports = [], inject = [], useFactory, ...moduleOptions } = options;
    return AmasModule.build(moduleOptions, imports, {
      provide: AMAS_HANDLE,
      useFactory: async (...args: unknown[]) => toHandle(await useFactory(...args)),
      inject,
    });
  }

  private static build(moduleOptions: AmasModuleOptions, imports: NonNullable<ModuleMetadata['imports']>, handle: FactoryProvider): DynamicModule {
    const { guard = true, filter = true, interceptor = true, metricsPath } = checkModuleOptions(moduleOptions);
    const providers: Provider[] = [
      handle,
      { provide: AMAS, useFactory: (h: AmasHandle) => h.amas, inject: [AMAS_HANDLE] },
      AmasLifecycle,
      AmasRouteRegistry,
      AmasExplorer,
      AmasGuard,
      AmasExceptionFilter,
      AmasResponseInterceptor,
      AmasAiHandler,
    ];
    if (guard) providers.push({ provide: APP_GUARD, useExisting: AmasGuard });
    if (filter) providers.push({ provide: APP_FILTER, useExisting: AmasExceptionFilter });
    if (interceptor) providers.push({ provide: APP_INTERCEPTOR, useExisting: AmasResponseInterceptor });
    return {
      module: AmasModule,
      global: true,
      imports: [DiscoveryModule, ...imports],
      controllers: metricsPath === undefined ? [] : [createAmasMetricsController(metricsPath)],
      providers,
      exports: [AMAS, AmasRouteRegistry, AmasGuard, AmasExceptionFilter, AmasResponseInterceptor, AmasAiHandler],
    };
  }
}

function toHandle(input: unknown): AmasHandle {
  if (typeof input === 'object' && input !== null && !isAmas(input) && 'instance' in input) {
    const { instance, ...rest } = input as { instance: unknown } & Record<string, unknown>;
    if (!isAmas(instance)) {
      throw new InvalidOptionError([{ path: 'instance', received: describeValue(instance), expected: 'an Amas instance (createAmas())' }], WHERE);
    }
    const extra = Object.keys(rest);
    if (extra.length > 0) {
      throw new InvalidOptionError([{ path: extra[0]!, received: describeValue(rest[extra[0]!]), expected: 'nothing next to `instance` (configure the instance itself)' }], WHERE);
    }
    return { amas: instance, owned: false };
  }
  return resolveAmas(input as AmasOptions | Amas | undefined);
}

function checkModuleOptions(options: unknown): AmasModuleOptions {
  if (options === undefined) return {};
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionError([{ path: '', received: describeValue(options), expected: 'an object' }], 'AmasModule module options');
  }
  for (const [key, value] of Object.entries(options)) {
    if (key !== 'guard' && key !== 'filter' && key !== 'interceptor' && key !== 'metricsPath') {
      throw new InvalidOptionError([{ path: key, received: describeValue(value), expected: 'one of guard, filter, interceptor, metricsPath' }], 'AmasModule module options');
    }
    if (key === 'metricsPath') {
      if (value !== undefined && (typeof value !== 'string' || value.trim() === '')) {
        throw new InvalidOptionError([{ path: key, received: describeValue(value), expected: 'a non-empty path string' }], 'AmasModule module options');
      }
    } else if (value !== undefined && typeof value !== 'boolean') {
      throw new InvalidOptionError([{ path: key, received: describeValue(value), expected: 'boolean' }], 'AmasModule module options');
    }
  }
  return options as AmasModuleOptions;
}
