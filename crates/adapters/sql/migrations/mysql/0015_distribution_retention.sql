-- The indexes of distribution's retention, as migrations/sqlite/0015. Built online (writes go on);
-- metadata lock waits end after 5 s, as in 0010.
SET SESSION lock_wait_timeout = 5;
CREATE INDEX campaign_events_dispatched ON campaign_events (dispatched, at_ms, id);
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event_id);
CREATE INDEX inbox_messages_by_expiry ON inbox_messages (expires_at);
