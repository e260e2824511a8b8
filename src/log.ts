/**
 * JSON logs (pino). Phone numbers never appear in clear: log `contactHash(contact)`, a keyed
 * hash that joins log lines about one contact without revealing the number.
 */
import { createHmac } from 'node:crypto';
import pino from 'pino';

export type Logger = pino.Logger;

/** `extra` lets telemetry add a mixin (trace ids) and redaction without a second logger setup. */
export function createLogger(level: string, destination?: pino.DestinationStream, extra: Pick<pino.LoggerOptions, 'mixin' | 'redact'> = {}): Logger {
  return pino(
    {
      ...extra,
      level,
      base: { service: 'click-to-unlock' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pino.destination({ fd: 1, sync: false }),
  );
}

let hashKey = 'ctu-contact-hash';

/** The key for contact hashes: derived from the App Secret so hashes are stable per deployment. */
export function setContactHashKey(key: string): void {
  hashKey = key;
}

export function contactHash(contact: string): string {
  return createHmac('sha256', hashKey).update(contact).digest('hex').slice(0, 16);
}
