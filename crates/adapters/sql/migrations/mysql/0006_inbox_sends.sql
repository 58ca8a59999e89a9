-- Operator sends under an Idempotency-Key, as migrations/sqlite/0006.
CREATE TABLE IF NOT EXISTS inbox_sends (
    operator_id  VARCHAR(64)  NOT NULL,
    idem_key     VARCHAR(255) NOT NULL,
    request_hash VARCHAR(64)  NOT NULL,
    message_ids  MEDIUMTEXT   NOT NULL,
    sent_at      BIGINT       NOT NULL,
    PRIMARY KEY (operator_id, idem_key)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
