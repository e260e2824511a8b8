/**
 * What the shipped observability files refer to: rules and their names, dashboard queries,
 * and the metric names inside a PromQL expression, so tests can hold them to the metrics
 * contract (docs/metrics.md) and to each other.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';

export const REPO = resolve(__dirname, '..');

export interface Rule {
  readonly alert?: string;
  readonly record?: string;
  readonly expr: string;
  readonly for?: string;
  readonly labels?: Record<string, string>;
  readonly annotations?: Record<string, string>;
}

export function loadRules(file: string): Rule[] {
  const doc = parse(readFileSync(join(REPO, file), 'utf8')) as { groups: { name: string; rules: Rule[] }[] };
  return doc.groups.flatMap((g) => g.rules);
}

export const alertRules = (): Rule[] => loadRules('prometheus/rules/alerts.yml').filter((r) => r.alert !== undefined);
export const recordingRules = (): Rule[] => loadRules('prometheus/rules/recording.yml').filter((r) => r.record !== undefined);

export interface DashboardQuery {
  readonly dashboard: string;
  readonly panel: string;
  readonly refId: string;
  readonly expr: string;
  readonly datasourceUid: string | undefined;
}

interface PanelJson {
  title?: string;
  type?: string;
  datasource?: { uid?: string };
  targets?: { refId?: string; expr?: string; datasource?: { uid?: string } }[];
  panels?: PanelJson[];
}

export function dashboardFiles(dir = join(REPO, 'grafana', 'dashboards')): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => join(dir, f));
}

/** Every query target of every panel, rows' nested panels included. */
export function dashboardQueries(files = dashboardFiles()): DashboardQuery[] {
  const out: DashboardQuery[] = [];
  for (const file of files) {
    const json = JSON.parse(readFileSync(file, 'utf8')) as { uid: string; panels?: PanelJson[] };
    const visit = (panels: PanelJson[] | undefined): void => {
      for (const panel of panels ?? []) {
        for (const target of panel.targets ?? []) {
          out.push({
            dashboard: json.uid,
            panel: panel.title ?? '(untitled)',
            refId: target.refId ?? '?',
            expr: target.expr ?? '',
            datasourceUid: target.datasource?.uid ?? panel.datasource?.uid,
          });
        }
        visit(panel.panels);
      }
    };
    visit(json.panels);
  }
  return out;
}

const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'offset', 'bool', 'inf', 'nan']);

/** Metric (and recorded series) names used in a PromQL expression. */
export function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""') // strings (label values, regexes)
    .replace(/\{[^}]*\}/g, '') // label matchers
    .replace(/\[[^\]]*\]/g, '') // range selectors and subqueries
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ''); // label lists
  const names = new Set<string>();
  for (const m of stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const name = m[0];
    const rest = stripped.slice((m.index ?? 0) + name.length);
    if (/^\s*\(/.test(rest)) continue; // a function call
    if (KEYWORDS.has(name.toLowerCase())) continue;
    const before = stripped.slice(0, m.index ?? 0);
    if (/[0-9.]$/.test(before) || /\d[eE]$/.test(before)) continue; // part of a number
    names.add(name);
  }
  return [...names].sort();
}

/** Histogram series name → its family name. */
export function familyOf(name: string, histograms: ReadonlySet<string>): string {
  for (const suffix of ['_bucket', '_count', '_sum']) {
    if (name.endsWith(suffix) && histograms.has(name.slice(0, -suffix.length))) return name.slice(0, -suffix.length);
  }
  return name;
}

/** The unlock_* names documented in docs/metrics.md (the contract). */
export function contractMetricNames(): Set<string> {
  const text = readFileSync(join(REPO, 'docs', 'metrics.md'), 'utf8');
  return new Set([...text.matchAll(/\bunlock_[a-z0-9_]+\b/g)].map((m) => m[0]));
}
