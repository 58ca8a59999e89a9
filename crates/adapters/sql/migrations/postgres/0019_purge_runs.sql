-- The last walk of each retention purge, as migrations/sqlite/0019.
CREATE TABLE purge_runs (
    name        VARCHAR(64) COLLATE "C" NOT NULL PRIMARY KEY,
    round_ms    BIGINT      NOT NULL,
    finished_ms BIGINT      NOT NULL
);
