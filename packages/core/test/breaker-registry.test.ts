import { describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { BreakerOpenError, InvalidOptionError } from '../src/errors.js';
import { BreakerRegistry, type BreakerRegistryOptions } from '../src/policies/breaker-registry.js';
import type { BreakerSnapshot, CircuitBreaker } from '../src/policies/circuit-breaker.js';
import { invalidOption as invalid } from './helpers.js';

const boom = () => Promise.reject(new Error('down'));

async function fail(breaker: CircuitBreaker, times: number) {
  for (let i = 0; i < times; i++) await breaker.execute(boom).catch(() => {});
}

describe('BreakerRegistry', () => {
  it('creates each breaker once, on first use, named after its key', () => {
    const registry = new BreakerRegistry();
    expect(registry.has('openai')).toBe(false);
    const a = registry.get('openai');
    expect(registry.get('openai')).toBe(a);
    expect(a.name).toBe('openai');
    registry.get('anthropic');
    expect(registry.has('openai')).toBe(true);
    expect(registry.names()).toEqual(['openai', 'anthropic']);
    expect(registry.all().map((b) => b.name)).toEqual(['openai', 'anthropic']);
  });

  it('applies defaults <- breakers[name] <- overrides, overrides only at creation', async () => {
    const clock = new ManualClock();
    const registry = new BreakerRegistry({
      clock,
      defaults: { failureThreshold: 5, recoveryTimeoutMs: 1_000 },
      breakers: { openai: { failureThreshold: 2, name: 'ignored' } },
    });
    const openai = registry.get('openai');
    expect(openai.name).toBe('openai');
    await fail(openai, 2);
    expect(openai.getState()).toBe('open');
    expect(openai.stats().nextAttemptAt! - clock.now()).toBe(1_000); // default recovery, registry clock

    const other = registry.get('other', { failureThreshold: 1 });
    await fail(other, 1);
    expect(other.getState()).toBe('open');
    expect(registry.get('other', { failureThreshold: 50 })).toBe(other);

    const plain = registry.get('plain');
    await fail(plain, 4);
    expect(plain.getState()).toBe('closed');
    await fail(plain, 1);
    expect(plain.getState()).toBe('open');
  });

  it('merges the nested failureRate and recoveryBackoff objects key by key', async () => {
    const clock = new ManualClock(0);
    const registry = new BreakerRegistry({
      clock,
      defaults: { failureThreshold: 0, failureRate: { threshold: 0.5, minimumCalls: 100 }, recoveryTimeoutMs: 100, recoveryBackoff: { maxMs: 1_000 } },
      breakers: { openai: { failureRate: { threshold: 0.5, minimumCalls: 2 }, recoveryBackoff: { multiplier: 3, maxMs: 1_000 } } },
    });
    const openai = registry.get('openai');
    await fail(openai, 2);
    expect(openai.getState()).toBe('open');
    await clock.advance(100);
    await fail(openai, 1);
    expect(openai.stats().nextAttemptAt! - clock.now()).toBe(300);
  });

  it('a breaker-level clock wins over the registry clock', async () => {
    const registryClock = new ManualClock(0);
    const ownClock = new ManualClock(5_000);
    const registry = new BreakerRegistry({ clock: registryClock, breakers: { own: { clock: ownClock, failureThreshold: 1 } } });
    const own = registry.get('own');
    await fail(own, 1);
    expect(own.stats().openedAt).toBe(5_000);
  });

  describe('validation at construction', () => {
    const cases: Array<[string, BreakerRegistryOptions, string, string]> = [
      ['per-name option', { breakers: { openai: { failureThreshold: -1 } } }, 'breakers.openai.failureThreshold', 'received -1'],
      ['nested per-name option', { breakers: { openai: { failureRate: { threshold: 2 } } } }, 'breakers.openai.failureRate.threshold', 'received 2'],
      ['default option', { defaults: { halfOpenMaxProbes: 0 } }, 'defaults.halfOpenMaxProbes', 'received 0'],
      ['unknown registry key', { breaker: {} } as BreakerRegistryOptions, '', 'unknown: breaker'],
      ['bad clock', { clock: {} } as BreakerRegistryOptions, 'clock', 'a Clock'],
      [
        'a combination only invalid once merged',
        { defaults: { recoveryTimeoutMs: 500, recoveryBackoff: { maxMs: 1_000 } }, breakers: { slow: { recoveryTimeoutMs: 5_000 } } },
        'breakers.slow.recoveryBackoff.maxMs',
        '>= recoveryTimeoutMs (5000)',
      ],
      [
        'defaults that would be invalid for a breaker created from them alone',
        { defaults: { recoveryBackoff: { maxMs: 1_000 } } },
        'defaults.recoveryBackoff.maxMs',
        '>= recoveryTimeoutMs (30000)',
      ],
    ];
    it.each(cases)('%s', (_label, options, path, detail) => {
      const error = invalid(() => new BreakerRegistry(options));
      expect(error.message).toContain('circuit breaker registry options');
      if (path) expect(error.message).toContain(`${path}:`);
      expect(error.message).toContain(detail);
    });

    it('checks overrides when the breaker is created', () => {
      const registry = new BreakerRegistry();
      const error = invalid(() => registry.get('x', { successThreshold: 0 }));
      expect(error.message).toContain('circuit breaker "x" options');
      expect(error.message).toContain('successThreshold:');
      expect(registry.has('x')).toBe(false);
    });
  });

  it('forwards the events of every breaker, including ones created later, until unsubscribed', async () => {
    const clock = new ManualClock();
    const registry = new BreakerRegistry({ clock, defaults: { failureThreshold: 1, recoveryTimeoutMs: 10 } });
    const early = registry.get('early');
    const seen: string[] = [];
    const off = registry.on('stateChange', (e) => seen.push(`${e.name}:${e.from}->${e.to}`));
    registry.on('failure', (e) => seen.push(`${e.name}:failure`));
    registry.on('rejected', (e) => seen.push(`${e.name}:rejected:${e.retryAfterMs}`));
    await fail(early, 1);
    const late = registry.get('late');
    await fail(late, 1);
    await late.execute(() => 1).catch(() => {});
    expect(seen).toEqual(['early:failure', 'early:closed->open', 'late:failure', 'late:closed->open', 'late:rejected:10']);

    off();
    await clock.advance(10);
    expect(late.getState()).toBe('half-open');
    expect(seen.filter((s) => s.includes('->half-open'))).toEqual([]);
    const later = registry.get('later');
    await fail(later, 1);
    expect(seen.at(-1)).toBe('later:failure');
    expect(seen.filter((s) => s.startsWith('later:closed'))).toEqual([]);
  });

  it('forwards success and ignored events', async () => {
    const registry = new BreakerRegistry();
    const seen: unknown[] = [];
    registry.on('success', (e) => seen.push(e.name));
    registry.on('ignored', (e) => seen.push(e.error));
    const b = registry.get('b');
    await b.execute(() => 'ok');
    const notMine = new Error('x');
    const c = registry.get('c', { isFailure: (e) => e !== notMine });
    await c.execute(() => Promise.reject(notMine)).catch(() => {});
    expect(seen).toEqual(['b', notMine]);
  });

  it('snapshots every breaker and restores them into a new registry', async () => {
    const clock = new ManualClock();
    const options = { clock, defaults: { failureThreshold: 1, recoveryTimeoutMs: 10_000 } };
    const first = new BreakerRegistry(options);
    await fail(first.get('openai'), 1);
    first.get('anthropic');
    const snapshot = JSON.parse(JSON.stringify(first.snapshot())) as Record<string, BreakerSnapshot>;
    expect(Object.keys(snapshot)).toEqual(['openai', 'anthropic']);

    const second = new BreakerRegistry(options);
    second.restore(snapshot);
    expect(second.names()).toEqual(['openai', 'anthropic']);
    await expect(second.get('openai').execute(() => 1)).rejects.toBeInstanceOf(BreakerOpenError);
    expect(second.get('anthropic').getState()).toBe('closed');
  });

  it('validates every snapshot before applying any', () => {
    const registry = new BreakerRegistry();
    const good = registry.get('a').snapshot();
    registry.get('a').isolate();
    const error = invalid(() =>
      registry.restore({ a: { ...good }, b: { ...good, state: 'broken' } as unknown as BreakerSnapshot }),
    );
    expect(error.message).toContain('b.state:');
    expect(registry.get('a').getState()).toBe('isolated');
    expect(registry.has('b')).toBe(false);
  });

  it('close() disposes every breaker and drops its listeners', async () => {
    const clock = new ManualClock();
    const registry = new BreakerRegistry({ clock, defaults: { failureThreshold: 1 } });
    const seen: string[] = [];
    registry.on('failure', (e) => seen.push(e.name));
    const a = registry.get('a');
    const own: string[] = [];
    a.on('stateChange', (e) => own.push(e.to));
    registry.close();
    expect(registry.names()).toEqual([]);
    await fail(a, 1);
    expect(seen).toEqual([]);
    expect(own).toEqual([]);
    expect(clock.pendingTimers).toBe(0);
  });
});
