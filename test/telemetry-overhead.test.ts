/**
 * Invariant 10 through the real service: with OTEL_EXPORTER_OTLP_ENDPOINT pointing at a closed
 * loopback port (a collector that is down), the compiled CLI answers every webhook 200, stores
 * everything and delivers every pack; the failed exports are counted on /metrics and the SDK's
 * complaints are rate-limited in the log. Throughput with the collector down is compared with
 * telemetry on and off in bench/telemetry.ts (`npm run bench -- telemetry`), not here.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { driveTaps, syntheticContacts } from '../src/simulator/taps';
import { parseExposition, sampleValue } from './helpers/prometheus';
import { scrape, startTelemetryCli, waitUntil, type TelemetryCli } from './helpers/telemetry-cli';
import { stopService } from './helpers/cli';
import { freePort, TEST_SECRET } from './helpers/webhook';

const CONTACTS = 500;
const PACK_SIZE = 3;
/** RateLimitedDiagLogger's default budget: 10 lines per minute (this test is over well within one). */
const OTEL_LINES_PER_MINUTE = 10;

let service: TelemetryCli;

beforeAll(async () => {
  const closed = await freePort(); // nothing listens here: every export is refused
  service = await startTelemetryCli({
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${closed}`,
    OTEL_BSP_SCHEDULE_DELAY: '200',
    // Each export gives up (retries included) after 500 ms instead of 10 s, so failures come often.
    OTEL_EXPORTER_OTLP_TIMEOUT: '500',
    OTEL_TRACES_SAMPLER: 'always_on',
    SEND_RATE_PER_SECOND: '1000',
  });
}, 45_000);

afterAll(async () => {
  await service?.stop();
});

function count(sql: string): number {
  return service.db.prepare(sql).pluck().get() as number;
}

test('when the OTLP collector is down, then every tap is answered 200, stored and delivered, and export failures are counted and logged at a bounded rate', async () => {
  const taps = {
    webhookUrl: service.webhookUrl,
    appSecret: TEST_SECRET,
    contacts: syntheticContacts(CONTACTS),
    triggers: ['unlock:quick-tips'],
    ratePerSecond: 300,
    taps: CONTACTS,
    concurrency: 32,
    retries: 0, // a single non-200 counts: no retry may hide it
  };
  const report = await driveTaps(taps);
  expect(report).toMatchObject({ taps: CONTACTS, posts: CONTACTS, non200: 0, errors: 0, undelivered: 0 });

  expect(count('SELECT count(*) FROM clicks')).toBe(CONTACTS);
  expect(count(`SELECT count(*) FROM unlocks`)).toBe(CONTACTS);
  await waitUntil('every pack delivered', () => count(`SELECT count(*) FROM outbox WHERE status IN ('delivered', 'read')`) === CONTACTS * PACK_SIZE, 40_000);
  expect(count('SELECT count(*) FROM outbox')).toBe(CONTACTS * PACK_SIZE);
  expect(count('SELECT count(*) FROM dead_letters')).toBe(0);

  let exposition = parseExposition(await scrape(service.metricsUrl));
  // Every POST was answered, none as an error: taps and the simulator's status callbacks alike.
  expect(sampleValue(exposition, 'unlock_webhook_requests_total', { result: 'accepted' })).toBeGreaterThanOrEqual(CONTACTS);
  for (const result of ['error', 'unavailable']) expect(sampleValue(exposition, 'unlock_webhook_requests_total', { result })).toBe(0);

  // More failed exports than the log's budget, so the budget is tested: while spans are shed
  // only 1 trace in 100 is recorded, so keep taps coming (new contacts) until there are.
  const failures = (): number => sampleValue(exposition, 'unlock_telemetry_export_failures_total', { signal: 'traces' }) ?? 0;
  const deadline = Date.now() + 30_000;
  for (let batch = 1; failures() <= OTEL_LINES_PER_MINUTE && Date.now() < deadline; batch++) {
    const more = await driveTaps({ ...taps, contacts: syntheticContacts(100, batch * CONTACTS), taps: 100 });
    expect(more).toMatchObject({ non200: 0, errors: 0, undelivered: 0 });
    await new Promise((r) => setTimeout(r, 500));
    exposition = parseExposition(await scrape(service.metricsUrl));
  }
  expect(failures()).toBeGreaterThan(OTEL_LINES_PER_MINUTE);

  const lines = service
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { level: number | string; component?: string; msg: string });
  const otel = lines.filter((l) => l.component === 'otel');
  expect(otel.some((l) => l.msg.includes('span export failed'))).toBe(true);
  expect(otel.length).toBeLessThanOrEqual(OTEL_LINES_PER_MINUTE);
  expect(lines.filter((l) => l.component !== 'otel' && (l.level === 50 || l.level === 'error' || l.level === 60 || l.level === 'fatal'))).toEqual([]);
}, 90_000);

test('when the collector is down at shutdown, then SIGTERM still ends the service with 0 in a bounded time, retries or not', async () => {
  // A long export timeout: each refused export keeps retrying on timers of its own, five times
  // with backoff (about 13 s), long after telemetry's 5 s flush bound gave up on it.
  const closed = await freePort();
  const down = await startTelemetryCli({
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${closed}`,
    OTEL_EXPORTER_OTLP_TIMEOUT: '30000',
    OTEL_BSP_SCHEDULE_DELAY: '100',
    OTEL_TRACES_SAMPLER: 'always_on',
  });
  let stoppedHere = false;
  try {
    const report = await driveTaps({ webhookUrl: down.webhookUrl, appSecret: TEST_SECRET, contacts: syntheticContacts(50, 9_000), triggers: ['unlock:quick-tips'], ratePerSecond: 100, taps: 50, concurrency: 8, retries: 0 });
    expect(report).toMatchObject({ non200: 0, errors: 0 });
    // Exports are under way (and refused) before the stop.
    await new Promise((r) => setTimeout(r, 500));
    const exit = await stopService(down.cli);
    stoppedHere = true;
    expect(exit).toMatchObject({ code: 0, signal: null });
    // The telemetry flush is bounded to 5 s, then at most 1 s more for exports still retrying
    // (without that last bound the process stayed until the retries ran out).
    expect(exit.ms).toBeLessThan(10_000);
  } finally {
    // stop() reports a child that exited before it was asked to; this one was stopped above.
    await down.stop().catch((error: unknown) => {
      if (!stoppedHere) throw error;
    });
  }
}, 60_000);
