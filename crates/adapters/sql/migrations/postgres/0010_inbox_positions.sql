-- Where each message stands in its player's inbox listing, as migrations/sqlite/0010 (ADR 0025).
-- No default: a process of the previous release still running during a rolling upgrade fails
-- its message writes (503, retried: a settlement at its next tick, a send by its client under
-- its Idempotency-Key) instead of writing messages the listing would misplace.
ALTER TABLE inbox_messages ADD COLUMN position BIGINT;
UPDATE inbox_messages SET position = numbered.n
FROM (SELECT message_id, ROW_NUMBER() OVER (ORDER BY created_at, message_id) AS n
      FROM inbox_messages) AS numbered
WHERE numbered.message_id = inbox_messages.message_id;
ALTER TABLE inbox_messages ALTER COLUMN position SET NOT NULL;
CREATE INDEX inbox_messages_by_position ON inbox_messages (player_id, position);
CREATE TABLE inbox_positions (
    id            INTEGER PRIMARY KEY,
    last_position BIGINT NOT NULL
);
INSERT INTO inbox_positions (id, last_position)
SELECT 1, COALESCE(MAX(position), 0) FROM inbox_messages;
