-- Where each message stands in its player's inbox listing, as migrations/sqlite/0010 (ADR 0025).
-- One transaction: its ACCESS EXCLUSIVE lock holds the inbox's other writers until it commits.
ALTER TABLE inbox_messages ADD COLUMN position BIGINT;
UPDATE inbox_messages SET position = numbered.n
FROM (SELECT message_id,
             ROW_NUMBER() OVER (ORDER BY created_at, message_id) - COUNT(*) OVER () - 1 AS n
      FROM inbox_messages) AS numbered
WHERE numbered.message_id = inbox_messages.message_id;
CREATE TABLE inbox_positions (
    id            INTEGER PRIMARY KEY,
    last_position BIGINT NOT NULL
);
INSERT INTO inbox_positions (id, last_position) VALUES (1, 0);
-- A write that names no position (a process of the release before, during a rolling upgrade)
-- gets the next one, under the same lock as this release's writes.
CREATE FUNCTION inbox_messages_position() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.position IS NULL THEN
        UPDATE inbox_positions SET last_position = last_position + 1 WHERE id = 1
        RETURNING last_position INTO NEW.position;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER inbox_messages_position BEFORE INSERT ON inbox_messages
FOR EACH ROW EXECUTE FUNCTION inbox_messages_position();
ALTER TABLE inbox_messages ALTER COLUMN position SET NOT NULL;
CREATE INDEX inbox_messages_by_position ON inbox_messages (player_id, position);
