-- Housekeeping and the sender's "when is the next row due" ran as full scans of the outbox
-- (the partial indexes of 002 did not match their WHERE clauses), so their cost grew with
-- every message ever sent: a 30-minute soak at 200 taps/s saw the webhook p99 climb from 25 to
-- 340 ms. Each of those queries now has an index on the rows it looks for, which stay few.
CREATE INDEX outbox_unknown_due ON outbox (run_at) WHERE state = 'unknown';
