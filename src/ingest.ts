/**
 * Ingest: the use case behind POST /webhook, once the signature is verified.
 * record → for every item: dedupe by its UNIQUE key, store it, append its event, let the
 * delivery side react (a tap unlocks a pack; a status moves an outbound message forward).
 * Runs inside the group-commit transaction, so nothing here is visible until COMMIT and
 * everything here is durable once the caller answers 200.
 */
import { createHash } from 'node:crypto';
import type { InboundMessageItem, StatusItem, WebhookItem } from './meta-payload';
import { parseWebhook, statusRank } from './meta-payload';
import type { Db } from './store/database';
import { isStorageUnavailable } from './store/database';
import type { WebhookStore } from './store/webhook-store';

export interface ItemContext {
  readonly inboxId: number;
  readonly receivedAt: number;
}

/** What the delivery side does with new items; called inside the same transaction. */
export interface IngestHooks {
  /** A message whose wamid was not seen before. */
  onInbound?(item: InboundMessageItem, ctx: ItemContext): void;
  /** A (wamid, status) not seen before; `advanced` tells whether the current status moved. */
  onStatus?(item: StatusItem, ctx: ItemContext & { readonly advanced: boolean }): void;
}

export interface IngestRequest {
  readonly body: Buffer;
  readonly secretIndex: number;
  readonly receivedAt: number;
}

export interface IngestOutcome {
  readonly duplicateBody: boolean;
  readonly items: number;
  readonly newMessages: number;
  readonly newStatuses: number;
  readonly deadLetters: number;
}

export type ItemResult = 'new' | 'duplicate' | 'dead_letter' | 'kept';

export interface IngestObserver {
  item?(kind: WebhookItem['kind'], result: ItemResult): void;
  unparseable?(): void;
}

export function createIngest(db: Db, store: WebhookStore, hooks: IngestHooks = {}, observer: IngestObserver = {}) {
  // Nested inside the batch transaction, better-sqlite3 runs this as a SAVEPOINT.
  const inSavepoint = db.transaction((fn: () => ItemResult): ItemResult => fn());

  function recordItem(item: WebhookItem, ctx: ItemContext): ItemResult {
    switch (item.kind) {
      case 'message': {
        const isNew = store.insertInbound({
          wamid: item.wamid,
          contact: item.from,
          phoneNumberId: item.phoneNumberId ?? null,
          type: item.type,
          sentAt: item.timestampMs,
          receivedAt: ctx.receivedAt,
          inboxId: ctx.inboxId,
        });
        if (!isNew) return 'duplicate';
        store.appendEvent({
          type: 'message.inbound',
          at: ctx.receivedAt,
          contact: item.from,
          data: JSON.stringify({
            wamid: item.wamid,
            contact: item.from,
            type: item.type,
            sent_at: new Date(item.timestampMs).toISOString(),
            ...(item.text !== undefined ? { text: item.text } : {}),
            ...(item.tap !== undefined ? { tap: item.tap } : {}),
          }),
        });
        hooks.onInbound?.(item, ctx);
        return 'new';
      }
      case 'status': {
        const errorCode = item.errors[0]?.code ?? null;
        const isNew = store.insertStatus({
          wamid: item.wamid,
          status: item.status,
          statusAt: item.timestampMs,
          receivedAt: ctx.receivedAt,
          recipient: item.recipient ?? null,
          errorCode,
          callbackData: item.callbackData ?? null,
          inboxId: ctx.inboxId,
        });
        if (!isNew) return 'duplicate';
        const rank = statusRank(item.status);
        const advanced = rank !== undefined && store.advanceStatus(item.wamid, item.status, rank, item.timestampMs, ctx.receivedAt, errorCode);
        const current = advanced ? item.status : (store.currentStatus(item.wamid)?.status ?? item.status);
        store.appendEvent({
          type: 'message.status',
          at: ctx.receivedAt,
          contact: item.recipient ?? null,
          data: JSON.stringify({
            wamid: item.wamid,
            status: item.status,
            current,
            status_at: new Date(item.timestampMs).toISOString(),
            ...(item.recipient !== undefined ? { contact: item.recipient } : {}),
            ...(errorCode !== null ? { error_code: errorCode } : {}),
          }),
        });
        hooks.onStatus?.(item, { ...ctx, advanced });
        return 'new';
      }
      case 'value_error':
        store.insertChange(ctx.inboxId, item.field, item.error.code, ctx.receivedAt, JSON.stringify(item.raw));
        return 'kept';
      case 'other':
        store.insertChange(ctx.inboxId, item.field, null, ctx.receivedAt, JSON.stringify(item.raw));
        return 'kept';
      case 'invalid':
        store.insertDeadLetter(ctx.inboxId, item.reason, ctx.receivedAt, safeJson(item.raw));
        return 'dead_letter';
    }
  }

  /**
   * Records one verified POST. Call inside a transaction (the group committer's).
   *
   * Meta's retries are byte-identical, and most bodies hold only messages and statuses, whose
   * UNIQUE keys already make a retry harmless: for those the inbox row is taken back when
   * nothing in it was new, which leaves a retry no trace without a body-hash index (a random
   * insert on every request). Bodies holding anything else (other fields, value errors,
   * invalid items, bytes that are not JSON) have no such keys and are deduplicated by the
   * SHA-256 of their bytes.
   */
  function record(request: IngestRequest): IngestOutcome {
    let json: unknown;
    let unparseable = false;
    try {
      json = JSON.parse(request.body.toString('utf8'));
    } catch {
      unparseable = true;
    }
    const parsed = unparseable ? { object: undefined, items: [] } : parseWebhook(json);
    const keyed = parsed.items.length > 0 && parsed.items.every((item) => item.kind === 'message' || item.kind === 'status');
    const inboxId = store.insertInbox({
      bodySha256: keyed ? null : createHash('sha256').update(request.body).digest(),
      receivedAt: request.receivedAt,
      secretIndex: request.secretIndex,
      itemCount: parsed.items.length,
      body: request.body,
    });
    // The same bytes were committed before, with all their items in the same transaction.
    if (inboxId === undefined) return { duplicateBody: true, items: parsed.items.length, newMessages: 0, newStatuses: 0, deadLetters: 0 };
    if (unparseable) {
      store.insertDeadLetter(inboxId, 'body is not valid JSON', request.receivedAt, null);
      observer.unparseable?.();
      return { duplicateBody: false, items: 0, newMessages: 0, newStatuses: 0, deadLetters: 1 };
    }
    const ctx: ItemContext = { inboxId, receivedAt: request.receivedAt };
    let newMessages = 0;
    let newStatuses = 0;
    let deadLetters = 0;
    for (const item of parsed.items) {
      let result: ItemResult;
      try {
        result = inSavepoint(() => recordItem(item, ctx));
      } catch (error) {
        if (isStorageUnavailable(error)) throw error;
        // A bug or an unexpected shape in one item: keep it as a dead letter, carry on with the rest.
        store.insertDeadLetter(inboxId, `item failed: ${error instanceof Error ? error.message : String(error)}`, request.receivedAt, safeJson(item.raw));
        result = 'dead_letter';
      }
      if (result === 'new' && item.kind === 'message') newMessages++;
      if (result === 'new' && item.kind === 'status') newStatuses++;
      if (result === 'dead_letter') deadLetters++;
      observer.item?.(item.kind, result);
    }
    const duplicateBody = keyed && newMessages + newStatuses + deadLetters === 0;
    if (duplicateBody) store.deleteInbox(inboxId);
    return { duplicateBody, items: parsed.items.length, newMessages, newStatuses, deadLetters };
  }

  return { record };
}

export type Ingest = ReturnType<typeof createIngest>;

function safeJson(value: unknown): string | null {
  try {
    return JSON.stringify(value) ?? null;
  } catch {
    return null;
  }
}
