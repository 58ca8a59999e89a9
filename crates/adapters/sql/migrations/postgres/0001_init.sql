-- LiveOps durable state, PostgreSQL flavour: the tables, keys and indexes of
-- migrations/sqlite/0001_init.sql, column for column.
-- Ids as text with the "C" collation (case-sensitive, ordered by bytes as on SQLite and MySQL),
-- times as unix milliseconds in BIGINT, booleans as SMALLINT 0/1, row ids as identity columns.
-- `window` is reserved, hence `board_window`.

-- Event ids each consumer has applied (idempotency across redeliveries).
CREATE TABLE processed_events (
    consumer   VARCHAR(64) COLLATE "C" NOT NULL,
    event_id   VARCHAR(36) COLLATE "C" NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

-- XP per player and season.
CREATE TABLE player_xp (
    player_id  VARCHAR(64) COLLATE "C" NOT NULL,
    season     BIGINT      NOT NULL,
    xp         BIGINT      NOT NULL,
    updated_at BIGINT      NOT NULL,
    PRIMARY KEY (player_id, season)
);

-- Items owned, across seasons.
CREATE TABLE inventory (
    player_id  VARCHAR(64)  COLLATE "C" NOT NULL,
    item       VARCHAR(128) COLLATE "C" NOT NULL,
    quantity   BIGINT       NOT NULL,
    PRIMARY KEY (player_id, item)
);

-- Rewards earned; a claimed one carries the receipt issued for it.
CREATE TABLE rewards (
    id                BIGINT       GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    player_id         VARCHAR(64)  COLLATE "C" NOT NULL,
    reward_id         VARCHAR(160) COLLATE "C" NOT NULL,
    item              VARCHAR(128) COLLATE "C" NOT NULL,
    source            VARCHAR(64)  COLLATE "C" NOT NULL,
    adds_to_inventory SMALLINT     NOT NULL,
    earned_at         BIGINT       NOT NULL,
    claimed           SMALLINT     NOT NULL DEFAULT 0,
    receipt_id        VARCHAR(64)  COLLATE "C",
    receipt_ts        BIGINT,
    receipt_sig       VARCHAR(128) COLLATE "C",
    UNIQUE (player_id, reward_id)
);
CREATE INDEX rewards_pending ON rewards (player_id, claimed, id);

-- Leaderboard scores per board (window + period).
CREATE TABLE scores (
    board_window VARCHAR(16) COLLATE "C" NOT NULL,
    period       VARCHAR(32) COLLATE "C" NOT NULL,
    player_id    VARCHAR(64) COLLATE "C" NOT NULL,
    score        BIGINT      NOT NULL,
    PRIMARY KEY (board_window, period, player_id)
);

-- Archived top entries per board (the hall of fame once final).
CREATE TABLE snapshots (
    board_window VARCHAR(16) COLLATE "C" NOT NULL,
    period       VARCHAR(32) COLLATE "C" NOT NULL,
    taken_at     BIGINT      NOT NULL,
    is_final     SMALLINT    NOT NULL,
    entries      TEXT        NOT NULL,
    PRIMARY KEY (board_window, period)
);
CREATE INDEX snapshots_by_time ON snapshots (board_window, taken_at);

-- Fairness: running statistics per event type.
CREATE TABLE fairness_stats (
    event_type VARCHAR(32)      COLLATE "C" NOT NULL PRIMARY KEY,
    samples    BIGINT           NOT NULL,
    mean       DOUBLE PRECISION NOT NULL,
    m2         DOUBLE PRECISION NOT NULL
);

-- Fairness: the verdict taken on each judged event.
CREATE TABLE fairness_verdicts (
    event_id VARCHAR(36) COLLATE "C" NOT NULL PRIMARY KEY,
    flagged  SMALLINT    NOT NULL
);

-- Fairness: quarantined events.
CREATE TABLE fairness_flags (
    id         BIGINT           GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id   VARCHAR(36)      COLLATE "C" NOT NULL UNIQUE,
    player_id  VARCHAR(64)      COLLATE "C" NOT NULL,
    event_type VARCHAR(32)      COLLATE "C" NOT NULL,
    flag_value DOUBLE PRECISION NOT NULL,
    z_score    DOUBLE PRECISION NOT NULL,
    at_ms      BIGINT           NOT NULL
);
CREATE INDEX fairness_flags_recent ON fairness_flags (at_ms);
CREATE INDEX fairness_flags_player ON fairness_flags (player_id, at_ms);
