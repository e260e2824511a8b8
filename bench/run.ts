/**
 * `npm run bench [-- <name>…] [--rounds N] [--seconds S]`: runs the listed benchmarks (all by
 * default) one after another and rewrites their sections of bench/RESULTS.md, keeping the
 * sections of benchmarks that were not run. Exit code 1 when a target or check is missed.
 *
 * To add a benchmark: write bench/<name>.ts exporting `benchmark: Benchmark` (see harness.ts)
 * and list it in BENCHMARKS.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { machine, meets, summarise, type Benchmark, type BenchResult, type Figure } from './harness';
import { benchmark as feedSummary } from './feed-summary';
import { benchmark as feedWs } from './feed-ws';
import { benchmark as ingest } from './ingest';
import { benchmark as ingestFloor } from './ingest-floor';
import { benchmark as memory } from './memory';
import { benchmark as sender } from './sender';
import { benchmark as telemetry } from './telemetry';

const BENCHMARKS: readonly Benchmark[] = [ingest, ingestFloor, feedSummary, feedWs, sender, telemetry, memory];

const MIN_ROUNDS = 3;
// Five alternating rounds of 10 s keep the ingest bench under two minutes while giving the
// medians some footing on a machine shared with other work.
const DEFAULT_ROUNDS = 5;
const DEFAULT_SECONDS = 10;
const HEADER = `# Benchmark results

Written by \`npm run bench\` (every benchmark) or \`npm run bench -- <name>\` (one; the other
sections are kept as they were). Each figure is the median with min–max over the measured runs;
each ratio is computed per round from runs taken side by side, then summarised. Targets come
from issues 2 and 8. Loopback only; absolute figures depend on the machine and on what else
runs on it, the ratios much less.
`;

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { rounds: { type: 'string', default: String(DEFAULT_ROUNDS) }, seconds: { type: 'string', default: String(DEFAULT_SECONDS) } },
  });
  const rounds = Number(values.rounds);
  const seconds = Number(values.seconds);
  if (!Number.isInteger(rounds) || rounds < MIN_ROUNDS || rounds > 20) throw new Error(`--rounds must be an integer from ${MIN_ROUNDS} to 20`);
  if (!Number.isFinite(seconds) || seconds < 1 || seconds > 60) throw new Error('--seconds must be from 1 to 60');
  const unknown = positionals.filter((name) => !BENCHMARKS.some((b) => b.name === name));
  if (unknown.length > 0) throw new Error(`unknown benchmark(s) ${unknown.join(', ')}; known: ${BENCHMARKS.map((b) => b.name).join(', ')}`);
  const selected = positionals.length === 0 ? BENCHMARKS : BENCHMARKS.filter((b) => positionals.includes(b.name));

  const file = resultsFile();
  let text = existsSync(file) ? readFileSync(file, 'utf8') : HEADER;
  let failed = false;
  for (const bench of selected) {
    process.stdout.write(`\n== ${bench.name}: ${bench.title}\n`);
    const started = new Date();
    const result = await bench.run({ rounds, seconds, log: (line) => process.stdout.write(`${line}\n`) });
    const section = render(bench, result, started, rounds, seconds);
    process.stdout.write(`\n${section}\n`);
    failed ||= !passed(result);
    text = replaceSection(text, bench.name, section);
    writeFileSync(file, text); // after each benchmark, so a later crash keeps the earlier results
  }
  process.stdout.write(`\nwrote ${file}\n`);
  return failed ? 1 : 0;
}

/** bench/RESULTS.md in the checkout, found from dist/bench/ or bench/. */
function resultsFile(): string {
  let dir = __dirname;
  for (let i = 0; i < 4; i++) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'bench', 'RESULTS.md');
    dir = dirname(dir);
  }
  return resolve('bench', 'RESULTS.md');
}

function passed(result: BenchResult): boolean {
  return result.checks.every((c) => c.ok) && result.figures.every((f) => f.target === undefined || meets(summarise(f.values).median, f.target));
}

function render(bench: Benchmark, result: BenchResult, started: Date, rounds: number, seconds: number): string {
  const m = machine();
  const lines = [
    `## ${bench.title}`,
    '',
    `- measured: ${started.toISOString().replace(/\.\d+Z$/, 'Z')}, ${rounds} rounds of ${seconds} s`,
    `- machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB.toFixed(1)} GiB RAM, ${m.os}`,
    `- Node.js ${m.node}`,
    `- rerun: \`npm run bench -- ${bench.name}\`${rounds !== DEFAULT_ROUNDS || seconds !== DEFAULT_SECONDS ? ` (here with \`--rounds ${rounds} --seconds ${seconds}\`)` : ''}`,
    '',
    result.method,
    '',
    '| figure | median | min–max | runs | target |',
    '|---|---:|---:|---|---|',
    ...result.figures.map(row),
    '',
    ...result.checks.map((c) => `- ${c.ok ? 'ok' : '**FAILED**'}: ${c.label} — ${c.detail}`),
  ];
  return lines.join('\n');
}

function row(f: Figure): string {
  const digits = f.digits ?? 1;
  const fmt = (v: number): string => (Number.isFinite(v) ? v.toFixed(digits) : 'n/a');
  const s = summarise(f.values);
  const unit = f.unit === 'count' ? '' : f.unit === '×' ? '×' : ` ${f.unit}`;
  const target = f.target === undefined ? '' : `${f.target.op === '==' ? '=' : f.target.op === '>=' ? '≥' : '≤'} ${f.target.value}${unit} ${meets(s.median, f.target) ? 'met' : '**missed**'}`;
  return `| ${f.label} | ${fmt(s.median)}${unit} | ${fmt(s.min)}–${fmt(s.max)} | ${f.values.map(fmt).join(', ')} | ${target} |`;
}

function replaceSection(text: string, name: string, section: string): string {
  const begin = `<!-- bench:${name} -->`;
  const end = `<!-- /bench:${name} -->`;
  const block = `${begin}\n${section}\n${end}`;
  const from = text.indexOf(begin);
  const to = text.indexOf(end);
  if (from !== -1 && to > from) return text.slice(0, from) + block + text.slice(to + end.length);
  return `${text.trimEnd()}\n\n${block}\n`;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
