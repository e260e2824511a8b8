/**
 * Unlock: what a tap does, decided inside the webhook's transaction (invariant 4).
 *   unknown trigger → recorded as such
 *   stale tap (signed timestamp older than UNLOCK_MAX_TAP_AGE) → recorded as expired (invariant 8)
 *   first tap for (contact, pack) → the unlock and one outbox row per pack message
 *   any later tap → recorded as repeated, sends nothing (invariant 3)
 * And what a status does to one of our messages (resolve an ambiguous send, advance, fail).
 */
import { classifyGraphError } from './graph-errors';
import type { IngestHooks } from './ingest';
import { statusRank, type InboundMessageItem, type StatusItem } from './meta-payload';
import type { Catalog } from './packs';
import { outboxIdFromCallback, type DeliveryObserver, type Outbox } from './outbox';
import type { DeliveryStore } from './store/delivery-store';
import type { RollupStore } from './store/rollup-store';
import type { EventRow } from './store/webhook-store';

export interface UnlockDeps {
  readonly catalog: Catalog;
  readonly store: DeliveryStore;
  readonly rollup: RollupStore;
  readonly outbox: Outbox;
  readonly appendEvent: (row: EventRow) => number;
  readonly maxTapAgeMs: number;
  readonly observer?: DeliveryObserver;
  readonly tracer?: DeliveryTracer;
}

/** Spans for taps and statuses; the telemetry layer provides them. */
export interface DeliveryTracer {
  /** Records the tap's span; returns its W3C traceparent, stored with outbox rows so sends continue the trace. */
  tap(packId: string | null, contact: string): string | null;
  /** Records a status's handling, linked to the span of the send it reports on. */
  status(sendTraceparent: string | null, status: string, packId: string | null): void;
}

export function createUnlockHooks(deps: UnlockDeps): Required<IngestHooks> {
  const { catalog, store, rollup, observer } = deps;

  function onInbound(item: InboundMessageItem, ctx: { receivedAt: number }): void {
    const tap = item.tap;
    if (tap === undefined) return;
    const now = ctx.receivedAt;
    const pack = catalog.byTrigger(tap.trigger);
    const click = {
      wamid: item.wamid,
      contact: item.from,
      trigger: tap.trigger,
      packId: pack?.id ?? null,
      source: tap.source,
      tappedAt: item.timestampMs,
      receivedAt: now,
    };
    const event = (type: string, data: Record<string, unknown>): void => {
      deps.appendEvent({ type, at: now, contact: item.from, data: JSON.stringify({ contact: item.from, ...data }) });
    };
    const clickEvent = (clickId: number | undefined, result: string, unlockId: number | null): void =>
      event('click', {
        click_id: clickId,
        wamid: item.wamid,
        pack: pack?.id ?? null,
        trigger: tap.trigger,
        source: tap.source,
        result,
        unlock_id: unlockId,
        tapped_at: new Date(item.timestampMs).toISOString(),
      });
    rollup.noteContact(now, item.from);
    rollup.bump(now, click.packId, 'clicks');
    observer?.click?.(pack?.id ?? 'unknown');

    if (pack === undefined) {
      clickEvent(store.insertClick({ ...click, result: 'unknown_trigger', unlockId: null }), 'unknown_trigger', null);
      rollup.bump(now, null, 'unknown_triggers');
      observer?.unlock?.('unknown', 'unknown_trigger');
      return;
    }
    const ageMs = now - item.timestampMs;
    if (ageMs > deps.maxTapAgeMs) {
      clickEvent(store.insertClick({ ...click, result: 'expired', unlockId: null }), 'expired', null);
      event('unlock.expired', { pack: pack.id, tapped_at: new Date(item.timestampMs).toISOString(), age_seconds: Math.round(ageMs / 1000) });
      rollup.bump(now, pack.id, 'unlocks_expired');
      observer?.unlock?.(pack.id, 'expired');
      return;
    }
    const unlockId = store.insertUnlock(item.from, pack.id, pack.messages.length, now);
    if (unlockId === undefined) {
      const existing = store.findUnlock(item.from, pack.id);
      clickEvent(store.insertClick({ ...click, result: 'repeated', unlockId: existing?.id ?? null }), 'repeated', existing?.id ?? null);
      rollup.bump(now, pack.id, 'unlocks_repeated');
      observer?.unlock?.(pack.id, 'repeated');
      return;
    }
    const traceContext = deps.tracer?.tap(pack.id, item.from) ?? null;
    pack.messages.forEach((message, position) => {
      store.insertOutbox({ kind: 'pack', unlockId, contact: item.from, packId: pack.id, position, payload: JSON.stringify(message), runAt: now, createdAt: now, traceContext });
    });
    clickEvent(store.insertClick({ ...click, result: 'started', unlockId }), 'started', unlockId);
    event('unlock.started', { unlock_id: unlockId, pack: pack.id, messages: pack.messages.length });
    rollup.bump(now, pack.id, 'unlocks_started');
    observer?.unlock?.(pack.id, 'started');
  }

  function onStatus(item: StatusItem, ctx: { receivedAt: number }): void {
    observer?.messageStatus?.(statusRank(item.status) === undefined ? 'other' : item.status);
    const byCallback = outboxIdFromCallback(item.callbackData);
    const row = (byCallback !== undefined ? store.byId(byCallback) : undefined) ?? store.byWamid(item.wamid);
    if (row === undefined) return; // not ours (or not yet known): kept by ingest all the same
    deps.tracer?.status(row.send_trace, item.status, row.pack_id);
    const code = item.errors[0]?.code ?? null;
    const how = item.status === 'failed' ? classifyGraphError(code ?? undefined) : undefined;
    deps.outbox.status(row, item.wamid, item.status, statusRank(item.status), code, how, ctx.receivedAt);
  }

  return { onInbound, onStatus };
}
