/**
 * The feed benchmark's database: 10 million events over 30 days, with the rollups the write
 * path keeps (rollup_minute, its hourly trigger-kept sums, rollup_contact_day) consistent with
 * them. Shaped like real traffic: per tap, a click and unlock.started, then per pack message a
 * message.sent and its delivered and read statuses, and unlock.completed — 21 events per tap
 * for a pack of 6, spread over the day with a daily swing. Built once and cached by path.
 */
import { existsSync, renameSync, rmSync } from 'node:fs';
import { openDatabase } from '../src/store/database';

export const DATA_DAYS = 30;
export const DATA_EVENTS = 10_000_000;
const PACKS = ['starter', 'pro', 'vip'] as const;
const MESSAGES_PER_PACK = 6;
const EVENTS_PER_TAP = 3 + MESSAGES_PER_PACK * 3;
const MINUTE = 60_000;
const DAY = 86_400_000;
const CONTACTS = 400_000;

export interface FeedData {
  readonly path: string;
  /** The end of the data (exclusive): the benchmark's "now". */
  readonly end: number;
  readonly events: number;
}

/** A small deterministic PRNG, so every build is the same database. */
function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function buildFeedData(path: string, log: (line: string) => void, events = DATA_EVENTS): FeedData {
  // A fixed end keeps the cached file valid across runs: midnight UTC, 2025-06-01.
  const end = Date.UTC(2025, 5, 1);
  if (existsSync(path)) return { path, end, events };
  const building = `${path}.building`;
  rmSync(building, { force: true });
  const db = openDatabase(building);
  db.pragma('synchronous = OFF');
  const random = mulberry32(42);
  const taps = Math.floor(events / EVENTS_PER_TAP);
  const start = end - DATA_DAYS * DAY;
  const insertEvent = db.prepare('INSERT INTO events (type, at, contact, data) VALUES (?, ?, ?, ?)');
  const minute = new Map<string, number[]>(); // `${minute}|${pack}` → [clicks, started, completed, sent, delivered, read]
  const contactDay = db.prepare('INSERT INTO rollup_contact_day (day, contact, first_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING');
  const bump = (at: number, pack: string, index: number): void => {
    const key = `${Math.floor(at / MINUTE) * MINUTE}|${pack}`;
    const row = minute.get(key) ?? [0, 0, 0, 0, 0, 0];
    row[index] = (row[index] ?? 0) + 1;
    minute.set(key, row);
  };
  let written = 0;
  const started = Date.now();
  const batch = db.transaction((from: number, count: number) => {
    for (let i = from; i < from + count; i++) {
      // Spread taps over the 30 days with a daily swing (busier in the evening).
      const day = Math.floor((i / taps) * DATA_DAYS);
      let offset = random() * DAY;
      if (random() < 0.4) offset = (0.7 + random() * 0.25) * DAY;
      const at = start + day * DAY + Math.floor(offset);
      const contact = String(15_550_000_000 + Math.floor(random() * CONTACTS));
      const pack = PACKS[Math.floor(random() * PACKS.length)] ?? 'starter';
      const data = (extra: string): string => `{"contact":"${contact}","pack":"${pack}"${extra}}`;
      insertEvent.run('click', at, contact, data(',"result":"started"'));
      insertEvent.run('unlock.started', at, contact, data(`,"messages":${MESSAGES_PER_PACK}`));
      bump(at, pack, 0);
      bump(at, pack, 1);
      contactDay.run(Math.floor(at / DAY) * DAY, contact, at);
      for (let m = 0; m < MESSAGES_PER_PACK; m++) {
        const sentAt = at + 300 + m * 250;
        const wamid = `"wamid":"wamid.bench.${i}.${m}"`;
        insertEvent.run('message.sent', sentAt, contact, data(`,${wamid},"position":${m}`));
        insertEvent.run('message.status', sentAt + 1500, contact, data(`,${wamid},"status":"delivered"`));
        insertEvent.run('message.status', sentAt + 20_000, contact, data(`,${wamid},"status":"read"`));
        bump(sentAt, pack, 3);
        bump(sentAt + 1500, pack, 4);
        bump(sentAt + 20_000, pack, 5);
      }
      insertEvent.run('unlock.completed', at + 300 + MESSAGES_PER_PACK * 250, contact, data(''));
      bump(at, pack, 2);
    }
  });
  const STEP = 10_000;
  for (let i = 0; i < taps; i += STEP) {
    batch(i, Math.min(STEP, taps - i));
    written = Math.min(taps, i + STEP) * EVENTS_PER_TAP;
    if ((i / STEP) % 50 === 0) log(`  generating: ${(written / 1e6).toFixed(1)}M events (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  }
  const insertRollup = db.prepare(
    `INSERT INTO rollup_minute (minute, pack_id, clicks, unlocks_started, unlocks_completed, messages_sent, messages_delivered, messages_read)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  db.transaction(() => {
    for (const [key, row] of minute) {
      const [m, pack] = key.split('|');
      insertRollup.run(Number(m), pack ?? '', ...row);
    }
  })();
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  renameSync(building, path);
  log(`  generated ${written} events, ${minute.size} minute rollups in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  return { path, end, events: written };
}
