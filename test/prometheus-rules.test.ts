import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { PROMTOOL_BIN, toolAvailable } from './helpers/prometheus';
import { alertRules, contractMetricNames, dashboardQueries, familyOf, metricNames, recordingRules, REPO } from './prometheus-names';

const hasPromtool = toolAvailable(PROMTOOL_BIN);

function promtool(...args: string[]): { status: number | null; output: string } {
  const r = spawnSync(PROMTOOL_BIN, args, { cwd: REPO, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

const ruleTestFiles = readdirSync(join(REPO, 'prometheus', 'tests'))
  .filter((f) => f.endsWith('.yml'))
  .map((f) => join('prometheus', 'tests', f));

describe.skipIf(!hasPromtool)('promtool', () => {
  it('when promtool checks prometheus.yml, then the config and the rule files it loads are valid', () => {
    const r = promtool('check', 'config', 'prometheus/prometheus.yml');
    expect(r.output).toContain('SUCCESS');
    expect(r.status, r.output).toBe(0);
  });

  it('when promtool checks the rule files, then every rule parses and type-checks', () => {
    const r = promtool('check', 'rules', 'prometheus/rules/recording.yml', 'prometheus/rules/alerts.yml');
    expect(r.status, r.output).toBe(0);
  });

  it('when promtool runs the rule unit tests, then all of them pass', () => {
    expect(ruleTestFiles.length).toBeGreaterThan(0);
    const r = promtool('test', 'rules', ...ruleTestFiles);
    expect(r.output).not.toContain('FAILED');
    expect(r.status, r.output).toBe(0);
  });
});

interface RuleTestFile {
  tests: { name: string; alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[];
}

describe('alerting rules', () => {
  const alerts = alertRules();
  const names = [...new Set(alerts.map((a) => a.alert as string))];

  it('when the alert file is read, then it has the alerts operators were promised', () => {
    expect(names.sort()).toEqual(
      [
        'DatabaseNotWritable',
        'DeadLettersRising',
        'DeliverySuccessBelowObjective',
        'GraphApiAuthFailures',
        'SenderBacklogOld',
        'WebhookErrorRatioHigh',
        'WebhookSignatureFailureSpike',
        'WebhookTrafficAbsent',
      ].sort(),
    );
  });

  it('when an alert fires, then it carries a severity, a summary, a description and a runbook link that resolves', () => {
    const operations = readFileSync(join(REPO, 'docs', 'operations.md'), 'utf8');
    const runbooks = operations.slice(operations.indexOf('## Runbooks'));
    expect(operations).toContain('## Runbooks');
    for (const alert of alerts) {
      const name = alert.alert as string;
      expect(['critical', 'warning'], name).toContain(alert.labels?.severity);
      expect(alert.annotations?.summary, name).toBeTruthy();
      expect(alert.annotations?.description, name).toBeTruthy();
      expect(alert.annotations?.runbook_url, name).toBe(`docs/operations.md#${name.toLowerCase()}`);
      // The anchor GitHub and most renderers derive from "### Name" is the lower-cased name.
      const heading = `\n### ${name}\n`;
      expect(runbooks, `runbook heading for ${name}`).toContain(heading);
      const section = runbooks.slice(runbooks.indexOf(heading) + heading.length).split('\n### ')[0] ?? '';
      for (const part of ['**Meaning:**', '**Impact:**', '**Diagnosis:**', '**Action:**']) expect(section, `${name} ${part}`).toContain(part);
    }
  });

  it('when the promtool tests are read, then every alert has a case where it fires and one where it stays quiet', () => {
    const firing = new Set<string>();
    const quiet = new Set<string>();
    for (const file of ruleTestFiles) {
      const doc = parse(readFileSync(join(REPO, file), 'utf8')) as RuleTestFile;
      for (const test of doc.tests) {
        for (const check of test.alert_rule_test ?? []) (check.exp_alerts.length > 0 ? firing : quiet).add(check.alertname);
      }
    }
    for (const name of names) {
      expect(firing, `${name} has a firing test`).toContain(name);
      expect(quiet, `${name} has a not-firing test`).toContain(name);
    }
  });
});

describe('names used by rules and dashboards', () => {
  const recorded = new Set(recordingRules().map((r) => r.record as string));
  const processMetrics = (() => {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const names = new Set<string>();
    for (const m of registry.getMetricsAsArray()) {
      names.add(m.name);
      if (String(m.type) === 'histogram') for (const s of ['_bucket', '_count', '_sum']) names.add(`${m.name}${s}`);
    }
    return names;
  })();

  function unknownNames(exprs: readonly string[]): string[] {
    const contract = contractMetricNames();
    const histograms = new Set([...contract].filter((n) => /_seconds$|_batch_size$/.test(n)));
    const unknown = new Set<string>();
    for (const expr of exprs) {
      for (const name of metricNames(expr)) {
        if (name.includes(':')) {
          if (!recorded.has(name)) unknown.add(name);
        } else if (name.startsWith('unlock_')) {
          if (!contract.has(familyOf(name, histograms))) unknown.add(name);
        } else if (!processMetrics.has(name)) {
          unknown.add(name);
        }
      }
    }
    return [...unknown];
  }

  // docs/metrics.md is written alongside the telemetry; under CI its absence fails this test.
  it.skipIf(!existsSync(join(REPO, 'docs', 'metrics.md')) && !process.env.CI)(
    'when rules and dashboards are scanned, then they use only contract metrics, prom-client process metrics and recorded series',
    () => {
      const exprs = [...recordingRules(), ...alertRules()].map((r) => r.expr).concat(dashboardQueries().map((q) => q.expr));
      expect(exprs.length).toBeGreaterThan(30);
      expect(unknownNames(exprs)).toEqual([]);
    },
  );

  it('when an expression names an unknown metric, then the scan reports it (the check can fail)', () => {
    expect(metricNames('sum by (result) (rate(unlock_webhook_requests_total{result=~"a|b"}[5m])) / 2e3')).toEqual(['unlock_webhook_requests_total']);
    expect(metricNames('histogram_quantile(0.99, sum by (le) (rate(x_bucket[$__rate_interval]))) or vector(0)')).toEqual(['x_bucket']);
    expect(metricNames('unlock:a:rate5m > (14.4 * 0.01) and unlock:b:rate1h > 0.5')).toEqual(['unlock:a:rate5m', 'unlock:b:rate1h']);
  });
});
