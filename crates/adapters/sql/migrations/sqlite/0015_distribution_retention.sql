-- What distribution's retention purges, read along an index rather than the whole table (the
-- finished deliveries are read along webhook_deliveries_due (state, next_attempt_at), 0003):
-- the outbox events turned into deliveries, oldest first; the deliveries of an event (is any
-- left?); the inbox messages by expiry.
CREATE INDEX campaign_events_dispatched ON campaign_events (dispatched, at_ms, id);
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event_id);
CREATE INDEX inbox_messages_by_expiry ON inbox_messages (expires_at);
