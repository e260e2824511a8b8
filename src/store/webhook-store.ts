/**
 * SQL for recording webhook deliveries: one prepared statement per function, plain values in
 * and out. Callers run these inside the group-commit transaction.
 */
import type { Db } from './database';

export interface InboxRow {
  /** Only for bodies deduplicated by their bytes; null when every item has a UNIQUE key of its own. */
  readonly bodySha256: Buffer | null;
  readonly receivedAt: number;
  readonly secretIndex: number;
  readonly itemCount: number;
  readonly body: Buffer;
}

export interface InboundRow {
  readonly wamid: string;
  readonly contact: string;
  readonly phoneNumberId: string | null;
  readonly type: string;
  readonly sentAt: number;
  readonly receivedAt: number;
  readonly inboxId: number;
}

export interface StatusRow {
  readonly wamid: string;
  readonly status: string;
  readonly statusAt: number;
  readonly receivedAt: number;
  readonly recipient: string | null;
  readonly errorCode: number | null;
  readonly callbackData: string | null;
  readonly inboxId: number;
}

export interface EventRow {
  readonly type: string;
  readonly at: number;
  readonly contact: string | null;
  readonly data: string;
}

export type WebhookStore = ReturnType<typeof createWebhookStore>;

export function createWebhookStore(db: Db) {
  const insertInbox = db.prepare<[Buffer | null, number, number, number, Buffer]>(
    `INSERT INTO inbox (body_sha256, received_at, secret_index, item_count, body) VALUES (?, ?, ?, ?, ?)
     ON CONFLICT (body_sha256) WHERE body_sha256 IS NOT NULL DO NOTHING`,
  );
  const deleteInbox = db.prepare<[number]>('DELETE FROM inbox WHERE id = ?');
  const insertInbound = db.prepare(
    `INSERT INTO inbound_messages (wamid, contact, phone_number_id, type, sent_at, received_at, inbox_id)
     VALUES (@wamid, @contact, @phoneNumberId, @type, @sentAt, @receivedAt, @inboxId) ON CONFLICT (wamid) DO NOTHING`,
  );
  const insertStatus = db.prepare(
    `INSERT INTO statuses (wamid, status, status_at, received_at, recipient, error_code, callback_data, inbox_id)
     VALUES (@wamid, @status, @statusAt, @receivedAt, @recipient, @errorCode, @callbackData, @inboxId)
     ON CONFLICT (wamid, status) DO NOTHING`,
  );
  const advanceStatus = db.prepare<[string, string, number, number, number, number | null]>(
    `INSERT INTO message_status (wamid, status, rank, status_at, updated_at, error_code) VALUES (?, ?, ?, ?, ?, ?)
     ON CONFLICT (wamid) DO UPDATE SET status = excluded.status, rank = excluded.rank, status_at = excluded.status_at,
       updated_at = excluded.updated_at, error_code = excluded.error_code
     WHERE excluded.rank > message_status.rank`,
  );
  const currentStatus = db.prepare<[string], { status: string; rank: number }>('SELECT status, rank FROM message_status WHERE wamid = ?');
  const insertChange = db.prepare<[number, string, number | null, number, string]>(
    'INSERT INTO webhook_changes (inbox_id, field, error_code, received_at, body) VALUES (?, ?, ?, ?, ?)',
  );
  const insertDeadLetter = db.prepare<[number | null, string, number, string | null]>(
    'INSERT INTO dead_letters (inbox_id, reason, created_at, body) VALUES (?, ?, ?, ?)',
  );
  const insertEvent = db.prepare<[string, number, string | null, string]>('INSERT INTO events (type, at, contact, data) VALUES (?, ?, ?, ?)');

  return {
    /** The new inbox id, or undefined when this exact body was recorded before. */
    insertInbox(row: InboxRow): number | undefined {
      const info = insertInbox.run(row.bodySha256, row.receivedAt, row.secretIndex, row.itemCount, row.body);
      return info.changes === 1 ? Number(info.lastInsertRowid) : undefined;
    },
    /** Takes back an inbox row nothing came of (every item in it was recorded before). */
    deleteInbox(id: number): void {
      deleteInbox.run(id);
    },
    /** True when the message is new (its wamid was not seen before). */
    insertInbound(row: InboundRow): boolean {
      return insertInbound.run(row).changes === 1;
    },
    /** True when this (wamid, status) is new. */
    insertStatus(row: StatusRow): boolean {
      return insertStatus.run(row).changes === 1;
    },
    /** Moves the wamid's current status forward; true when it moved. */
    advanceStatus(wamid: string, status: string, rank: number, statusAt: number, now: number, errorCode: number | null): boolean {
      return advanceStatus.run(wamid, status, rank, statusAt, now, errorCode).changes === 1;
    },
    currentStatus(wamid: string): { status: string; rank: number } | undefined {
      return currentStatus.get(wamid);
    },
    insertChange(inboxId: number, field: string, errorCode: number | null, receivedAt: number, body: string): void {
      insertChange.run(inboxId, field, errorCode, receivedAt, body);
    },
    insertDeadLetter(inboxId: number | null, reason: string, createdAt: number, body: string | null): void {
      insertDeadLetter.run(inboxId, reason, createdAt, body);
    },
    /** Appends to the event log; returns the event's seq. */
    appendEvent(row: EventRow): number {
      return Number(insertEvent.run(row.type, row.at, row.contact, row.data).lastInsertRowid);
    },
  };
}
