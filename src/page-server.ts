/**
 * Serves the live dashboard page (built by `npm run build:page` into dist/page) at `/` on
 * the API port. The HTML is never cached and names content-hashed assets, which are cached
 * for a year. The page needs one fact the REST API does not give it, the WebSocket port, so
 * it goes into a meta tag; everything else the page learns from the public feed.
 *
 *   startService(config, { log, extendApi: pageMounter({ wsPort: config.ports.ws }) })
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import express, { type Express, type Response } from 'express';

export interface PageOptions {
  /** The port of the WebSocket feed as the browser reaches it; a function when only known after listen. */
  readonly wsPort?: number | (() => number | undefined);
  /** Where the built page is (default: dist/page in the package). */
  readonly dir?: string;
}

const YEAR_SECONDS = 365 * 24 * 3600;

// The document's own policy: only our scripts and styles, fetches to us, sockets to the feed port.
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self' ws: wss:",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export function pageMounter(options: PageOptions = {}): (app: Express) => void {
  const dir = options.dir ?? defaultPageDir();
  let template: string | undefined;
  return (app) => {
    app.use('/assets', express.static(join(dir, 'assets'), { index: false, immutable: true, maxAge: YEAR_SECONDS * 1000, fallthrough: true }));
    app.get(['/', '/index.html'], (_req, res) => {
      template ??= readTemplate(dir);
      if (template === undefined) return sendUnbuilt(res);
      const port = typeof options.wsPort === 'function' ? options.wsPort() : options.wsPort;
      const html = template.replace('<meta name="ctu-ws-port" content="">', `<meta name="ctu-ws-port" content="${port !== undefined && port > 0 ? port : ''}">`);
      res.setHeader('Content-Security-Policy', CSP);
      res.setHeader('Cache-Control', 'no-cache');
      res.type('html').send(html);
    });
  };
}

/** Mounts the page with the WebSocket port the page guesses (3001, the default WS_PORT). */
export const mountPage = pageMounter();

function readTemplate(dir: string): string | undefined {
  try {
    return readFileSync(join(dir, 'index.html'), 'utf8');
  } catch {
    return undefined;
  }
}

function sendUnbuilt(res: Response): void {
  res.status(503).setHeader('Retry-After', '5');
  res.type('text/plain').send('The dashboard page is not built yet: run `npm run build:page` (npm run build does it too).\n');
}

/** dist/page beside package.json, found from src/ or dist/src/. */
function defaultPageDir(): string {
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'dist', 'page');
    dir = dirname(dir);
  }
  return join(__dirname, '..', 'page');
}
