// Builds the dashboard into web/dist (served by src/api/web.ts) and runs its browser tests.
// JSX goes straight to Preact through Oxc's automatic runtime: the Preact preset would add Babel
// only for hot reload and devtools, which a bundle served by the appliance does not use.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  root: import.meta.dirname,
  // Relative asset URLs: the bundle works wherever the appliance mounts it.
  base: './',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: { outDir: 'dist', emptyOutDir: true, modulePreload: { polyfill: false }, reportCompressedSize: true },
  test: {
    include: ['**/*.test.ts'],
    exclude: ['dist/**', 'node_modules/**'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
  },
});
