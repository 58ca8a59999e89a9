-- Operator writes under an Idempotency-Key, as migrations/sqlite/0007.
CREATE TABLE IF NOT EXISTS operator_requests (
    operator_id  VARCHAR(64)  NOT NULL,
    idem_key     VARCHAR(255) NOT NULL,
    request_hash VARCHAR(64)  NOT NULL,
    answer       MEDIUMTEXT   NOT NULL,
    created_at   BIGINT       NOT NULL,
    PRIMARY KEY (operator_id, idem_key),
    KEY operator_requests_created (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
INSERT IGNORE INTO operator_requests (operator_id, idem_key, request_hash, answer, created_at)
SELECT operator_id, idem_key, 'legacy:POST /inbox/messages',
       CONCAT('{"messageIds":', message_ids, '}'), sent_at
FROM inbox_sends;
