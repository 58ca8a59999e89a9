-- The lock row of each capped set of rows, as migrations/sqlite/0020.
CREATE TABLE cap_locks (
    name VARCHAR(64) COLLATE "C" NOT NULL PRIMARY KEY
);
