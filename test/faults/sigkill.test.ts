/**
 * Fault suite: SIGKILL cycles under taps. Long form (50 cycles at 200 taps/s) under
 * FAULTS_LONG=1, which `npm run test:faults` sets; the short form otherwise (the same one
 * test/faults-sigkill.test.ts runs in `npm test`). Needs the build (`npm run test:faults` builds
 * first).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'vitest';
import { REPO_ROOT } from '../helpers/webhook';
import { LONG } from './rig';
import { SIGKILL_LONG, SIGKILL_SHORT, sigkillBudgetMs, sigkillScenario } from './sigkill';

const params = LONG ? SIGKILL_LONG : SIGKILL_SHORT;

describe(`fault suite, ${LONG ? 'long' : 'short'}: SIGKILL cycles under taps`, () => {
  it('when the service is SIGKILLed during taps and Meta redelivers until 200, then no acknowledged tap is lost, packs arrive whole and in order, and every duplicate is a counted resend', async () => {
    if (!existsSync(join(REPO_ROOT, 'dist', 'src', 'cli.js'))) throw new Error('dist/src/cli.js is missing: run `npm run build` first');
    await sigkillScenario(params);
  }, sigkillBudgetMs(params));
});
