-- Where each message stands in its player's inbox listing, as migrations/sqlite/0010 (ADR 0025).
-- MySQL commits each DDL statement alone, and processes of the release before keep writing
-- during a rolling upgrade: the trigger is created first (it waits for their open transactions),
-- so every message written after it gets a position, and those written before are numbered next.
-- The column stays nullable: a write that omits it must reach the trigger in every SQL mode.
CREATE TABLE inbox_positions (
    id            INT    NOT NULL PRIMARY KEY,
    last_position BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
INSERT INTO inbox_positions (id, last_position) VALUES (1, 0);
ALTER TABLE inbox_messages ADD COLUMN position BIGINT NULL;
CREATE TRIGGER inbox_messages_position BEFORE INSERT ON inbox_messages FOR EACH ROW
BEGIN
    IF NEW.position IS NULL THEN
        UPDATE inbox_positions SET last_position = last_position + 1 WHERE id = 1;
        SET NEW.position = (SELECT last_position FROM inbox_positions WHERE id = 1);
    END IF;
END;
UPDATE inbox_messages JOIN (
    SELECT message_id,
           ROW_NUMBER() OVER (ORDER BY created_at, message_id) - COUNT(*) OVER () - 1 AS n
    FROM inbox_messages WHERE position IS NULL
) AS numbered ON numbered.message_id = inbox_messages.message_id
SET inbox_messages.position = numbered.n;
CREATE INDEX inbox_messages_by_position ON inbox_messages (player_id, position);
