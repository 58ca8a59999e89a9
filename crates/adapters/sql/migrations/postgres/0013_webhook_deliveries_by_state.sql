-- A webhook's deliveries in one state, as migrations/sqlite/0013. Building it holds off delivery
-- writes (not reads) for its duration; lock waits end after 5 s, as in 0011.
SET LOCAL lock_timeout = '5s';
CREATE INDEX webhook_deliveries_by_state ON webhook_deliveries (webhook_id, state, created_at);
