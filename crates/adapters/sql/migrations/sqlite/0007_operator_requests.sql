-- Operator writes under an Idempotency-Key (campaigns, webhooks, API keys, inbox sends): the
-- answer each key got, so a retry (same operator, key and request) gets it again instead of
-- writing twice. Replaces inbox_sends: its rows carry over as the answers they gave, their
-- digests (taken another way) as 'legacy:<route>', which any send under the key matches. The
-- table stays one release, read for keys that processes of the release before write during a
-- rolling upgrade, and goes in a later migration. Purged with the per-event rows (EVENT_RETENTION).
CREATE TABLE operator_requests (
    operator_id  VARCHAR(64)  NOT NULL,
    idem_key     VARCHAR(255) NOT NULL,
    request_hash VARCHAR(64)  NOT NULL,
    answer       TEXT         NOT NULL,
    created_at   BIGINT       NOT NULL,
    PRIMARY KEY (operator_id, idem_key)
);
CREATE INDEX operator_requests_created ON operator_requests (created_at);
INSERT INTO operator_requests (operator_id, idem_key, request_hash, answer, created_at)
SELECT operator_id, idem_key, 'legacy:POST /inbox/messages', '{"messageIds":' || message_ids || '}',
       sent_at
FROM inbox_sends;
