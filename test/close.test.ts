import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

describe('close()', () => {
  it('leaves no timers, sockets or listeners behind: the process has no active handles and exits by itself', () => {
    const fixture = fileURLToPath(new URL('./fixtures/close-handles.mjs', import.meta.url));
    const result = spawnSync(process.execPath, [fixture], { encoding: 'utf8', timeout: 15_000, cwd: fileURLToPath(new URL('..', import.meta.url)) });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const report = JSON.parse(result.stdout.trim().split('\n').pop()!);
    // It did hold timers (limiter sweep, queued waiter, share window), and released every one.
    expect(report.timersBeforeClose).toBeGreaterThan(0);
    expect(report.timers).toBe(0);
    expect(report.resources).toEqual([]);
    expect(report.waiterResult).toBe('AMAS_ABORTED');
    // It exited on its own (spawnSync would have killed it at 15 s, well before the 30 s and 60 s timers it armed).
    expect(result.signal).toBeNull();
  });

  it('with Redis (store-backed limits, shared breaker, shared dedup): closes every connection and exits by itself', () => {
    const fixture = fileURLToPath(new URL('./fixtures/close-handles-redis.mjs', import.meta.url));
    const result = spawnSync(process.execPath, [fixture], { encoding: 'utf8', timeout: 15_000, cwd: fileURLToPath(new URL('..', import.meta.url)) });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const report = JSON.parse(result.stdout.trim().split('\n').pop()!);
    // It did hold Redis connections (commands, Pub/Sub), and released every one.
    expect(report.socketsBeforeClose).toBeGreaterThanOrEqual(2);
    expect(report.resources).toEqual([]);
    // A caller waiting on another replica's run is told when its engine closes, not left hanging.
    expect(report.slowResult).toBe('AMAS_ABORTED');
    expect(result.signal).toBeNull();
  });
});
