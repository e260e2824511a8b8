/**
 * Fault suite: Graph API outage and recovery. Long form (10 minutes of 503s) under
 * FAULTS_LONG=1, which `npm run test:faults` sets; the short form otherwise (the same one
 * test/faults-outage.test.ts runs in `npm test`). Needs the build (`npm run test:faults` builds
 * first).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'vitest';
import { REPO_ROOT } from '../helpers/webhook';
import { LONG } from './rig';
import { OUTAGE_LONG, OUTAGE_SHORT, outageBudgetMs, outageScenario } from './outage';

const params = LONG ? OUTAGE_LONG : OUTAGE_SHORT;

describe(`fault suite, ${LONG ? 'long' : 'short'}: Graph API outage and recovery`, () => {
  it('when Graph API answers 503 for a while and then recovers, then nothing is lost, the backlog drains within the rate limit without 131056, and the webhook p99 stays under 250 ms', async () => {
    if (!existsSync(join(REPO_ROOT, 'dist', 'src', 'cli.js'))) throw new Error('dist/src/cli.js is missing: run `npm run build` first');
    await outageScenario(params);
  }, outageBudgetMs(params));
});
