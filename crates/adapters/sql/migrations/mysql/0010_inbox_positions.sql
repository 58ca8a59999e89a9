-- Where each message stands in its player's inbox listing, as migrations/sqlite/0010 (ADR 0025).
-- Metadata lock waits end after 5 s (a transaction left open on the table fails this start, and
-- the next one tries again) rather than a year, which would queue every inbox call behind it.
SET SESSION lock_wait_timeout = 5;
CREATE TABLE inbox_positions (
    id            INT    NOT NULL PRIMARY KEY,
    last_position BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
INSERT INTO inbox_positions (id, last_position) VALUES (1, 0);
ALTER TABLE inbox_messages ADD COLUMN position BIGINT NULL;
