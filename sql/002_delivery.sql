-- Delivery: taps (clicks), unlocks and the outbox of pack messages to send.
-- The click, its unlock and every outbox row are written in the webhook's transaction (invariant 4).

-- One pack per (contact, pack), however often the button is tapped (invariant 3).
CREATE TABLE unlocks (
  id             INTEGER PRIMARY KEY,
  contact        TEXT    NOT NULL,
  pack_id        TEXT    NOT NULL,
  state          TEXT    NOT NULL CHECK (state IN ('sending', 'completed', 'failed')),
  message_count  INTEGER NOT NULL,
  created_at     INTEGER NOT NULL,            -- when the tap was received
  completed_at   INTEGER,                     -- every message accepted by Graph API
  delivered_at   INTEGER,                     -- every message delivered (or read)
  UNIQUE (contact, pack_id)
);

-- Every tap on an Unlock button, and what it did.
CREATE TABLE clicks (
  id           INTEGER PRIMARY KEY,
  wamid        TEXT    NOT NULL UNIQUE,       -- the inbound tap message
  contact      TEXT    NOT NULL,
  trigger      TEXT    NOT NULL,
  pack_id      TEXT,                          -- NULL when the trigger matches no pack
  source       TEXT    NOT NULL,              -- button_reply | quick_reply
  tapped_at    INTEGER NOT NULL,              -- Meta's (signed) timestamp
  received_at  INTEGER NOT NULL,
  result       TEXT    NOT NULL CHECK (result IN ('started', 'repeated', 'expired', 'unknown_trigger')),
  unlock_id    INTEGER REFERENCES unlocks(id)
);
CREATE INDEX clicks_received ON clicks (received_at);
CREATE INDEX clicks_contact ON clicks (contact, received_at);

-- Messages to send, a durable queue. Per contact, rows go out strictly in id order, one in flight.
--   pending  → sending (claimed with a lease) → accepted (Graph API returned a wamid)
--                                            → pending again (clear failure, retried at run_at)
--                                            → unknown (ambiguous: maybe sent) → accepted | pending (resent once)
--                                            → dead (permanent failure, too old, or an earlier message died)
CREATE TABLE outbox (
  id               INTEGER PRIMARY KEY,
  kind             TEXT    NOT NULL CHECK (kind IN ('pack', 'teaser')),
  unlock_id        INTEGER REFERENCES unlocks(id),
  contact          TEXT    NOT NULL,
  pack_id          TEXT,
  position         INTEGER NOT NULL,          -- order within the unlock, from 0
  payload          TEXT    NOT NULL,          -- the Graph API message object (without `to`)
  state            TEXT    NOT NULL CHECK (state IN ('pending', 'sending', 'unknown', 'accepted', 'dead')),
  attempts         INTEGER NOT NULL DEFAULT 0,
  pair_limit_hits  INTEGER NOT NULL DEFAULT 0, -- 131056 answers, for the per-contact 4^n backoff
  run_at           INTEGER NOT NULL,
  locked_until     INTEGER,
  last_error       TEXT,
  error_code       INTEGER,
  error_class      TEXT,
  wamid            TEXT    UNIQUE,
  trace_context    TEXT,                      -- W3C traceparent of the tap, so sends continue its trace
  send_trace       TEXT,                      -- traceparent of the accepted send, for status spans to link
  created_at       INTEGER NOT NULL,
  accepted_at      INTEGER,
  unknown_since    INTEGER,
  resent           INTEGER NOT NULL DEFAULT 0, -- 1 once an ambiguous attempt was sent again
  status           TEXT,                      -- Meta's latest status for the wamid (never moves backwards)
  status_rank      INTEGER NOT NULL DEFAULT 0,
  status_at        INTEGER
);
CREATE INDEX outbox_due ON outbox (run_at, id) WHERE state = 'pending';
CREATE INDEX outbox_open_by_contact ON outbox (contact, id) WHERE state IN ('pending', 'sending', 'unknown');
CREATE INDEX outbox_unlock ON outbox (unlock_id, position);
CREATE INDEX outbox_leased ON outbox (locked_until) WHERE state IN ('sending', 'unknown');
