-- The messages written before 0010 keep the order they were listed in (creation time, then id),
-- numbered -N..-1: below every position the counter gives (ADR 0025); only while nothing is
-- numbered (a second run numbers nothing: what is left is placed as it is written).
UPDATE inbox_messages SET position = numbered.n
FROM (SELECT message_id,
             ROW_NUMBER() OVER (ORDER BY created_at, message_id) - COUNT(*) OVER () - 1 AS n
      FROM inbox_messages WHERE position IS NULL
        AND NOT EXISTS (SELECT 1 FROM inbox_messages WHERE position IS NOT NULL)) AS numbered
WHERE numbered.message_id = inbox_messages.message_id;
CREATE INDEX inbox_messages_by_position ON inbox_messages (player_id, position);
-- Messages written without a position (by a process of an earlier release), to be placed.
CREATE INDEX inbox_messages_unplaced ON inbox_messages (created_at, message_id)
WHERE position IS NULL;
