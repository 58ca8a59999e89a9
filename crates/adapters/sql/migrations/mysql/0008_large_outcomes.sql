-- A draw's entrants and a rank campaign's awards as LONGTEXT (up to 4 GiB) instead of MEDIUMTEXT
-- (16 MiB, about 300 000 entrants of 50-character ids): a larger draw could not be recorded, so
-- its campaign never settled. MySQL only: TEXT on SQLite and PostgreSQL holds up to 1 GB. The
-- server's max_allowed_packet must hold the row too (256M in infra/terraform/.../mysql-cloud-init).
ALTER TABLE campaign_outcomes
    MODIFY entrants LONGTEXT NOT NULL,
    MODIFY awards   LONGTEXT NOT NULL;
