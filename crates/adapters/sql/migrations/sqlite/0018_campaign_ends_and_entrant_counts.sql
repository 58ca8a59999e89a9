-- The live campaigns whose end has come, read by the scheduler every tick along this index (the
-- scheduled ones whose start has come are read along campaigns_by_state (state, starts_at), 0003);
-- before it, the scheduler's `OR` of both read every campaign ever created.
CREATE INDEX campaigns_by_end ON campaigns (state, ends_at);
-- How many distinct players entered each campaign: written in the entry's transaction when a
-- player's first entry in the campaign is, so a count reads these rows instead of every entry.
-- A campaign's count is the sum of its stripes: a player counts in the stripe their id hashes
-- to, so concurrent first entries of a campaign wait for one another only within a stripe.
CREATE TABLE campaign_entrant_counts (
    campaign_id VARCHAR(64) NOT NULL,
    stripe      INTEGER     NOT NULL,
    entrants    BIGINT      NOT NULL,
    PRIMARY KEY (campaign_id, stripe)
) WITHOUT ROWID;
-- The entries written before this migration, counted in stripe 0.
INSERT INTO campaign_entrant_counts (campaign_id, stripe, entrants)
SELECT campaign_id, 0, COUNT(DISTINCT player_id) FROM campaign_entries GROUP BY campaign_id;
