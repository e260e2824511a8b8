/**
 * Graph API client for sends: POST {base}/{version}/{phone_number_id}/messages.
 * It tells three outcomes apart, because the sender must: accepted (a wamid), a clear
 * failure (nothing was sent: refused connection, or an error answer), and an ambiguous
 * one (the request was written but no answer came: Meta may have sent the message).
 */
import http from 'node:http';
import https from 'node:https';
import type { GraphError } from './meta-payload';
import { parseGraphError } from './meta-payload';

export type SendResult =
  | { readonly kind: 'accepted'; readonly wamid: string; readonly httpStatus: number }
  | { readonly kind: 'error'; readonly httpStatus: number; readonly error: GraphError | undefined; readonly retryAfter: string | undefined }
  | { readonly kind: 'not_sent'; readonly reason: string } // connection failed before the request was written
  | { readonly kind: 'ambiguous'; readonly reason: string }; // written, but no (readable) answer

export interface GraphClientOptions {
  readonly baseUrl: string;
  readonly version: string;
  readonly phoneNumberId: string;
  readonly accessToken: string;
  readonly connectTimeoutMs?: number;
  readonly totalTimeoutMs?: number;
  readonly maxSockets?: number;
}

export interface GraphClient {
  send(to: string, message: Record<string, unknown>, callbackData: string): Promise<SendResult>;
  readonly endpoint: string;
  /** The longest a send can take before it is given up (connect, write and answer). */
  readonly totalTimeoutMs?: number;
  close(): void;
}

const MAX_ANSWER_BYTES = 1024 * 1024;

export function createGraphClient(options: GraphClientOptions): GraphClient {
  const endpoint = `${options.baseUrl}/${options.version}/${options.phoneNumberId}/messages`;
  const url = new URL(endpoint);
  const transport = url.protocol === 'https:' ? https : http;
  // No socket cap of its own by default: the sender already bounds sends in flight, and a pool
  // smaller than that queues requests here while the total timeout runs. When Meta holds some
  // answers, the queued sends then time out too, and those written late become ambiguous.
  const agent = new transport.Agent({ keepAlive: true, maxSockets: options.maxSockets ?? Infinity, maxFreeSockets: 64 });
  const connectTimeoutMs = options.connectTimeoutMs ?? 5_000;
  const totalTimeoutMs = options.totalTimeoutMs ?? 20_000;
  const authorization = `Bearer ${options.accessToken}`;

  function send(to: string, message: Record<string, unknown>, callbackData: string): Promise<SendResult> {
    const body = JSON.stringify({ messaging_product: 'whatsapp', recipient_type: 'individual', to, ...message, biz_opaque_callback_data: callbackData });
    return new Promise<SendResult>((resolve) => {
      let written = false;
      let settled = false;
      const finish = (result: SendResult): void => {
        if (settled) return;
        settled = true;
        clearTimeout(total);
        resolve(result);
      };
      const req = transport.request(url, {
        method: 'POST',
        agent,
        headers: { Authorization: authorization, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
      });
      const total = setTimeout(() => {
        finish(written ? { kind: 'ambiguous', reason: `no answer within ${totalTimeoutMs} ms` } : { kind: 'not_sent', reason: `not sent within ${totalTimeoutMs} ms` });
        req.destroy();
      }, totalTimeoutMs);
      req.on('socket', (socket) => {
        if (!socket.connecting) return;
        const connect = setTimeout(() => {
          finish({ kind: 'not_sent', reason: `connect timeout after ${connectTimeoutMs} ms` });
          req.destroy();
        }, connectTimeoutMs);
        socket.once('connect', () => clearTimeout(connect));
        socket.once('close', () => clearTimeout(connect));
      });
      req.on('finish', () => {
        written = true;
      });
      req.on('error', (error: NodeJS.ErrnoException) => {
        const reason = `${error.code ?? 'error'}: ${error.message}`;
        // A refused or unreachable connection never carried the request.
        const neverSent = !written || error.code === 'ECONNREFUSED' || error.code === 'ENOTFOUND' || error.code === 'EAI_AGAIN';
        finish(neverSent ? { kind: 'not_sent', reason } : { kind: 'ambiguous', reason });
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size <= MAX_ANSWER_BYTES) chunks.push(chunk);
        });
        res.on('error', (error) => finish({ kind: 'ambiguous', reason: `answer interrupted: ${error.message}` }));
        res.on('end', () => finish(interpret(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'), headerValue(res.headers['retry-after']))));
      });
      req.end(body);
    });
  }

  return { send, endpoint, totalTimeoutMs, close: () => agent.destroy() };
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

export function interpret(status: number, text: string, retryAfter: string | undefined): SendResult {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  if (status >= 200 && status < 300) {
    const wamid = (json as { messages?: Array<{ id?: unknown }> } | undefined)?.messages?.[0]?.id;
    if (typeof wamid === 'string' && wamid !== '') return { kind: 'accepted', wamid, httpStatus: status };
    // 2xx without a wamid: Meta took it, but we cannot follow it. Treat as ambiguous.
    return { kind: 'ambiguous', reason: `HTTP ${status} without a message id` };
  }
  const error = parseGraphError((json as { error?: unknown } | undefined)?.error);
  return { kind: 'error', httpStatus: status, error, retryAfter };
}
