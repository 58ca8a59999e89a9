-- Where each message stands in its player's inbox listing: the order messages were written in,
-- numbered under the counter's row lock (ADR 0025). The messages already written keep the
-- order they were listed in (creation time, then id), numbered -N..-1 below every new one.
ALTER TABLE inbox_messages ADD COLUMN position INTEGER;
UPDATE inbox_messages SET position = numbered.n
FROM (SELECT message_id,
             ROW_NUMBER() OVER (ORDER BY created_at, message_id) - COUNT(*) OVER () - 1 AS n
      FROM inbox_messages) AS numbered
WHERE numbered.message_id = inbox_messages.message_id;
CREATE INDEX inbox_messages_by_position ON inbox_messages (player_id, position);
-- The last position given; each transaction that writes messages takes its positions here.
CREATE TABLE inbox_positions (
    id            INTEGER PRIMARY KEY,
    last_position INTEGER NOT NULL
);
INSERT INTO inbox_positions (id, last_position) VALUES (1, 0);
-- A write that names no position (a process of an earlier release) gets the next one.
CREATE TRIGGER inbox_messages_position AFTER INSERT ON inbox_messages
WHEN NEW.position IS NULL
BEGIN
    UPDATE inbox_positions SET last_position = last_position + 1 WHERE id = 1;
    UPDATE inbox_messages SET position = (SELECT last_position FROM inbox_positions WHERE id = 1)
    WHERE message_id = NEW.message_id;
END;
