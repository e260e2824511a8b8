/**
 * Telemetry end to end through the real service: the compiled CLI in sandbox mode (its
 * built-in simulator plays Graph API and posts signed statuses back) exports spans over
 * OTLP/HTTP JSON to a loopback receiver, and the real Prometheus scrapes its METRICS_PORT.
 * Run `npm run build` first (`npm test` does).
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { SIMULATOR_ACCESS_TOKEN } from '../src/simulator/identity';
import { SANDBOX_KEY } from '../src/store/key-store';
import { driveTaps } from '../src/simulator/taps';
import { startOtlpReceiver, type CollectedSpan, type OtlpReceiver } from './helpers/otlp-receiver';
import { firstValue, parseExposition, PROMETHEUS_BIN, PROMTOOL_BIN, promtoolCheckMetrics, sampleValue, startPrometheus, toolAvailable, type RunningPrometheus } from './helpers/prometheus';
import { familiesText, scrape, startTelemetryCli, waitUntil, type TelemetryCli } from './helpers/telemetry-cli';
import { TEST_SECRET } from './helpers/webhook';

const KIND = { internal: 1, server: 2, client: 3 } as const;
const PACK = 'quick-tips';
const TRIGGER = 'unlock:quick-tips';
const PACK_SIZE = 3;
const SERVICE_NAME = 'ctu-e2e';

const hasPrometheus = toolAvailable(PROMETHEUS_BIN);
const hasPromtool = toolAvailable(PROMTOOL_BIN);

let receiver: OtlpReceiver;
let service: TelemetryCli;
let prometheus: RunningPrometheus | undefined;

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  service = await startTelemetryCli({
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_BSP_SCHEDULE_DELAY: '200',
    OTEL_SERVICE_NAME: SERVICE_NAME,
  });
  if (hasPrometheus) prometheus = await startPrometheus({ targets: [service.metricsTarget], scrapeIntervalSeconds: 1 });
}, 45_000);

afterAll(async () => {
  await prometheus?.stop();
  try {
    await service?.stop();
  } finally {
    await receiver?.close();
  }
});

interface OutboxRow {
  readonly id: number;
  readonly position: number;
  readonly wamid: string | null;
  readonly status: string | null;
  readonly trace_context: string | null;
  readonly send_trace: string | null;
}

function outboxOf(contact: string): OutboxRow[] {
  return service.db
    .prepare('SELECT id, position, wamid, status, trace_context, send_trace FROM outbox WHERE contact = ? AND pack_id = ? ORDER BY position')
    .all(contact, PACK) as OutboxRow[];
}

function statusesOf(wamids: readonly string[]): Array<{ wamid: string; status: string }> {
  return service.db
    .prepare(`SELECT wamid, status FROM statuses WHERE wamid IN (${wamids.map(() => '?').join(', ')}) ORDER BY id`)
    .all(...wamids) as Array<{ wamid: string; status: string }>;
}

/** The span id in a W3C traceparent `00-<trace>-<span>-<flags>`. */
function spanIdOf(traceparent: string | null): string | undefined {
  return traceparent?.split('-')[2];
}

function tapAll(contacts: readonly string[]) {
  return driveTaps({ webhookUrl: service.webhookUrl, appSecret: TEST_SECRET, contacts, triggers: [TRIGGER], ratePerSecond: 50, taps: contacts.length, retries: 0 });
}

describe('one tap traced through the running service', () => {
  test('when a contact taps Unlock on the 3-message pack, then one trace holds webhook → commit → tap → 3 sends with their Graph calls, and every status links to its send', async () => {
    const contact = '15557770001';
    const report = await tapAll([contact]);
    expect(report).toMatchObject({ taps: 1, posts: 1, non200: 0, errors: 0, undelivered: 0 });

    // The statuses the simulator posted back are in the database, and every one of them has its span.
    const rows = await waitUntil('every message of the pack delivered', () => {
      const r = outboxOf(contact);
      return r.length === PACK_SIZE && r.every((row) => row.status === 'delivered' || row.status === 'read') && r;
    });
    const wamids = rows.map((r) => r.wamid as string);
    const { statuses, spans } = await waitUntil('a message.status span for every stored status', () => {
      const stored = statusesOf(wamids);
      const all = [...receiver.spans];
      const ids = new Map(all.map((s) => [s.spanId, s]));
      const seen = all.filter((s) => s.name === 'message.status');
      // A status span ends inside its request, so the request's own spans may come in the next batch.
      const whole = seen.every((s) => {
        const commit = ids.get(s.parentSpanId ?? '');
        return commit !== undefined && ids.has(commit.parentSpanId ?? '');
      });
      return seen.length >= stored.length && whole && all.filter((s) => s.name === 'unlock.send').length >= PACK_SIZE && { statuses: stored, spans: all };
    });
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const parentOf = (s: CollectedSpan): CollectedSpan | undefined => (s.parentSpanId === undefined ? undefined : byId.get(s.parentSpanId));

    // webhook POST (server, root) → webhook.commit → unlock.tap
    const taps = spans.filter((s) => s.name === 'unlock.tap');
    expect(taps).toHaveLength(1);
    const tap = taps[0] as CollectedSpan;
    expect(tap.kind).toBe(KIND.internal);
    expect(tap.attributes).toMatchObject({ 'unlock.pack': PACK, 'unlock.contact_hash': expect.stringMatching(/^[0-9a-f]{8,}$/) });
    const commit = parentOf(tap) as CollectedSpan;
    expect(commit?.name).toBe('webhook.commit');
    const request = parentOf(commit) as CollectedSpan;
    expect(request).toMatchObject({
      name: 'POST /webhook',
      kind: KIND.server,
      parentSpanId: undefined,
      traceId: tap.traceId,
      attributes: {
        'http.request.method': 'POST',
        'url.path': '/webhook',
        'http.route': '/webhook',
        'url.scheme': 'http',
        'http.response.status_code': 200,
        'server.port': Number(new URL(service.webhookUrl).port),
      },
    });
    expect(request.resource).toMatchObject({
      'service.name': SERVICE_NAME,
      'service.version': expect.stringMatching(/^\d+\.\d+\.\d+/),
      'service.instance.id': expect.any(String),
    });
    expect(spans.filter((s) => s.parentSpanId === request.spanId).map((s) => s.name).sort()).toEqual(['webhook.commit', 'webhook.verify']);

    // The tap's traceparent is stored with each outbox row, and each send continues it.
    for (const row of rows) expect(row.trace_context).toBe(`00-${tap.traceId}-${tap.spanId}-01`);
    const sends = spans.filter((s) => s.name === 'unlock.send' && s.traceId === tap.traceId);
    expect(sends).toHaveLength(PACK_SIZE);
    expect(sends.map((s) => s.attributes['unlock.position']).sort()).toEqual([0, 1, 2]);
    for (const send of sends) {
      expect(send.parentSpanId).toBe(tap.spanId);
      expect(send.attributes).toMatchObject({ 'unlock.pack': PACK, 'messaging.system': 'whatsapp', 'unlock.send.result': 'accepted', 'unlock.attempt': expect.any(Number) });
      const row = rows.find((r) => r.id === send.attributes['unlock.outbox_id']) as OutboxRow;
      expect(row.position).toBe(send.attributes['unlock.position']);
      expect(spanIdOf(row.send_trace)).toBe(send.spanId);

      const graph = spans.filter((s) => s.parentSpanId === send.spanId);
      expect(graph).toHaveLength(1);
      const call = graph[0] as CollectedSpan;
      expect(call).toMatchObject({
        name: 'POST /{version}/{phone_number_id}/messages',
        kind: KIND.client,
        traceId: tap.traceId,
        attributes: { 'http.request.method': 'POST', 'http.response.status_code': 200, 'server.address': '127.0.0.1', 'url.template': '/{version}/{phone_number_id}/messages' },
      });
      const url = call.attributes['url.full'] as string;
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v\d+\.\d+\/\d+\/messages$/);
      expect(url).not.toMatch(/token|\?/i);
      expect(call.status.code).not.toBe(2);

      // Each status recorded for this message has a message.status span linked to this send.
      const expected = statuses.filter((s) => s.wamid === row.wamid).map((s) => s.status).sort();
      expect(expected).toEqual(expect.arrayContaining(['sent', 'delivered']));
      const linked = spans.filter((s) => s.name === 'message.status' && s.links.some((l) => l.spanId === send.spanId && l.traceId === tap.traceId));
      expect(linked.map((s) => s.attributes['messaging.message.status']).sort()).toEqual(expected);
      for (const status of linked) {
        expect(status.attributes['unlock.pack']).toBe(PACK);
        expect(status.traceId).not.toBe(tap.traceId);
        const statusCommit = parentOf(status);
        expect(statusCommit?.name).toBe('webhook.commit');
        expect(parentOf(statusCommit as CollectedSpan)).toMatchObject({ name: 'POST /webhook', kind: KIND.server, attributes: { 'http.response.status_code': 200 } });
      }
    }
    expect(spans.filter((s) => s.name === 'message.status')).toHaveLength(statuses.length);
    // Neither the contact's number nor the Graph API token was exported.
    const exported = receiver.bodies.join('\n');
    expect(exported).not.toContain(contact);
    expect(exported).not.toContain(SIMULATOR_ACCESS_TOKEN);
  });
});

describe('the REST API traced in the running service', () => {
  test('when the dashboard calls the REST API with a traceparent, then its request is a server span named by route in the caller\'s trace, with the express spans under it', async () => {
    const caller = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' };
    const res = await fetch(`${service.apiUrl}/summary`, {
      headers: { authorization: `Bearer ${SANDBOX_KEY}`, traceparent: `00-${caller.traceId}-${caller.spanId}-01` },
    });
    expect(res.status).toBe(200);
    await res.text();
    const spans = await receiver.waitFor((all) => all.some((s) => s.traceId === caller.traceId && s.kind === KIND.server));
    const inTrace = (all: readonly CollectedSpan[]) => all.filter((s) => s.traceId === caller.traceId);
    const server = inTrace(spans).find((s) => s.kind === KIND.server) as CollectedSpan;
    expect(server).toMatchObject({
      name: 'GET /api/summary',
      parentSpanId: caller.spanId,
      attributes: { 'http.request.method': 'GET', 'url.path': '/api/summary', 'http.route': '/api/summary', 'http.response.status_code': 200 },
    });
    // The middleware (helmet, cors, the key check) and the route's handler, each a span of the
    // express instrumentation under the request's span.
    const all = await receiver.waitFor((s) => inTrace(s).some((x) => x.name.startsWith('request handler') && x.scope.includes('express')));
    const express = inTrace(all).filter((s) => s.scope.includes('express'));
    expect(express.length).toBeGreaterThan(2);
    const ids = new Set(inTrace(all).map((s) => s.spanId));
    for (const span of express) expect(ids.has(span.parentSpanId ?? '')).toBe(true);
  });

  test('when the dashboard asks for a contact\'s messages, then the number in the path is in no exported span', async () => {
    const contact = '15557654321';
    const paths = [contact, `%2B${contact.slice(0, 4)}%20${contact.slice(4)}`, `${contact.slice(0, 4)}.${contact.slice(4, 7)}.${contact.slice(7)}`, '(555)%20765-4321'];
    for (const path of paths) {
      const res = await fetch(`${service.apiUrl}/contacts/${path}/messages`, { headers: { authorization: `Bearer ${SANDBOX_KEY}` } });
      await res.text();
    }
    const spans = await receiver.waitFor((all) => all.filter((s) => s.kind === KIND.server && s.name.startsWith('GET /api/contacts/')).length === paths.length);
    const served = spans.filter((s) => s.kind === KIND.server && s.name.startsWith('GET /api/contacts/'));
    expect(served.map((s) => s.attributes['url.path'])).toEqual(paths.map(() => '/api/contacts/[redacted]/messages'));
    const exported = receiver.bodies.join('\n');
    expect(exported).not.toContain(contact);
    expect(exported).not.toContain(contact.slice(4));
    expect(exported).not.toContain('765-4321');
  });
});

describe.skipIf(!hasPrometheus)('the real Prometheus scraping the running service', () => {
  test('when contacts tap and their packs are delivered, then PromQL sees the click and delivered-status counters rise', async () => {
    const p = prometheus as RunningPrometheus;
    await p.waitFor('up', (r) => firstValue(r) === 1, 20_000);
    const clicks = `sum(unlock_button_clicks_total{pack="${PACK}"})`;
    const delivered = 'sum(unlock_message_statuses_total{status="delivered"})';
    // Known packs and statuses start at 0, so both series exist before the taps; wait until
    // Prometheus has caught up with the live /metrics so the baseline is not a stale scrape.
    const live = parseExposition(await scrape(service.metricsUrl));
    const clicksBefore = sampleValue(live, 'unlock_button_clicks_total', { pack: PACK }) as number;
    const deliveredBefore = sampleValue(live, 'unlock_message_statuses_total', { status: 'delivered' }) as number;
    expect(clicksBefore).toEqual(expect.any(Number));
    expect(deliveredBefore).toEqual(expect.any(Number));
    await p.waitFor(clicks, (r) => firstValue(r) === clicksBefore, 10_000);
    await p.waitFor(delivered, (r) => firstValue(r) === deliveredBefore, 10_000);

    const contacts = ['15557770101', '15557770102', '15557770103', '15557770104', '15557770105'];
    const report = await tapAll(contacts);
    expect(report.undelivered).toBe(0);
    await waitUntil('every new pack delivered', () =>
      contacts.every((c) => {
        const rows = outboxOf(c);
        return rows.length === PACK_SIZE && rows.every((r) => r.status === 'delivered' || r.status === 'read');
      }),
    );

    const afterClicks = await p.waitFor(clicks, (r) => firstValue(r) === clicksBefore + contacts.length, 20_000);
    expect(firstValue(afterClicks)).toBe(clicksBefore + contacts.length);
    // Every message is delivered exactly once (the simulator injects no faults here).
    const afterDelivered = await p.waitFor(delivered, (r) => firstValue(r) === deliveredBefore + contacts.length * PACK_SIZE, 20_000);
    expect(firstValue(afterDelivered)).toBe(deliveredBefore + contacts.length * PACK_SIZE);
    const started = await p.waitFor(`unlock_unlocks_total{pack="${PACK}",result="started"}`, (r) => firstValue(r) >= contacts.length, 10_000);
    expect(started).toHaveLength(1);
  });
});

describe.skipIf(!hasPromtool)('promtool on the live /metrics', () => {
  test('when the running service is scraped, then `promtool check metrics` passes on its unlock_* families', async () => {
    const text = familiesText(await scrape(service.metricsUrl));
    for (const family of ['unlock_webhook_requests_total', 'unlock_button_clicks_total', 'unlock_message_statuses_total', 'unlock_webhook_ack_duration_seconds']) {
      expect(text).toContain(`# TYPE ${family} `);
    }
    const result = promtoolCheckMetrics(text);
    expect(result.output).toBe('');
    expect(result.ok).toBe(true);
  });
});

test('when prometheus or promtool is missing outside CI, then their suites above are skipped rather than failed', () => {
  expect((hasPrometheus && hasPromtool) || (process.env.CI ?? '') === '' || process.env.CI === 'false').toBe(true);
});
