-- Each campaign event's public id, as migrations/sqlite/0014. Schema only: each table's lock is
-- held for an instant, and waited for at most 5 s (a transaction left open on the table fails this
-- start, and the next one tries again), as in 0010.
SET LOCAL lock_timeout = '5s';
ALTER TABLE campaign_events ADD COLUMN public_id VARCHAR(64);
ALTER TABLE webhook_deliveries ADD COLUMN event_public_id VARCHAR(64);
