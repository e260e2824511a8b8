/**
 * Writes the dashboards as Grafana JSON: `node dist/grafana/src/generate.js [--out DIR] [--check]`.
 * --check compares with the files on disk instead of writing, and exits 1 on any difference,
 * so a forgotten `npm run dashboards` fails CI.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { businessDashboard } from './business';
import { operationsDashboard } from './operations';
import { toJson } from './panels';

export const DEFAULT_OUT_DIR = 'grafana/dashboards';

/** File name → file content, in a fixed order. */
export function renderDashboards(): ReadonlyMap<string, string> {
  return new Map([
    ['operations.json', toJson(operationsDashboard())],
    ['business.json', toJson(businessDashboard())],
  ]);
}

export function writeDashboards(outDir: string): string[] {
  mkdirSync(outDir, { recursive: true });
  const written: string[] = [];
  for (const [name, content] of renderDashboards()) {
    const file = join(outDir, name);
    writeFileSync(file, content);
    written.push(file);
  }
  return written;
}

/** Names of the files that are missing or differ from what the code generates. */
export function staleDashboards(outDir: string): string[] {
  const stale: string[] = [];
  for (const [name, content] of renderDashboards()) {
    const file = join(outDir, name);
    if (!existsSync(file) || readFileSync(file, 'utf8') !== content) stale.push(file);
  }
  return stale;
}

function main(): number {
  const { values } = parseArgs({ options: { out: { type: 'string', default: DEFAULT_OUT_DIR }, check: { type: 'boolean', default: false } } });
  const outDir = resolve(values.out);
  if (values.check) {
    const stale = staleDashboards(outDir);
    if (stale.length > 0) {
      process.stderr.write(`dashboards out of date (run npm run dashboards): ${stale.join(', ')}\n`);
      return 1;
    }
    process.stdout.write(`dashboards up to date in ${outDir}\n`);
    return 0;
  }
  for (const file of writeDashboards(outDir)) process.stdout.write(`wrote ${file}\n`);
  return 0;
}

if (require.main === module) process.exitCode = main();
