-- Where each message stands in its player's inbox listing, as migrations/sqlite/0010 (ADR 0025):
-- schema only, so the table's ACCESS EXCLUSIVE lock is held for an instant.
ALTER TABLE inbox_messages ADD COLUMN position BIGINT;
CREATE TABLE inbox_positions (
    id            INTEGER PRIMARY KEY,
    last_position BIGINT NOT NULL
);
INSERT INTO inbox_positions (id, last_position) VALUES (1, 0);
