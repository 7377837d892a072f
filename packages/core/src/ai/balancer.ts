/**
 * Endpoint balancing: which of a model's eligible endpoints (not ejected, breaker not open, healthy) takes
 * the next call. The router filters eligibility; a strategy only chooses among what it is handed, so every
 * strategy sees the same view and none of them needs to know why an endpoint is missing.
 *
 * - `round-robin`: the next endpoint in configuration order after the last one picked (exact rotation; an
 *   endpoint that drops out and comes back keeps its place in the ring).
 * - `weighted`: smooth weighted round-robin (nginx): proportional to `weight`, interleaved rather than bursty.
 * - `least-outstanding`: fewest calls in flight per unit of weight; ties rotate.
 * - `latency-aware`: power of two choices over an EWMA of latency x (outstanding + 1) / weight (peak-EWMA style,
 *   as in Finagle and Linkerd). The EWMA an endpoint is judged by decays while it gets no traffic, so a once-slow
 *   endpoint is re-tried now and then instead of being starved for ever.
 */

export const BALANCING_STRATEGIES = ['round-robin', 'weighted', 'least-outstanding', 'latency-aware'] as const;
export type BalancingStrategy = (typeof BALANCING_STRATEGIES)[number];

/** What a strategy knows about one eligible endpoint. */
export interface BalancerCandidate {
  /** Position of the endpoint in its group's configuration (stable for the group's lifetime). */
  readonly index: number;
  readonly id: string;
  /** > 0. */
  readonly weight: number;
  /** Calls in flight on this endpoint (streams count until their body ends). */
  readonly outstanding: number;
  /** Latency estimate (decayed EWMA), ms; undefined before the first sample. */
  readonly latencyMs: number | undefined;
}

export interface Balancer {
  readonly strategy: BalancingStrategy;
  /** One of `candidates`, or undefined when it is empty. Never mutates the array. */
  pick<C extends BalancerCandidate>(candidates: readonly C[]): C | undefined;
}

export interface BalancerOptions {
  /** Randomness in [0, 1) for `latency-aware` (power of two choices). Default Math.random. */
  random?: () => number;
}

/** A fresh (stateful) balancer: one per model group. */
export function createBalancer(strategy: BalancingStrategy, options: BalancerOptions = {}): Balancer {
  switch (strategy) {
    case 'round-robin':
      return new RoundRobinBalancer();
    case 'weighted':
      return new WeightedBalancer();
    case 'least-outstanding':
      return new LeastOutstandingBalancer();
    case 'latency-aware':
      return new LatencyAwareBalancer(options.random ?? Math.random);
    default:
      throw new TypeError(`Unknown balancing strategy ${JSON.stringify(strategy)}`);
  }
}

/**
 * The candidate after `last` in index order (wrapping), among those for which `accept` holds. Used by
 * round-robin and as the tie-breaker of least-outstanding, so equal endpoints share the load evenly.
 */
function nextAfter<C extends BalancerCandidate>(candidates: readonly C[], last: number, accept: (c: C) => boolean): C | undefined {
  let after: C | undefined;
  let first: C | undefined;
  for (const c of candidates) {
    if (!accept(c)) continue;
    if (first === undefined || c.index < first.index) first = c;
    if (c.index > last && (after === undefined || c.index < after.index)) after = c;
  }
  return after ?? first;
}

const always = (): boolean => true;

export class RoundRobinBalancer implements Balancer {
  readonly strategy = 'round-robin' as const;
  private last = -1;

  pick<C extends BalancerCandidate>(candidates: readonly C[]): C | undefined {
    const chosen = nextAfter(candidates, this.last, always);
    if (chosen !== undefined) this.last = chosen.index;
    return chosen;
  }
}

/**
 * Smooth weighted round-robin (nginx's `ngx_http_upstream_get_peer`): every pick adds each candidate's weight
 * to its running score, takes the highest, and subtracts the total from it. Weights 5:1:1 give
 * a a b a c a a rather than a a a a a b c. Only candidates take part, so an ejected endpoint neither gains nor
 * loses credit while it is out.
 */
export class WeightedBalancer implements Balancer {
  readonly strategy = 'weighted' as const;
  private readonly current = new Map<number, number>();

  pick<C extends BalancerCandidate>(candidates: readonly C[]): C | undefined {
    let total = 0;
    let best: C | undefined;
    let bestScore = -Infinity;
    for (const c of candidates) {
      const score = (this.current.get(c.index) ?? 0) + c.weight;
      this.current.set(c.index, score);
      total += c.weight;
      if (score > bestScore) {
        best = c;
        bestScore = score;
      }
    }
    if (best !== undefined) this.current.set(best.index, bestScore - total);
    return best;
  }
}

/** Fewest outstanding calls per unit of weight; equal loads rotate in index order. */
export class LeastOutstandingBalancer implements Balancer {
  readonly strategy = 'least-outstanding' as const;
  private last = -1;

  pick<C extends BalancerCandidate>(candidates: readonly C[]): C | undefined {
    let min = Infinity;
    for (const c of candidates) min = Math.min(min, load(c));
    const chosen = nextAfter(candidates, this.last, (c) => load(c) === min);
    if (chosen !== undefined) this.last = chosen.index;
    return chosen;
  }
}

function load(c: BalancerCandidate): number {
  return (c.outstanding + 1) / c.weight;
}

/**
 * Power of two choices: draw two distinct candidates at random and keep the cheaper, cost being
 * latency x (outstanding + 1) / weight. Cheaper than a full scan to reason about under churn, and it avoids the
 * herd behaviour of always sending everything to the single best endpoint. An endpoint without a latency sample
 * yet costs 0, so new (or just returned) endpoints get traffic and are measured.
 */
export class LatencyAwareBalancer implements Balancer {
  readonly strategy = 'latency-aware' as const;

  constructor(private readonly random: () => number) {}

  pick<C extends BalancerCandidate>(candidates: readonly C[]): C | undefined {
    const n = candidates.length;
    if (n <= 1) return candidates[0];
    const i = Math.min(n - 1, Math.floor(this.random() * n));
    let j = Math.min(n - 2, Math.floor(this.random() * (n - 1)));
    if (j >= i) j++;
    const a = candidates[i];
    const b = candidates[j];
    const ca = cost(a);
    const cb = cost(b);
    if (ca !== cb) return ca < cb ? a : b;
    return b.outstanding < a.outstanding ? b : a;
  }
}

function cost(c: BalancerCandidate): number {
  return ((c.latencyMs ?? 0) * (c.outstanding + 1)) / c.weight;
}

export interface LatencyEwmaOptions {
  /** Weight of a new sample, 0 < alpha <= 1. Default 0.3. */
  alpha?: number;
  /**
   * Time constant (ms) of the decay of the estimate while no sample arrives: after `decayMs` without traffic
   * the estimate used for choosing is e^-1 of the measured one. 0 turns the decay off. Default 30 000.
   */
  decayMs?: number;
}

/**
 * Exponentially weighted moving average of one endpoint's latency. `value` is the measured average;
 * `estimate(now)` is what balancing uses: the average decayed toward 0 by the time since the last sample.
 */
export class LatencyEwma {
  private readonly alpha: number;
  private readonly decayMs: number;
  private current: number | undefined;
  private at = 0;

  constructor(options: LatencyEwmaOptions = {}) {
    this.alpha = options.alpha ?? 0.3;
    this.decayMs = options.decayMs ?? 30_000;
  }

  /** The measured average (ms), undefined before the first sample. */
  get value(): number | undefined {
    return this.current;
  }

  record(sampleMs: number, now: number): void {
    const sample = Number.isFinite(sampleMs) && sampleMs > 0 ? sampleMs : 0;
    this.current = this.current === undefined ? sample : this.current + this.alpha * (sample - this.current);
    this.at = now;
  }

  /**
   * A failure of the endpoint itself (5xx, network, timeout): counts as a sample of at least twice the
   * current average, so an endpoint that fails fast does not look fast.
   */
  penalize(latencyMs: number, now: number): void {
    const base = this.current ?? latencyMs;
    this.record(Math.max(latencyMs, 2 * base, 1), now);
  }

  estimate(now: number): number | undefined {
    if (this.current === undefined) return undefined;
    const idle = now - this.at;
    if (idle <= 0 || this.decayMs === 0) return this.current;
    return this.current * Math.exp(-idle / this.decayMs);
  }
}
