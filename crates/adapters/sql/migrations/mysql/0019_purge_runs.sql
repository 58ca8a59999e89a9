-- The last walk of each retention purge, as migrations/sqlite/0019.
CREATE TABLE IF NOT EXISTS purge_runs (
    name        VARCHAR(64) NOT NULL,
    round_ms    BIGINT      NOT NULL,
    finished_ms BIGINT      NOT NULL,
    PRIMARY KEY (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
