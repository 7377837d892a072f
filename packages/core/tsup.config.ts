import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts'],
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
  // import.meta.url in the CJS build (model-encodings.ts reads it only in ESM; the shim keeps the build quiet).
  shims: true,
  tsconfig: 'tsconfig.build.json',
});
