-- Rollups kept current in the same transactions as the raw rows, so the feed answers
-- summaries and time series without scanning millions of raw rows.

-- Per minute and pack ('' for taps that matched no pack, and for teasers).
CREATE TABLE rollup_minute (
  minute              INTEGER NOT NULL,         -- epoch ms, floored to the minute
  pack_id             TEXT    NOT NULL,
  clicks              INTEGER NOT NULL DEFAULT 0,
  unlocks_started     INTEGER NOT NULL DEFAULT 0,
  unlocks_repeated    INTEGER NOT NULL DEFAULT 0,
  unlocks_expired     INTEGER NOT NULL DEFAULT 0,
  unknown_triggers    INTEGER NOT NULL DEFAULT 0,
  unlocks_completed   INTEGER NOT NULL DEFAULT 0,
  messages_sent       INTEGER NOT NULL DEFAULT 0,
  messages_delivered  INTEGER NOT NULL DEFAULT 0, -- first time a message reached delivered or read
  messages_read       INTEGER NOT NULL DEFAULT 0,
  messages_failed     INTEGER NOT NULL DEFAULT 0, -- given up on (dead letter), counted once per message
  PRIMARY KEY (minute, pack_id)
) WITHOUT ROWID;

-- Distinct contacts that tapped, per day; unique contacts in a window are counted from here.
CREATE TABLE rollup_contact_day (
  day      INTEGER NOT NULL,                    -- epoch ms, floored to the UTC day
  contact  TEXT    NOT NULL,
  first_at INTEGER NOT NULL,
  PRIMARY KEY (day, contact)
) WITHOUT ROWID;
