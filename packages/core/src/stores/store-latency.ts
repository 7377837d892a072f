/** Command latency histogram bounds (ms) a store keeps for health and the Prometheus histogram. */
export const STORE_LATENCY_BUCKETS_MS: readonly number[] = [0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000];
