-- A webhook's deliveries in one state, as migrations/sqlite/0013. Built online (delivery writes go
-- on); metadata lock waits end after 5 s, as in 0010.
SET SESSION lock_wait_timeout = 5;
CREATE INDEX webhook_deliveries_by_state ON webhook_deliveries (webhook_id, state, created_at);
