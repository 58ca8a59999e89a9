-- Where each message stands in its player's inbox listing, as migrations/postgres/0010 (ADR 0025).
ALTER TABLE inbox_messages ADD COLUMN position BIGINT NULL;
UPDATE inbox_messages JOIN (
    SELECT message_id, ROW_NUMBER() OVER (ORDER BY created_at, message_id) AS n
    FROM inbox_messages
) AS numbered ON numbered.message_id = inbox_messages.message_id
SET inbox_messages.position = numbered.n;
ALTER TABLE inbox_messages MODIFY position BIGINT NOT NULL;
CREATE INDEX inbox_messages_by_position ON inbox_messages (player_id, position);
CREATE TABLE inbox_positions (
    id            INT    NOT NULL PRIMARY KEY,
    last_position BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
INSERT INTO inbox_positions (id, last_position)
SELECT 1, COALESCE(MAX(position), 0) FROM inbox_messages;
