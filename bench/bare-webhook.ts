/**
 * The ingest benchmark's baseline: the least a correct webhook must do per POST — read the
 * body, verify the HMAC of the raw bytes, parse the JSON, answer 200. No storage, so no
 * durability: it is the ceiling the real service is measured against, not a competitor.
 *
 * Run as a child process (like the service) so both are measured the same way:
 *   BENCH_PORT=<port> BENCH_SECRET=<secret> node dist/bench/bare-webhook.js
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';

const port = Number(process.env.BENCH_PORT ?? '0');
const secret = process.env.BENCH_SECRET ?? '';
const PREFIX = 'sha256=';

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
    const header = req.headers['x-hub-signature-256'];
    const given = typeof header === 'string' && header.startsWith(PREFIX) ? Buffer.from(header.slice(PREFIX.length), 'hex') : undefined;
    const expected = createHmac('sha256', secret).update(body).digest();
    if (given === undefined || given.length !== expected.length || !timingSafeEqual(given, expected)) {
      res.writeHead(401, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('invalid signature\n');
      return;
    }
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
