-- A webhook's deliveries in one state, newest first (`GET /webhooks/{id}/deliveries?state=dead`):
-- read from the index instead of walking every delivery of the webhook for the few dead ones.
CREATE INDEX webhook_deliveries_by_state ON webhook_deliveries (webhook_id, state, created_at);
