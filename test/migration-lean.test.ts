/**
 * Migration 007 (lean ingest) on a database that lived at schema version 6, with rows in
 * every table that references the inbox; and the guard around every migration: foreign keys
 * off while it runs, checked before its COMMIT, on again afterwards.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, openDatabase, readMigrations, type Db } from '../src/store/database';
import { fixtureBytes, makeTempDir, type TempDir } from './helpers/webhook';

const sha256 = (bytes: Buffer): Buffer => createHash('sha256').update(bytes).digest();
const AT = Date.UTC(2025, 5, 18, 12, 0, 0);

let dir: TempDir;
let db: Db;
/** What the version-6 database held, in the columns that survive 007. */
let before: Record<string, unknown[]>;

function snapshot(): Record<string, unknown[]> {
  return {
    inbox: db.prepare('SELECT id, body_sha256, received_at, secret_index, item_count, body FROM inbox ORDER BY id').all(),
    inbound_messages: db.prepare('SELECT id, wamid, contact, phone_number_id, type, sent_at, received_at, inbox_id FROM inbound_messages ORDER BY id').all(),
    statuses: db.prepare('SELECT id, wamid, status, status_at, received_at, recipient, error_code, callback_data, inbox_id FROM statuses ORDER BY id').all(),
    webhook_changes: db.prepare('SELECT * FROM webhook_changes ORDER BY id').all(),
    dead_letters: db.prepare('SELECT * FROM dead_letters ORDER BY id').all(),
  };
}

const columns = (table: string): string[] => (db.pragma(`table_info(${table})`) as Array<{ name: string }>).map((c) => c.name);

beforeAll(() => {
  dir = makeTempDir('ctu-migration-');
  db = openDatabase(dir.dbPath, { migrate: false });
  expect(migrate(db, readMigrations().filter((m) => m.version <= 6))).toEqual([1, 2, 3, 4, 5, 6]);
  // Rows as the version-6 ingest wrote them: every body hashed, item JSON beside the raw body.
  const inbox = db.prepare('INSERT INTO inbox (id, body_sha256, received_at, secret_index, item_count, body) VALUES (?, ?, ?, ?, ?, ?)');
  const bodies: Array<[number, Buffer, number]> = [
    [10, fixtureBytes('text'), 1],
    [11, fixtureBytes('status-sent'), 1],
    [15, fixtureBytes('template-status-update'), 1],
    [16, fixtureBytes('malformed-neighbours'), 9],
    [20, Buffer.from('this is {not json'), 0],
    [21, fixtureBytes('image'), 2],
  ];
  for (const [id, body, items] of bodies) inbox.run(id, sha256(body), AT + id, id === 21 ? 1 : 0, items, body);
  const inbound = db.prepare('INSERT INTO inbound_messages (id, wamid, contact, phone_number_id, type, sent_at, received_at, inbox_id, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
  inbound.run(1, 'wamid.fixture.text.1', '16505551234', '106540352242922', 'text', 1_749_416_383_000, AT + 10, 10, '{"type":"text","text":{"body":"hi"}}');
  inbound.run(2, 'wamid.fixture.survivor.1', '16505551234', '106540352242922', 'text', 1_750_263_821_000, AT + 16, 16, '{"type":"text"}');
  inbound.run(5, 'wamid.fixture.image.1', '16505551234', null, 'image', 1_750_090_702_000, AT + 21, 21, '{"type":"image"}');
  inbound.run(6, 'wamid.fixture.reaction.1', '16505551234', null, 'reaction', 1_750_090_710_000, AT + 21, 21, '{"type":"reaction"}');
  const status = db.prepare('INSERT INTO statuses (id, wamid, status, status_at, received_at, recipient, error_code, callback_data, inbox_id, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)');
  status.run(3, 'wamid.fixture.outbound.1', 'sent', 1_750_263_773_000, AT + 11, '16505551234', null, 'unlock:42:1', 11, '{"status":"sent"}');
  status.run(4, 'wamid.fixture.outbound.3', 'sent', 1_750_263_800_000, AT + 16, '16505551234', 131026, null, 16, '{"status":"sent"}');
  const change = db.prepare('INSERT INTO webhook_changes (id, inbox_id, field, error_code, received_at, body) VALUES (?, ?, ?, ?, ?, ?)');
  change.run(7, 15, 'message_template_status_update', null, AT + 15, '{"event":"APPROVED"}');
  const dead = db.prepare('INSERT INTO dead_letters (id, inbox_id, reason, created_at, body) VALUES (?, ?, ?, ?, ?)');
  dead.run(8, 16, 'message has no id', AT + 16, '{"from":"1"}');
  dead.run(9, 20, 'body is not valid JSON', AT + 20, null);
  dead.run(12, null, 'written by an operator', AT + 30, null);
  before = snapshot();
});

afterAll(() => {
  db.close();
  dir.remove();
});

describe('when a version-6 database with rows is migrated to 7', () => {
  it('then every row keeps its id and values, the item JSON columns are gone and the references hold', () => {
    expect(columns('inbound_messages')).toContain('body');
    expect(migrate(db, readMigrations().filter((m) => m.version <= 7))).toEqual([7]);

    expect(snapshot()).toEqual(before);
    expect(before.inbox).toHaveLength(6);
    expect(columns('inbound_messages')).not.toContain('body');
    expect(columns('statuses')).not.toContain('body');
    expect(columns('webhook_changes')).toContain('body');
    expect(db.prepare('SELECT max(version) FROM schema_migrations').pluck().get()).toBe(7);

    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(db.pragma('foreign_key_check')).toEqual([]);
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    // The children still name the rebuilt table, and the keys are enforced again.
    for (const child of ['inbound_messages', 'statuses', 'webhook_changes', 'dead_letters']) {
      expect((db.pragma(`foreign_key_list(${child})`) as Array<{ table: string }>).map((k) => k.table)).toEqual(['inbox']);
    }
    expect(() =>
      db.prepare("INSERT INTO webhook_changes (inbox_id, field, error_code, received_at, body) VALUES (999, 'x', NULL, 0, '{}')").run(),
    ).toThrow(expect.objectContaining({ code: 'SQLITE_CONSTRAINT_FOREIGNKEY' }));
    // The per-child inbox indexes of 005 survive the rebuild of their parent.
    const indexes = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND name LIKE '%_inbox'").pluck().all();
    expect(indexes).toEqual(expect.arrayContaining(['inbound_messages_inbox', 'statuses_inbox', 'webhook_changes_inbox', 'dead_letters_inbox']));
  });

  it('then the body hash is optional: bodies without one coexist, while a repeated hash still conflicts', () => {
    migrate(db);
    const hashColumn = (db.pragma('table_info(inbox)') as Array<{ name: string; notnull: number }>).find((c) => c.name === 'body_sha256');
    expect(hashColumn?.notnull).toBe(0);
    const insert = db.prepare('INSERT INTO inbox (body_sha256, received_at, secret_index, item_count, body) VALUES (?, ?, 0, 1, ?)');
    const keyedA = Number(insert.run(null, AT + 100, Buffer.from('{"a":1}')).lastInsertRowid);
    const keyedB = Number(insert.run(null, AT + 101, Buffer.from('{"a":1}')).lastInsertRowid);
    expect(keyedB).toBeGreaterThan(keyedA);
    expect(db.prepare('SELECT count(*) FROM inbox WHERE body_sha256 IS NULL').pluck().get()).toBe(2);
    const template = fixtureBytes('template-status-update');
    expect(() => insert.run(sha256(template), AT + 102, template)).toThrow(expect.objectContaining({ code: 'SQLITE_CONSTRAINT_UNIQUE' }));
    // The ingest's `INSERT ... ON CONFLICT DO NOTHING` depends on this index being the partial UNIQUE one.
    expect(db.prepare("SELECT sql FROM sqlite_schema WHERE name = 'inbox_body_sha256'").pluck().get()).toMatch(/UNIQUE INDEX.*WHERE body_sha256 IS NOT NULL/);
    db.prepare('DELETE FROM inbox WHERE id IN (?, ?)').run(keyedA, keyedB);
  });
});

describe('when a migration would leave a broken reference', () => {
  it('then it is rolled back, not recorded, and the error names the table whose rows would dangle', () => {
    migrate(db);
    const breaking = { version: 999, name: 'drop_referenced_inbox', sql: "DELETE FROM inbox WHERE id = 10; CREATE TABLE left_behind (x INTEGER);" };
    const inboxBefore = db.prepare('SELECT count(*) FROM inbox').pluck().get();
    expect(() => migrate(db, [...readMigrations(), breaking])).toThrow(/^migration 999 leaves 1 broken references \(first: inbound_messages → inbox\)$/);
    expect(db.prepare('SELECT version FROM schema_migrations WHERE version = 999').get()).toBeUndefined();
    expect(db.prepare('SELECT count(*) FROM inbox').pluck().get()).toBe(inboxBefore);
    expect(db.prepare("SELECT count(*) FROM sqlite_schema WHERE name = 'left_behind'").pluck().get()).toBe(0);
    expect(db.inTransaction).toBe(false);
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(db.pragma('foreign_key_check')).toEqual([]);
  });

  it('then a migration that fails on its SQL also leaves foreign keys enforced and nothing recorded', () => {
    const failing = { version: 998, name: 'bad_sql', sql: 'ALTER TABLE inbox ADD COLUMN tag TEXT; SELECT * FROM no_such_table;' };
    expect(() => migrate(db, [...readMigrations(), failing])).toThrow(/no such table: no_such_table/);
    expect(columns('inbox')).not.toContain('tag');
    expect(db.prepare('SELECT count(*) FROM schema_migrations WHERE version = 998').pluck().get()).toBe(0);
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
  });
});
