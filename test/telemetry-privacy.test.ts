/**
 * Invariant 9 through the real service: 1,000 distinct contacts tap Unlock on the compiled
 * CLI (sandbox; its simulator delivers the packs and posts statuses back) with every trace
 * exported to a loopback OTLP receiver and debug logs captured. None of their numbers may
 * appear on /metrics, in anything exported (span names, attributes, events, links, resource)
 * or in the logs; and /metrics may not grow with the number of contacts.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { driveTaps, syntheticContacts } from '../src/simulator/taps';
import {
  DEAD_LETTER_STAGES,
  ERROR_CLASSES,
  EXPORT_SIGNALS,
  GRAPH_OUTCOMES,
  ITEM_KINDS,
  ITEM_RESULTS,
  MESSAGE_STATUSES,
  SEND_RESULTS,
  SIGNATURE_REASONS,
  UNKNOWN_PACK,
  UNLOCK_RESULTS,
  WEBHOOK_RESULTS,
} from '../src/telemetry/metrics';
import { startOtlpReceiver, type OtlpReceiver } from './helpers/otlp-receiver';
import { parseExposition } from './helpers/prometheus';
import { digitRuns, scrape, setFaults, startTelemetryCli, waitUntil, type TelemetryCli } from './helpers/telemetry-cli';
import { TEST_SECRET } from './helpers/webhook';

const CONTACTS = 1_000;
const FIRST = 10;
const FAULTY = 300; // contacts who also unlock the 6-message pack while Graph API misbehaves
const MAX_SERIES = 1_500; // everything on /metrics, process metrics included

/** Every label value /metrics may carry for the unlock_* families: fixed sets, the catalog's pack ids, bucket bounds. */
const ALLOWED: Record<string, (value: string) => boolean> = (() => {
  const oneOf = (...sets: ReadonlyArray<readonly string[]>) => {
    const all = new Set(sets.flat());
    return (value: string) => all.has(value);
  };
  const result = oneOf(WEBHOOK_RESULTS, ITEM_RESULTS, UNLOCK_RESULTS, SEND_RESULTS, ['ok', 'forbidden', 'other']);
  return {
    pack: oneOf(['starter', 'quick-tips', UNKNOWN_PACK]),
    result,
    reason: oneOf(SIGNATURE_REASONS, ['other']),
    kind: oneOf(ITEM_KINDS),
    status: oneOf(MESSAGE_STATUSES),
    outcome: oneOf(GRAPH_OUTCOMES),
    error_class: oneOf(ERROR_CLASSES),
    stage: oneOf(DEAD_LETTER_STAGES, ['other']),
    signal: oneOf(EXPORT_SIGNALS, ['other']),
    le: (value) => value === '+Inf' || Number.isFinite(Number(value)),
  };
})();

let receiver: OtlpReceiver;
let service: TelemetryCli;

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  service = await startTelemetryCli({
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_BSP_SCHEDULE_DELAY: '200',
    // Keep every span: a queue that overflows would drop exactly what this test inspects.
    OTEL_BSP_MAX_QUEUE_SIZE: '100000',
    OTEL_TRACES_SAMPLER: 'always_on',
    LOG_LEVEL: 'debug',
    SEND_RATE_PER_SECOND: '1000',
  });
}, 45_000);

afterAll(async () => {
  try {
    await service?.stop();
  } finally {
    await receiver?.close();
  }
});

/** The unlock_* series on /metrics, as "name{labels}" keys. */
function unlockSeries(text: string): string[] {
  return parseExposition(text)
    .samples.filter((s) => s.name.startsWith('unlock_'))
    .map((s) => `${s.name}${JSON.stringify(s.labels)}`)
    .sort();
}

/** Every outbox row written for `rows` messages has its final answer: delivered, read, failed, or dead-lettered. */
function settled(rows: number): boolean {
  const total = service.db.prepare('SELECT count(*) FROM outbox').pluck().get() as number;
  const open = service.db
    .prepare(`SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending', 'unknown') OR (state = 'accepted' AND coalesce(status, 'sent') = 'sent')`)
    .pluck()
    .get() as number;
  return total === rows && open === 0;
}

test('when 1,000 distinct contacts tap Unlock, then no number reaches /metrics, exported spans or logs, and /metrics stays bounded', async () => {
  const contacts = syntheticContacts(CONTACTS);
  const numbers = new Set(contacts);
  const tap = (who: readonly string[], trigger: string) =>
    driveTaps({ webhookUrl: service.webhookUrl, appSecret: TEST_SECRET, contacts: who, triggers: [trigger], ratePerSecond: 400, taps: who.length, concurrency: 32 });

  const first = await tap(contacts.slice(0, FIRST), 'unlock:quick-tips');
  expect(first.undelivered).toBe(0);
  await waitUntil(`the first ${FIRST} packs delivered`, () => settled(FIRST * 3), 20_000);
  const seriesAfterFew = unlockSeries(await scrape(service.metricsUrl));

  const rest = await tap(contacts.slice(FIRST), 'unlock:quick-tips');
  expect(rest).toMatchObject({ taps: CONTACTS - FIRST, undelivered: 0, errors: 0 });
  await waitUntil(`all ${CONTACTS} packs delivered`, () => settled(CONTACTS * 3), 60_000);
  // Same traffic, a hundred times the contacts: not one more series.
  expect(unlockSeries(await scrape(service.metricsUrl))).toEqual(seriesAfterFew);

  // The paths that report errors (retries, dead letters, failed statuses) must not leak numbers either.
  await setFaults(service.simulatorUrl, {
    http5xx: { probability: 0.05, status: 503 },
    error: { probability: 0.03, codes: [131026, 131047] },
    asyncFailure: { probability: 0.03, code: 131026 },
  });
  const faulty = await tap(contacts.slice(0, FAULTY), 'unlock:starter');
  expect(faulty.undelivered).toBe(0);
  await waitUntil('the 6-message packs settled', () => settled(CONTACTS * 3 + FAULTY * 6), 60_000);
  await setFaults(service.simulatorUrl, {});
  const metrics = await scrape(service.metricsUrl);
  // One unlock.send span per Graph API attempt (retries included; messages after a dead one are never tried).
  const sendSpans = service.db.prepare('SELECT sum(attempts) FROM outbox').pluck().get() as number;
  expect(sendSpans).toBeGreaterThan(CONTACTS * 3);
  await waitUntil('every send span exported', () => receiver.spans.filter((s) => s.name === 'unlock.send').length === sendSpans, 20_000);

  // The traffic really was seen: every tap is a span, its contact identified by a keyed hash.
  const taps = receiver.spans.filter((s) => s.name === 'unlock.tap');
  expect(taps).toHaveLength(CONTACTS + FAULTY);
  expect(new Set(taps.map((s) => s.attributes['unlock.contact_hash'])).size).toBe(CONTACTS);
  expect(receiver.spans.some((s) => s.status.code === 2), 'some spans recorded the injected failures').toBe(true);
  const logs = service.output();
  expect(logs).toContain('click-to-unlock started');

  const leaks = (text: string): string[] => [...digitRuns(text)].filter((run) => numbers.has(run));
  expect(leaks(`{"to":"+${contacts[7]}"} wa_id=${contacts[8]}`), 'the check itself finds numbers').toEqual([contacts[7], contacts[8]]);
  expect(leaks(metrics), 'numbers on /metrics').toEqual([]);
  expect(leaks(receiver.bodies.join('\n')), 'numbers in exported spans').toEqual([]);
  expect(leaks(logs), 'numbers in logs').toEqual([]);

  // Series stay bounded: every label value comes from a fixed set, and the total is capped.
  const exposition = parseExposition(metrics);
  const offending = exposition.samples
    .filter((s) => s.name.startsWith('unlock_'))
    .flatMap((s) => Object.entries(s.labels).filter(([key, value]) => !(ALLOWED[key]?.(value) ?? false)).map(([key, value]) => `${s.name}{${key}="${value}"}`));
  expect(offending).toEqual([]);
  expect(exposition.samples.length).toBeLessThan(MAX_SERIES);
}, 90_000);
