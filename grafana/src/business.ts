/**
 * Business dashboard: taps, unlocks, the per-pack funnel and how many messages reach and are
 * read by contacts. Statuses carry no pack label (a status names a message, not a pack), so
 * delivered and read are shown for all packs together.
 */
import * as dashboard from '@grafana/grafana-foundation-sdk/dashboard';
import { barGauge, PanelIds, row, prometheusDatasource, statPanel, timeSeries } from './panels';

export const BUSINESS_UID = 'ctu-business';

const RATE = '[$__rate_interval]';
const RANGE = '[$__range]';
const PACK = 'pack=~"$pack"';

export function businessDashboard(): dashboard.Dashboard {
  const ids = new PanelIds();
  return new dashboard.DashboardBuilder('Click-to-Unlock / Business')
    .uid(BUSINESS_UID)
    .description('Taps on Unlock buttons, unlocked packs, and how their messages are delivered and read.')
    .tags(['click-to-unlock', 'business'])
    .editable()
    .refresh('1m')
    .time({ from: 'now-24h', to: 'now' })
    .timezone('browser')
    .tooltip(dashboard.DashboardCursorSync.Crosshair)
    .withVariable(
      new dashboard.QueryVariableBuilder('pack')
        .label('Pack')
        .datasource(prometheusDatasource)
        .query('label_values(unlock_button_clicks_total, pack)')
        .definition('label_values(unlock_button_clicks_total, pack)')
        .refresh(dashboard.VariableRefresh.OnTimeRangeChanged)
        .sort(dashboard.VariableSort.AlphabeticalAsc)
        .multi(true)
        .includeAll(true)
        .allValue('.*')
        .current({ text: 'All', value: '$__all' }),
    )

    .withRow(row(ids, 'Totals in range'))
    .withPanel(statPanel(ids, 'Taps', [{ expr: `sum(increase(unlock_button_clicks_total{${PACK}}${RANGE})) or vector(0)` }], { baseColor: 'blue' }))
    .withPanel(
      statPanel(ids, 'Packs unlocked', [{ expr: `sum(increase(unlock_unlocks_total{${PACK},result="started"}${RANGE})) or vector(0)` }], {
        baseColor: 'blue',
      }),
    )
    .withPanel(
      statPanel(ids, 'Delivery rate (all packs, 1h)', [{ expr: 'unlock:message_delivered_ratio:rate1h' }], {
        unit: 'percentunit',
        baseColor: 'red',
        thresholds: [[0.9, 'orange'], [0.99, 'green']],
        description: 'Delivered statuses over messages accepted by Graph API.',
      }),
    )
    .withPanel(
      statPanel(ids, 'Read rate (all packs, 1h)', [{ expr: 'unlock:message_read_ratio:rate1h' }], {
        unit: 'percentunit',
        baseColor: 'blue',
        description: 'Read statuses over messages accepted by Graph API. Contacts with read receipts off never report read.',
      }),
    )

    .withRow(row(ids, 'Funnel'))
    .withPanel(
      barGauge(
        ids,
        'Per-pack funnel: tapped → unlocked → messages sent',
        [
          { expr: `sum by (pack) (increase(unlock_button_clicks_total{${PACK}}${RANGE}))`, legend: '{{pack}} · tapped' },
          { expr: `sum by (pack) (increase(unlock_unlocks_total{${PACK},result="started"}${RANGE}))`, legend: '{{pack}} · unlocked' },
          { expr: `sum by (pack) (increase(unlock_messages_sent_total{${PACK}}${RANGE}))`, legend: '{{pack}} · messages sent' },
        ],
        { description: 'A pack sends several messages, so "messages sent" is a multiple of "unlocked" when all went out.' },
      ),
    )
    .withPanel(
      barGauge(
        ids,
        'Messages: sent → delivered → read (all packs)',
        [
          { expr: `sum(increase(unlock_messages_sent_total${RANGE}))`, legend: 'sent' },
          { expr: `sum(increase(unlock_message_statuses_total{status="delivered"}${RANGE})) or vector(0)`, legend: 'delivered' },
          { expr: `sum(increase(unlock_message_statuses_total{status="read"}${RANGE})) or vector(0)`, legend: 'read' },
          { expr: `sum(increase(unlock_message_statuses_total{status="failed"}${RANGE})) or vector(0)`, legend: 'failed' },
        ],
        {},
      ),
    )

    .withRow(row(ids, 'Over time'))
    .withPanel(
      timeSeries(ids, 'Taps by pack', [{ expr: `sum by (pack) (rate(unlock_button_clicks_total{${PACK}}${RATE}))`, legend: '{{pack}}' }], { unit: 'ops' }),
    )
    .withPanel(
      timeSeries(ids, 'Unlocks by result', [{ expr: `sum by (result) (rate(unlock_unlocks_total{${PACK}}${RATE}))`, legend: '{{result}}' }], {
        unit: 'ops',
        description: 'started: a pack goes out. repeated: the contact already has it. expired: tap older than UNLOCK_MAX_TAP_AGE. unknown_trigger: no pack for the button.',
      }),
    )
    .withPanel(
      timeSeries(
        ids,
        'Delivery and read rate',
        [
          {
            expr: `sum(rate(unlock_message_statuses_total{status="delivered"}${RATE})) / sum(rate(unlock_messages_sent_total${RATE}))`,
            legend: 'delivered',
          },
          { expr: `sum(rate(unlock_message_statuses_total{status="read"}${RATE})) / sum(rate(unlock_messages_sent_total${RATE}))`, legend: 'read' },
        ],
        { unit: 'percentunit', min: 0 },
      ),
    )
    .withPanel(
      timeSeries(
        ids,
        'Tap → delivered and tap → first message latency',
        [
          { expr: 'unlock:click_to_delivered_seconds:quantile_rate5m', legend: 'delivered p{{quantile}}' },
          { expr: `histogram_quantile(0.95, sum by (le) (rate(unlock_click_to_sent_seconds_bucket${RATE})))`, legend: 'first sent p0.95' },
        ],
        { unit: 's', description: 'From the tap reaching our webhook to the last message of the pack reported delivered.' },
      ),
    )
    .build();
}
