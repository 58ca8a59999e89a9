-- Each campaign event's public id, the `id` of its webhook deliveries: `evt_` and 32 hex digits of
-- a random 128-bit value, given when the event is written, so an id is never given again after a
-- restore and never shared with another deployment (`evt_<id>`, from the row's key, was both).
-- Events written before this have none and keep `evt_<id>`; a delivery keeps the id it was queued
-- with (none: `evt_<event_id>`), which is what `GET /webhooks/{id}/deliveries` shows.
ALTER TABLE campaign_events ADD COLUMN public_id VARCHAR(64);
ALTER TABLE webhook_deliveries ADD COLUMN event_public_id VARCHAR(64);
