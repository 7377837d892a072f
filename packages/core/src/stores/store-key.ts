import { InvalidOptionError } from '../errors.js';

/** Default key prefix: every key and channel AMAS writes starts with it. */
export const DEFAULT_STORE_PREFIX = 'amas:';

/**
 * `<prefix>{<tag>}:<rest>`: Redis Cluster hashes only the part between the first `{` and the next `}`, so
 * every key built with the same tag lands in one slot and one script may touch all of them.
 */
export function storeKey(prefix: string, tag: string, rest: readonly string[]): string {
  let key = `${prefix}{${tag}}`;
  for (const part of rest) key += `:${part}`;
  return key;
}

/** A prefix with a brace would put its own hash tag on every key (one hot slot), so it is refused. */
export function validatePrefix(prefix: unknown, where: string): string {
  if (prefix === undefined) return DEFAULT_STORE_PREFIX;
  if (typeof prefix !== 'string' || /[{}\s]/.test(prefix)) {
    throw new InvalidOptionError(
      [{ path: 'prefix', received: JSON.stringify(prefix), expected: 'a string without braces or whitespace (e.g. "myapp:amas:")' }],
      where,
    );
  }
  return prefix;
}
