-- Operator sends under an Idempotency-Key, as migrations/sqlite/0006.
CREATE TABLE inbox_sends (
    operator_id  VARCHAR(64)  COLLATE "C" NOT NULL,
    idem_key     VARCHAR(255) COLLATE "C" NOT NULL,
    request_hash VARCHAR(64)  COLLATE "C" NOT NULL,
    message_ids  TEXT         NOT NULL,
    sent_at      BIGINT       NOT NULL,
    PRIMARY KEY (operator_id, idem_key)
);
