import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'modules/**/*.test.ts', 'test/**/*.test.ts', 'vm-test/**/*.test.ts', 'images/**/*.test.ts', 'web/**/*.test.ts', 'ansible/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // VM and BMC tests hold namespaces and emulators; keep files from starving each other on 2 cores.
    maxWorkers: 2,
  },
});
