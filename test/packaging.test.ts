import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const node = (code: string, type: 'module' | 'commonjs') =>
  spawnSync(process.execPath, [type === 'module' ? '--input-type=module' : '--input-type=commonjs', '-e', code], {
    encoding: 'utf8',
    cwd: root,
    timeout: 20_000,
  });

describe('packaging (built dist)', () => {
  it('every package can be imported as ESM and required as CommonJS', () => {
    for (const pkg of ['@amas/core', '@amas/express', '@amas/fastify', '@amas/nestjs', '@amas/loadtest']) {
      const esm = node(`const m = await import('${pkg}'); console.log(Object.keys(m).length)`, 'module');
      expect(esm.stderr, pkg).toBe('');
      expect(Number(esm.stdout), pkg).toBeGreaterThan(0);
      const cjs = node(`const m = require('${pkg}'); console.log(Object.keys(m).length)`, 'commonjs');
      expect(cjs.stderr, pkg).toBe('');
      expect(Number(cjs.stdout), pkg).toBeGreaterThan(0);
    }
  });

  it('errors from the CJS copy are recognised by the ESM copy (duplicate packages)', () => {
    const code = `
      import { createRequire } from 'node:module';
      const require = createRequire(process.cwd() + '/');
      const cjs = require('@amas/core');
      const esm = await import('@amas/core');
      const error = new cjs.RateLimitedError('x', { retryAfterMs: 10 });
      console.log(JSON.stringify([cjs.RateLimitedError !== esm.RateLimitedError, error instanceof esm.RateLimitedError, error instanceof esm.AmasError, error instanceof esm.BreakerOpenError, esm.isAmasError(error)]));
    `;
    const out = node(code, 'module');
    expect(out.stderr).toBe('');
    expect(JSON.parse(out.stdout)).toEqual([true, true, true, false, true]);
  });
});
