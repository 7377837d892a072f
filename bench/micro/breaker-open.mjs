/**
 * Row 2: circuit breaker, open: every call fails fast without running the work.
 * Baseline: `await Promise.reject(prebuilt)` caught (the cheapest possible rejection).
 */
import { BreakerOpenError, CircuitBreaker } from '@amas/core';
import { BrokenCircuitError, circuitBreaker, ConsecutiveBreaker, handleAll } from 'cockatiel';
import Opossum from 'opossum';
import { runMicro } from '../lib/micro-harness.mjs';

let workRan = 0;
async function work() {
  workRan++;
  return 1;
}

/** Every variant catches; verify() checks that every call was rejected with the expected error and none ran. */
function variant(call, isExpected) {
  let caught = 0;
  let wrong = 0;
  return {
    async run(n) {
      for (let i = 0; i < n; i++) {
        try {
          await call();
        } catch (error) {
          caught++;
          if (!isExpected(error)) wrong++;
        }
      }
    },
    verify: (calls) => {
      if (caught !== calls) return `expected ${calls} rejections, got ${caught}`;
      if (wrong > 0) return `${wrong} rejections had an unexpected error type`;
      if (workRan > 0) return `the work ran ${workRan} times through an open breaker`;
      return undefined;
    },
  };
}

const prebuilt = new Error('prebuilt');

await runMicro('breaker-open', {
  baseline: () => variant(() => Promise.reject(prebuilt), (e) => e === prebuilt),
  amas: () => {
    const breaker = new CircuitBreaker({ failureThreshold: 5, recoveryTimeoutMs: 600_000 });
    breaker.open();
    return variant(() => breaker.execute(work), (e) => e instanceof BreakerOpenError);
  },
  cockatiel: async () => {
    const policy = circuitBreaker(handleAll, { halfOpenAfter: 600_000, breaker: new ConsecutiveBreaker(5) });
    // Open it the way production does: five consecutive failures.
    for (let i = 0; i < 5; i++) await policy.execute(() => Promise.reject(prebuilt)).catch(() => {});
    return variant(() => policy.execute(work), (e) => e instanceof BrokenCircuitError);
  },
  opossum: () => {
    const breaker = new Opossum(work, { timeout: false, resetTimeout: 600_000 });
    breaker.open();
    return variant(() => breaker.fire(), (e) => e?.code === 'EOPENBREAKER');
  },
});
