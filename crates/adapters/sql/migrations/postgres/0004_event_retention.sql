-- When each per-event row was written (unix milliseconds), as migrations/sqlite/0004: rows older
-- than the retention can be purged. Rows written before this migration count from the migration.
ALTER TABLE processed_events ADD COLUMN done_at BIGINT NOT NULL DEFAULT 0;
UPDATE processed_events SET done_at = CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT);
ALTER TABLE fairness_verdicts ADD COLUMN done_at BIGINT NOT NULL DEFAULT 0;
UPDATE fairness_verdicts SET done_at = CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT);
