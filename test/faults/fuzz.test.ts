/**
 * Fault suite: input fuzzing. Long form (100,000 webhook and 10,000 API requests) under
 * FAULTS_LONG=1, which `npm run test:faults` sets; the short form otherwise (the same one
 * test/faults-fuzz.test.ts runs in `npm test`). Needs the build (`npm run test:faults` builds
 * first).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'vitest';
import { REPO_ROOT } from '../helpers/webhook';
import { LONG } from './rig';
import { FUZZ_LONG, FUZZ_SHORT, fuzzBudgetMs, fuzzScenario } from './fuzz';

const params = LONG ? FUZZ_LONG : FUZZ_SHORT;

describe(`fault suite, ${LONG ? 'long' : 'short'}: input fuzzing`, () => {
  it('when generated bodies, headers and queries hit the webhook and the API, then the service never crashes, never answers 5xx without a storage fault, and writes no row for a bad signature', async () => {
    if (!existsSync(join(REPO_ROOT, 'dist', 'src', 'cli.js'))) throw new Error('dist/src/cli.js is missing: run `npm run build` first');
    await fuzzScenario(params);
  }, fuzzBudgetMs(params));
});
