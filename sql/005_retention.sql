-- Retention: deleting an old inbox row makes SQLite look for rows that still reference it
-- (foreign_keys=ON), and retention asks the same question before it deletes. Without these
-- indexes each such lookup is a full scan of the child table, once per deleted inbox row.
-- inbox_id only grows, so each index appends at its right edge and costs the hot path little.
CREATE INDEX inbound_messages_inbox ON inbound_messages (inbox_id);
CREATE INDEX statuses_inbox ON statuses (inbox_id);
CREATE INDEX webhook_changes_inbox ON webhook_changes (inbox_id);
CREATE INDEX dead_letters_inbox ON dead_letters (inbox_id);
