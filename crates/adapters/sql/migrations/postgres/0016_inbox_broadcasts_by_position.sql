-- The messages to every player in their listing's order, for an inbox page to read the last
-- ones written and stop at its size: PostgreSQL takes `player_id IS NULL` for no equality, so
-- inbox_messages_by_position (0011) gives it no order there (MySQL and SQLite read that index in
-- order). Holds off message writes (not reads, nor claims) while it is built; lock waits end
-- after 5 s, as in 0015.
SET LOCAL lock_timeout = '5s';
CREATE INDEX inbox_messages_to_all ON inbox_messages (position) WHERE player_id IS NULL;
