-- Where each message stands in its player's inbox listing: the order messages were written in,
-- numbered under the writer's lock (ADR 0025). Existing messages keep the order they were listed
-- in (creation time, then id). The embedded database has one process: no older release writes
-- here during an upgrade, so the column's default is never used.
ALTER TABLE inbox_messages ADD COLUMN position INTEGER NOT NULL DEFAULT 0;
UPDATE inbox_messages SET position = numbered.n
FROM (SELECT message_id, ROW_NUMBER() OVER (ORDER BY created_at, message_id) AS n
      FROM inbox_messages) AS numbered
WHERE numbered.message_id = inbox_messages.message_id;
CREATE INDEX inbox_messages_by_position ON inbox_messages (player_id, position);
-- The last position given; its one row is locked by each transaction that writes messages.
CREATE TABLE inbox_positions (
    id            INTEGER PRIMARY KEY,
    last_position INTEGER NOT NULL
);
INSERT INTO inbox_positions (id, last_position)
SELECT 1, COALESCE(MAX(position), 0) FROM inbox_messages;
