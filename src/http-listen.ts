/**
 * Starting and stopping our HTTP servers (webhook, feed API and WebSocket, metrics, simulator)
 * the same way everywhere: listen reports bind errors instead of throwing them on the server,
 * close drains in-flight requests for a bounded grace.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Binds `server` and resolves with the port it got (port 0 picks a free one). */
export function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/**
 * Stops accepting, lets in-flight requests finish for up to `graceMs`, and closes idle
 * keep-alive sockets at once. A server that never listened (or already closed) resolves at once.
 */
export function closeServer(server: Server, graceMs = 10_000): Promise<void> {
  if (!server.listening) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => server.closeAllConnections(), graceMs);
    force.unref();
    server.close(() => {
      clearTimeout(force);
      resolve();
    });
    server.closeIdleConnections();
  });
}
