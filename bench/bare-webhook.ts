/**
 * The ingest benchmark's baseline: the least a correct webhook must do per POST — read the
 * body, verify the HMAC of the raw bytes, parse the JSON, answer 200. No storage, so no
 * durability: it is the ceiling the real service is measured against, not a competitor.
 *
 * Run as a child process (like the service) so both are measured the same way:
 *   BENCH_PORT=<port> BENCH_SECRET=<secret> node dist/bench/bare-webhook.js
 */
import { createServer } from 'node:http';
import { onSignedBody } from './signed-body';

const port = Number(process.env.BENCH_PORT ?? '0');
const secret = process.env.BENCH_SECRET ?? '';

const server = createServer((req, res) => {
  onSignedBody(req, res, secret, (body) => {
    try {
      JSON.parse(body.toString('utf8'));
    } catch {
      // Meta's contract: a signed body is acknowledged even if unreadable.
    }
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end('EVENT_RECEIVED');
  });
});

server.listen(port, '127.0.0.1');
process.once('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
});
