import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startMetricsServer, type MetricsServer } from '../src/telemetry/metrics-server';
import { startTelemetry, type TelemetryRuntime } from '../src/telemetry/sdk';
import { firstValue, PROMETHEUS_BIN, startPrometheus, toolAvailable, type RunningPrometheus } from './helpers/prometheus';

const available = toolAvailable(PROMETHEUS_BIN);
let runtime: TelemetryRuntime;
let metricsServer: MetricsServer;
let prometheus: RunningPrometheus | undefined;

beforeAll(async () => {
  runtime = startTelemetry({ env: {} });
  runtime.telemetry.setPackIds(['starter', 'pro']);
  metricsServer = await startMetricsServer({ port: 0, host: '127.0.0.1', appMetricsText: () => runtime.appMetricsText() });
  if (available) prometheus = await startPrometheus({ targets: [`127.0.0.1:${metricsServer.port}`], scrapeIntervalSeconds: 1 });
});

afterAll(async () => {
  await prometheus?.stop();
  await metricsServer?.close();
  await runtime?.shutdown();
});

describe.skipIf(!available)('the real Prometheus scraping /metrics', () => {
  test('when Prometheus scrapes the metrics server, then the target is up with the service identity in target_info', async () => {
    const p = prometheus as RunningPrometheus;
    const up = await p.waitFor('up{job="click-to-unlock"}', (r) => firstValue(r) === 1);
    expect(up).toHaveLength(1);
    const info = await p.waitFor('target_info', (r) => r.length === 1);
    expect(info[0]?.metric).toMatchObject({ service_name: 'click-to-unlock' });
  });

  test('when taps are recorded, then a PromQL query sees unlock_button_clicks_total rise', async () => {
    const p = prometheus as RunningPrometheus;
    const query = 'sum(unlock_button_clicks_total{pack="starter"})';
    // Known packs start at 0, so the series exists before the first tap.
    await p.waitFor(query, (r) => firstValue(r) === 0);
    for (let i = 0; i < 3; i++) runtime.telemetry.click('starter');
    await p.waitFor(query, (r) => firstValue(r) === 3);
    runtime.telemetry.click('starter');
    runtime.telemetry.click('+15551234567'); // not a pack: counted as "unknown"
    const after = await p.waitFor(query, (r) => firstValue(r) === 4);
    expect(firstValue(after)).toBe(4);
    const unknown = await p.waitFor('unlock_button_clicks_total{pack="unknown"}', (r) => firstValue(r) === 1);
    expect(unknown[0]?.metric.pack).toBe('unknown');
  });

  test('when deliveries are recorded, then the status counter and the click→delivered histogram are queryable', async () => {
    const p = prometheus as RunningPrometheus;
    runtime.telemetry.messageSent('starter');
    runtime.telemetry.messageStatus('delivered');
    runtime.telemetry.messageStatus('delivered');
    runtime.telemetry.clickToDelivered(4.2);
    await p.waitFor('unlock_message_statuses_total{status="delivered"}', (r) => firstValue(r) === 2);
    await p.waitFor('unlock_messages_sent_total{pack="starter"}', (r) => firstValue(r) === 1);
    const le = await p.waitFor('unlock_click_to_delivered_seconds_bucket{le="5"}', (r) => firstValue(r) === 1);
    expect(le).toHaveLength(1);
    const below = await p.query('unlock_click_to_delivered_seconds_bucket{le="2.5"}');
    expect(firstValue(below)).toBe(0);
  });
});

test('when the prometheus binary is missing outside CI, then the suite above is skipped rather than failed', () => {
  expect(available || (process.env.CI ?? '') === '' || process.env.CI === 'false').toBe(true);
});
