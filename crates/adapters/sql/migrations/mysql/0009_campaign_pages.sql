-- The campaign list's pages in one state (GET /campaigns?state=, the decider's and the settler's
-- pages of ended campaigns) read in the listing's order from the cursor on, instead of sorting
-- every campaign in that state for each page.
CREATE INDEX campaigns_by_state_page ON campaigns (state, created_at, id);
