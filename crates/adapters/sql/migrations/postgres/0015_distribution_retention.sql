-- The indexes of distribution's retention, as migrations/sqlite/0015. Each holds off the writes
-- (not the reads) of its table while it is built: delivery writes, and message writes (not
-- claims); lock waits end after 5 s, as in 0011.
SET LOCAL lock_timeout = '5s';
CREATE INDEX campaign_events_dispatched ON campaign_events (dispatched, at_ms, id);
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event_id);
CREATE INDEX inbox_messages_by_expiry ON inbox_messages (expires_at);
