-- The fairness judge now keeps its running statistics over ln(1 + value) instead of the value
-- (ADR 0018): statistics kept on the old scale would misjudge every event, so they are dropped
-- and each event type warms up again (`ANOMALY_WARMUP` samples, nothing flagged meanwhile).
DELETE FROM fairness_stats;
