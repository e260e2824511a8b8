/**
 * The soak fault scenario in its short form (45 s at 50 taps/s), so the long suite
 * (`npm run test:faults`, test/faults/) cannot rot. Needs the build (`npm test` builds first).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'vitest';
import { REPO_ROOT } from './helpers/webhook';
import { SOAK_SHORT, soakBudgetMs, soakScenario } from './faults/soak';
import { hasProc } from './faults/rig';

describe('fault suite, short: soak', () => {
  // The soak reads RSS and open files from /proc: Linux only. Under CI a missing /proc fails instead.
  it.skipIf(!hasProc() && process.env.CI === undefined)('when taps arrive steadily for a long time, then RSS, open files and WAL size stay flat and the webhook p99 drifts less than 20%', async () => {
    if (!existsSync(join(REPO_ROOT, 'dist', 'src', 'cli.js'))) throw new Error('dist/src/cli.js is missing: run `npm run build` first (`npm test` does)');
    await soakScenario(SOAK_SHORT);
  }, soakBudgetMs(SOAK_SHORT));
});
