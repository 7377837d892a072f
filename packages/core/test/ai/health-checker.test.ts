import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { HealthChecker, type CheckedEndpoint, type HealthEvents } from '../../src/ai/health-checker.js';
import { UpstreamError, type EndpointConfig, type ProviderTransport, type UpstreamRequest } from '../../src/ai/provider-types.js';
import { silentLogger } from '../../src/logger.js';

const endpoints: CheckedEndpoint[] = [
  { id: 'a', url: 'http://127.0.0.1:1' },
  { id: 'b', url: 'http://127.0.0.1:2' },
];

/** Probe results scripted per endpoint id: true/false, 'throw', or 'hang' (settles only when aborted). */
function scriptedProbe(script: Record<string, Array<boolean | 'throw' | 'hang'>>) {
  const calls: string[] = [];
  const signals: AbortSignal[] = [];
  const inFlight = new Map<string, number>();
  let maxInFlight = 0;
  const probe = async (endpoint: EndpointConfig, signal: AbortSignal): Promise<boolean> => {
    const id = endpoint.id!;
    calls.push(id);
    signals.push(signal);
    const list = script[id] ?? [];
    const step = list.length > 1 ? list.shift()! : (list[0] ?? true);
    inFlight.set(id, (inFlight.get(id) ?? 0) + 1);
    maxInFlight = Math.max(maxInFlight, inFlight.get(id)!);
    try {
      if (step === 'throw') throw new Error('connection refused');
      if (step === 'hang') {
        await new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
      }
      return step === true;
    } finally {
      inFlight.set(id, inFlight.get(id)! - 1);
    }
  };
  /** maxInFlight: most probes of one endpoint running at once. */
  return { probe, calls, signals, maxInFlight: () => maxInFlight };
}

function setup(script: Record<string, Array<boolean | 'throw' | 'hang'>>, options: Partial<ConstructorParameters<typeof HealthChecker>[0]> = {}) {
  const clock = new ManualClock(0);
  const s = scriptedProbe(script);
  const checker = new HealthChecker({ endpoints, probe: s.probe, clock, logger: silentLogger, intervalMs: 1000, timeoutMs: 200, ...options });
  const changes: Array<HealthEvents['change']> = [];
  checker.on('change', (e) => changes.push(e));
  return { clock, checker, changes, ...s };
}

describe('HealthChecker', () => {
  it('starts healthy, marks an endpoint down after unhealthyThreshold failed probes and up after healthyThreshold good ones', async () => {
    const { clock, checker, changes, calls } = setup(
      { a: [false, 'throw', false, true, true, true], b: [true] },
      { unhealthyThreshold: 3, healthyThreshold: 2 },
    );
    expect(checker.isHealthy('a')).toBe(true);
    checker.start();
    await clock.advance(0); // first round runs at start
    expect(calls).toEqual(['a', 'b']);
    await clock.advance(1000);
    expect(checker.isHealthy('a')).toBe(true);
    await clock.advance(1000);
    expect(checker.isHealthy('a')).toBe(false);
    expect(changes).toEqual([{ endpoint: 'a', healthy: false, reason: '3 failed probes in a row (last: probe returned false)' }]);
    expect(checker.status('a')).toMatchObject({ healthy: false, consecutiveFailures: 3, probes: 3, lastError: 'probe returned false' });
    await clock.advance(1000);
    expect(checker.isHealthy('a')).toBe(false);
    await clock.advance(1000);
    expect(checker.isHealthy('a')).toBe(true);
    expect(changes[1]).toEqual({ endpoint: 'a', healthy: true, reason: '2 good probes in a row' });
    expect(checker.isHealthy('b')).toBe(true);
    checker.stop();
    expect(clock.pendingTimers).toBe(0);
  });

  it('a probe slower than timeoutMs fails, and its signal is aborted', async () => {
    const { clock, checker, signals } = setup({ a: ['hang'], b: [true] }, { unhealthyThreshold: 1, timeoutMs: 200 });
    checker.start();
    await clock.advance(199);
    expect(checker.isHealthy('a')).toBe(true);
    await clock.advance(1);
    expect(checker.isHealthy('a')).toBe(false);
    expect(checker.status('a')!.lastError).toBe('probe timed out after 200 ms');
    expect(signals[0].aborted).toBe(true);
    checker.stop();
  });

  it('never overlaps probes of one endpoint: the next is scheduled when the previous settles', async () => {
    const { clock, checker, calls, maxInFlight } = setup({ a: ['hang'], b: [true] }, { intervalMs: 10, timeoutMs: 500 });
    checker.start();
    await clock.advance(400);
    expect(calls.filter((c) => c === 'a')).toHaveLength(1);
    expect(maxInFlight()).toBe(1);
    checker.stop();
  });

  it('the default probe is GET /v1/models through the transport (any 2xx is healthy, an UpstreamError is not)', async () => {
    const requests: Array<{ id: string | undefined; request: UpstreamRequest }> = [];
    const down = new Set<string>(['b']);
    const transport: ProviderTransport = {
      async request(endpoint, request) {
        requests.push({ id: endpoint.id, request });
        if (down.has(endpoint.id!)) throw new UpstreamError('Service Unavailable', { status: 503, endpoint: endpoint.id });
        return { status: 200, headers: {}, body: Buffer.from('{"data":[]}'), latencyMs: 1 };
      },
      stream() {
        throw new Error('not used');
      },
    };
    const clock = new ManualClock(0);
    const checker = new HealthChecker({ endpoints, transport, clock, logger: silentLogger, unhealthyThreshold: 1, healthyThreshold: 1 });
    await checker.checkNow();
    expect(requests.map((r) => [r.id, r.request.method, r.request.path])).toEqual([
      ['a', 'GET', '/v1/models'],
      ['b', 'GET', '/v1/models'],
    ]);
    expect(requests[0].request.signal).toBeInstanceOf(AbortSignal);
    expect(checker.isHealthy('a')).toBe(true);
    expect(checker.isHealthy('b')).toBe(false);
    expect(checker.status('b')!.lastError).toBe('503 Service Unavailable');
    down.clear();
    await checker.checkNow('b');
    expect(checker.isHealthy('b')).toBe(true);
    expect(clock.pendingTimers).toBe(0);
  });

  it('a custom path is used by the default probe', async () => {
    const paths: string[] = [];
    const transport: ProviderTransport = {
      async request(_endpoint, request) {
        paths.push(request.path);
        return { status: 200, headers: {}, body: Buffer.alloc(0), latencyMs: 0 };
      },
      stream() {
        throw new Error('not used');
      },
    };
    const checker = new HealthChecker({ endpoints: [endpoints[0]], transport, path: '/health', clock: new ManualClock(0) });
    await checker.checkNow();
    expect(paths).toEqual(['/health']);
  });

  it('stop() clears the timers and aborts probes in flight, whose late outcome is ignored', async () => {
    const { clock, checker, signals } = setup({ a: ['hang'], b: [true] }, { unhealthyThreshold: 1 });
    checker.start();
    await clock.advance(0);
    expect(clock.pendingTimers).toBeGreaterThan(0);
    checker.stop();
    await clock.advance(0);
    expect(clock.pendingTimers).toBe(0);
    expect(signals[0].aborted).toBe(true);
    expect(checker.isHealthy('a')).toBe(true);
    expect(checker.isRunning).toBe(false);
  });

  it('needs a transport or a probe', () => {
    expect(() => new HealthChecker({ endpoints })).toThrow(/transport/);
  });
});
