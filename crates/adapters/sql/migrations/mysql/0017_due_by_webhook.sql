-- A webhook's due deliveries, as migrations/sqlite/0017. (No index with the inbox's expiry here:
-- MariaDB compares no condition in a backward index scan, so it would spare no row.) Built online
-- (writes go on); metadata lock waits end after 5 s, as in 0010.
SET SESSION lock_wait_timeout = 5;
CREATE INDEX webhook_deliveries_due_by_hook
ON webhook_deliveries (state, webhook_id, next_attempt_at, id);
