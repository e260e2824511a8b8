/**
 * Operations dashboard: is the webhook answering, is the sender keeping up, is Meta
 * delivering, is the process healthy. Ratios and percentiles that alerts fire on come from
 * the recording rules in prometheus/rules/recording.yml, so the panel shows what the alert saw.
 */
import * as dashboard from '@grafana/grafana-foundation-sdk/dashboard';
import { PanelIds, row, statPanel, timeSeries } from './panels';

export const OPERATIONS_UID = 'ctu-operations';

const RATE = '[$__rate_interval]';

export function operationsDashboard(): dashboard.Dashboard {
  const ids = new PanelIds();
  return new dashboard.DashboardBuilder('Click-to-Unlock / Operations')
    .uid(OPERATIONS_UID)
    .description('Webhook, sender, Graph API, delivery SLO and process health of the Click-to-Unlock service.')
    .tags(['click-to-unlock', 'operations'])
    .editable()
    .refresh('30s')
    .time({ from: 'now-6h', to: 'now' })
    .timezone('browser')
    .tooltip(dashboard.DashboardCursorSync.Crosshair)

    .withRow(row(ids, 'Overview'))
    .withPanel(
      statPanel(ids, 'Webhook error ratio (5m)', [{ expr: 'unlock:webhook_error_ratio:rate5m' }], {
        unit: 'percentunit',
        description: 'Share of POST /webhook answered 500 or 503. Alert WebhookErrorRatioHigh fires above 5%.',
        thresholds: [[0.01, 'orange'], [0.05, 'red']],
      }),
    )
    .withPanel(
      statPanel(ids, 'Delivery errors (1h)', [{ expr: 'unlock:delivery_errors:ratio_rate1h' }], {
        unit: 'percentunit',
        description: 'Dead-lettered sends plus failed statuses over messages sent or given up. Objective: below 1%.',
        thresholds: [[0.01, 'orange'], [0.144, 'red']],
      }),
    )
    .withPanel(
      statPanel(ids, 'Oldest unsent message', [{ expr: 'max(unlock_sender_oldest_age_seconds)' }], {
        unit: 's',
        thresholds: [[60, 'orange'], [300, 'red']],
      }),
    )
    .withPanel(
      statPanel(ids, 'Database writable', [{ expr: 'min(unlock_database_writable)' }], {
        description: '1 when the last commit succeeded. 0 means webhooks are answered 503.',
        baseColor: 'red',
        thresholds: [[1, 'green']],
      }),
    )

    .withRow(row(ids, 'Webhook'))
    .withPanel(
      timeSeries(ids, 'Webhook requests by result', [{ expr: `sum by (result) (rate(unlock_webhook_requests_total${RATE}))`, legend: '{{result}}' }], {
        unit: 'reqps',
      }),
    )
    .withPanel(
      timeSeries(ids, 'Webhook ack latency', [{ expr: 'unlock:webhook_ack_duration_seconds:quantile_rate5m', legend: 'p{{quantile}}' }], {
        unit: 's',
        description: 'First byte to answer, including the group commit. Meta times out after a few seconds.',
      }),
    )
    .withPanel(
      timeSeries(ids, 'Signature failures by reason', [{ expr: `sum by (reason) (rate(unlock_webhook_signature_failures_total${RATE}))`, legend: '{{reason}}' }], {
        unit: 'reqps',
        description: 'mismatch everywhere: wrong META_APP_SECRET. missing/malformed: not Meta.',
      }),
    )
    .withPanel(
      timeSeries(ids, 'Webhook items by kind and result', [{ expr: `sum by (kind, result) (rate(unlock_webhook_items_total${RATE}))`, legend: '{{kind}} {{result}}' }], {
        unit: 'ops',
      }),
    )
    .withPanel(
      timeSeries(ids, 'Dead letters by stage and error class', [{ expr: `sum by (stage, error_class) (rate(unlock_dead_letters_total${RATE}))`, legend: '{{stage}} {{error_class}}' }], {
        unit: 'ops',
        width: 24,
      }),
    )

    .withRow(row(ids, 'Sender and Graph API'))
    .withPanel(timeSeries(ids, 'Sender queue depth', [{ expr: 'sum(unlock_sender_queue_depth)', legend: 'unsent messages' }], { width: 8, min: 0 }))
    .withPanel(
      timeSeries(ids, 'Oldest unsent message age', [{ expr: 'max(unlock_sender_oldest_age_seconds)', legend: 'oldest' }], {
        unit: 's',
        width: 8,
        min: 0,
        thresholds: [[300, 'red']],
      }),
    )
    .withPanel(
      statPanel(ids, 'Possible duplicate sends (range)', [{ expr: 'sum(increase(unlock_possible_duplicate_sends_total[$__range])) or vector(0)' }], {
        width: 8,
        height: 8,
        description: 'Ambiguous sends that no status resolved in time and were sent once more.',
        thresholds: [[1, 'orange']],
      }),
    )
    .withPanel(
      timeSeries(ids, 'Send attempts by result', [{ expr: `sum by (result) (rate(unlock_send_attempts_total${RATE}))`, legend: '{{result}}' }], { unit: 'ops' }),
    )
    .withPanel(
      timeSeries(ids, 'Send errors by class', [{ expr: `sum by (error_class) (rate(unlock_send_attempts_total{error_class!="none"}${RATE}))`, legend: '{{error_class}}' }], {
        unit: 'ops',
        description: 'auth = code 190 (token); rate_limit/pair_rate_limit = throttling; recipient/policy/invalid_request are permanent.',
      }),
    )
    .withPanel(
      timeSeries(ids, 'Graph API latency', [{ expr: 'unlock:graph_request_duration_seconds:quantile_rate5m', legend: 'p{{quantile}}' }], { unit: 's' }),
    )
    .withPanel(
      timeSeries(ids, 'Graph API calls by outcome', [{ expr: `sum by (outcome) (rate(unlock_graph_request_duration_seconds_count${RATE}))`, legend: '{{outcome}}' }], {
        unit: 'reqps',
      }),
    )
    .withPanel(
      timeSeries(ids, 'Message statuses from Meta', [{ expr: `sum by (status) (rate(unlock_message_statuses_total${RATE}))`, legend: '{{status}}' }], { unit: 'ops' }),
    )
    .withPanel(
      timeSeries(
        ids,
        'Delivery error ratio vs objective',
        [
          { expr: 'unlock:delivery_errors:ratio_rate5m', legend: '5m' },
          { expr: 'unlock:delivery_errors:ratio_rate1h', legend: '1h' },
          { expr: 'unlock:delivery_errors:ratio_rate6h', legend: '6h' },
        ],
        {
          unit: 'percentunit',
          min: 0,
          description: 'Objective 99%: the fast-burn page needs 1h and 5m above 14.4%, the slow-burn ticket 6h and 30m above 6%.',
          thresholds: [[0.06, 'orange'], [0.144, 'red']],
        },
      ),
    )

    .withRow(row(ids, 'Feed, storage and process'))
    .withPanel(timeSeries(ids, 'WebSocket clients', [{ expr: 'sum(unlock_websocket_clients)', legend: 'clients' }], { width: 8, min: 0 }))
    .withPanel(
      timeSeries(ids, 'Group commit batch size (p99)', [{ expr: `histogram_quantile(0.99, sum by (le) (rate(unlock_db_commit_batch_size_bucket${RATE})))`, legend: 'p99' }], {
        width: 8,
      }),
    )
    .withPanel(
      timeSeries(ids, 'Telemetry export failures', [{ expr: `sum(rate(unlock_telemetry_export_failures_total${RATE})) or vector(0)`, legend: 'failures' }], {
        unit: 'ops',
        width: 8,
      }),
    )
    .withPanel(timeSeries(ids, 'Process CPU', [{ expr: `rate(process_cpu_seconds_total${RATE})`, legend: '{{instance}}' }], { unit: 'percentunit', width: 8 }))
    .withPanel(
      timeSeries(
        ids,
        'Process memory',
        [
          { expr: 'process_resident_memory_bytes', legend: 'RSS {{instance}}' },
          { expr: 'nodejs_heap_size_used_bytes', legend: 'heap used {{instance}}' },
        ],
        { unit: 'bytes', width: 8 },
      ),
    )
    .withPanel(
      timeSeries(ids, 'Event loop lag (p99)', [{ expr: 'nodejs_eventloop_lag_p99_seconds', legend: '{{instance}}' }], {
        unit: 's',
        width: 8,
        thresholds: [[0.1, 'orange'], [0.5, 'red']],
      }),
    )
    .build();
}
