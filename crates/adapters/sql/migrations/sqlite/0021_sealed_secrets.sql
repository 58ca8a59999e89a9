-- The id of the key that sealed each secret (ADR 0032): NULL while the value is in the clear.
-- Keyed answers are sealed too: a new API key's answer holds its secret.
-- SQLite does not bound VARCHAR, so the sealed text (longer than the clear value) needs no
-- wider column here; migrations/postgres and migrations/mysql 0021 widen theirs.
ALTER TABLE api_keys ADD COLUMN secret_key VARCHAR(32);
ALTER TABLE webhooks ADD COLUMN secret_key VARCHAR(32);
ALTER TABLE campaigns ADD COLUMN seed_key VARCHAR(32);
ALTER TABLE operator_requests ADD COLUMN answer_key VARCHAR(32);
