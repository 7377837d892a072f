/** Small helpers shared by the core test files. */
import { expect } from 'vitest';
import { InvalidOptionError } from '../src/errors.js';

/** The error `fn` throws synchronously; fails the test when it does not throw. */
export function errorOf<E = InvalidOptionError>(fn: () => unknown): E {
  try {
    fn();
  } catch (error) {
    return error as E;
  }
  throw new Error('expected a throw');
}

/** Like errorOf, and asserts the error is an InvalidOptionError; `label` names the case when it is not. */
export function invalidOption(fn: () => unknown, label?: string): InvalidOptionError {
  const error = errorOf<unknown>(fn);
  expect(error, label).toBeInstanceOf(InvalidOptionError);
  return error as InvalidOptionError;
}

/** The seeded PRNG from src (mulberry32), so jitter and property tests are reproducible. Returns [0, 1). */
export { seededRandom } from '../src/util/seeded-random.js';

/** A promise with its resolve and reject in hand, for tests that decide when work finishes. */
export function deferred<T = string>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (error: unknown) => void } {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** The outcome of a promise as a value (never rejects), to assert on errors among many results. */
export function settle<T>(promise: Promise<T>): Promise<{ value?: T; error?: unknown }> {
  return promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
}
