-- The lock row of each capped set of rows, as migrations/sqlite/0020.
CREATE TABLE IF NOT EXISTS cap_locks (
    name VARCHAR(64) NOT NULL,
    PRIMARY KEY (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
