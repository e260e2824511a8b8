-- Which dead row's failure cancelled this one (the later messages of a pack stop when one dies).
-- When Meta later proves the dead message was sent after all (an ambiguous send), the rows it
-- cancelled are queued again. See docs/decisions/0003.
ALTER TABLE outbox ADD COLUMN cancelled_by INTEGER;
CREATE INDEX outbox_cancelled_by ON outbox (cancelled_by) WHERE cancelled_by IS NOT NULL;
