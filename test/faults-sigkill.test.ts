/**
 * The SIGKILL fault scenario in its short form (3 kills at 50 taps/s), so the long suite
 * (`npm run test:faults`, test/faults/) cannot rot. Needs the build (`npm test` builds first).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'vitest';
import { REPO_ROOT } from './helpers/webhook';
import { SIGKILL_SHORT, sigkillBudgetMs, sigkillScenario } from './faults/sigkill';

describe('fault suite, short: SIGKILL cycles', () => {
  it('when the service is SIGKILLed during taps and Meta redelivers until 200, then no acknowledged tap is lost, packs arrive whole and in order, and every duplicate is a counted resend', async () => {
    if (!existsSync(join(REPO_ROOT, 'dist', 'src', 'cli.js'))) throw new Error('dist/src/cli.js is missing: run `npm run build` first (`npm test` does)');
    await sigkillScenario(SIGKILL_SHORT);
  }, sigkillBudgetMs(SIGKILL_SHORT));
});
