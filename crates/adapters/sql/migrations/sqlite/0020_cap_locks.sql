-- One row per set of rows whose size a setting caps (`webhooks`: the active webhooks,
-- WEBHOOK_MAX; `api_keys`: the active API keys, API_KEY_MAX), written by the first create that
-- needs it. A create writes its set's row (an upsert, which holds the row to the end of its
-- transaction) before it counts the set: creates at the same moment count one after another, so
-- none takes the set past its cap. The row holds nothing else.
CREATE TABLE cap_locks (
    name VARCHAR(64) NOT NULL PRIMARY KEY
) WITHOUT ROWID;
