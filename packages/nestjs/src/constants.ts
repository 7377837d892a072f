/** Injection token of the Amas instance: `constructor(@Inject(AMAS) amas: Amas)` or `@InjectAmas()`. */
export const AMAS = Symbol.for('@amas/nestjs:amas');

/** @internal The resolved instance plus whether the module owns (and so closes) it. */
export const AMAS_HANDLE = Symbol.for('@amas/nestjs:handle');

/** Metadata keys written by the decorators (on the class, or on the method function). */
export const AMAS_ROUTE_METADATA = 'amas:route';
export const AMAS_BREAKER_METADATA = 'amas:breaker';
export const AMAS_LIMIT_METADATA = 'amas:limit';
export const AMAS_DEDUP_METADATA = 'amas:dedup';
export const AMAS_SKIP_METADATA = 'amas:skip';
export const AMAS_CACHE_METADATA = 'amas:cache';
export const AMAS_SEMANTIC_CACHE_METADATA = 'amas:semantic-cache';

/** Nest's own metadata keys (stable since Nest 6; copied to avoid deep imports into @nestjs/common). */
export const NEST_PATH_METADATA = 'path';
export const NEST_METHOD_METADATA = 'method';
export const NEST_MODULE_PATH = '__module_path__';
