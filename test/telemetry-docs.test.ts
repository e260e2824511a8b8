import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startMetricsServer, type MetricsServer } from '../src/telemetry/metrics-server';
import { startTelemetry, type TelemetryRuntime } from '../src/telemetry/sdk';
import { parseExposition } from './helpers/prometheus';
import { recordOneOfEverything } from './helpers/telemetry';

const DOC = readFileSync(join(__dirname, '..', 'docs', 'metrics.md'), 'utf8');
/** Names documented as metrics: the first cell of a table row, in backticks. */
const documented = new Set([...DOC.matchAll(/^\| `([a-z_:][a-z0-9_:]*)` \|/gm)].map((m) => m[1] as string));

let runtime: TelemetryRuntime;
let server: MetricsServer;

beforeAll(async () => {
  runtime = startTelemetry({ env: {} });
  const t = runtime.telemetry;
  t.setPackIds(['starter']);
  // Something in every family, so every family the app can emit is on /metrics.
  recordOneOfEverything(t);
  server = await startMetricsServer({ port: 0, host: '127.0.0.1', appMetricsText: () => runtime.appMetricsText() });
});

afterAll(async () => {
  await server?.close();
  await runtime?.shutdown();
});

test('when /metrics is scraped, then every family on it is documented in docs/metrics.md', async () => {
  const families = [...parseExposition(await server.scrape()).families.keys()];
  expect(families.length).toBeGreaterThan(40);
  expect(families.filter((name) => !documented.has(name))).toEqual([]);
});

test('when docs/metrics.md documents an app metric, then it exists on /metrics (no stale names in the contract)', async () => {
  const families = new Set(parseExposition(await server.scrape()).families.keys());
  const stale = [...documented].filter((name) => (name.startsWith('unlock_') || name === 'target_info') && !families.has(name));
  expect(documented.size).toBeGreaterThan(40);
  expect(stale).toEqual([]);
});
