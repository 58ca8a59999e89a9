-- The messages written before 0010, numbered as migrations/sqlite/0011 (ADR 0025), only while
-- nothing is numbered; the indexes are built online, lock waits as in 0010.
SET SESSION lock_wait_timeout = 5;
UPDATE inbox_messages JOIN (
    SELECT message_id,
           ROW_NUMBER() OVER (ORDER BY created_at, message_id) - COUNT(*) OVER () - 1 AS n
    FROM inbox_messages WHERE position IS NULL
      AND NOT EXISTS (SELECT 1 FROM inbox_messages p WHERE p.position IS NOT NULL)
) AS numbered ON numbered.message_id = inbox_messages.message_id
SET inbox_messages.position = numbered.n;
CREATE INDEX inbox_messages_by_position ON inbox_messages (player_id, position);
-- Messages written without a position (by a process of the release before), to be placed; no
-- partial indexes here: every message is in it.
CREATE INDEX inbox_messages_unplaced ON inbox_messages (position, created_at);
