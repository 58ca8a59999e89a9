-- Where each message stands in its player's inbox listing: the order messages were written in,
-- given under the counter's row lock (ADR 0025). 0011 numbers the messages already written.
ALTER TABLE inbox_messages ADD COLUMN position INTEGER;
-- The last position given; each transaction that writes messages takes its positions here.
CREATE TABLE inbox_positions (
    id            INTEGER PRIMARY KEY,
    last_position INTEGER NOT NULL
);
INSERT INTO inbox_positions (id, last_position) VALUES (1, 0);
