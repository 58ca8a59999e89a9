-- The scheduler's index and the entrant counts, as migrations/sqlite/0018. The index holds off
-- campaign writes (not reads) while it is built (campaigns are a few thousand rows); the counts
-- of the entries written so far are read in the migration's transaction, so entries written
-- meanwhile by processes of the release before are not counted (docs/DEPLOY.md). Lock waits end
-- after 5 s, as in 0015.
SET LOCAL lock_timeout = '5s';
CREATE INDEX campaigns_by_end ON campaigns (state, ends_at);
CREATE TABLE campaign_entrant_counts (
    campaign_id VARCHAR(64) COLLATE "C" NOT NULL,
    stripe      INTEGER     NOT NULL,
    entrants    BIGINT      NOT NULL,
    PRIMARY KEY (campaign_id, stripe)
);
INSERT INTO campaign_entrant_counts (campaign_id, stripe, entrants)
SELECT campaign_id, 0, COUNT(DISTINCT player_id) FROM campaign_entries GROUP BY campaign_id;
