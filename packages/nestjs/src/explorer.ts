import { Inject, Injectable, Logger, type OnModuleInit } from '@nestjs/common';
import { DiscoveryService, MetadataScanner, ModulesContainer } from '@nestjs/core';
import type { InstanceWrapper } from '@nestjs/core/injector/instance-wrapper.js';
import type { Amas } from '@amas/core';
import { AMAS, NEST_METHOD_METADATA, NEST_MODULE_PATH, NEST_PATH_METADATA } from './constants.js';
import { hasProviderPolicies, wrapProviderMethod } from './provider-methods.js';
import { AmasRouteRegistry } from './route-registry.js';

/**
 * At module init: compiles the AMAS options of every controller route (a bad option fails start-up, not a
 * request), and wraps decorated methods of singleton (and static transient) providers. Request-scoped
 * providers are skipped with a warning: they are built per request, after this runs.
 */
@Injectable()
export class AmasExplorer implements OnModuleInit {
  private readonly logger = new Logger('AmasModule');
  private readonly wrapped = new WeakSet<object>();

  constructor(
    @Inject(AMAS) private readonly amas: Amas,
    @Inject(DiscoveryService) private readonly discovery: DiscoveryService,
    @Inject(MetadataScanner) private readonly scanner: MetadataScanner,
    @Inject(ModulesContainer) private readonly modules: ModulesContainer,
    @Inject(AmasRouteRegistry) private readonly routes: AmasRouteRegistry,
  ) {}

  onModuleInit(): void {
    this.compileRoutes();
    this.wrapProviders();
  }

  private compileRoutes(): void {
    for (const wrapper of this.discovery.getControllers()) {
      const controller = wrapper.metatype as (new (...args: unknown[]) => unknown) | undefined;
      if (typeof controller !== 'function' || !controller.prototype) continue;
      const modulePath = this.modulePathOf(wrapper);
      const prototype = controller.prototype as Record<string, unknown>;
      for (const name of this.scanner.getAllMethodNames(prototype)) {
        const handler = prototype[name];
        if (typeof handler !== 'function') continue;
        if (Reflect.getMetadata(NEST_PATH_METADATA, handler) === undefined || Reflect.getMetadata(NEST_METHOD_METADATA, handler) === undefined) continue;
        this.routes.compile(controller, handler, modulePath);
      }
    }
  }

  private wrapProviders(): void {
    for (const wrapper of this.discovery.getProviders()) {
      if (wrapper.isAlias) continue;
      const instances = this.instancesOf(wrapper);
      if (instances === undefined) {
        if (this.hasPolicies((wrapper.metatype as { prototype?: object } | null)?.prototype)) {
          this.logger.warn(`${String(wrapper.name)} is request-scoped: its AMAS method decorators are not applied`);
        }
        continue;
      }
      for (const instance of instances) {
        if (this.wrapped.has(instance)) continue;
        this.wrapped.add(instance);
        const label = instance.constructor?.name || String(wrapper.name);
        for (const name of this.scanner.getAllMethodNames(Object.getPrototypeOf(instance))) {
          if (hasProviderPolicies((instance as Record<string, unknown>)[name])) wrapProviderMethod(this.amas, instance, name, `${label}.${name}`);
        }
      }
    }
  }

  /** The live instances of a provider; undefined when it is built per request. */
  private instancesOf(wrapper: InstanceWrapper): object[] | undefined {
    if (!wrapper.isDependencyTreeStatic()) return undefined;
    const list = wrapper.isTransient
      ? wrapper.getStaticTransientInstances().map((entry) => entry?.instance as unknown)
      : [wrapper.instance as unknown];
    return list.filter((i): i is object => typeof i === 'object' && i !== null);
  }

  private hasPolicies(prototype: object | undefined): boolean {
    if (!prototype) return false;
    return this.scanner.getAllMethodNames(prototype).some((name) => hasProviderPolicies((prototype as Record<string, unknown>)[name]));
  }

  /** The RouterModule path of the controller's module, if any. */
  private modulePathOf(wrapper: InstanceWrapper): string | undefined {
    const moduleClass = wrapper.host?.metatype;
    if (!moduleClass) return undefined;
    const path: unknown =
      Reflect.getMetadata(NEST_MODULE_PATH + this.modules.applicationId, moduleClass) ?? Reflect.getMetadata(NEST_MODULE_PATH, moduleClass);
    return typeof path === 'string' ? path : undefined;
  }
}
