-- LiveOps durable state, MySQL / MariaDB flavour: the tables, keys and indexes of
-- migrations/sqlite/0001_init.sql, column for column.
-- InnoDB (transactions, row locks), utf8mb4 with the binary collation: ids are case-sensitive
-- and sort by bytes as on SQLite and PostgreSQL. Every key stays under InnoDB's 3072-byte limit
-- at 4 bytes a character (the widest, rewards (player_id, reward_id), is 896 bytes).
-- Times as unix milliseconds in BIGINT, booleans as SMALLINT 0/1, floats as DOUBLE, row ids
-- AUTO_INCREMENT. Snapshot entries are MEDIUMTEXT (a TEXT holds only 64 KiB, ~1000 entries).
-- DDL commits implicitly in MySQL, so each statement is written to be safely run again.
-- `window` is reserved, hence `board_window`.

-- Event ids each consumer has applied (idempotency across redeliveries).
CREATE TABLE IF NOT EXISTS processed_events (
    consumer   VARCHAR(64) NOT NULL,
    event_id   CHAR(36)    NOT NULL,
    PRIMARY KEY (consumer, event_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- XP per player and season.
CREATE TABLE IF NOT EXISTS player_xp (
    player_id  VARCHAR(64) NOT NULL,
    season     BIGINT      NOT NULL,
    xp         BIGINT      NOT NULL,
    updated_at BIGINT      NOT NULL,
    PRIMARY KEY (player_id, season)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Items owned, across seasons.
CREATE TABLE IF NOT EXISTS inventory (
    player_id  VARCHAR(64)  NOT NULL,
    item       VARCHAR(128) NOT NULL,
    quantity   BIGINT       NOT NULL,
    PRIMARY KEY (player_id, item)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Rewards earned; a claimed one carries the receipt issued for it.
CREATE TABLE IF NOT EXISTS rewards (
    id                BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
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
    UNIQUE KEY rewards_player_reward (player_id, reward_id),
    KEY rewards_pending (player_id, claimed, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Leaderboard scores per board (window + period).
CREATE TABLE IF NOT EXISTS scores (
    board_window VARCHAR(16) NOT NULL,
    period       VARCHAR(32) NOT NULL,
    player_id    VARCHAR(64) NOT NULL,
    score        BIGINT      NOT NULL,
    PRIMARY KEY (board_window, period, player_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Archived top entries per board (the hall of fame once final).
CREATE TABLE IF NOT EXISTS snapshots (
    board_window VARCHAR(16) NOT NULL,
    period       VARCHAR(32) NOT NULL,
    taken_at     BIGINT      NOT NULL,
    is_final     SMALLINT    NOT NULL,
    entries      MEDIUMTEXT  NOT NULL,
    PRIMARY KEY (board_window, period),
    KEY snapshots_by_time (board_window, taken_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Fairness: running statistics per event type.
CREATE TABLE IF NOT EXISTS fairness_stats (
    event_type VARCHAR(32) NOT NULL PRIMARY KEY,
    samples    BIGINT      NOT NULL,
    mean       DOUBLE      NOT NULL,
    m2         DOUBLE      NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Fairness: the verdict taken on each judged event.
CREATE TABLE IF NOT EXISTS fairness_verdicts (
    event_id CHAR(36) NOT NULL PRIMARY KEY,
    flagged  SMALLINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Fairness: quarantined events.
CREATE TABLE IF NOT EXISTS fairness_flags (
    id         BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    event_id   CHAR(36)    NOT NULL,
    player_id  VARCHAR(64) NOT NULL,
    event_type VARCHAR(32) NOT NULL,
    flag_value DOUBLE      NOT NULL,
    z_score    DOUBLE      NOT NULL,
    at_ms      BIGINT      NOT NULL,
    UNIQUE KEY fairness_flags_event (event_id),
    KEY fairness_flags_recent (at_ms),
    KEY fairness_flags_player (player_id, at_ms)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
