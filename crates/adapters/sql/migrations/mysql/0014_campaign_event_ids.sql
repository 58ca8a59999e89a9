-- Each campaign event's public id, as migrations/sqlite/0014. Nullable columns added last: in
-- place, without copying the tables (MariaDB 10.3+, MySQL 8.0+); metadata lock waits end after
-- 5 s, as in 0010.
SET SESSION lock_wait_timeout = 5;
ALTER TABLE campaign_events ADD COLUMN public_id VARCHAR(64) NULL;
ALTER TABLE webhook_deliveries ADD COLUMN event_public_id VARCHAR(64) NULL;
