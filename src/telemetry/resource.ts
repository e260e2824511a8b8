/**
 * Who is reporting: service.name, service.version and a per-process service.instance.id, the
 * resource attached to every span and to target_info on /metrics.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { defaultResource, resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';

export const DEFAULT_SERVICE_NAME = 'click-to-unlock';
/** Not exported by semantic-conventions' stable entry point (it is still incubating there). */
export const ATTR_SERVICE_INSTANCE_ID = 'service.instance.id';

/** Found by walking up rather than imported: the compiled file lives one level deeper, under dist/. */
function readVersion(): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      try {
        const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown; version?: unknown };
        if (pkg.name === DEFAULT_SERVICE_NAME && typeof pkg.version === 'string') return pkg.version;
      } catch {
        // an unreadable package.json further down is not ours; keep walking
      }
    }
    dir = dirname(dir);
  }
  return '0.0.0';
}

export const SERVICE_VERSION = readVersion();
export const SERVICE_INSTANCE_ID = randomUUID();

/** OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES still win: the SDK's env detector merges over this. */
export function serviceResource(env: Readonly<Record<string, string | undefined>>): Resource {
  const name = env.OTEL_SERVICE_NAME?.trim();
  return defaultResource().merge(
    resourceFromAttributes({
      [ATTR_SERVICE_NAME]: name !== undefined && name !== '' ? name : DEFAULT_SERVICE_NAME,
      [ATTR_SERVICE_VERSION]: SERVICE_VERSION,
      [ATTR_SERVICE_INSTANCE_ID]: SERVICE_INSTANCE_ID,
    }),
  );
}
