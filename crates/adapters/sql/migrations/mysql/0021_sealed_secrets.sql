-- The id of the key that sealed each secret, as migrations/sqlite/0021 (ADR 0032), and room for
-- the sealed text: base64 of a 24-byte nonce, the value and a 16-byte tag. Each widened column
-- keeps its two-byte length prefix, so InnoDB changes it in place, as it adds the columns.
-- Metadata lock waits end after 5 s (a transaction left open on a table fails this start, and
-- the next one tries again).
SET SESSION lock_wait_timeout = 5;
ALTER TABLE api_keys
    MODIFY secret VARCHAR(256) NOT NULL,
    ADD COLUMN secret_key VARCHAR(32) NULL;
ALTER TABLE webhooks
    MODIFY secret VARCHAR(2048) NOT NULL,
    ADD COLUMN secret_key VARCHAR(32) NULL;
ALTER TABLE campaigns
    MODIFY seed VARCHAR(256) NULL,
    ADD COLUMN seed_key VARCHAR(32) NULL;
ALTER TABLE operator_requests ADD COLUMN answer_key VARCHAR(32) NULL;
