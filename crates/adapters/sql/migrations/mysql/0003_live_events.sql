-- Live-event campaigns, MySQL / MariaDB flavour: the tables, keys and indexes of
-- migrations/sqlite/0003_live_events.sql, column for column (0003 on every backend: a version
-- number means the same change everywhere). InnoDB, utf8mb4_bin, row ids AUTO_INCREMENT;
-- documents (entrants, bodies, JSON lists) as MEDIUMTEXT (16 MiB); every statement can be run
-- again (DDL commits implicitly in MySQL).
-- Ids as text, times as unix milliseconds in BIGINT, booleans as SMALLINT 0/1, lists and
-- documents as JSON text.

-- Operator accounts (passwords only as argon2id PHC strings).
CREATE TABLE IF NOT EXISTS operators (
    id            VARCHAR(64)  NOT NULL PRIMARY KEY,
    email         VARCHAR(254) NOT NULL UNIQUE,
    password_hash VARCHAR(255) NOT NULL,
    role          VARCHAR(16)  NOT NULL,
    disabled      SMALLINT     NOT NULL DEFAULT 0,
    created_at    BIGINT       NOT NULL,
    updated_at    BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Login sessions: the SHA-256 of each opaque bearer token.
CREATE TABLE IF NOT EXISTS operator_sessions (
    token_hash  VARCHAR(64)    NOT NULL PRIMARY KEY,
    operator_id VARCHAR(64) NOT NULL,
    created_at  BIGINT      NOT NULL,
    expires_at  BIGINT      NOT NULL,
    KEY operator_sessions_by_operator (operator_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Every change operators make: who, what, when, before and after.
CREATE TABLE IF NOT EXISTS audit_log (
    id          BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    at_ms       BIGINT       NOT NULL,
    actor       VARCHAR(254) NOT NULL,
    action      VARCHAR(64)  NOT NULL,
    target      VARCHAR(128) NOT NULL,
    before_json MEDIUMTEXT,
    after_json  MEDIUMTEXT
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- API keys game servers sign requests with (secrets as given: see docs/adr/0001).
CREATE TABLE IF NOT EXISTS api_keys (
    key_id     VARCHAR(64)  NOT NULL PRIMARY KEY,
    name       VARCHAR(100) NOT NULL,
    secret     VARCHAR(128) NOT NULL,
    created_by VARCHAR(254) NOT NULL,
    created_at BIGINT       NOT NULL,
    revoked_at BIGINT
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Campaigns; `state` moves by conditional updates only.
CREATE TABLE IF NOT EXISTS campaigns (
    id          VARCHAR(64)  NOT NULL PRIMARY KEY,
    title       VARCHAR(200) NOT NULL,
    description MEDIUMTEXT   NOT NULL,
    starts_at   BIGINT       NOT NULL,
    ends_at     BIGINT       NOT NULL,
    min_level   BIGINT       NOT NULL,
    entry_limit VARCHAR(8)   NOT NULL,
    reward      MEDIUMTEXT   NOT NULL,
    state       VARCHAR(16)  NOT NULL,
    seed        VARCHAR(64),
    commitment  VARCHAR(64),
    created_by  VARCHAR(254) NOT NULL,
    created_at  BIGINT       NOT NULL,
    updated_at  BIGINT       NOT NULL,
    KEY campaigns_by_state (state, starts_at),
    KEY campaigns_by_creation (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The outbox of campaign events, written with the change that caused them.
CREATE TABLE IF NOT EXISTS campaign_events (
    id          BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    campaign_id VARCHAR(64) NOT NULL,
    kind        VARCHAR(32) NOT NULL,
    at_ms       BIGINT      NOT NULL,
    data        MEDIUMTEXT   NOT NULL,
    dispatched  SMALLINT    NOT NULL DEFAULT 0,
    KEY campaign_events_undispatched (dispatched, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Entries: one per player and slot (`once`, or a UTC day).
CREATE TABLE IF NOT EXISTS campaign_entries (
    entry_id    VARCHAR(64) NOT NULL PRIMARY KEY,
    campaign_id VARCHAR(64) NOT NULL,
    player_id   VARCHAR(64) NOT NULL,
    slot        VARCHAR(16) NOT NULL,
    entered_at  BIGINT      NOT NULL,
    request_sig VARCHAR(80) NOT NULL,
    UNIQUE (campaign_id, player_id, slot),
    KEY campaign_entries_by_player (player_id, campaign_id),
    UNIQUE KEY campaign_entries_by_request (request_sig)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- How each campaign's winners were decided: once.
CREATE TABLE IF NOT EXISTS campaign_outcomes (
    campaign_id    VARCHAR(64)  NOT NULL PRIMARY KEY,
    algorithm      VARCHAR(32)  NOT NULL,
    entrants       MEDIUMTEXT   NOT NULL,
    entrants_hash  VARCHAR(64)     NOT NULL,
    seed           VARCHAR(64),
    commitment     VARCHAR(64),
    winner_count   BIGINT,
    source         VARCHAR(200),
    awards         MEDIUMTEXT   NOT NULL,
    decided_at     BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Winners paid: one row per campaign and player, written with their inbox message.
CREATE TABLE IF NOT EXISTS campaign_settlements (
    campaign_id VARCHAR(64) NOT NULL,
    player_id   VARCHAR(64) NOT NULL,
    message_id  VARCHAR(64) NOT NULL,
    settled_at  BIGINT      NOT NULL,
    PRIMARY KEY (campaign_id, player_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The player inbox; player_id NULL: every player's.
CREATE TABLE IF NOT EXISTS inbox_messages (
    message_id  VARCHAR(64)  NOT NULL PRIMARY KEY,
    player_id   VARCHAR(64),
    campaign_id VARCHAR(64),
    title       VARCHAR(200) NOT NULL,
    body        MEDIUMTEXT   NOT NULL,
    attachments MEDIUMTEXT   NOT NULL,
    created_at  BIGINT       NOT NULL,
    expires_at  BIGINT       NOT NULL,
    KEY inbox_messages_by_player (player_id, created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Claims: the receipts issued for a message's attachments, once per player.
CREATE TABLE IF NOT EXISTS inbox_claims (
    message_id  VARCHAR(64) NOT NULL,
    player_id   VARCHAR(64) NOT NULL,
    claimed_at  BIGINT      NOT NULL,
    receipts    MEDIUMTEXT   NOT NULL,
    request_sig VARCHAR(80) NOT NULL,
    PRIMARY KEY (message_id, player_id),
    UNIQUE KEY inbox_claims_by_request (request_sig)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Webhook subscriptions.
CREATE TABLE IF NOT EXISTS webhooks (
    id         VARCHAR(64)   NOT NULL PRIMARY KEY,
    url        VARCHAR(2048) NOT NULL,
    events     MEDIUMTEXT   NOT NULL,
    secret     VARCHAR(256)  NOT NULL,
    created_by VARCHAR(254)  NOT NULL,
    created_at BIGINT        NOT NULL,
    deleted_at BIGINT
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The durable delivery queue: one row per webhook and event.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id              VARCHAR(64) NOT NULL PRIMARY KEY,
    webhook_id      VARCHAR(64) NOT NULL,
    event_id        BIGINT      NOT NULL,
    kind            VARCHAR(32) NOT NULL,
    body            MEDIUMTEXT   NOT NULL,
    state           VARCHAR(16) NOT NULL,
    attempts        BIGINT      NOT NULL,
    next_attempt_at BIGINT      NOT NULL,
    created_at      BIGINT      NOT NULL,
    UNIQUE (webhook_id, event_id),
    KEY webhook_deliveries_due (state, next_attempt_at),
    KEY webhook_deliveries_by_hook (webhook_id, created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Every attempt at a delivery.
CREATE TABLE IF NOT EXISTS webhook_attempts (
    delivery_id VARCHAR(64)  NOT NULL,
    attempt     BIGINT       NOT NULL,
    at_ms       BIGINT       NOT NULL,
    status      BIGINT,
    error       VARCHAR(500),
    duration_ms BIGINT       NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
