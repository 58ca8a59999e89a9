-- When each per-event row was written (unix milliseconds), so rows older than the retention can
-- be purged (`SqlRepository::purge_before`): processed event ids and fairness verdicts grew
-- forever before. Rows written before this migration count from the migration.
ALTER TABLE processed_events ADD COLUMN done_at BIGINT NOT NULL DEFAULT 0;
UPDATE processed_events SET done_at = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER);
ALTER TABLE fairness_verdicts ADD COLUMN done_at BIGINT NOT NULL DEFAULT 0;
UPDATE fairness_verdicts SET done_at = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER);
