import { it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { slidingWindowScripts, slidingWindowScriptArgs, TOKEN_BUCKET_CHECK, tokenBucketScriptArgs } from '../../src/stores/limiter-scripts.js';
it('dump', () => {
  writeFileSync('/tmp/swt/sw.lua', slidingWindowScripts(3).check.lua);
  writeFileSync('/tmp/swt/tb.lua', TOKEN_BUCKET_CHECK.lua);
  const LIMIT = 1e9;
  const q = (a: unknown[]) => a.map((x) => `'${x}'`).join(' ');
  writeFileSync('/tmp/swt/args.txt', q([1, ...slidingWindowScriptArgs({ limits: [LIMIT, LIMIT, LIMIT], windowMs: [60000, 3600000, 86400000], buckets: [60, 60, 60] })]));
  writeFileSync('/tmp/swt/tbargs.txt', q([1, ...tokenBucketScriptArgs(1e9, 1e6)]));
});
