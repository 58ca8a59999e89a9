-- LiveOps durable state, SQLite flavour.
-- Kept to types and statements PostgreSQL and MySQL share, so their migrations stay a near copy:
-- ids as TEXT, times as unix milliseconds in BIGINT, booleans as SMALLINT 0/1. The SQLite-only
-- part is the row id (`INTEGER PRIMARY KEY`), which becomes BIGSERIAL / AUTO_INCREMENT elsewhere.
-- `window` is reserved in PostgreSQL and MySQL, hence `board_window`.

-- Event ids each consumer has applied (idempotency across redeliveries).
CREATE TABLE processed_events (
    consumer   VARCHAR(64) NOT NULL,
    event_id   CHAR(36)    NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

-- XP per player and season.
CREATE TABLE player_xp (
    player_id  VARCHAR(64) NOT NULL,
    season     BIGINT      NOT NULL,
    xp         BIGINT      NOT NULL,
    updated_at BIGINT      NOT NULL,
    PRIMARY KEY (player_id, season)
);

-- Items owned, across seasons.
CREATE TABLE inventory (
    player_id  VARCHAR(64)  NOT NULL,
    item       VARCHAR(128) NOT NULL,
    quantity   BIGINT       NOT NULL,
    PRIMARY KEY (player_id, item)
);

-- Rewards earned; a claimed one carries the receipt issued for it.
CREATE TABLE rewards (
    id                INTEGER PRIMARY KEY,
    player_id         VARCHAR(64)  NOT NULL,
    reward_id         VARCHAR(160) NOT NULL,
    item              VARCHAR(128) NOT NULL,
    source            VARCHAR(64)  NOT NULL,
    adds_to_inventory SMALLINT     NOT NULL,
    earned_at         BIGINT       NOT NULL,
    claimed           SMALLINT     NOT NULL DEFAULT 0,
    receipt_id        VARCHAR(64),
    receipt_ts        BIGINT,
    receipt_sig       VARCHAR(128),
    UNIQUE (player_id, reward_id)
);
CREATE INDEX rewards_pending ON rewards (player_id, claimed, id);

-- Leaderboard scores per board (window + period).
CREATE TABLE scores (
    board_window VARCHAR(16) NOT NULL,
    period       VARCHAR(32) NOT NULL,
    player_id    VARCHAR(64) NOT NULL,
    score        BIGINT      NOT NULL,
    PRIMARY KEY (board_window, period, player_id)
);

-- Archived top entries per board (the hall of fame once final).
CREATE TABLE snapshots (
    board_window VARCHAR(16) NOT NULL,
    period       VARCHAR(32) NOT NULL,
    taken_at     BIGINT      NOT NULL,
    is_final     SMALLINT    NOT NULL,
    entries      TEXT        NOT NULL,
    PRIMARY KEY (board_window, period)
);
CREATE INDEX snapshots_by_time ON snapshots (board_window, taken_at);

-- Fairness: running statistics per event type.
CREATE TABLE fairness_stats (
    event_type VARCHAR(32)      NOT NULL PRIMARY KEY,
    samples    BIGINT           NOT NULL,
    mean       DOUBLE PRECISION NOT NULL,
    m2         DOUBLE PRECISION NOT NULL
);

-- Fairness: the verdict taken on each judged event.
CREATE TABLE fairness_verdicts (
    event_id CHAR(36) NOT NULL PRIMARY KEY,
    flagged  SMALLINT NOT NULL
);

-- Fairness: quarantined events.
CREATE TABLE fairness_flags (
    id         INTEGER PRIMARY KEY,
    event_id   CHAR(36)         NOT NULL UNIQUE,
    player_id  VARCHAR(64)      NOT NULL,
    event_type VARCHAR(32)      NOT NULL,
    flag_value DOUBLE PRECISION NOT NULL,
    z_score    DOUBLE PRECISION NOT NULL,
    at_ms      BIGINT           NOT NULL
);
CREATE INDEX fairness_flags_recent ON fairness_flags (at_ms);
CREATE INDEX fairness_flags_player ON fairness_flags (player_id, at_ms);
