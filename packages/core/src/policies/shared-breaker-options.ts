import { z } from 'zod';
import { MAX_TIMER_MS } from '../options/validate.js';

/**
 * The per-breaker `shared` option. Kept apart from shared-breaker.ts so circuit-breaker.ts can validate it
 * without importing the sync machinery (which imports circuit-breaker.ts).
 */
export interface SharedBreakerSettings {
  /**
   * How long a half-open probe may hold its cluster-wide slot before the slot frees itself (a replica that
   * died mid-probe must not block recovery). Make it longer than the upstream call's timeout. Default 30_000.
   */
  probeLeaseMs?: number;
  /** Time to live of the shared state key, renewed on every transition. Default 86_400_000 (one day). */
  stateTtlMs?: number;
}

export type SharedBreakerSetting = boolean | SharedBreakerSettings;

// Integers: both become Redis PX arguments.
const ms = z.number().int().positive().max(MAX_TIMER_MS);

export const sharedBreakerSettingsSchema = z.strictObject({
  probeLeaseMs: ms.optional(),
  stateTtlMs: ms.optional(),
});

export const sharedBreakerSettingSchema = z.union([z.boolean(), sharedBreakerSettingsSchema], {
  error: 'true, false or { probeLeaseMs?, stateTtlMs? }',
});

export const DEFAULT_PROBE_LEASE_MS = 30_000;
export const DEFAULT_STATE_TTL_MS = 86_400_000;
