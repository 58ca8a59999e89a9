-- The scheduler's index and the entrant counts, as migrations/sqlite/0018. The index is built
-- online (writes go on); metadata lock waits end after 5 s, as in 0010. The fill reads every
-- entry once (entries written meanwhile by processes of the release before may wait for it, and
-- are counted only if written before it: docs/DEPLOY.md); the runner skips it once the table has
-- a row (ADR 0030).
SET SESSION lock_wait_timeout = 5;
CREATE INDEX campaigns_by_end ON campaigns (state, ends_at);
CREATE TABLE IF NOT EXISTS campaign_entrant_counts (
    campaign_id VARCHAR(64) NOT NULL,
    stripe      INT         NOT NULL,
    entrants    BIGINT      NOT NULL,
    PRIMARY KEY (campaign_id, stripe)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
INSERT INTO campaign_entrant_counts (campaign_id, stripe, entrants)
SELECT campaign_id, 0, COUNT(DISTINCT player_id) FROM campaign_entries GROUP BY campaign_id;
