/**
 * The Graph API outage fault scenario in its short form (15 s of 503s), so the long suite
 * (`npm run test:faults`, test/faults/) cannot rot. Needs the build (`npm test` builds first).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'vitest';
import { REPO_ROOT } from './helpers/webhook';
import { OUTAGE_SHORT, outageBudgetMs, outageScenario } from './faults/outage';

describe('fault suite, short: Graph API outage', () => {
  it('when Graph API answers 503 for a while and then recovers, then nothing is lost, the backlog drains within the rate limit without 131056, and the webhook p99 stays under 250 ms', async () => {
    if (!existsSync(join(REPO_ROOT, 'dist', 'src', 'cli.js'))) throw new Error('dist/src/cli.js is missing: run `npm run build` first (`npm test` does)');
    await outageScenario(OUTAGE_SHORT);
  }, outageBudgetMs(OUTAGE_SHORT));
});
