/**
 * Rollup writes, called inside the transactions that write the raw rows they summarise.
 * Counters are added per (minute, pack) with an upsert; reads live with the feed.
 */
import type { Db } from './database';

export const ROLLUP_FIELDS = [
  'clicks',
  'unlocks_started',
  'unlocks_repeated',
  'unlocks_expired',
  'unknown_triggers',
  'unlocks_completed',
  'messages_sent',
  'messages_delivered',
  'messages_read',
  'messages_failed',
] as const;
export type RollupField = (typeof ROLLUP_FIELDS)[number];

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;

export type RollupStore = ReturnType<typeof createRollupStore>;

export function createRollupStore(db: Db) {
  // One statement per field keeps each upsert a plain prepared statement.
  const bumps = new Map(
    ROLLUP_FIELDS.map((field) => [
      field,
      db.prepare<[number, string, number]>(
        `INSERT INTO rollup_minute (minute, pack_id, ${field}) VALUES (?, ?, ?)
         ON CONFLICT (minute, pack_id) DO UPDATE SET ${field} = ${field} + excluded.${field}`,
      ),
    ]),
  );
  const noteContact = db.prepare<[number, string, number]>(
    'INSERT INTO rollup_contact_day (day, contact, first_at) VALUES (?, ?, ?) ON CONFLICT (day, contact) DO NOTHING',
  );
  return {
    bump(at: number, packId: string | null, field: RollupField, by = 1): void {
      bumps.get(field)?.run(Math.floor(at / MINUTE_MS) * MINUTE_MS, packId ?? '', by);
    },
    noteContact(at: number, contact: string): void {
      noteContact.run(Math.floor(at / DAY_MS) * DAY_MS, contact, at);
    },
  };
}
