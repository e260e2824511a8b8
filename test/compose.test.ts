import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import Ajv from 'ajv';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { REPO } from './prometheus-names';

type Volume = string | { type?: string; source?: string; target: string };
interface Service {
  image?: string;
  build?: string | { context: string; dockerfile?: string };
  volumes?: Volume[];
  env_file?: string | string[];
  healthcheck?: unknown;
}
interface Compose {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

const composeText = readFileSync(join(REPO, 'docker-compose.yml'), 'utf8');
const compose = parse(composeText) as Compose;
// dclint ships the compose-spec JSON schema but does not export the file; locate it through its package root.
// Its "$schema" spells draft-07's id with https and without "#", which Ajv does not know; the
// schema is draft-07, Ajv's default dialect, so the declaration is dropped rather than aliased.
const schema = JSON.parse(readFileSync(join(REPO, 'node_modules', 'dclint', 'schemas', 'compose.schema.json'), 'utf8')) as Record<string, unknown>;
delete schema.$schema;
const validateCompose = new Ajv({ allErrors: true, strict: false, validateFormats: false }).compile(schema);

/** Host side of a bind mount, or undefined for a named volume. */
function bindSource(volume: Volume, namedVolumes: ReadonlySet<string>): string | undefined {
  if (typeof volume === 'string') {
    const source = volume.split(':')[0] ?? '';
    return namedVolumes.has(source) ? undefined : source;
  }
  return volume.type === 'bind' ? volume.source : undefined;
}

function mountTarget(service: Service, hostPath: string): string | undefined {
  for (const v of service.volumes ?? []) {
    if (typeof v === 'string') {
      const [source, target] = v.split(':');
      if (source !== undefined && resolve(REPO, source) === resolve(REPO, hostPath)) return target;
    } else if (v.source !== undefined && resolve(REPO, v.source) === resolve(REPO, hostPath)) {
      return v.target;
    }
  }
  return undefined;
}

describe('docker-compose.yml', () => {
  it('when validated against the compose-spec JSON schema, then it conforms', () => {
    const ok = validateCompose(compose);
    expect(validateCompose.errors ?? [], JSON.stringify(validateCompose.errors, null, 2)).toEqual([]);
    expect(ok).toBe(true);
  });

  it('when a file breaks the schema, then the validator rejects it (the check can fail)', () => {
    expect(validateCompose({ services: { app: { image: 'x', ports: 'not-a-list', restart_policy: 'always' } } })).toBe(false);
    expect(validateCompose({ ...compose, services: { ...compose.services, app: { ...compose.services.app, stop_grace_period: 20 } } })).toBe(false);
  });

  it('when the stack is listed, then it has the service, Prometheus, Alertmanager, Grafana, the collector and Jaeger', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['alertmanager', 'app', 'grafana', 'jaeger', 'otel-collector', 'prometheus']);
    expect(compose.services.app?.build).toMatchObject({ context: '.', dockerfile: 'Dockerfile' });
  });

  it('when services mount host paths, then every one exists in the repository', () => {
    const named = new Set(Object.keys(compose.volumes ?? {}));
    const sources: string[] = [];
    for (const [name, service] of Object.entries(compose.services)) {
      for (const volume of service.volumes ?? []) {
        const source = bindSource(volume, named);
        if (source === undefined) continue;
        expect(isAbsolute(source), `${name}: ${source} should be relative to the repository`).toBe(false);
        expect(existsSync(resolve(REPO, source)), `${name}: ${source}`).toBe(true);
        sources.push(source);
      }
      const build = service.build;
      if (build !== undefined) {
        const context = typeof build === 'string' ? build : build.context;
        expect(existsSync(resolve(REPO, context)), `${name}: build context`).toBe(true);
        if (typeof build !== 'string' && build.dockerfile !== undefined) expect(existsSync(resolve(REPO, context, build.dockerfile))).toBe(true);
      }
      for (const file of [service.env_file ?? []].flat()) expect(existsSync(resolve(REPO, file)), `${name}: env_file ${file}`).toBe(true);
    }
    expect(sources.length).toBeGreaterThanOrEqual(6);
  });

  it('when Prometheus and Grafana start, then their mounts line up with the paths their configs name', () => {
    const prom = compose.services.prometheus as Service;
    expect(mountTarget(prom, 'prometheus/prometheus.yml')).toBe('/etc/prometheus/prometheus.yml');
    expect(mountTarget(prom, 'prometheus/rules')).toBe('/etc/prometheus/rules');
    const promConfig = parse(readFileSync(join(REPO, 'prometheus', 'prometheus.yml'), 'utf8')) as {
      rule_files: string[];
      scrape_configs: { static_configs: { targets: string[] }[] }[];
      alerting: { alertmanagers: { static_configs: { targets: string[] }[] }[] };
    };
    for (const file of promConfig.rule_files) expect(existsSync(join(REPO, 'prometheus', file)), file).toBe(true);
    // Scrape and alerting targets name compose services.
    const targets = [
      ...promConfig.scrape_configs.flatMap((s) => s.static_configs.flatMap((c) => c.targets)),
      ...promConfig.alerting.alertmanagers.flatMap((a) => a.static_configs.flatMap((c) => c.targets)),
    ];
    expect(targets).toContain('app:9464');
    for (const target of targets) expect(Object.keys(compose.services), target).toContain(target.split(':')[0]);

    const grafana = compose.services.grafana as Service;
    expect(mountTarget(grafana, 'grafana/provisioning')).toBe('/etc/grafana/provisioning');
    const provider = parse(readFileSync(join(REPO, 'grafana', 'provisioning', 'dashboards', 'dashboards.yaml'), 'utf8')) as {
      providers: { options: { path: string } }[];
    };
    expect(mountTarget(grafana, 'grafana/dashboards')).toBe(provider.providers[0]?.options.path);
    const datasources = parse(readFileSync(join(REPO, 'grafana', 'provisioning', 'datasources', 'datasources.yaml'), 'utf8')) as {
      datasources: { url: string }[];
    };
    for (const ds of datasources.datasources) expect(Object.keys(compose.services), ds.url).toContain(new URL(ds.url).hostname);

    const collector = compose.services['otel-collector'] as Service;
    expect(mountTarget(collector, 'deploy/otel-collector.yaml')).toBeDefined();
    expect(mountTarget(compose.services.alertmanager as Service, 'deploy/alertmanager.yml')).toBe('/etc/alertmanager/alertmanager.yml');
  });

  it('when the image is built, then it runs as a non-root user with a health check on the service', () => {
    const dockerfile = readFileSync(join(REPO, 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/^FROM node:20/m);
    expect(dockerfile).toMatch(/^RUN npm ci\b/m);
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(dockerfile).toMatch(/^HEALTHCHECK .*\n?.*\/api\/health/m);
    const ignored = readFileSync(join(REPO, '.dockerignore'), 'utf8').split('\n');
    for (const entry of ['node_modules', '.env', 'data']) expect(ignored).toContain(entry);
  });

  it('when amtool is available, then the Alertmanager config is valid', () => {
    const probe = spawnSync('amtool', ['--version'], { stdio: 'ignore' });
    if (probe.error !== undefined) {
      if (process.env.CI) throw new Error('amtool is required under CI (apt-get install -y --no-install-recommends prometheus-alertmanager)');
      return;
    }
    const r = spawnSync('amtool', ['check-config', join(REPO, 'deploy', 'alertmanager.yml')], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status, `${r.stdout}${r.stderr}`).toBe(0);
  });

  it('when PM2 loads ecosystem.config.cjs, then the webhook and feed roles are separate single-instance apps', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const ecosystem = require(join(REPO, 'ecosystem.config.cjs')) as { apps: { name: string; script: string; args: string; instances: number; env: Record<string, string> }[] };
    expect(ecosystem.apps.map((a) => a.args)).toEqual(['start --role webhook', 'start --role feed']);
    for (const app of ecosystem.apps) {
      expect(app.instances).toBe(1);
      expect(existsSync(join(REPO, app.script))).toBe(true);
    }
    expect(new Set(ecosystem.apps.map((a) => a.env.METRICS_PORT)).size).toBe(2);
  });
});
