-- A webhook's due deliveries, oldest first: leasing reads each webhook under its in-flight cap
-- along this, so the due rows of a webhook at its cap (a dead receiver's backlog) are never read
-- (webhook_deliveries_due, 0003, has no webhook_id: every due row was read and passed over).
-- (PostgreSQL's 0017 also indexes everyone's inbox messages with their expiry.)
CREATE INDEX webhook_deliveries_due_by_hook
ON webhook_deliveries (state, webhook_id, next_attempt_at, id);
