-- The write-hot keyed tables become WITHOUT ROWID: the row lives in its primary key's b-tree, so
-- an insert or upsert writes one b-tree instead of a table plus an index, and a lookup by key
-- reads one. (PostgreSQL and MySQL keep their 0001 shape: InnoDB already clusters on the key.)

CREATE TABLE processed_events_v2 (
    consumer   VARCHAR(64) NOT NULL,
    event_id   CHAR(36)    NOT NULL,
    PRIMARY KEY (consumer, event_id)
) WITHOUT ROWID;
INSERT INTO processed_events_v2 SELECT consumer, event_id FROM processed_events;
DROP TABLE processed_events;
ALTER TABLE processed_events_v2 RENAME TO processed_events;

CREATE TABLE fairness_verdicts_v2 (
    event_id CHAR(36) NOT NULL PRIMARY KEY,
    flagged  SMALLINT NOT NULL
) WITHOUT ROWID;
INSERT INTO fairness_verdicts_v2 SELECT event_id, flagged FROM fairness_verdicts;
DROP TABLE fairness_verdicts;
ALTER TABLE fairness_verdicts_v2 RENAME TO fairness_verdicts;

CREATE TABLE player_xp_v2 (
    player_id  VARCHAR(64) NOT NULL,
    season     BIGINT      NOT NULL,
    xp         BIGINT      NOT NULL,
    updated_at BIGINT      NOT NULL,
    PRIMARY KEY (player_id, season)
) WITHOUT ROWID;
INSERT INTO player_xp_v2 SELECT player_id, season, xp, updated_at FROM player_xp;
DROP TABLE player_xp;
ALTER TABLE player_xp_v2 RENAME TO player_xp;

CREATE TABLE scores_v2 (
    board_window VARCHAR(16) NOT NULL,
    period       VARCHAR(32) NOT NULL,
    player_id    VARCHAR(64) NOT NULL,
    score        BIGINT      NOT NULL,
    PRIMARY KEY (board_window, period, player_id)
) WITHOUT ROWID;
INSERT INTO scores_v2 SELECT board_window, period, player_id, score FROM scores;
DROP TABLE scores;
ALTER TABLE scores_v2 RENAME TO scores;
