-- A board's scores in rank order, as migrations/sqlite/0012: a snapshot reads its top N rows
-- (backwards) instead of the whole board. Building it holds off score writes (not reads): the
-- leaderboard consumer waits and catches up. Lock waits end after 5 s, as in 0011.
SET LOCAL lock_timeout = '5s';
CREATE INDEX scores_by_rank ON scores (board_window, period, score, player_id);
