/**
 * Logs that join traces: every line written while a span is active carries its trace_id and
 * span_id (and trace_flags), so a log search leads to the trace and back. Fields that usually
 * hold a phone number are censored as a safety net; log `contactHash(contact)` instead.
 */
import { context, isSpanContextValid, trace, TraceFlags } from '@opentelemetry/api';
import type pino from 'pino';
import { createLogger, type Logger } from '../log';

const NUMBER_FIELDS = ['contact', 'from', 'to', 'recipient', 'recipient_id', 'phone', 'wa_id'];
export const REDACT_PATHS = [...NUMBER_FIELDS, ...NUMBER_FIELDS.map((f) => `*.${f}`)];

export function traceMixin(): Record<string, string> {
  const span = trace.getSpan(context.active());
  if (span === undefined) return {};
  const ctx = span.spanContext();
  if (!isSpanContextValid(ctx)) return {};
  return { trace_id: ctx.traceId, span_id: ctx.spanId, trace_flags: (ctx.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED ? '01' : '00' };
}

export function createTelemetryLogger(level: string, destination?: pino.DestinationStream): Logger {
  return createLogger(level, destination, { mixin: traceMixin, redact: { paths: REDACT_PATHS, censor: '[redacted]' } });
}
