/**
 * What the benchmark's baseline servers share: read a POST's body, check its
 * X-Hub-Signature-256 against the raw bytes (timing-safe), answer 401 when it does not match,
 * and otherwise hand the verified body on.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

const PREFIX = 'sha256=';

export function onSignedBody(req: IncomingMessage, res: ServerResponse, secret: string, handle: (body: Buffer) => void): void {
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
    handle(body);
  });
}
