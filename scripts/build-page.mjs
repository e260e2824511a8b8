// Bundles the live dashboard page (src/page) into dist/page: index.html plus content-hashed
// assets, so the service can cache the assets forever and never the HTML.
//
//   node scripts/build-page.mjs [--outdir <dir>]
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const flag = process.argv.indexOf('--outdir');
const outdir = resolve(flag >= 0 && process.argv[flag + 1] !== undefined ? process.argv[flag + 1] : join(root, 'dist', 'page'));

rmSync(join(outdir, 'assets'), { recursive: true, force: true });
mkdirSync(outdir, { recursive: true });

const result = await build({
  entryPoints: { app: join(root, 'src', 'page', 'main.ts') },
  outdir: join(outdir, 'assets'),
  entryNames: '[name]-[hash]',
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['chrome109', 'firefox115', 'safari16'],
  sourcemap: 'linked',
  metafile: true,
  legalComments: 'linked',
  logLevel: 'warning',
  absWorkingDir: root,
});

const outputs = Object.keys(result.metafile.outputs).map((file) => resolve(root, file));
const asset = (ext) => {
  const file = outputs.find((f) => f.endsWith(ext) && !f.endsWith('.map'));
  if (file === undefined) throw new Error(`build-page: esbuild produced no ${ext} file`);
  return `/assets/${basename(file)}`;
};

const html = readFileSync(join(root, 'src', 'page', 'index.html'), 'utf8').replace('/assets/app.css', asset('.css')).replace('/assets/app.js', asset('.js'));
writeFileSync(join(outdir, 'index.html'), html);

const bytes = outputs.filter((f) => !f.endsWith('.map') && !f.endsWith('.txt')).map((f) => `${relative(outdir, f)} ${result.metafile.outputs[relative(root, f)]?.bytes ?? '?'} B`);
process.stdout.write(`build-page: ${relative(root, outdir) || '.'}/index.html, ${bytes.join(', ')}\n`);
