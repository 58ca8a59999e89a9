-- The messages written before 0010, numbered as migrations/sqlite/0011 (ADR 0025). The UPDATE
-- locks only the rows it numbers: processes of the release before go on reading, claiming and
-- writing (what they write meanwhile is placed later). The indexes then hold off their message
-- writes (not reads or claims) while they are built. Lock waits as in 0010. Numbering only while
-- nothing is numbered (a second run numbers nothing; what is left is placed by the settler).
SET LOCAL lock_timeout = '5s';
UPDATE inbox_messages SET position = numbered.n
FROM (SELECT message_id,
             ROW_NUMBER() OVER (ORDER BY created_at, message_id) - COUNT(*) OVER () - 1 AS n
      FROM inbox_messages WHERE position IS NULL
        AND NOT EXISTS (SELECT 1 FROM inbox_messages WHERE position IS NOT NULL)) AS numbered
WHERE numbered.message_id = inbox_messages.message_id;
CREATE INDEX inbox_messages_by_position ON inbox_messages (player_id, position);
CREATE INDEX inbox_messages_unplaced ON inbox_messages (created_at, message_id)
WHERE position IS NULL;
