import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { dashboardFiles, dashboardQueries, metricNames, REPO } from './prometheus-names';

interface DatasourcesFile {
  datasources: { uid: string; type: string; url: string }[];
}

const provisioned = readdirSync(join(REPO, 'grafana', 'provisioning', 'datasources'))
  .filter((f) => /\.ya?ml$/.test(f))
  .flatMap((f) => (parse(readFileSync(join(REPO, 'grafana', 'provisioning', 'datasources', f), 'utf8')) as DatasourcesFile).datasources);

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  panels?: Panel[];
}

function panelsOf(file: string): Panel[] {
  const json = JSON.parse(readFileSync(file, 'utf8')) as { panels: Panel[] };
  return json.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}

function namesIn(dashboard: string): Set<string> {
  return new Set(dashboardQueries().filter((q) => q.dashboard === dashboard).flatMap((q) => metricNames(q.expr)));
}

describe('dashboards', () => {
  it('when provisioning is read, then Prometheus and the trace store have the fixed uids the dashboards use', () => {
    const byUid = new Map(provisioned.map((d) => [d.uid, d]));
    expect(byUid.get('prometheus')?.type).toBe('prometheus');
    expect(byUid.get('jaeger')?.type).toBe('jaeger');
  });

  it('when any panel queries, then it queries the provisioned Prometheus by uid', () => {
    const queries = dashboardQueries();
    expect(queries.length).toBeGreaterThan(30);
    for (const q of queries) {
      expect(q.datasourceUid, `${q.dashboard} / ${q.panel}`).toBe('prometheus');
      expect(q.expr.trim(), `${q.dashboard} / ${q.panel} ${q.refId}`).not.toBe('');
    }
  });

  it('when panels are laid out, then ids are unique and no two panels overlap on the 24-column grid', () => {
    for (const file of dashboardFiles()) {
      const panels = panelsOf(file);
      expect(new Set(panels.map((p) => p.id)).size, file).toBe(panels.length);
      const cells = new Set<string>();
      for (const p of panels) {
        expect(p.gridPos.x + p.gridPos.w, `${p.title} fits`).toBeLessThanOrEqual(24);
        for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x++) {
          for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y++) {
            const cell = `${x},${y}`;
            expect(cells.has(cell), `${p.title} overlaps at ${cell}`).toBe(false);
            cells.add(cell);
          }
        }
      }
    }
  });

  it('when the operations dashboard is read, then it covers webhook, sender, Graph API, statuses, feed and process health', () => {
    const names = namesIn('ctu-operations');
    for (const name of [
      'unlock_webhook_requests_total',
      'unlock:webhook_ack_duration_seconds:quantile_rate5m',
      'unlock_webhook_signature_failures_total',
      'unlock_dead_letters_total',
      'unlock_sender_queue_depth',
      'unlock_sender_oldest_age_seconds',
      'unlock_send_attempts_total',
      'unlock:graph_request_duration_seconds:quantile_rate5m',
      'unlock_message_statuses_total',
      'unlock_websocket_clients',
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_p99_seconds',
    ]) {
      expect(names, name).toContain(name);
    }
  });

  it('when the business dashboard is read, then it shows taps, unlocks, the per-pack funnel, delivery and read rates and tap → delivered latency', () => {
    const names = namesIn('ctu-business');
    for (const name of [
      'unlock_button_clicks_total',
      'unlock_unlocks_total',
      'unlock_messages_sent_total',
      'unlock_message_statuses_total',
      'unlock:message_delivered_ratio:rate1h',
      'unlock:message_read_ratio:rate1h',
      'unlock:click_to_delivered_seconds:quantile_rate5m',
    ]) {
      expect(names, name).toContain(name);
    }
    const funnel = dashboardQueries().filter((q) => q.dashboard === 'ctu-business' && q.panel.startsWith('Per-pack funnel'));
    expect(funnel.map((q) => q.expr.includes('sum by (pack)'))).toEqual([true, true, true]);
  });
});
