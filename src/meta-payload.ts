/**
 * Meta webhook payloads → a flat list of items, one per inbound message, status, value-level
 * error or other change. Pure: no I/O, never throws. An item that does not have the shape
 * it needs becomes an `invalid` item carrying its own raw JSON, so one bad item never drops
 * its neighbours (invariant 2).
 *
 * Shape (WhatsApp Cloud API):
 *   { object, entry: [ { id, changes: [ { field, value: { metadata, contacts, messages,
 *     statuses, errors } } ] } ] }
 */

export type StatusName = 'sent' | 'delivered' | 'read' | 'failed';

export interface GraphError {
  readonly code: number;
  readonly title?: string;
  readonly message?: string;
  readonly details?: string;
}

/** A contact tapped a reply button (interactive) or a template quick-reply button. */
export interface Tap {
  readonly trigger: string;
  readonly source: 'button_reply' | 'quick_reply';
  readonly title?: string;
}

export interface InboundMessageItem {
  readonly kind: 'message';
  readonly phoneNumberId: string | undefined;
  readonly wamid: string;
  readonly from: string;
  readonly type: string;
  readonly timestampMs: number;
  readonly text?: string;
  readonly tap?: Tap;
  readonly errors: readonly GraphError[];
  readonly raw: unknown;
}

export interface StatusItem {
  readonly kind: 'status';
  readonly phoneNumberId: string | undefined;
  readonly wamid: string;
  readonly status: string; // usually a StatusName; unknown names are stored, never ranked
  readonly timestampMs: number;
  readonly recipient: string | undefined;
  readonly errors: readonly GraphError[];
  readonly callbackData: string | undefined;
  readonly raw: unknown;
}

export interface ValueErrorItem {
  readonly kind: 'value_error';
  readonly field: string;
  readonly error: GraphError;
  readonly raw: unknown;
}

export interface OtherChangeItem {
  readonly kind: 'other';
  readonly field: string;
  readonly raw: unknown;
}

export interface InvalidItem {
  readonly kind: 'invalid';
  readonly reason: string;
  readonly raw: unknown;
}

export type WebhookItem = InboundMessageItem | StatusItem | ValueErrorItem | OtherChangeItem | InvalidItem;

export interface ParsedWebhook {
  readonly object: string | undefined;
  readonly items: readonly WebhookItem[];
}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
const list = (v: unknown): readonly unknown[] => (Array.isArray(v) ? v : []);

/** Meta sends Unix seconds as a string. */
export function parseTimestamp(v: unknown): number | undefined {
  const text = typeof v === 'number' ? String(v) : v;
  if (typeof text !== 'string' || !/^\d{1,12}$/.test(text)) return undefined;
  return Number(text) * 1000;
}

export function parseGraphError(v: unknown): GraphError | undefined {
  if (!isObject(v)) return undefined;
  const code = typeof v.code === 'number' ? v.code : typeof v.code === 'string' && /^\d+$/.test(v.code) ? Number(v.code) : undefined;
  if (code === undefined) return undefined;
  const data = isObject(v.error_data) ? v.error_data : undefined;
  return {
    code,
    ...(str(v.title) !== undefined ? { title: str(v.title) } : {}),
    ...(str(v.message) !== undefined ? { message: str(v.message) } : {}),
    ...(str(data?.details) !== undefined ? { details: str(data?.details) } : {}),
  };
}

const errorsOf = (v: unknown): GraphError[] => list(v).flatMap((e) => parseGraphError(e) ?? []);

export function parseWebhook(body: unknown): ParsedWebhook {
  if (!isObject(body)) return { object: undefined, items: [{ kind: 'invalid', reason: 'body is not a JSON object', raw: body }] };
  const items: WebhookItem[] = [];
  if (!Array.isArray(body.entry)) {
    items.push({ kind: 'invalid', reason: 'body has no entry array', raw: body });
  }
  for (const entry of list(body.entry)) {
    if (!isObject(entry) || !Array.isArray(entry.changes)) {
      items.push({ kind: 'invalid', reason: 'entry has no changes array', raw: entry });
      continue;
    }
    for (const change of entry.changes) parseChange(change, items);
  }
  return { object: str(body.object), items };
}

function parseChange(change: unknown, items: WebhookItem[]): void {
  if (!isObject(change) || str(change.field) === undefined || !isObject(change.value)) {
    items.push({ kind: 'invalid', reason: 'change needs a field and an object value', raw: change });
    return;
  }
  const field = change.field as string;
  const value = change.value;
  if (field !== 'messages') {
    items.push({ kind: 'other', field, raw: change });
    return;
  }
  const phoneNumberId = isObject(value.metadata) ? str(value.metadata.phone_number_id) : undefined;
  for (const message of list(value.messages)) items.push(parseMessage(message, phoneNumberId));
  for (const status of list(value.statuses)) items.push(parseStatus(status, phoneNumberId));
  for (const raw of list(value.errors)) {
    const error = parseGraphError(raw);
    items.push(error === undefined ? { kind: 'invalid', reason: 'value error has no numeric code', raw } : { kind: 'value_error', field, error, raw });
  }
  if (!Array.isArray(value.messages) && !Array.isArray(value.statuses) && !Array.isArray(value.errors)) {
    // A messages change with none of the lists we understand (a newer Meta shape): keep it.
    items.push({ kind: 'other', field, raw: change });
  }
}

function parseMessage(m: unknown, phoneNumberId: string | undefined): WebhookItem {
  if (!isObject(m)) return { kind: 'invalid', reason: 'message is not an object', raw: m };
  const wamid = str(m.id);
  const from = str(m.from);
  const type = str(m.type);
  const timestampMs = parseTimestamp(m.timestamp);
  if (wamid === undefined) return { kind: 'invalid', reason: 'message has no id', raw: m };
  if (from === undefined || !/^\d{5,20}$/.test(from)) return { kind: 'invalid', reason: 'message has no valid from', raw: m };
  if (type === undefined) return { kind: 'invalid', reason: 'message has no type', raw: m };
  if (timestampMs === undefined) return { kind: 'invalid', reason: 'message has no valid timestamp', raw: m };
  const text = type === 'text' && isObject(m.text) ? str(m.text.body) : undefined;
  const tap = tapOf(m, type);
  return {
    kind: 'message',
    phoneNumberId,
    wamid,
    from,
    type,
    timestampMs,
    ...(text !== undefined ? { text } : {}),
    ...(tap !== undefined ? { tap } : {}),
    errors: errorsOf(m.errors),
    raw: m,
  };
}

function tapOf(m: Json, type: string): Tap | undefined {
  if (type === 'interactive' && isObject(m.interactive) && m.interactive.type === 'button_reply' && isObject(m.interactive.button_reply)) {
    const reply = m.interactive.button_reply;
    const trigger = str(reply.id);
    if (trigger === undefined) return undefined;
    const title = str(reply.title);
    return { trigger, source: 'button_reply', ...(title !== undefined ? { title } : {}) };
  }
  if (type === 'button' && isObject(m.button)) {
    const trigger = str(m.button.payload);
    if (trigger === undefined) return undefined;
    const title = str(m.button.text);
    return { trigger, source: 'quick_reply', ...(title !== undefined ? { title } : {}) };
  }
  return undefined;
}

function parseStatus(s: unknown, phoneNumberId: string | undefined): WebhookItem {
  if (!isObject(s)) return { kind: 'invalid', reason: 'status is not an object', raw: s };
  const wamid = str(s.id);
  const status = str(s.status);
  const timestampMs = parseTimestamp(s.timestamp);
  if (wamid === undefined) return { kind: 'invalid', reason: 'status has no id', raw: s };
  if (status === undefined) return { kind: 'invalid', reason: 'status has no status', raw: s };
  if (timestampMs === undefined) return { kind: 'invalid', reason: 'status has no valid timestamp', raw: s };
  return {
    kind: 'status',
    phoneNumberId,
    wamid,
    status,
    timestampMs,
    recipient: str(s.recipient_id),
    errors: errorsOf(s.errors),
    callbackData: str(s.biz_opaque_callback_data),
    raw: s,
  };
}

/** `sent < delivered < read`; `failed` outranks only `sent` (a delivered message did not fail). */
const RANK: Readonly<Record<string, number>> = { sent: 1, failed: 2, delivered: 3, read: 4 };

export function statusRank(status: string): number | undefined {
  return RANK[status];
}

/**
 * The message object with this wamid in a raw webhook body (as the inbox keeps it), for the
 * contact history; undefined when the body no longer holds it (cleared by retention).
 */
export function messageInBody(body: Buffer, wamid: string): Record<string, unknown> | undefined {
  if (body.length === 0) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!isObject(json)) return undefined;
  for (const entry of list(json.entry)) {
    if (!isObject(entry)) continue;
    for (const change of list(entry.changes)) {
      if (!isObject(change) || !isObject(change.value)) continue;
      for (const message of list(change.value.messages)) if (isObject(message) && message.id === wamid) return message;
    }
  }
  return undefined;
}
