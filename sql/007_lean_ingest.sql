-- A leaner write per webhook (decision 0005). Every page a request dirties is written to the
-- WAL at COMMIT, so fewer pages per request is more requests per second:
--  * the body hash is kept only for bodies that need it to be deduplicated (those carrying
--    anything other than messages and statuses, which have UNIQUE keys of their own), so most
--    requests no longer insert into a random-keyed index;
--  * a message's or status's JSON is no longer stored a second time beside the raw body in
--    the inbox: the contact history reads the message from there.
-- The inbox is rebuilt to make body_sha256 nullable (SQLite cannot relax NOT NULL in place);
-- migrations run with foreign keys off and checked before commit, so the rebuild keeps the
-- references from inbound_messages, statuses, webhook_changes and dead_letters.

CREATE TABLE inbox_lean (
  id           INTEGER PRIMARY KEY,
  body_sha256  BLOB,                        -- only for bodies deduplicated by their bytes (see above)
  received_at  INTEGER NOT NULL,
  secret_index INTEGER NOT NULL,            -- 0 current App Secret, 1 previous (rotation)
  item_count   INTEGER NOT NULL,
  body         BLOB    NOT NULL             -- the raw bytes exactly as signed
);
INSERT INTO inbox_lean (id, body_sha256, received_at, secret_index, item_count, body)
  SELECT id, body_sha256, received_at, secret_index, item_count, body FROM inbox;
DROP TABLE inbox;
ALTER TABLE inbox_lean RENAME TO inbox;
CREATE UNIQUE INDEX inbox_body_sha256 ON inbox (body_sha256) WHERE body_sha256 IS NOT NULL;

ALTER TABLE inbound_messages DROP COLUMN body;
ALTER TABLE statuses DROP COLUMN body;
