/**
 * The input-fuzzing fault scenario in its short form (3,000 webhook and 1,000 API requests),
 * so the long suite (`npm run test:faults`, test/faults/) cannot rot. Needs the build
 * (`npm test` builds first).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'vitest';
import { REPO_ROOT } from './helpers/webhook';
import { FUZZ_SHORT, fuzzBudgetMs, fuzzScenario } from './faults/fuzz';

describe('fault suite, short: input fuzzing', () => {
  it('when generated bodies, headers and queries hit the webhook and the API, then the service never crashes, never answers 5xx without a storage fault, and writes no row for a bad signature', async () => {
    if (!existsSync(join(REPO_ROOT, 'dist', 'src', 'cli.js'))) throw new Error('dist/src/cli.js is missing: run `npm run build` first (`npm test` does)');
    await fuzzScenario(FUZZ_SHORT);
  }, fuzzBudgetMs(FUZZ_SHORT));
});
