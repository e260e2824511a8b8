/**
 * The simulated Graph API send endpoint:
 *
 *   POST /{version}/{phone_number_id}/messages   Authorization: Bearer <token>
 *
 * checked in Graph's order — path, token (401, code 190), phone number id (400, code 100
 * subcode 33), body (400, code 100) — then the fault modes decide the answer. An accepted
 * send gets a unique wamid, goes into the send log and has its status webhooks planned;
 * the answer is Graph's `{"messaging_product","contacts":[{input,wa_id}],"messages":[{id}]}`.
 * A `{"status":"read","message_id"}` body (mark as read) answers `{"success":true}`.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FaultState } from './faults';
import { graphErrorAnswer, type GraphErrorOptions } from './graph-errors';
import { checkSend } from './send-validation';
import type { SendLog, SimRejection } from './send-log';
import type { StatusWebhooks } from './status-webhooks';

export interface SendCounters {
  requests: number;
  accepted: number;
  rejected: number;
  hung: number; // requests held without an answer, nothing accepted
  unanswered: number; // accepted but never answered (timeout fault)
  slowed: number;
  markedRead: number;
}

export interface GraphApiDeps {
  readonly accessToken: string;
  readonly phoneNumberId: string;
  readonly faults: FaultState;
  readonly statuses: StatusWebhooks;
  readonly log: SendLog;
  readonly clock: () => number;
  readonly counters: SendCounters;
  readonly answers: OpenAnswers;
}

const MESSAGES_PATH = /^\/(v\d+\.\d+)\/([^/]+)\/messages\/?$/;

/** Answers that are late (slow) or never come (hang, timeout); close() ends them all. */
export class OpenAnswers {
  private readonly held = new Set<ServerResponse>();
  private readonly timers = new Set<NodeJS.Timeout>();

  hold(res: ServerResponse): void {
    this.held.add(res);
    res.once('close', () => this.held.delete(res));
  }

  later(delayMs: number, answer: () => void): void {
    if (delayMs <= 0) return answer();
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      answer();
    }, delayMs);
    this.timers.add(timer);
  }

  close(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    for (const res of this.held) res.socket?.destroy();
    this.held.clear();
  }
}

/** Unique across simulator instances and restarts: a random instance prefix plus a counter. */
export function createWamidSource(): () => string {
  const prefix = randomBytes(6);
  let counter = 0;
  return () => {
    counter += 1;
    const id = Buffer.alloc(12);
    prefix.copy(id, 0);
    id.writeUIntBE(counter, 6, 6);
    return `wamid.HBgL${id.toString('base64url')}`;
  };
}

export function handleGraphRequest(deps: GraphApiDeps, req: IncomingMessage, res: ServerResponse, url: URL, body: Buffer, nextWamid: () => string): void {
  deps.counters.requests += 1;
  const rejectWith = (reason: SimRejection['reason'], code: number, options: GraphErrorOptions & { fault?: string; to?: string; callbackData?: string } = {}): void => {
    const answer = graphErrorAnswer(code, options);
    record(deps, { reason, code, status: answer.status, fault: options.fault, to: options.to, callbackData: options.callbackData });
    send(res, answer.status, answer.body, answer.headers);
  };

  const match = MESSAGES_PATH.exec(url.pathname);
  if (match === null) return rejectWith('path', 2500, { details: `Unknown path components: ${url.pathname.slice(0, 80)}` });
  if (req.method !== 'POST') return rejectWith('path', 100, { details: `Unsupported ${req.method ?? ''} request on the messages edge.` });
  const token = bearer(req.headers.authorization) ?? url.searchParams.get('access_token') ?? undefined;
  if (token !== deps.accessToken) {
    return rejectWith('auth', 190, { details: token === undefined ? 'An access token is required.' : 'Invalid OAuth access token - Cannot parse access token' });
  }
  if (match[2] !== deps.phoneNumberId) {
    return rejectWith('path', 100, {
      subcode: 33,
      details: `Unsupported post request. Object with ID '${(match[2] ?? '').slice(0, 40)}' does not exist, cannot be loaded due to missing permissions, or does not support this operation.`,
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    return rejectWith('validation', 100, { details: 'The request body is not valid JSON.' });
  }
  const check = checkSend(json);
  if (!check.ok) return rejectWith('validation', check.code, { details: check.details, ...peek(json) });
  if (check.kind === 'mark_read') {
    deps.counters.markedRead += 1;
    return send(res, 200, '{"success":true}');
  }

  const faults = deps.faults.forSend(check.waId);
  const who = { to: check.to, ...(check.callbackData !== undefined ? { callbackData: check.callbackData } : {}) };
  if (faults.delayMs > 0) deps.counters.slowed += 1;
  const answer = faults.answer;
  if (answer?.kind === 'hang') {
    deps.counters.hung += 1;
    record(deps, { reason: 'fault', code: undefined, status: 0, fault: 'hang', ...who });
    return deps.answers.hold(res);
  }
  if (answer !== undefined && answer.kind !== 'timeout') {
    const { kind, code, ...options } = answer;
    return deps.answers.later(faults.delayMs, () => rejectWith('fault', code, { ...options, fault: kind, ...who }));
  }

  const wamid = nextWamid();
  deps.counters.accepted += 1;
  deps.log.accept({
    wamid,
    to: check.to,
    waId: check.waId,
    type: check.type,
    body: json as Record<string, unknown>,
    callbackData: check.callbackData,
    acceptedAt: deps.clock(),
    answered: answer === undefined,
  });
  deps.statuses.plan({ wamid, waId: check.waId, callbackData: check.callbackData }, faults.failureCode, faults.reorder);
  if (answer?.kind === 'timeout') {
    deps.counters.unanswered += 1;
    return deps.answers.hold(res);
  }
  const ok = JSON.stringify({ messaging_product: 'whatsapp', contacts: [{ input: check.to, wa_id: check.waId }], messages: [{ id: wamid }] });
  deps.answers.later(faults.delayMs, () => send(res, 200, ok));
}

function record(deps: GraphApiDeps, r: Omit<SimRejection, 'at' | 'to' | 'callbackData' | 'fault'> & { fault?: string | undefined; to?: string | undefined; callbackData?: string | undefined }): void {
  deps.counters.rejected += 1;
  deps.log.reject({ at: deps.clock(), status: r.status, code: r.code, reason: r.reason, fault: r.fault, to: r.to, callbackData: r.callbackData });
}

function bearer(header: string | undefined): string | undefined {
  const m = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m?.[1];
}

/** Recipient and callback data of a rejected body, for the rejection log. */
function peek(json: unknown): { to?: string; callbackData?: string } {
  if (typeof json !== 'object' || json === null) return {};
  const { to, biz_opaque_callback_data: cb } = json as Record<string, unknown>;
  return { ...(typeof to === 'string' ? { to } : {}), ...(typeof cb === 'string' ? { callbackData: cb } : {}) };
}

export function send(res: ServerResponse, status: number, body: string, headers: Readonly<Record<string, string>> = {}): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { 'Content-Type': 'application/json; charset=UTF-8', ...headers, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}
