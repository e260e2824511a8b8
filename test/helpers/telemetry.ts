/**
 * The app's Telemetry API called once per method with fixed values, so that every family the
 * app can emit is on /metrics and the values the metrics tests assert are known.
 */
import type { Telemetry } from '../../src/telemetry/metrics';

export function recordOneOfEverything(t: Telemetry): void {
  t.webhookRequest('accepted', 0.004);
  t.signatureFailure('mismatch');
  t.webhookItem('message', 'new');
  t.handshake(true);
  t.click('starter');
  t.unlock('starter', 'started');
  t.messageSent('starter');
  t.messageStatus('delivered');
  t.sendAttempt('accepted', 'none');
  t.graphRequest('ok', 0.12);
  t.deadLetter('send', 'recipient');
  t.possibleDuplicate();
  t.clickToSent(0.8);
  t.clickToDelivered(3.5);
  t.databaseWritable(true);
  t.commitBatch(7);
  t.exportFailure('traces');
  t.observeQueue(() => ({ depth: 4, oldestAgeSeconds: 12.5 }));
  t.observeWebSocketClients(() => 2);
}
