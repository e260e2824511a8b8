-- Webhook foundation: the raw inbox, inbound messages, statuses, dead letters and the event log.
-- Times are epoch milliseconds (INTEGER). Dedupe lives in UNIQUE keys, never in memory.

-- Every correctly signed POST body, once per distinct body (Meta's retries are byte-identical).
CREATE TABLE inbox (
  id           INTEGER PRIMARY KEY,
  body_sha256  BLOB    NOT NULL UNIQUE,
  received_at  INTEGER NOT NULL,
  secret_index INTEGER NOT NULL,            -- 0 current App Secret, 1 previous (rotation)
  item_count   INTEGER NOT NULL,
  body         BLOB    NOT NULL             -- the raw bytes exactly as signed
);

-- Inbound messages from contacts; the wamid is Meta's id and our dedupe key.
CREATE TABLE inbound_messages (
  id            INTEGER PRIMARY KEY,
  wamid         TEXT    NOT NULL UNIQUE,
  contact       TEXT    NOT NULL,           -- the contact's WhatsApp id (phone number)
  phone_number_id TEXT,
  type          TEXT    NOT NULL,
  sent_at       INTEGER NOT NULL,           -- Meta's timestamp
  received_at   INTEGER NOT NULL,
  inbox_id      INTEGER NOT NULL REFERENCES inbox(id),
  body          TEXT    NOT NULL            -- the message object as JSON
);
CREATE INDEX inbound_messages_contact ON inbound_messages (contact, sent_at);

-- Every distinct (wamid, status) Meta reported, for our messages and for unknown wamids alike.
CREATE TABLE statuses (
  id            INTEGER PRIMARY KEY,
  wamid         TEXT    NOT NULL,
  status        TEXT    NOT NULL,
  status_at     INTEGER NOT NULL,           -- Meta's timestamp
  received_at   INTEGER NOT NULL,
  recipient     TEXT,
  error_code    INTEGER,
  callback_data TEXT,
  inbox_id      INTEGER NOT NULL REFERENCES inbox(id),
  body          TEXT    NOT NULL,
  UNIQUE (wamid, status)
);

-- The current status of each wamid: only ever moves forward (sent < failed < delivered < read).
CREATE TABLE message_status (
  wamid       TEXT    PRIMARY KEY,
  status      TEXT    NOT NULL,
  rank        INTEGER NOT NULL,
  status_at   INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  error_code  INTEGER
) WITHOUT ROWID;

-- Value-level errors and changes of other fields (template status, account alerts, ...): kept, not acted on.
CREATE TABLE webhook_changes (
  id          INTEGER PRIMARY KEY,
  inbox_id    INTEGER NOT NULL REFERENCES inbox(id),
  field       TEXT    NOT NULL,
  error_code  INTEGER,
  received_at INTEGER NOT NULL,
  body        TEXT    NOT NULL
);

-- What we accepted (200) but could not understand: a body that is not JSON, an item without its keys.
CREATE TABLE dead_letters (
  id          INTEGER PRIMARY KEY,
  inbox_id    INTEGER REFERENCES inbox(id),
  reason      TEXT    NOT NULL,
  created_at  INTEGER NOT NULL,
  body        TEXT
);

-- The append-only event log. seq is the feed's sequence number; AUTOINCREMENT so that a seq
-- is never reused, even after retention deletes the newest rows' predecessors.
CREATE TABLE events (
  seq      INTEGER PRIMARY KEY AUTOINCREMENT,
  type     TEXT    NOT NULL,
  at       INTEGER NOT NULL,
  contact  TEXT,
  data     TEXT    NOT NULL
);
CREATE INDEX events_type ON events (type, seq);
