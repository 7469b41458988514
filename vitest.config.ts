import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Two files at a time (vitest's default is one on two cores): integration files mostly wait on
    // servers, and one at a time the suite passed 25 minutes. Each file has its own ports and
    // sandbox; what the shared Temporal server holds once (a cluster's monitor) is locked per file.
    maxWorkers: 2,
    projects: [
      {
        test: { name: 'unit', include: ['test/unit/**/*.test.ts'] },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          // Temporal's native bridge has crashed in worker threads: run these in forked processes.
          pool: 'forks',
          // One dev server for the whole run (parallel files starting their own race on ports).
          globalSetup: ['test/support/globalSetup.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
