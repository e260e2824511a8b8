/**
 * Small panel vocabulary shared by the dashboards: every query goes to the provisioned
 * Prometheus datasource (fixed uid, see grafana/provisioning/datasources), refIds and panel
 * ids are assigned in order so the generated JSON is stable from run to run.
 */
import * as common from '@grafana/grafana-foundation-sdk/common';
import * as dashboard from '@grafana/grafana-foundation-sdk/dashboard';
import * as bargauge from '@grafana/grafana-foundation-sdk/bargauge';
import * as prometheus from '@grafana/grafana-foundation-sdk/prometheus';
import * as stat from '@grafana/grafana-foundation-sdk/stat';
import * as timeseries from '@grafana/grafana-foundation-sdk/timeseries';

/** Must match the uids in grafana/provisioning/datasources/datasources.yaml. */
export const PROMETHEUS_UID = 'prometheus';
export const JAEGER_UID = 'jaeger';
export const prometheusDatasource: common.DataSourceRef = { type: 'prometheus', uid: PROMETHEUS_UID };

export interface Query {
  readonly expr: string;
  readonly legend?: string;
}

export interface PanelOptions {
  readonly description?: string;
  readonly unit?: string;
  readonly width?: number;
  readonly height?: number;
  readonly min?: number;
  readonly max?: number;
  /** Threshold steps above the base colour: value → colour. */
  readonly thresholds?: ReadonlyArray<readonly [number, string]>;
  readonly baseColor?: string;
}

const REF_IDS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';

function targets(queries: readonly Query[], instant: boolean): prometheus.DataqueryBuilder[] {
  return queries.map((q, i) => {
    const target = new prometheus.DataqueryBuilder()
      .datasource(prometheusDatasource)
      .refId(REF_IDS.charAt(i))
      .expr(q.expr)
      .legendFormat(q.legend ?? '__auto');
    return instant ? target.instant() : target.range();
  });
}

function thresholds(options: PanelOptions): dashboard.ThresholdsConfigBuilder {
  const steps: dashboard.Threshold[] = [{ value: null, color: options.baseColor ?? 'green' }];
  for (const [value, color] of options.thresholds ?? []) steps.push({ value, color });
  return new dashboard.ThresholdsConfigBuilder().mode(dashboard.ThresholdsMode.Absolute).steps(steps);
}

/** Hands out panel ids in order of creation; one per dashboard. */
export class PanelIds {
  private next = 1;
  take(): number {
    return this.next++;
  }
}

export function row(ids: PanelIds, title: string): dashboard.RowBuilder {
  return new dashboard.RowBuilder(title).id(ids.take());
}

export function timeSeries(ids: PanelIds, title: string, queries: readonly Query[], options: PanelOptions = {}): timeseries.PanelBuilder {
  const panel = new timeseries.PanelBuilder()
    .id(ids.take())
    .title(title)
    .datasource(prometheusDatasource)
    .targets(targets(queries, false))
    .unit(options.unit ?? 'short')
    .span(options.width ?? 12)
    .height(options.height ?? 8)
    .fillOpacity(10)
    .lineWidth(1)
    .thresholds(thresholds(options))
    .legend(new common.VizLegendOptionsBuilder().showLegend(true).displayMode(common.LegendDisplayMode.List).placement(common.LegendPlacement.Bottom));
  if (options.description !== undefined) panel.description(options.description);
  if (options.min !== undefined) panel.min(options.min);
  if (options.max !== undefined) panel.max(options.max);
  return panel;
}

export function statPanel(ids: PanelIds, title: string, queries: readonly Query[], options: PanelOptions = {}): stat.PanelBuilder {
  const panel = new stat.PanelBuilder()
    .id(ids.take())
    .title(title)
    .datasource(prometheusDatasource)
    .targets(targets(queries, false))
    .unit(options.unit ?? 'short')
    .span(options.width ?? 6)
    .height(options.height ?? 4)
    .thresholds(thresholds(options))
    .graphMode(common.BigValueGraphMode.Area)
    .colorMode(common.BigValueColorMode.Value)
    .reduceOptions(new common.ReduceDataOptionsBuilder().calcs(['lastNotNull']).values(false));
  if (options.description !== undefined) panel.description(options.description);
  return panel;
}

/** Horizontal bars of instant values: used for funnels over the dashboard's time range. */
export function barGauge(ids: PanelIds, title: string, queries: readonly Query[], options: PanelOptions = {}): bargauge.PanelBuilder {
  const panel = new bargauge.PanelBuilder()
    .id(ids.take())
    .title(title)
    .datasource(prometheusDatasource)
    .targets(targets(queries, true))
    .unit(options.unit ?? 'short')
    .span(options.width ?? 12)
    .height(options.height ?? 8)
    .min(0)
    .thresholds(thresholds({ ...options, baseColor: options.baseColor ?? 'blue' }))
    .orientation(common.VizOrientation.Horizontal)
    .displayMode(common.BarGaugeDisplayMode.Gradient)
    .reduceOptions(new common.ReduceDataOptionsBuilder().calcs(['lastNotNull']).values(false));
  if (options.description !== undefined) panel.description(options.description);
  return panel;
}

/** Builds the dashboard JSON as Grafana's file provisioner reads it. */
export function toJson(built: dashboard.Dashboard): string {
  return `${JSON.stringify(built, null, 2)}\n`;
}
