/** Row 1: circuit breaker, closed, every call succeeds. Baseline: a bare `await work()` loop. */
import { CircuitBreaker } from '@amas/core';
import { circuitBreaker, ConsecutiveBreaker, handleAll } from 'cockatiel';
import Opossum from 'opossum';
import { runMicro } from '../lib/micro-harness.mjs';

async function work() {
  return 1;
}

/** Every variant sums the results; verify() checks that each call really returned 1. */
function variant(call) {
  let sum = 0;
  return {
    async run(n) {
      for (let i = 0; i < n; i++) sum += await call();
    },
    verify: (calls) => (sum === calls ? undefined : `expected ${calls} successes, got ${sum}`),
  };
}

await runMicro('breaker-closed', {
  baseline: () => variant(work),
  amas: () => {
    const breaker = new CircuitBreaker({ failureThreshold: 5, recoveryTimeoutMs: 30_000 });
    return variant(() => breaker.execute(work));
  },
  cockatiel: () => {
    const policy = circuitBreaker(handleAll, { halfOpenAfter: 30_000, breaker: new ConsecutiveBreaker(5) });
    return variant(() => policy.execute(work));
  },
  opossum: () => {
    // timeout: false because the other breakers do not time calls out either (opossum's default arms a
    // 10 s timer per call, which would only make it slower).
    const breaker = new Opossum(work, { timeout: false, resetTimeout: 30_000 });
    return variant(() => breaker.fire());
  },
});
