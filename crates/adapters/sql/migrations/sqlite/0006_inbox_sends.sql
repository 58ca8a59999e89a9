-- Operator sends under an Idempotency-Key: the first send's message ids, so a retry (same
-- operator, key and request) answers them again instead of sending twice.
CREATE TABLE inbox_sends (
    operator_id  VARCHAR(64)  NOT NULL,
    idem_key     VARCHAR(255) NOT NULL,
    request_hash VARCHAR(64)  NOT NULL,
    message_ids  TEXT         NOT NULL,
    sent_at      BIGINT       NOT NULL,
    PRIMARY KEY (operator_id, idem_key)
);
