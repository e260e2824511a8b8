/**
 * Thin adapters from the observer interfaces the webhook, ingest and group commit already
 * expose to the metrics, so those modules stay free of telemetry imports.
 */
import type { BatchObserver } from '../group-commit';
import type { IngestObserver } from '../ingest';
import type { WebhookObserver } from '../webhook-server';
import type { Telemetry } from './metrics';

export function webhookObserver(telemetry: Telemetry): WebhookObserver {
  return {
    request: (result, seconds) => telemetry.webhookRequest(result, seconds),
    signatureFailure: (reason) => telemetry.signatureFailure(reason),
    handshake: (ok) => telemetry.handshake(ok),
  };
}

/**
 * A dead-lettered item is counted twice on purpose: as an item (by kind) and as a dead letter
 * (stage "webhook"). An item the parser rejected is an invalid request; any other kind that
 * ends as a dead letter failed while being recorded.
 */
export function ingestObserver(telemetry: Telemetry): IngestObserver {
  return {
    item: (kind, result) => {
      telemetry.webhookItem(kind, result);
      if (result === 'dead_letter') telemetry.deadLetter('webhook', kind === 'invalid' ? 'invalid_request' : 'other');
    },
    unparseable: () => {
      telemetry.webhookItem('invalid', 'dead_letter');
      telemetry.deadLetter('webhook', 'invalid_request');
    },
  };
}

export function batchObserver(telemetry: Telemetry): BatchObserver {
  return (batch) => {
    if (batch.size > 0) telemetry.commitBatch(batch.size);
    telemetry.databaseWritable(batch.committed);
  };
}
