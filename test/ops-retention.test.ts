/**
 * Retention on a generated database spanning 90 days: what goes and what stays (rollups,
 * dedupe keys for 30 days, everything an unlock still sending needs), in small batches, with
 * the WAL truncated afterwards; the same through `ctu prune` and the background loop.
 */
import { copyFileSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DAY } from '../src/duration';
import { createLogger } from '../src/log';
import { prune, startRetention } from '../src/retention';
import { openDatabase, type Db } from '../src/store/database';
import { makeTempDir } from './helpers/webhook';
import { requireBuild, runCtu } from './helpers/cli';

const dir = makeTempDir('ctu-ops-retention-');
afterAll(() => dir.remove());

const NOW = Date.UTC(2026, 5, 1);
const DAYS = 90;
const PER_DAY = 40;

/** One webhook delivery per row kind per slot, every day for 90 days; unlocks of every state. */
function generate(path: string): void {
  const db = openDatabase(path);
  const inbox = db.prepare("INSERT INTO inbox (body_sha256, received_at, secret_index, item_count, body) VALUES (randomblob(32), ?, 0, 1, randomblob(300))");
  const inbound = db.prepare("INSERT INTO inbound_messages (wamid, contact, type, sent_at, received_at, inbox_id) VALUES (?, '1650555', 'text', ?, ?, ?)");
  const status = db.prepare("INSERT INTO statuses (wamid, status, status_at, received_at, inbox_id) VALUES (?, 'delivered', ?, ?, ?)");
  const current = db.prepare("INSERT INTO message_status (wamid, status, rank, status_at, updated_at) VALUES (?, 'delivered', 2, ?, ?)");
  const change = db.prepare("INSERT INTO webhook_changes (inbox_id, field, received_at, body) VALUES (?, 'account_alerts', ?, '{}')");
  const dead = db.prepare("INSERT INTO dead_letters (inbox_id, reason, created_at, body) VALUES (?, 'bad item', ?, '{}')");
  const event = db.prepare("INSERT INTO events (type, at, data) VALUES ('message.inbound', ?, '{}')");
  const unlock = db.prepare("INSERT INTO unlocks (contact, pack_id, state, message_count, created_at) VALUES (?, 'starter', ?, 2, ?)");
  const click = db.prepare("INSERT INTO clicks (wamid, contact, trigger, pack_id, source, tapped_at, received_at, result, unlock_id) VALUES (?, ?, 'unlock:starter', 'starter', 'button_reply', ?, ?, 'started', ?)");
  const outbox = db.prepare("INSERT INTO outbox (kind, unlock_id, contact, pack_id, position, payload, state, run_at, created_at) VALUES ('pack', ?, ?, 'starter', ?, '{}', ?, ?, ?)");
  const rollup = db.prepare("INSERT INTO rollup_minute (minute, pack_id, clicks) VALUES (?, 'starter', 1) ON CONFLICT DO UPDATE SET clicks = clicks + 1");
  db.transaction(() => {
    let n = 0;
    for (let day = DAYS; day >= 0; day--) {
      for (let k = 0; k < PER_DAY; k++) {
        const at = NOW - day * DAY + k * 60_000 - DAY / 2;
        const kind = n % 4;
        const id = Number(inbox.run(at).lastInsertRowid);
        if (kind === 0) inbound.run(`wamid.in.${n}`, at - 1_000, at, id);
        if (kind === 1) {
          status.run(`wamid.out.${n}`, at - 1_000, at, id);
          current.run(`wamid.out.${n}`, at - 1_000, at);
        }
        if (kind === 2) change.run(id, at);
        if (kind === 3) dead.run(id, at);
        event.run(at);
        if (k === 0) {
          // Every day one unlock: finished, except one started 60 days ago that is still sending.
          const contact = `1650000${day}`;
          const state = day === 60 ? 'sending' : 'completed';
          const unlockId = Number(unlock.run(contact, state, at).lastInsertRowid);
          click.run(`wamid.tap.${day}`, contact, at, at, unlockId);
          outbox.run(unlockId, contact, 0, 'accepted', at, at);
          outbox.run(unlockId, contact, 1, state === 'sending' ? 'pending' : 'accepted', at, at);
          rollup.run(at - (at % 60_000));
        }
        n++;
      }
    }
  })();
  db.close();
}

function count(db: Db, sql: string, ...params: unknown[]): number {
  return db.prepare(sql).pluck().get(...params) as number;
}

function snapshot(db: Db): Record<string, number> {
  return {
    rollupClicks: count(db, 'SELECT SUM(clicks) FROM rollup_minute'),
    rollupHourClicks: count(db, 'SELECT SUM(clicks) FROM rollup_hour'),
    unlocks: count(db, 'SELECT COUNT(*) FROM unlocks'),
  };
}

/** The invariants after pruning with a window of `days`. */
function expectRetained(db: Db, days: number): void {
  const raw = NOW - days * DAY;
  const keys = NOW - Math.max(days, 30) * DAY;
  expect(count(db, 'SELECT COUNT(*) FROM events WHERE at < ?', raw)).toBe(0);
  expect(count(db, 'SELECT COUNT(*) FROM events WHERE at >= ?', raw)).toBeGreaterThan(0);
  expect(count(db, 'SELECT COUNT(*) FROM webhook_changes WHERE received_at < ?', raw)).toBe(0);
  expect(count(db, 'SELECT COUNT(*) FROM dead_letters WHERE created_at < ?', raw)).toBe(0);
  expect(count(db, 'SELECT COUNT(*) FROM inbox WHERE received_at < ? AND length(body) > 0', raw)).toBe(0);
  expect(count(db, 'SELECT COUNT(*) FROM inbox WHERE received_at >= ? AND length(body) = 0', raw)).toBe(0);
  // Dedupe keys: none older than `keys`, and every one younger is still there.
  expect(count(db, 'SELECT COUNT(*) FROM inbound_messages WHERE received_at < ?', keys)).toBe(0);
  expect(count(db, 'SELECT COUNT(*) FROM statuses WHERE received_at < ?', keys)).toBe(0);
  expect(count(db, 'SELECT COUNT(*) FROM message_status WHERE updated_at < ?', keys)).toBe(0);
  const younger = Math.floor(((NOW - keys) / DAY) * (PER_DAY / 4)) - PER_DAY; // about a quarter of each day's rows
  expect(count(db, 'SELECT COUNT(*) FROM inbound_messages')).toBeGreaterThan(younger);
  expect(count(db, 'SELECT COUNT(*) FROM statuses')).toBeGreaterThan(younger);
  expect(count(db, 'SELECT COUNT(*) FROM message_status')).toBe(count(db, 'SELECT COUNT(*) FROM statuses'));
  // Inbox rows go only once nothing references them; references are never broken.
  expect(db.prepare('PRAGMA foreign_key_check').all()).toEqual([]);
  expect(count(db, 'SELECT COUNT(*) FROM inbox WHERE received_at < ?', keys)).toBe(0);
  // Everything the unlock still sending needs stays; finished ones lose clicks and sends after `keys`.
  const sending = count(db, "SELECT id FROM unlocks WHERE state = 'sending'");
  expect(count(db, 'SELECT COUNT(*) FROM outbox WHERE unlock_id = ?', sending)).toBe(2);
  expect(count(db, 'SELECT COUNT(*) FROM clicks WHERE unlock_id = ?', sending)).toBe(1);
  expect(count(db, "SELECT COUNT(*) FROM outbox o JOIN unlocks u ON u.id = o.unlock_id WHERE u.state <> 'sending' AND o.created_at < ?", keys)).toBe(0);
  expect(count(db, "SELECT COUNT(*) FROM clicks c JOIN unlocks u ON u.id = c.unlock_id WHERE u.state <> 'sending' AND c.received_at < ?", keys)).toBe(0);
  expect(count(db, 'SELECT COUNT(*) FROM clicks WHERE received_at >= ?', keys)).toBeGreaterThan(0);
  expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
}

describe('retention', () => {
  const generated = join(dir.path, 'generated.db');
  generate(generated);

  it('when pruning a 90-day database with a 7-day window, then old payloads and events go, dedupe keys stay 30 days, rollups and unfinished unlocks stay', async () => {
    const path = join(dir.path, 'seven-days.db');
    copyFileSync(generated, path);
    const db = openDatabase(path);
    try {
      const before = snapshot(db);
      const report = await prune(db, { olderThanMs: 7 * DAY, now: NOW, batchRows: 100 });
      expect(report.stopped).toBe(false);
      expect(report.rows.events).toBe((DAYS + 1 - 7) * PER_DAY);
      expect(report.batches).toBeGreaterThan(report.rows.events / 100); // small transactions, not one big one
      expect(snapshot(db)).toEqual(before);
      expectRetained(db, 7);
      expect(statSync(`${path}-wal`).size).toBe(0); // truncated after the run: the WAL stays bounded
      const again = await prune(db, { olderThanMs: 7 * DAY, now: NOW, batchRows: 100 });
      expect(Object.values(again.rows).every((n) => n === 0)).toBe(true);
    } finally {
      db.close();
    }
  });

  it('when the window is longer than 30 days, then dedupe keys follow the window', async () => {
    const path = join(dir.path, 'sixty-days.db');
    copyFileSync(generated, path);
    const db = openDatabase(path);
    try {
      await prune(db, { olderThanMs: 45 * DAY, now: NOW });
      expectRetained(db, 45);
      expect(count(db, 'SELECT COUNT(*) FROM inbound_messages WHERE received_at < ?', NOW - 31 * DAY)).toBeGreaterThan(0);
    } finally {
      db.close();
    }
  });

  it('when the background loop is stopped mid-run, then it stops between batches, and a later run finishes the job', async () => {
    const path = join(dir.path, 'loop.db');
    copyFileSync(generated, path);
    const db = openDatabase(path);
    try {
      const loop = startRetention({ db, retentionDays: 7, log: createLogger('silent'), firstRunDelayMs: 3_600_000, batchRows: 50, pauseMs: 1, clock: () => NOW });
      const run = loop.runNow();
      await new Promise((resolve) => setTimeout(resolve, 30));
      await loop.stop();
      const partial = await run;
      expect(partial?.stopped).toBe(true);
      const second = startRetention({ db, retentionDays: 7, log: createLogger('silent'), firstRunDelayMs: 3_600_000, clock: () => NOW });
      const full = await second.runNow();
      await second.stop();
      expect(full?.stopped).toBe(false);
      expectRetained(db, 7);
    } finally {
      db.close();
    }
  });

  it('when `ctu prune --older-than 7d` runs on an old database, then it reports what it deleted and keeps the invariants', async () => {
    requireBuild();
    const path = join(dir.path, 'cli.db');
    copyFileSync(generated, path);
    const bad = await runCtu(['prune', '--older-than', 'soon'], { DATABASE_PATH: path, LOG_LEVEL: 'silent' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--older-than needs a duration/);
    const run = await runCtu(['prune', '--older-than', '7d'], { DATABASE_PATH: path, LOG_LEVEL: 'silent' });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    // The CLI measures from the real clock; the generated data ends at NOW, before today.
    expect(run.stdout).toMatch(/events\s+\d+ deleted/);
    expect(run.stdout).toMatch(/inbox_bodies\s+\d+ \(bodies emptied\)/);
    expect(existsSync(path)).toBe(true);
    const db = openDatabase(path);
    try {
      expect(count(db, 'SELECT COUNT(*) FROM events WHERE at < ?', Date.now() - 7 * DAY)).toBe(0);
      expect(count(db, 'SELECT COUNT(*) FROM unlocks')).toBe(DAYS + 1);
      expect(count(db, "SELECT COUNT(*) FROM outbox o JOIN unlocks u ON u.id = o.unlock_id WHERE u.state = 'sending'")).toBe(2);
      expect(db.prepare('PRAGMA foreign_key_check').all()).toEqual([]);
    } finally {
      db.close();
    }
  });
});
