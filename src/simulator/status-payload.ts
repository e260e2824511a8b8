/**
 * Status callbacks in Meta's webhook envelope — pure, so the exact bytes are easy to test:
 *
 *   {"object":"whatsapp_business_account","entry":[{"id":WABA_ID,"changes":[{"value":{
 *     "messaging_product":"whatsapp","metadata":{display_phone_number,phone_number_id},
 *     "statuses":[{id,status,timestamp,recipient_id,conversation?,pricing?,
 *                  biz_opaque_callback_data?,errors?}]},"field":"messages"}]}]}
 */
import { createHash } from 'node:crypto';
import type { SimStatusName } from './faults';
import { statusError } from './graph-errors';

export interface BusinessIdentity {
  readonly wabaId: string;
  readonly phoneNumberId: string;
  readonly displayPhoneNumber: string;
}

export interface StatusTarget {
  readonly wamid: string;
  readonly waId: string;
  readonly callbackData: string | undefined;
}

export interface PlannedStatus {
  readonly target: StatusTarget;
  readonly status: SimStatusName;
  readonly atMs: number; // when it happened (simulator clock): the payload timestamp
  readonly errorCode: number | undefined;
}

const DAY_SECONDS = 86_400;

export function statusEnvelope(identity: BusinessIdentity, statuses: readonly PlannedStatus[], includePricing: boolean): Buffer {
  const envelope = {
    object: 'whatsapp_business_account',
    entry: [
      {
        id: identity.wabaId,
        changes: [
          {
            value: {
              messaging_product: 'whatsapp',
              metadata: { display_phone_number: identity.displayPhoneNumber, phone_number_id: identity.phoneNumberId },
              statuses: statuses.map((p) => statusObject(identity, p, includePricing)),
            },
            field: 'messages',
          },
        ],
      },
    ],
  };
  return Buffer.from(JSON.stringify(envelope));
}

function statusObject(identity: BusinessIdentity, p: PlannedStatus, includePricing: boolean): Record<string, unknown> {
  const seconds = Math.floor(p.atMs / 1000);
  // Meta bills per conversation and reports it on sent and delivered, not on read or failed.
  const billed = includePricing && (p.status === 'sent' || p.status === 'delivered');
  return {
    id: p.target.wamid,
    status: p.status,
    timestamp: String(seconds),
    recipient_id: p.target.waId,
    ...(billed
      ? {
          conversation: {
            id: createHash('md5').update(`${identity.phoneNumberId}:${p.target.waId}`).digest('hex'),
            ...(p.status === 'sent' ? { expiration_timestamp: String(seconds + DAY_SECONDS) } : {}),
            origin: { type: 'service' },
          },
          pricing: { billable: false, pricing_model: 'PMP', category: 'service', type: 'free_customer_service' },
        }
      : {}),
    ...(p.target.callbackData !== undefined ? { biz_opaque_callback_data: p.target.callbackData } : {}),
    ...(p.errorCode !== undefined ? { errors: [statusError(p.errorCode)] } : {}),
  };
}
