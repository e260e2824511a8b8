/**
 * The Meta simulator: the sandbox's Graph API, the tests' Meta, the benchmarks' load.
 *
 * Terms: a *send* is one accepted `POST /{version}/{phone_number_id}/messages`; a *status*
 * is one callback (`sent`, `delivered`, `read`, `failed`) POSTed to our webhook; a *tap* is
 * an inbound button press POSTed to our webhook by the tap driver.
 *
 *   const sim = await startSimulator({ webhookUrl, appSecret, seed: 1, statuses: { readDelayMs: 0 } });
 *   // wire the service: META_GRAPH_URL=sim.url, META_ACCESS_TOKEN=sim.accessToken,
 *   //                   META_PHONE_NUMBER_ID=sim.phoneNumberId (any META_GRAPH_VERSION vNN.N)
 *   sim.setWebhook(url, secret?)          // when our webhook port is known only later; statuses wait
 *   sim.setFaults({ http5xx: { probability: 0.2 }, pairRateLimit: { next: 2, to: '15550000001' } })
 *   sim.updateFaults({ webhookOutage: true })   // change some modes, keep the others; null clears one
 *   sim.sends / sim.sendsTo(contact) / sim.rejections / sim.statusDeliveries / sim.duplicateSends
 *   await sim.waitFor(() => sim.sendsTo(c).length === 6 && sim.sendsTo(c), 5_000)
 *   await sim.idle()                      // every planned status delivered or given up
 *   sim.stats(); sim.reset(); await sim.close()   // close ends every timer, held answer and socket
 *
 * Fault modes (faults.ts; each `{ probability?, next?, to? }`): http429 (Retry-After, code 4),
 * http5xx (500/131000, 503/131016), throughput (130429), pairRateLimit (131056), error (any
 * code, e.g. 131047, 131026, 100, 190), slow (delayMs), hang (never answered, not accepted),
 * timeout (accepted + statuses, never answered), asyncFailure (`failed` status), dropStatus,
 * duplicateStatus, reorderStatuses, webhookOutage. Graph statuses follow Meta's table
 * (throughput codes answer 400; see graph-errors.ts).
 *
 * Over HTTP on the same port (control.ts): GET|POST|PATCH /_sim/faults, GET|POST /_sim/statuses,
 * POST /_sim/webhook, GET /_sim/sends?to=&limit=, GET /_sim/stats, POST /_sim/reset, GET /_sim/health.
 *
 * Taps (taps.ts): `buildTapPayload({ contact, trigger, kind }, appSecret)` gives signed bytes
 * for one tap; `driveTaps({ webhookUrl, appSecret, contacts, triggers, ratePerSecond,
 * durationMs | taps, duplicateRate, onProgress })` paces them and resolves with a TapReport.
 * `syntheticContacts(n)` gives 1555000xxxx numbers.
 */
export { startSimulator, type Simulator, type SimulatorOptions, type SimStats } from './simulator';
export {
  SIMULATOR_ACCESS_TOKEN,
  SIMULATOR_APP_SECRET,
  SIMULATOR_DISPLAY_PHONE_NUMBER,
  SIMULATOR_PHONE_NUMBER_ID,
  SIMULATOR_WABA_ID,
} from './identity';
export { faultSettingsSchema, parseFaultSettings, FaultError, STATUS_NAMES, type FaultSettings, type SimStatusName } from './faults';
export { graphErrorAnswer, graphErrorSpec, knownGraphErrorCodes, type GraphErrorSpec } from './graph-errors';
export type { SimSend, SimRejection, SimStatusDelivery } from './send-log';
export {
  DEFAULT_STATUS_BEHAVIOUR,
  DEFAULT_WEBHOOK_DELIVERY,
  type StatusBehaviour,
  type WebhookDeliveryOptions,
  type StatusCounters,
} from './status-webhooks';
export {
  buildTapPayload,
  driveTaps,
  inboundWamid,
  syntheticContacts,
  type DriveTapsOptions,
  type SignedPayload,
  type TapKind,
  type TapPayloadInput,
  type TapProgress,
  type TapReport,
} from './taps';
