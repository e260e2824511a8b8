import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { renderDashboards, staleDashboards, writeDashboards } from '../grafana/src/generate';
import { REPO } from './prometheus-names';

const committedDir = join(REPO, 'grafana', 'dashboards');
const tmp = mkdtempSync(join(tmpdir(), 'ctu-dashboards-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('generated dashboards', () => {
  it('when the dashboards are regenerated into a temp dir, then they equal the committed JSON byte for byte', () => {
    const written = writeDashboards(tmp);
    expect(written.length).toBe(2);
    for (const file of written) {
      const name = file.slice(tmp.length + 1);
      const committed = readFileSync(join(committedDir, name), 'utf8');
      expect(readFileSync(file, 'utf8'), `${name} is stale: run npm run dashboards`).toBe(committed);
    }
  });

  it('when grafana/dashboards is listed, then it holds exactly the generated files (nothing hand-made or left over)', () => {
    const onDisk = readdirSync(committedDir).filter((f) => f.endsWith('.json')).sort();
    expect(onDisk).toEqual([...renderDashboards().keys()].sort());
  });

  it('when generating twice, then the output is identical (no timestamps or random ids)', () => {
    const first = [...renderDashboards().values()];
    const second = [...renderDashboards().values()];
    expect(second).toEqual(first);
  });

  it('when a committed file differs from the code, then the check reports it', () => {
    const dir = mkdtempSync(join(tmp, 'stale-'));
    writeDashboards(dir);
    expect(staleDashboards(dir)).toEqual([]);
    const file = join(dir, 'business.json');
    writeFileSync(file, readFileSync(file, 'utf8').replace('Click-to-Unlock / Business', 'Edited by hand'));
    expect(staleDashboards(dir)).toEqual([file]);
  });
});
