-- Where each message stands in its player's inbox listing, as migrations/sqlite/0010 (ADR 0025):
-- schema only, so the table's ACCESS EXCLUSIVE lock is held for an instant. It waits at most
-- 5 s for it (a transaction left open on the table fails this start, and the next one tries
-- again) rather than the migration session's 10 minutes, which would queue every inbox call.
SET LOCAL lock_timeout = '5s';
ALTER TABLE inbox_messages ADD COLUMN position BIGINT;
CREATE TABLE inbox_positions (
    id            INTEGER PRIMARY KEY,
    last_position BIGINT NOT NULL
);
INSERT INTO inbox_positions (id, last_position) VALUES (1, 0);
