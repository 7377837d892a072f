/**
 * What a typed cache validates values with on read: a Standard Schema (zod 3.24+/4, valibot, arktype), any
 * object with zod's `safeParse`, or a type guard. A stored value that no longer fits (an older deployment
 * wrote another shape) is treated as a miss.
 */
export type CacheSchema<T> =
  | { readonly '~standard': { validate(value: unknown): StandardResult<T> | Promise<StandardResult<T>> } }
  | { safeParse(value: unknown): { success: true; data: T } | { success: false } }
  | ((value: unknown) => value is T)
  | ((value: unknown) => boolean);

type StandardResult<T> = { value: T; issues?: undefined } | { issues: ReadonlyArray<unknown> };

export type Validated<T> = { ok: true; value: T } | { ok: false };

const INVALID: Validated<never> = { ok: false };

export function isCacheSchema(value: unknown): value is CacheSchema<unknown> {
  if (typeof value === 'function') return true;
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (typeof v['~standard'] === 'object' && v['~standard'] !== null) || typeof v.safeParse === 'function';
}

/** Never throws: a schema that throws counts as "does not fit". */
export function validateWith<T>(schema: CacheSchema<T>, value: unknown): Validated<T> | Promise<Validated<T>> {
  try {
    if (typeof schema === 'function') return (schema as (v: unknown) => boolean)(value) ? { ok: true, value: value as T } : INVALID;
    if ('~standard' in schema) {
      const result = schema['~standard'].validate(value);
      if (result instanceof Promise) return result.then(fromStandard, () => INVALID);
      return fromStandard(result);
    }
    const parsed = schema.safeParse(value);
    return parsed.success ? { ok: true, value: parsed.data } : INVALID;
  } catch {
    return INVALID;
  }
}

function fromStandard<T>(result: StandardResult<T>): Validated<T> {
  return result.issues === undefined ? { ok: true, value: (result as { value: T }).value } : INVALID;
}
