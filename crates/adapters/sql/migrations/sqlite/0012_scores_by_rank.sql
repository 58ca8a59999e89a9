-- A board's scores in rank order (score descending, then player id descending, read backwards),
-- so a snapshot reads its top N rows instead of the whole board.
CREATE INDEX scores_by_rank ON scores (board_window, period, score, player_id);
