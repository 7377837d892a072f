/**
 * Row 3: in-memory rate-limit decision, limit high enough never to deny, keys cycling over 1024 callers.
 * Baseline: a bare Map get+set counter compared against the limit (the least a per-key limiter can do).
 */
import { createLimiter } from '@amas/core';
import { RateLimiterMemory } from 'rate-limiter-flexible';
import { runMicro } from '../lib/micro-harness.mjs';

const LIMIT = 1_000_000_000;
const KEYS = Array.from({ length: 1024 }, (_, i) => `ip:10.0.${i >> 8}.${i & 255}`);
const MASK = KEYS.length - 1;

function verifyDenied(getDenied) {
  return () => {
    const denied = getDenied();
    return denied === 0 ? undefined : `${denied} calls were denied (limit should never be reached)`;
  };
}

/** The boolean decision (`tryAcquire`): what a caller that only branches on the answer calls. */
function syncLimiter(limiter) {
  let denied = 0;
  return {
    run(n) {
      for (let i = 0; i < n; i++) if (!limiter.tryAcquire(KEYS[i & MASK], 1)) denied++;
    },
    verify: verifyDenied(() => denied),
    close: () => limiter.close(),
  };
}

/** The decision with its per-window report (`check`): what the HTTP layer calls to set rate-limit headers. */
function reportingLimiter(limiter) {
  let denied = 0;
  return {
    run(n) {
      for (let i = 0; i < n; i++) if (!limiter.check(KEYS[i & MASK], 1).allowed) denied++;
    },
    verify: verifyDenied(() => denied),
    close: () => limiter.close(),
  };
}

const slidingWindow = () => createLimiter({ limit: LIMIT, window: '1m' });
const tokenBucket = () => createLimiter({ algorithm: 'token-bucket', capacity: LIMIT, refillPerSecond: LIMIT / 60 });

await runMicro('limiter', {
  baseline: () => {
    const counts = new Map();
    let denied = 0;
    return {
      run(n) {
        for (let i = 0; i < n; i++) {
          const key = KEYS[i & MASK];
          const used = (counts.get(key) ?? 0) + 1;
          counts.set(key, used);
          if (used > LIMIT) denied++;
        }
      },
      verify: verifyDenied(() => denied),
    };
  },
  'amas-sliding-window': () => syncLimiter(slidingWindow()),
  'amas-token-bucket': () => syncLimiter(tokenBucket()),
  'amas-sliding-window-check': () => reportingLimiter(slidingWindow()),
  'amas-token-bucket-check': () => reportingLimiter(tokenBucket()),
  'rate-limiter-flexible': () => {
    // Its API is promise-based (consume resolves, or rejects with a RateLimiterRes when denied): await each.
    const limiter = new RateLimiterMemory({ points: LIMIT, duration: 60 });
    let denied = 0;
    return {
      async run(n) {
        for (let i = 0; i < n; i++) {
          try {
            await limiter.consume(KEYS[i & MASK], 1);
          } catch {
            denied++;
          }
        }
      },
      verify: verifyDenied(() => denied),
    };
  },
});
