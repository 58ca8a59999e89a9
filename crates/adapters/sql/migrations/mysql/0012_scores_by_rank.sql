-- A board's scores in rank order, as migrations/sqlite/0012: a snapshot reads its top N rows
-- (backwards) instead of the whole board. Built online (score writes go on); metadata lock waits
-- end after 5 s, as in 0010.
SET SESSION lock_wait_timeout = 5;
CREATE INDEX scores_by_rank ON scores (board_window, period, score, player_id);
