import { metrics } from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { batchObserver, ingestObserver, webhookObserver } from '../src/telemetry/adapters';
import { BUCKETS, createTelemetry, METER_NAME, type Telemetry } from '../src/telemetry/metrics';
import { SERVICE_VERSION } from '../src/telemetry/resource';
import { tallyCounter } from '../src/telemetry/tally-counter';
import { startMetricsServer, type MetricsServer } from '../src/telemetry/metrics-server';
import { startTelemetry, type TelemetryRuntime } from '../src/telemetry/sdk';
import { recordOneOfEverything } from './helpers/telemetry';
import { parseExposition, promtoolCheckMetrics, PROMTOOL_BIN, sampleValue, toolAvailable, type Exposition } from './helpers/prometheus';

/** The metrics contract (shared with dashboards and alert rules): Prometheus name → type. */
const CONTRACT: Record<string, string> = {
  unlock_webhook_requests_total: 'counter',
  unlock_webhook_ack_duration_seconds: 'histogram',
  unlock_webhook_signature_failures_total: 'counter',
  unlock_webhook_items_total: 'counter',
  unlock_webhook_handshakes_total: 'counter',
  unlock_button_clicks_total: 'counter',
  unlock_unlocks_total: 'counter',
  unlock_messages_sent_total: 'counter',
  unlock_message_statuses_total: 'counter',
  unlock_send_attempts_total: 'counter',
  unlock_graph_request_duration_seconds: 'histogram',
  unlock_sender_queue_depth: 'gauge',
  unlock_sender_oldest_age_seconds: 'gauge',
  unlock_dead_letters_total: 'counter',
  unlock_possible_duplicate_sends_total: 'counter',
  unlock_click_to_sent_seconds: 'histogram',
  unlock_click_to_delivered_seconds: 'histogram',
  unlock_websocket_clients: 'gauge',
  unlock_database_writable: 'gauge',
  unlock_db_commit_batch_size: 'histogram',
  unlock_telemetry_export_failures_total: 'counter',
};

let runtime: TelemetryRuntime;
let telemetry: Telemetry;
let server: MetricsServer;

async function scrape(): Promise<Exposition> {
  const res = await fetch(server.url);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain; version=0.0.4');
  return parseExposition(await res.text());
}

beforeAll(async () => {
  runtime = startTelemetry({ env: {} });
  telemetry = runtime.telemetry;
  telemetry.setPackIds(['starter', 'pro']);
  server = await startMetricsServer({ port: 0, host: '127.0.0.1', appMetricsText: () => runtime.appMetricsText() });
  recordOneOfEverything(telemetry);
});

afterAll(async () => {
  await server?.close();
  await runtime?.shutdown();
});

describe('telemetry metrics on /metrics', () => {
  test('when every API has been called once, then /metrics has exactly the contract families, with their types', async () => {
    const exposition = await scrape();
    const app = [...exposition.families.values()].filter((f) => f.name.startsWith('unlock_'));
    expect(Object.fromEntries(app.map((f) => [f.name, f.type]))).toEqual(CONTRACT);
    for (const family of app) expect(family.help, family.name).not.toBe('description missing');
  });

  test('when scraped, then counters end in _total, nothing else does, and no family is declared twice', async () => {
    const exposition = await scrape();
    expect(exposition.duplicates).toEqual([]);
    for (const family of exposition.families.values()) {
      if (!family.name.startsWith('unlock_')) continue;
      expect(family.name.endsWith('_total'), family.name).toBe(family.type === 'counter');
    }
  });

  test('when scraped, then the Node process metrics are served alongside, from prom-client', async () => {
    const exposition = await scrape();
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_p99_seconds', 'nodejs_heap_size_used_bytes']) {
      expect(exposition.families.has(name), name).toBe(true);
    }
    expect(exposition.families.get('target_info')?.samples[0]?.labels).toMatchObject({ service_name: 'click-to-unlock', service_version: expect.any(String), service_instance_id: expect.stringMatching(/^[0-9a-f-]{36}$/) });
  });

  test('when histograms are scraped, then each has its explicit bucket boundaries', async () => {
    const exposition = await scrape();
    const bounds = (name: string): string[] => [...new Set(exposition.samples.filter((s) => s.name === `${name}_bucket`).map((s) => s.labels.le as string))];
    expect(bounds('unlock_webhook_ack_duration_seconds')).toEqual([...BUCKETS.ack.map(String), '+Inf']);
    expect(bounds('unlock_graph_request_duration_seconds')).toEqual([...BUCKETS.graph.map(String), '+Inf']);
    expect(bounds('unlock_click_to_sent_seconds')).toEqual([...BUCKETS.clickToSent.map(String), '+Inf']);
    expect(bounds('unlock_click_to_delivered_seconds')).toEqual([...BUCKETS.clickToDelivered.map(String), '+Inf']);
    expect(bounds('unlock_db_commit_batch_size')).toEqual(['1', '2', '4', '8', '16', '32', '64', '128', '256', '512', '+Inf']);
    expect(BUCKETS.ack[0]).toBe(0.001);
    expect(BUCKETS.ack.at(-1)).toBe(2.5);
    expect(BUCKETS.graph[0]).toBe(0.005);
    expect(BUCKETS.graph.at(-1)).toBe(30);
    expect(BUCKETS.clickToDelivered[0]).toBe(0.1);
    expect(BUCKETS.clickToDelivered.at(-1)).toBe(3600);
    // 0.004 s falls in le=0.005 but not le=0.0025
    expect(sampleValue(exposition, 'unlock_webhook_ack_duration_seconds_bucket', { result: 'accepted', le: '0.0025' })).toBe(0);
    expect(sampleValue(exposition, 'unlock_webhook_ack_duration_seconds_bucket', { result: 'accepted', le: '0.005' })).toBeGreaterThanOrEqual(1);
  });

  test('when promtool checks the app families, then it finds no problem', async (ctx) => {
    if (!toolAvailable(PROMTOOL_BIN)) return ctx.skip();
    const text = await runtime.appMetricsText();
    expect(text).toContain('unlock_button_clicks_total');
    const result = promtoolCheckMetrics(text);
    expect(result.output).toBe('');
    expect(result.ok).toBe(true);
  });

  test('when values are recorded, then the counters and gauges show them under the right labels', async () => {
    const before = await scrape();
    const clicks = sampleValue(before, 'unlock_button_clicks_total', { pack: 'pro' }) ?? 0;
    telemetry.click('pro');
    telemetry.click('pro');
    telemetry.databaseWritable(false);
    const after = await scrape();
    expect(sampleValue(after, 'unlock_button_clicks_total', { pack: 'pro' })).toBe(clicks + 2);
    expect(sampleValue(after, 'unlock_database_writable')).toBe(0);
    expect(sampleValue(after, 'unlock_sender_queue_depth')).toBe(4);
    expect(sampleValue(after, 'unlock_sender_oldest_age_seconds')).toBe(12.5);
    expect(sampleValue(after, 'unlock_websocket_clients')).toBe(2);
    telemetry.databaseWritable(true);
  });

  test('when label values are outside their fixed sets, then they are clamped to "other" (packs to "unknown")', async () => {
    const before = await scrape();
    const get = (e: Exposition, name: string, labels: Record<string, string>): number => sampleValue(e, name, labels) ?? 0;
    telemetry.webhookRequest('teapot', 0.01);
    telemetry.signatureFailure('weird');
    telemetry.webhookItem('reaction', 'lost');
    telemetry.click('not-in-catalog');
    telemetry.unlock('not-in-catalog', 'exploded');
    telemetry.messageStatus('deleted');
    telemetry.sendAttempt('maybe', 'cosmic_ray');
    telemetry.graphRequest('slow', 0.2);
    telemetry.deadLetter('outer_space', 'gremlins');
    const after = await scrape();
    // The webhook result set has no "other": an unplanned outcome counts as an error.
    expect(get(after, 'unlock_webhook_requests_total', { result: 'error' }) - get(before, 'unlock_webhook_requests_total', { result: 'error' })).toBe(1);
    expect(after.samples.some((s) => s.labels.result === 'teapot')).toBe(false);
    expect(get(after, 'unlock_webhook_signature_failures_total', { reason: 'other' })).toBe(1);
    expect(get(after, 'unlock_webhook_items_total', { kind: 'other', result: 'other' })).toBe(1);
    expect(get(after, 'unlock_button_clicks_total', { pack: 'unknown' }) - get(before, 'unlock_button_clicks_total', { pack: 'unknown' })).toBe(1);
    expect(get(after, 'unlock_unlocks_total', { pack: 'unknown', result: 'other' })).toBe(1);
    expect(get(after, 'unlock_message_statuses_total', { status: 'other' })).toBe(1);
    expect(get(after, 'unlock_send_attempts_total', { result: 'other', error_class: 'other' })).toBe(1);
    expect(get(after, 'unlock_graph_request_duration_seconds_count', { outcome: 'error' })).toBe(1);
    expect(get(after, 'unlock_dead_letters_total', { stage: 'other', error_class: 'other' })).toBe(1);
    expect(sampleValue(after, 'unlock_webhook_requests_total', { result: 'other' })).toBeUndefined();
  });

  test('when a gauge callback throws, then the scrape still succeeds and the other gauges are served', async () => {
    telemetry.observeQueue(() => {
      throw new Error('database closed');
    });
    telemetry.observeWebSocketClients(() => 5);
    const exposition = await scrape();
    expect(sampleValue(exposition, 'unlock_websocket_clients')).toBe(5);
    expect(sampleValue(exposition, 'unlock_button_clicks_total', { pack: 'starter' })).toBeGreaterThanOrEqual(1);
    telemetry.observeWebSocketClients(() => 2);
    telemetry.observeQueue(() => ({ depth: 4, oldestAgeSeconds: 12.5 }));
  });

  test('when the observer adapters are called, then they feed the same metrics', async () => {
    const before = await scrape();
    const get = (e: Exposition, name: string, labels: Record<string, string> = {}): number => sampleValue(e, name, labels) ?? 0;
    const webhook = webhookObserver(telemetry);
    webhook.request?.('duplicate', 0.002);
    webhook.signatureFailure?.('missing');
    webhook.handshake?.(false);
    const ingest = ingestObserver(telemetry);
    ingest.item?.('status', 'new');
    ingest.item?.('invalid', 'dead_letter');
    ingest.unparseable?.();
    batchObserver(telemetry)({ size: 3, failed: 3, durationMs: 1, committed: false });
    const after = await scrape();
    const delta = (name: string, labels: Record<string, string> = {}): number => get(after, name, labels) - get(before, name, labels);
    expect(delta('unlock_webhook_requests_total', { result: 'duplicate' })).toBe(1);
    expect(delta('unlock_webhook_ack_duration_seconds_count', { result: 'duplicate' })).toBe(1);
    expect(delta('unlock_webhook_signature_failures_total', { reason: 'missing' })).toBe(1);
    expect(delta('unlock_webhook_handshakes_total', { result: 'forbidden' })).toBe(1);
    expect(delta('unlock_webhook_items_total', { kind: 'status', result: 'new' })).toBe(1);
    expect(delta('unlock_webhook_items_total', { kind: 'invalid', result: 'dead_letter' })).toBe(2);
    expect(delta('unlock_dead_letters_total', { stage: 'webhook', error_class: 'invalid_request' })).toBe(2);
    expect(delta('unlock_db_commit_batch_size_count')).toBe(1);
    expect(get(after, 'unlock_database_writable')).toBe(0);
    telemetry.databaseWritable(true);
  });

  test('when 1,000 distinct phone numbers are fed through every API, then none reaches /metrics and the series count stays bounded', async () => {
    const numbers = Array.from({ length: 1000 }, (_, i) => `1555${String(1_000_000 + i * 7919).padStart(7, '0')}`);
    const feed = (n: string): void => {
      telemetry.webhookRequest(n, 0.001);
      telemetry.signatureFailure(n);
      telemetry.webhookItem(n, n);
      telemetry.click(n);
      telemetry.click(`+${n}`);
      telemetry.unlock(n, n);
      telemetry.unlock('starter', n);
      telemetry.messageSent(n);
      telemetry.messageStatus(n);
      telemetry.sendAttempt(n, n);
      telemetry.graphRequest(n, 0.01);
      telemetry.deadLetter(n, n);
      telemetry.deadLetter('send', n);
      telemetry.exportFailure(n as 'traces');
    };
    feed('15550000000');
    const baseline = (await server.scrape()).split('\n').filter((l) => l.startsWith('unlock_')).length;
    for (const n of numbers) feed(n);
    const text = await server.scrape();
    for (const n of numbers) expect(text.includes(n), n).toBe(false);
    const appLines = text.split('\n').filter((l) => l.startsWith('unlock_'));
    for (const line of appLines) expect(line.replace(/\s\S+$/, ''), line).not.toMatch(/\d{7,}/);
    const series = appLines.length;
    expect(series).toBe(baseline);
    expect(series).toBeLessThan(600);
  });

  test('when a tallied counter is added to with equal labels as different objects, and with negative, NaN and infinite values, then it shows the sums of the finite non-negative ones as a Prometheus counter', async () => {
    const tally = tallyCounter(metrics.getMeter('tally-test'), 'test_tally', 'A tally under test');
    tally.add(2, { side: 'left' });
    tally.add(3, { side: 'left' }); // another object, same labels
    tally.add(1, Object.freeze({ side: 'right' }));
    tally.add(-4, { side: 'left' });
    tally.add(Number.NaN, { side: 'left' });
    tally.add(Number.POSITIVE_INFINITY, { side: 'left' });
    tally.add(7);
    const text = await runtime.appMetricsText();
    expect(text).toContain('# TYPE test_tally_total counter');
    expect(text).toContain('# HELP test_tally_total A tally under test');
    const exposition = parseExposition(text);
    expect(sampleValue(exposition, 'test_tally_total', { side: 'left' })).toBe(5);
    expect(sampleValue(exposition, 'test_tally_total', { side: 'right' })).toBe(1);
    const bare = exposition.samples.filter((sample) => sample.name === 'test_tally_total' && Object.keys(sample.labels).length === 0);
    expect(bare.map((sample) => sample.value)).toStrictEqual([7]);
    tally.add(1, { side: 'right' });
    expect(sampleValue(parseExposition(await runtime.appMetricsText()), 'test_tally_total', { side: 'right' })).toBe(2);
    // A fresh label object per add (not the cached frozen ones) shares its set's count, and the tally does not grow.
    for (let i = 0; i < 1_000; i++) tally.add(1, { side: 'right' });
    expect(tally.size).toBe(3);
    expect(sampleValue(parseExposition(await runtime.appMetricsText()), 'test_tally_total', { side: 'right' })).toBe(1_002);
  });

  test('when a second telemetry is made on the same meter (an in-process service beside the runtime), then both add to the same counts', async () => {
    const second = createTelemetry(metrics.getMeter(METER_NAME, SERVICE_VERSION));
    const before = sampleValue(await scrape(), 'unlock_webhook_requests_total', { result: 'duplicate' }) ?? 0;
    telemetry.webhookRequest('duplicate', 0.001);
    second.webhookRequest('duplicate', 0.001);
    second.webhookRequest('duplicate', 0.001);
    expect(sampleValue(await scrape(), 'unlock_webhook_requests_total', { result: 'duplicate' })).toBe(before + 3);
    telemetry.webhookRequest('duplicate', 0.001);
    expect(sampleValue(await scrape(), 'unlock_webhook_requests_total', { result: 'duplicate' })).toBe(before + 4);
  });

  test('when a path other than /metrics is requested, then the metrics server answers 404', async () => {
    const res = await fetch(server.url.replace('/metrics', '/other'));
    expect(res.status).toBe(404);
    await res.text();
  });
});
