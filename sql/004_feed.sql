-- The dashboard feed: API keys, indexes for its read paths, and hourly rollups.

-- API keys for the REST API and the WebSocket. Only the SHA-256 of a key is stored: keys are
-- 256 random bits, so a fast hash is as good as a slow one and lets every request be checked.
CREATE TABLE api_keys (
  id          INTEGER PRIMARY KEY,
  name        TEXT    NOT NULL,
  prefix      TEXT    NOT NULL,               -- the first characters, to recognise a key in lists
  key_sha256  BLOB    NOT NULL UNIQUE,
  created_at  INTEGER NOT NULL,
  revoked_at  INTEGER
);

-- A contact's chat history, newest first, in pages.
CREATE INDEX outbox_contact_created ON outbox (contact, created_at, id);
-- Latency and error-rate windows for /api/performance.
CREATE INDEX outbox_created ON outbox (created_at);
CREATE INDEX unlocks_created ON unlocks (created_at);

-- rollup_minute summed per hour, kept by triggers in the same transaction as every bump, so a
-- 30-day window reads 720 rows per pack instead of 43,200. The writers need not know it exists.
CREATE TABLE rollup_hour (
  hour                INTEGER NOT NULL,         -- epoch ms, floored to the UTC hour
  pack_id             TEXT    NOT NULL,
  clicks              INTEGER NOT NULL DEFAULT 0,
  unlocks_started     INTEGER NOT NULL DEFAULT 0,
  unlocks_repeated    INTEGER NOT NULL DEFAULT 0,
  unlocks_expired     INTEGER NOT NULL DEFAULT 0,
  unknown_triggers    INTEGER NOT NULL DEFAULT 0,
  unlocks_completed   INTEGER NOT NULL DEFAULT 0,
  messages_sent       INTEGER NOT NULL DEFAULT 0,
  messages_delivered  INTEGER NOT NULL DEFAULT 0,
  messages_read       INTEGER NOT NULL DEFAULT 0,
  messages_failed     INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (hour, pack_id)
) WITHOUT ROWID;

INSERT INTO rollup_hour (hour, pack_id, clicks, unlocks_started, unlocks_repeated, unlocks_expired, unknown_triggers,
                         unlocks_completed, messages_sent, messages_delivered, messages_read, messages_failed)
SELECT minute - minute % 3600000, pack_id, SUM(clicks), SUM(unlocks_started), SUM(unlocks_repeated), SUM(unlocks_expired),
       SUM(unknown_triggers), SUM(unlocks_completed), SUM(messages_sent), SUM(messages_delivered), SUM(messages_read),
       SUM(messages_failed)
FROM rollup_minute GROUP BY 1, 2;

CREATE TRIGGER rollup_minute_insert_to_hour AFTER INSERT ON rollup_minute BEGIN
  INSERT INTO rollup_hour (hour, pack_id, clicks, unlocks_started, unlocks_repeated, unlocks_expired, unknown_triggers,
                           unlocks_completed, messages_sent, messages_delivered, messages_read, messages_failed)
  VALUES (NEW.minute - NEW.minute % 3600000, NEW.pack_id, NEW.clicks, NEW.unlocks_started, NEW.unlocks_repeated,
          NEW.unlocks_expired, NEW.unknown_triggers, NEW.unlocks_completed, NEW.messages_sent, NEW.messages_delivered,
          NEW.messages_read, NEW.messages_failed)
  ON CONFLICT (hour, pack_id) DO UPDATE SET
    clicks = clicks + excluded.clicks,
    unlocks_started = unlocks_started + excluded.unlocks_started,
    unlocks_repeated = unlocks_repeated + excluded.unlocks_repeated,
    unlocks_expired = unlocks_expired + excluded.unlocks_expired,
    unknown_triggers = unknown_triggers + excluded.unknown_triggers,
    unlocks_completed = unlocks_completed + excluded.unlocks_completed,
    messages_sent = messages_sent + excluded.messages_sent,
    messages_delivered = messages_delivered + excluded.messages_delivered,
    messages_read = messages_read + excluded.messages_read,
    messages_failed = messages_failed + excluded.messages_failed;
END;

-- An upsert's DO UPDATE fires UPDATE triggers: add the difference.
CREATE TRIGGER rollup_minute_update_to_hour AFTER UPDATE ON rollup_minute BEGIN
  INSERT INTO rollup_hour (hour, pack_id, clicks, unlocks_started, unlocks_repeated, unlocks_expired, unknown_triggers,
                           unlocks_completed, messages_sent, messages_delivered, messages_read, messages_failed)
  VALUES (NEW.minute - NEW.minute % 3600000, NEW.pack_id, NEW.clicks - OLD.clicks,
          NEW.unlocks_started - OLD.unlocks_started, NEW.unlocks_repeated - OLD.unlocks_repeated,
          NEW.unlocks_expired - OLD.unlocks_expired, NEW.unknown_triggers - OLD.unknown_triggers,
          NEW.unlocks_completed - OLD.unlocks_completed, NEW.messages_sent - OLD.messages_sent,
          NEW.messages_delivered - OLD.messages_delivered, NEW.messages_read - OLD.messages_read,
          NEW.messages_failed - OLD.messages_failed)
  ON CONFLICT (hour, pack_id) DO UPDATE SET
    clicks = clicks + excluded.clicks,
    unlocks_started = unlocks_started + excluded.unlocks_started,
    unlocks_repeated = unlocks_repeated + excluded.unlocks_repeated,
    unlocks_expired = unlocks_expired + excluded.unlocks_expired,
    unknown_triggers = unknown_triggers + excluded.unknown_triggers,
    unlocks_completed = unlocks_completed + excluded.unlocks_completed,
    messages_sent = messages_sent + excluded.messages_sent,
    messages_delivered = messages_delivered + excluded.messages_delivered,
    messages_read = messages_read + excluded.messages_read,
    messages_failed = messages_failed + excluded.messages_failed;
END;

-- Distinct contacts in any run of whole days, without COUNT(DISTINCT) over the run: for each
-- (day, contact) first seen, how many days since that contact's previous tap day (1000000 =
-- never). A contact counts once in days [d1, dn] exactly on its first day there, which is the
-- day whose gap reaches back before d1: distinct = Σ contacts WHERE gap_days > day − d1 (in days).
-- Kept by a trigger, so the writers need not know it exists; exact while days are written in order.
CREATE INDEX rollup_contact_day_by_contact ON rollup_contact_day (contact, day);

CREATE TABLE rollup_contact_gap (
  day       INTEGER NOT NULL,                   -- epoch ms, floored to the UTC day
  gap_days  INTEGER NOT NULL,
  contacts  INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (day, gap_days)
) WITHOUT ROWID;

INSERT INTO rollup_contact_gap (day, gap_days, contacts)
SELECT day, gap, COUNT(*) FROM (
  SELECT day, COALESCE((day - LAG(day) OVER (PARTITION BY contact ORDER BY day)) / 86400000, 1000000) AS gap
  FROM rollup_contact_day
) GROUP BY day, gap;

CREATE TRIGGER rollup_contact_day_to_gap AFTER INSERT ON rollup_contact_day BEGIN
  INSERT INTO rollup_contact_gap (day, gap_days, contacts)
  VALUES (NEW.day,
          COALESCE((NEW.day - (SELECT MAX(day) FROM rollup_contact_day WHERE contact = NEW.contact AND day < NEW.day)) / 86400000, 1000000),
          1)
  ON CONFLICT (day, gap_days) DO UPDATE SET contacts = contacts + 1;
END;
