-- Live-event campaigns, PostgreSQL flavour: the tables, keys and indexes of
-- migrations/sqlite/0003_live_events.sql, column for column (0003 on every backend: a version
-- number means the same change everywhere). Ids with the "C" collation, row ids as identity
-- columns.
-- Ids as text, times as unix milliseconds in BIGINT, booleans as SMALLINT 0/1, lists and
-- documents as JSON text.

-- Operator accounts (passwords only as argon2id PHC strings).
CREATE TABLE operators (
    id            VARCHAR(64) COLLATE "C"  NOT NULL PRIMARY KEY,
    email         VARCHAR(254) COLLATE "C" NOT NULL UNIQUE,
    password_hash VARCHAR(255) COLLATE "C" NOT NULL,
    role          VARCHAR(16) COLLATE "C"  NOT NULL,
    disabled      SMALLINT     NOT NULL DEFAULT 0,
    created_at    BIGINT       NOT NULL,
    updated_at    BIGINT       NOT NULL
);

-- Login sessions: the SHA-256 of each opaque bearer token.
CREATE TABLE operator_sessions (
    token_hash  VARCHAR(64) COLLATE "C"    NOT NULL PRIMARY KEY,
    operator_id VARCHAR(64) COLLATE "C" NOT NULL,
    created_at  BIGINT      NOT NULL,
    expires_at  BIGINT      NOT NULL
);
CREATE INDEX operator_sessions_by_operator ON operator_sessions (operator_id);

-- Every change operators make: who, what, when, before and after.
CREATE TABLE audit_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms       BIGINT       NOT NULL,
    actor       VARCHAR(254) COLLATE "C" NOT NULL,
    action      VARCHAR(64) COLLATE "C"  NOT NULL,
    target      VARCHAR(128) COLLATE "C" NOT NULL,
    before_json TEXT,
    after_json  TEXT
);

-- API keys game servers sign requests with (secrets as given: see docs/adr/0001).
CREATE TABLE api_keys (
    key_id     VARCHAR(64) COLLATE "C"  NOT NULL PRIMARY KEY,
    name       VARCHAR(100) COLLATE "C" NOT NULL,
    secret     VARCHAR(128) COLLATE "C" NOT NULL,
    created_by VARCHAR(254) COLLATE "C" NOT NULL,
    created_at BIGINT       NOT NULL,
    revoked_at BIGINT
);

-- Campaigns; `state` moves by conditional updates only.
CREATE TABLE campaigns (
    id          VARCHAR(64) COLLATE "C"  NOT NULL PRIMARY KEY,
    title       VARCHAR(200) COLLATE "C" NOT NULL,
    description TEXT         NOT NULL,
    starts_at   BIGINT       NOT NULL,
    ends_at     BIGINT       NOT NULL,
    min_level   BIGINT       NOT NULL,
    entry_limit VARCHAR(8) COLLATE "C"   NOT NULL,
    reward      TEXT         NOT NULL,
    state       VARCHAR(16) COLLATE "C"  NOT NULL,
    seed        VARCHAR(64),
    commitment  VARCHAR(64),
    created_by  VARCHAR(254) COLLATE "C" NOT NULL,
    created_at  BIGINT       NOT NULL,
    updated_at  BIGINT       NOT NULL
);
CREATE INDEX campaigns_by_state ON campaigns (state, starts_at);
CREATE INDEX campaigns_by_creation ON campaigns (created_at);

-- The outbox of campaign events, written with the change that caused them.
CREATE TABLE campaign_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id VARCHAR(64) COLLATE "C" NOT NULL,
    kind        VARCHAR(32) COLLATE "C" NOT NULL,
    at_ms       BIGINT      NOT NULL,
    data        TEXT        NOT NULL,
    dispatched  SMALLINT    NOT NULL DEFAULT 0
);
CREATE INDEX campaign_events_undispatched ON campaign_events (dispatched, id);

-- Entries: one per player and slot (`once`, or a UTC day).
CREATE TABLE campaign_entries (
    entry_id    VARCHAR(64) COLLATE "C" NOT NULL PRIMARY KEY,
    campaign_id VARCHAR(64) COLLATE "C" NOT NULL,
    player_id   VARCHAR(64) COLLATE "C" NOT NULL,
    slot        VARCHAR(16) COLLATE "C" NOT NULL,
    entered_at  BIGINT      NOT NULL,
    request_sig VARCHAR(80) COLLATE "C" NOT NULL,
    UNIQUE (campaign_id, player_id, slot)
);
CREATE INDEX campaign_entries_by_player ON campaign_entries (player_id, campaign_id);
CREATE UNIQUE INDEX campaign_entries_by_request ON campaign_entries (request_sig);

-- How each campaign's winners were decided: once.
CREATE TABLE campaign_outcomes (
    campaign_id    VARCHAR(64) COLLATE "C"  NOT NULL PRIMARY KEY,
    algorithm      VARCHAR(32) COLLATE "C"  NOT NULL,
    entrants       TEXT         NOT NULL,
    entrants_hash  VARCHAR(64) COLLATE "C"     NOT NULL,
    seed           VARCHAR(64),
    commitment     VARCHAR(64),
    winner_count   BIGINT,
    source         VARCHAR(200),
    awards         TEXT         NOT NULL,
    decided_at     BIGINT       NOT NULL
);

-- Winners paid: one row per campaign and player, written with their inbox message.
CREATE TABLE campaign_settlements (
    campaign_id VARCHAR(64) COLLATE "C" NOT NULL,
    player_id   VARCHAR(64) COLLATE "C" NOT NULL,
    message_id  VARCHAR(64) COLLATE "C" NOT NULL,
    settled_at  BIGINT      NOT NULL,
    PRIMARY KEY (campaign_id, player_id)
);

-- The player inbox; player_id NULL: every player's.
CREATE TABLE inbox_messages (
    message_id  VARCHAR(64) COLLATE "C"  NOT NULL PRIMARY KEY,
    player_id   VARCHAR(64),
    campaign_id VARCHAR(64),
    title       VARCHAR(200) COLLATE "C" NOT NULL,
    body        TEXT         NOT NULL,
    attachments TEXT         NOT NULL,
    created_at  BIGINT       NOT NULL,
    expires_at  BIGINT       NOT NULL
);
CREATE INDEX inbox_messages_by_player ON inbox_messages (player_id, created_at);

-- Claims: the receipts issued for a message's attachments, once per player.
CREATE TABLE inbox_claims (
    message_id  VARCHAR(64) COLLATE "C" NOT NULL,
    player_id   VARCHAR(64) COLLATE "C" NOT NULL,
    claimed_at  BIGINT      NOT NULL,
    receipts    TEXT        NOT NULL,
    request_sig VARCHAR(80) COLLATE "C" NOT NULL,
    PRIMARY KEY (message_id, player_id)
);
CREATE UNIQUE INDEX inbox_claims_by_request ON inbox_claims (request_sig);

-- Webhook subscriptions.
CREATE TABLE webhooks (
    id         VARCHAR(64) COLLATE "C"   NOT NULL PRIMARY KEY,
    url        VARCHAR(2048) COLLATE "C" NOT NULL,
    events     TEXT          NOT NULL,
    secret     VARCHAR(256) COLLATE "C"  NOT NULL,
    created_by VARCHAR(254) COLLATE "C"  NOT NULL,
    created_at BIGINT        NOT NULL,
    deleted_at BIGINT
);

-- The durable delivery queue: one row per webhook and event.
CREATE TABLE webhook_deliveries (
    id              VARCHAR(64) COLLATE "C" NOT NULL PRIMARY KEY,
    webhook_id      VARCHAR(64) COLLATE "C" NOT NULL,
    event_id        BIGINT      NOT NULL,
    kind            VARCHAR(32) COLLATE "C" NOT NULL,
    body            TEXT        NOT NULL,
    state           VARCHAR(16) COLLATE "C" NOT NULL,
    attempts        BIGINT      NOT NULL,
    next_attempt_at BIGINT      NOT NULL,
    created_at      BIGINT      NOT NULL,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_by_hook ON webhook_deliveries (webhook_id, created_at);

-- Every attempt at a delivery.
CREATE TABLE webhook_attempts (
    delivery_id VARCHAR(64) COLLATE "C"  NOT NULL,
    attempt     BIGINT       NOT NULL,
    at_ms       BIGINT       NOT NULL,
    status      BIGINT,
    error       VARCHAR(500),
    duration_ms BIGINT       NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
