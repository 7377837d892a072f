import { defineConfig } from 'tsup';

// Two builds side by side: the library (ESM + CJS with types) and the `amas-load` bin (ESM with a shebang).
// The build script empties dist/ first, because tsup runs both configs at once and a `clean` in either could
// delete the other's output.
export default defineConfig([
  {
    entry: ['src/index.ts'],
    format: ['esm', 'cjs'],
    dts: true,
    sourcemap: true,
    clean: false,
    // import.meta.url (bundled scenarios, package.json) in the CommonJS build.
    shims: true,
    target: 'node20',
    tsconfig: 'tsconfig.build.json',
  },
  {
    entry: { cli: 'src/cli.ts' },
    format: ['esm'],
    dts: false,
    sourcemap: true,
    clean: false,
    target: 'node20',
    tsconfig: 'tsconfig.build.json',
    banner: { js: '#!/usr/bin/env node' },
  },
]);
