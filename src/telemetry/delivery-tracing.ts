/**
 * Spans for delivery, so one trace (or a chain of linked spans) shows tap → every send →
 * every status: the tap span's traceparent is stored with each outbox row; the send span
 * continues it; the accepted send's traceparent is stored with the row, and each status
 * span links to it.
 */
import type { SendResult } from '../graph-client';
import { contactHash } from '../log';
import type { SendTracer } from '../sender';
import type { OutboxRow } from '../store/delivery-store';
import type { DeliveryTracer } from '../unlock';
import type { ReplayTracer } from '../writer';
import type { TraceSeed } from '../writer-ops';
import type { Span } from '@opentelemetry/api';
import { validSpanContext } from './lean-span';
import { childSpan, endClientSpan, graphRequestSpan, injectTraceparent, SPAN, SpanKind, startSpanFromTraceparent, startSpanWithLink, withSpan, withSpanId } from './tracing';

export const deliveryTracer: DeliveryTracer = {
  tap(packId, contact) {
    const span = childSpan(SPAN.tap, undefined, { 'unlock.pack': packId ?? 'unknown', 'unlock.contact_hash': contactHash(contact) });
    const traceparent = injectTraceparent(span);
    span.end();
    return traceparent;
  },
  status(sendTraceparent, status, packId) {
    startSpanWithLink(SPAN.status, sendTraceparent, { 'messaging.message.status': status, 'unlock.pack': packId ?? 'unknown' }).end();
  },
};

/**
 * The writer thread's taps and statuses, made into spans under the request's commit span once
 * the transaction committed. A tap's span gets the id the thread already stored in its outbox
 * rows' traceparent, so the sends continue it.
 */
export const replayTracer: ReplayTracer = {
  tap(spanId, packId, contact, parent) {
    const commit = parent as Span | undefined;
    if (commit === undefined || !commit.isRecording()) return;
    withSpan(commit, () => withSpanId(spanId, () => deliveryTracer.tap(packId, contact)));
  },
  status(sendTraceparent, status, packId, parent) {
    const commit = parent as Span | undefined;
    if (commit === undefined) return deliveryTracer.status(sendTraceparent, status, packId);
    withSpan(commit, () => deliveryTracer.status(sendTraceparent, status, packId));
  },
};

/** What the writer thread needs to continue `span`'s trace in the traceparents it stores. */
export function traceSeed(span: Span): TraceSeed | null {
  const ctx = validSpanContext(span);
  if (ctx === undefined) return null;
  return `${ctx.traceId}-${(ctx.traceFlags & 0xff) === 1 ? '01' : (ctx.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

export const sendTracer: SendTracer = {
  start(row: OutboxRow, endpoint: string) {
    const send = startSpanFromTraceparent(SPAN.send, row.trace_context, SpanKind.INTERNAL, {
      'unlock.pack': row.pack_id ?? 'unknown',
      'unlock.position': row.position,
      'unlock.outbox_id': row.id,
      'unlock.attempt': row.attempts,
      'messaging.system': 'whatsapp',
    });
    const client = graphRequestSpan(endpoint, send);
    return {
      traceparent: injectTraceparent(send),
      end(result: SendResult) {
        const statusCode = result.kind === 'accepted' || result.kind === 'error' ? result.httpStatus : undefined;
        const errorType =
          result.kind === 'error' ? String(result.error?.code ?? result.httpStatus) : result.kind === 'ambiguous' ? 'timeout' : result.kind === 'not_sent' ? 'network' : undefined;
        endClientSpan(client, { ...(statusCode !== undefined ? { statusCode } : {}), ...(errorType !== undefined ? { errorType } : {}) });
        send.setAttribute('unlock.send.result', result.kind);
        send.end();
      },
    };
  },
};
