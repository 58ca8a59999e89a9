-- The id of the key that sealed each secret, as migrations/sqlite/0021 (ADR 0032), and room for
-- the sealed text: base64 of a 24-byte nonce, the value and a 16-byte tag. A longer VARCHAR of
-- the same collation rewrites nothing; each table's ACCESS EXCLUSIVE lock is held for an
-- instant, waited for at most 5 s (a transaction left open on a table fails this start, and the
-- next one tries again).
SET LOCAL lock_timeout = '5s';
ALTER TABLE api_keys
    ALTER COLUMN secret TYPE VARCHAR(256) COLLATE "C",
    ADD COLUMN secret_key VARCHAR(32) COLLATE "C";
ALTER TABLE webhooks
    ALTER COLUMN secret TYPE VARCHAR(2048) COLLATE "C",
    ADD COLUMN secret_key VARCHAR(32) COLLATE "C";
ALTER TABLE campaigns
    ALTER COLUMN seed TYPE VARCHAR(256),
    ADD COLUMN seed_key VARCHAR(32) COLLATE "C";
ALTER TABLE operator_requests ADD COLUMN answer_key VARCHAR(32) COLLATE "C";
