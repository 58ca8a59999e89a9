-- A webhook's due deliveries, as migrations/sqlite/0017; everyone's messages in their listing's
-- order with the expiry in the index (an expired one, kept for retention, is passed over in the
-- index, its row never read), replacing 0016's inbox_messages_to_all. Each index holds off the
-- writes (not the reads) of its table while it is built: delivery writes, and message writes
-- (not claims); lock waits end after 5 s, as in 0015.
SET LOCAL lock_timeout = '5s';
CREATE INDEX webhook_deliveries_due_by_hook
ON webhook_deliveries (state, webhook_id, next_attempt_at, id);
CREATE INDEX inbox_messages_live_to_all ON inbox_messages (position, expires_at)
WHERE player_id IS NULL;
DROP INDEX inbox_messages_to_all;
