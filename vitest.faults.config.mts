import { defineConfig } from 'vitest/config';

// The long fault suite (`npm run test:faults`, FAULTS_LONG=1): kept out of `npm test`, whose
// config excludes test/faults/. One file at a time: each scenario measures latency and memory
// of a service that should not share the machine's two cores with another scenario.
export default defineConfig({
  test: {
    include: ['test/faults/**/*.test.ts'],
    testTimeout: 60 * 60_000,
    hookTimeout: 60_000,
    maxWorkers: 1,
    fileParallelism: false,
    reporters: ['default'],
  },
});
