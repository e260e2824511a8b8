/**
 * Fault suite: soak. Long form (30 minutes at 200 taps/s) under FAULTS_LONG=1, which `npm run
 * test:faults` sets; the short form otherwise (the same one test/faults-soak.test.ts runs in
 * `npm test`). Needs the build (`npm run test:faults` builds first).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'vitest';
import { REPO_ROOT } from '../helpers/webhook';
import { hasProc, LONG } from './rig';
import { SOAK_LONG, SOAK_SHORT, soakBudgetMs, soakScenario } from './soak';

const params = LONG ? SOAK_LONG : SOAK_SHORT;

describe(`fault suite, ${LONG ? 'long' : 'short'}: soak`, () => {
  // The soak reads RSS and open files from /proc: Linux only. Under CI a missing /proc fails instead.
  it.skipIf(!hasProc() && process.env.CI === undefined)('when taps arrive steadily for a long time, then RSS, open files and WAL size stay flat and the webhook p99 drifts less than 20%', async () => {
    if (!existsSync(join(REPO_ROOT, 'dist', 'src', 'cli.js'))) throw new Error('dist/src/cli.js is missing: run `npm run build` first');
    await soakScenario(params);
  }, soakBudgetMs(params));
});
