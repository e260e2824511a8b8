import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The long fault suite runs with vitest.faults.config.mts (`npm run test:faults`); its short forms are test/faults-*.test.ts.
    exclude: ['test/faults/**', '**/node_modules/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Test files spawn real servers and SQLite files; two cores, so keep parallelism modest.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
