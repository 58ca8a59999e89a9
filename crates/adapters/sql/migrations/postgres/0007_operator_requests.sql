-- Operator writes under an Idempotency-Key, as migrations/sqlite/0007.
CREATE TABLE operator_requests (
    operator_id  VARCHAR(64)  COLLATE "C" NOT NULL,
    idem_key     VARCHAR(255) COLLATE "C" NOT NULL,
    request_hash VARCHAR(64)  COLLATE "C" NOT NULL,
    answer       TEXT         NOT NULL,
    created_at   BIGINT       NOT NULL,
    PRIMARY KEY (operator_id, idem_key)
);
CREATE INDEX operator_requests_created ON operator_requests (created_at);
INSERT INTO operator_requests (operator_id, idem_key, request_hash, answer, created_at)
SELECT operator_id, idem_key, 'legacy:POST /inbox/messages', '{"messageIds":' || message_ids || '}',
       sent_at
FROM inbox_sends;
