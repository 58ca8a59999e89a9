-- The last walk of each retention purge that ran to its end, so that the processes sharing the
-- database walk each table once a period between them instead of once a process: a purge whose
-- round comes less than its period after `round_ms` skips its walk. `name` is the purge's (its
-- table, or the part of the table it walks: `scores_daily`); `round_ms` is when the round of
-- that walk ran (unix ms, the walking process's clock, from which its cutoffs were taken) and
-- `finished_ms` when the walk ended.
CREATE TABLE purge_runs (
    name        VARCHAR(64) NOT NULL PRIMARY KEY,
    round_ms    BIGINT      NOT NULL,
    finished_ms BIGINT      NOT NULL
) WITHOUT ROWID;
