import { describe, expect, it } from 'vitest';
import {
  createBalancer,
  LatencyAwareBalancer,
  LatencyEwma,
  LeastOutstandingBalancer,
  RoundRobinBalancer,
  WeightedBalancer,
  type BalancerCandidate,
} from '../../src/ai/balancer.js';
import { seededRandom } from '../helpers.js';

interface Candidate extends BalancerCandidate {
  index: number;
  id: string;
  weight: number;
  outstanding: number;
  latencyMs: number | undefined;
}

function candidates(n: number, init: (i: number) => Partial<Candidate> = () => ({})): Candidate[] {
  return Array.from({ length: n }, (_, i) => ({ index: i, id: `e${i}`, weight: 1, outstanding: 0, latencyMs: undefined, ...init(i) }));
}

function counts(picks: Array<Candidate | undefined>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of picks) out[p!.id] = (out[p!.id] ?? 0) + 1;
  return out;
}

describe('round-robin', () => {
  it('rotates exactly in configuration order', () => {
    const b = new RoundRobinBalancer();
    const c = candidates(3);
    const picks = Array.from({ length: 300 }, () => b.pick(c));
    expect(picks.slice(0, 7).map((p) => p!.id)).toEqual(['e0', 'e1', 'e2', 'e0', 'e1', 'e2', 'e0']);
    expect(counts(picks)).toEqual({ e0: 100, e1: 100, e2: 100 });
  });

  it('skips an endpoint that is not eligible and gives it its place back when it returns', () => {
    const b = new RoundRobinBalancer();
    const all = candidates(3);
    expect(b.pick(all)!.id).toBe('e0');
    const without1 = [all[0], all[2]];
    expect([b.pick(without1)!.id, b.pick(without1)!.id, b.pick(without1)!.id]).toEqual(['e2', 'e0', 'e2']);
    // e1 is back: the ring continues after e2 at e0, then e1.
    expect([b.pick(all)!.id, b.pick(all)!.id, b.pick(all)!.id]).toEqual(['e0', 'e1', 'e2']);
  });

  it('returns undefined for no candidates and the only one for one', () => {
    const b = createBalancer('round-robin');
    expect(b.pick([])).toBeUndefined();
    const one = candidates(1);
    expect(b.pick(one)).toBe(one[0]);
    expect(b.pick(one)).toBe(one[0]);
  });
});

describe('weighted (smooth weighted round-robin)', () => {
  it('interleaves like nginx: weights 5, 1, 1 give a a b a c a a', () => {
    const b = new WeightedBalancer();
    const c = candidates(3, (i) => ({ id: ['a', 'b', 'c'][i], weight: [5, 1, 1][i] }));
    const seq = Array.from({ length: 14 }, () => b.pick(c)!.id).join(' ');
    expect(seq).toBe('a a b a c a a a a b a c a a');
  });

  it('is exactly proportional over whole cycles and within 1% for awkward weights', () => {
    const b = new WeightedBalancer();
    const c = candidates(3, (i) => ({ weight: [1, 2, 3][i] }));
    expect(counts(Array.from({ length: 600 }, () => b.pick(c)))).toEqual({ e0: 100, e1: 200, e2: 300 });

    const w = [0.7, 2.5, 1.3, 5.5];
    const total = w.reduce((a, x) => a + x, 0);
    const b2 = createBalancer('weighted');
    const c2 = candidates(4, (i) => ({ weight: w[i] }));
    const n = 10_000;
    const got = counts(Array.from({ length: n }, () => b2.pick(c2)));
    w.forEach((weight, i) => expect(Math.abs(got[`e${i}`] / n - weight / total)).toBeLessThan(0.01));
  });

  it('shares among the eligible ones while one is out, keeping the proportions of those left', () => {
    const b = new WeightedBalancer();
    const c = candidates(3, (i) => ({ weight: [1, 1, 2][i] }));
    const without0 = [c[1], c[2]];
    expect(counts(Array.from({ length: 300 }, () => b.pick(without0)))).toEqual({ e1: 100, e2: 200 });
  });
});

describe('least-outstanding', () => {
  it('avoids busy endpoints', () => {
    const b = new LeastOutstandingBalancer();
    const c = candidates(3, (i) => ({ outstanding: [4, 0, 2][i] }));
    for (let i = 0; i < 20; i++) expect(b.pick(c)!.id).toBe('e1');
  });

  it('rotates among equally loaded endpoints and tracks load as it changes', () => {
    const b = createBalancer('least-outstanding');
    const c = candidates(3);
    const picks: string[] = [];
    // Each pick starts a call that never ends: the load spreads evenly.
    for (let i = 0; i < 9; i++) {
      const p = b.pick(c)!;
      picks.push(p.id);
      p.outstanding++;
    }
    expect(counts(picks.map((id) => c.find((x) => x.id === id)))).toEqual({ e0: 3, e1: 3, e2: 3 });
    // Finished calls on e2 make it the choice.
    c[2].outstanding = 0;
    expect(b.pick(c)!.id).toBe('e2');
  });

  it('weighs load by weight', () => {
    const b = new LeastOutstandingBalancer();
    const c = candidates(2, (i) => ({ weight: [1, 4][i], outstanding: [1, 3][i] }));
    // (1+1)/1 = 2 against (3+1)/4 = 1: the heavier endpoint takes more concurrent calls.
    expect(b.pick(c)!.id).toBe('e1');
  });
});

describe('latency-aware (EWMA, power of two choices)', () => {
  it('prefers the fast endpoint and almost never picks the slowest', () => {
    const b = new LatencyAwareBalancer(seededRandom(7));
    const c = candidates(3, (i) => ({ latencyMs: [100, 10, 50][i] }));
    const n = 3000;
    const got = counts(Array.from({ length: n }, () => b.pick(c)));
    // The fastest wins every pair it is drawn into (2/3), the middle one wins only against the slowest.
    expect(got.e1 / n).toBeGreaterThan(0.6);
    expect(got.e2 / n).toBeGreaterThan(0.25);
    expect(got.e0 ?? 0).toBe(0);
  });

  it('counts outstanding calls: a fast endpoint with a queue loses to an idle slower one', () => {
    const b = new LatencyAwareBalancer(seededRandom(1));
    const c = candidates(2, (i) => ({ latencyMs: [10, 30][i], outstanding: [5, 0][i] }));
    // 10 x 6 = 60 against 30 x 1 = 30.
    expect(b.pick(c)!.id).toBe('e1');
  });

  it('tries endpoints without a sample first, and is deterministic for a seed', () => {
    const c = candidates(2, (i) => ({ latencyMs: [5, undefined][i] }));
    expect(new LatencyAwareBalancer(seededRandom(3)).pick(c)!.id).toBe('e1');
    const c4 = candidates(4, (i) => ({ latencyMs: [40, 10, 30, 20][i] }));
    const run = (seed: number) => {
      const b = new LatencyAwareBalancer(seededRandom(seed));
      return Array.from({ length: 50 }, () => b.pick(c4)!.id).join(',');
    };
    expect(run(11)).toBe(run(11));
  });
});

describe('LatencyEwma', () => {
  it('starts at the first sample and moves by alpha toward new ones', () => {
    const e = new LatencyEwma({ alpha: 0.5, decayMs: 0 });
    expect(e.value).toBeUndefined();
    expect(e.estimate(0)).toBeUndefined();
    e.record(100, 0);
    expect(e.value).toBe(100);
    e.record(200, 0);
    expect(e.value).toBe(150);
    e.record(50, 1_000_000);
    expect(e.value).toBe(100);
    // decayMs 0: no decay.
    expect(e.estimate(2_000_000)).toBe(100);
  });

  it('a failure counts as at least twice the current average', () => {
    const e = new LatencyEwma({ alpha: 0.5 });
    e.record(100, 0);
    e.penalize(1, 0);
    expect(e.value).toBe(150);
  });

  it('the estimate used for choosing decays while the endpoint gets no traffic; the average does not', () => {
    const e = new LatencyEwma({ decayMs: 1000 });
    e.record(100, 0);
    expect(e.estimate(0)).toBe(100);
    expect(e.estimate(1000)).toBeCloseTo(100 / Math.E, 6);
    expect(e.value).toBe(100);
  });
});
