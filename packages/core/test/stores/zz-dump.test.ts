import { it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { SLIDING_WINDOW_CHECK, slidingWindowScriptArgs } from '../../src/stores/limiter-scripts.js';
it('dump', () => {
  writeFileSync('/tmp/swt/sw.lua', SLIDING_WINDOW_CHECK.lua);
  const LIMIT = 1e9;
  writeFileSync('/tmp/swt/args.txt', [1, ...slidingWindowScriptArgs({ limits: [LIMIT, LIMIT, LIMIT], windowMs: [60000, 3600000, 86400000], buckets: [60, 60, 60] })].join(' '));
});
