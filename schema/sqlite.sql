-- mod_track_batch schema for SQLite (DBDriver sqlite3).
-- The module runs this file (it is compiled in) on each new connection;
-- every statement is idempotent.  To create a database by hand:
--   sqlite3 /var/lib/track_batch/track.sqlite < schema/sqlite.sql
-- Times are Unix seconds (REAL, microseconds kept).  Every row carries its
-- project, so data can later be split by (project, customer).

-- One customer profile per person; ids below point to it.
CREATE TABLE IF NOT EXISTS tb_customers (
    id          INTEGER PRIMARY KEY,
    project     TEXT NOT NULL,
    created_at  REAL NOT NULL
);

-- Customer ids (registered, cookie, ...): each value names one profile.
CREATE TABLE IF NOT EXISTS tb_customer_ids (
    project     TEXT NOT NULL,
    id_name     TEXT NOT NULL,
    id_value    TEXT NOT NULL,
    customer_id INTEGER NOT NULL REFERENCES tb_customers (id),
    hard        INTEGER NOT NULL,
    PRIMARY KEY (project, id_name, id_value)
);
CREATE INDEX IF NOT EXISTS tb_customer_ids_customer
    ON tb_customer_ids (customer_id);

-- Events (customers/events commands), one row each.
CREATE TABLE IF NOT EXISTS tb_events (
    id          INTEGER PRIMARY KEY,
    project     TEXT NOT NULL,
    customer_id INTEGER NOT NULL REFERENCES tb_customers (id),
    event_type  TEXT NOT NULL,
    timestamp   REAL NOT NULL,
    properties  TEXT NOT NULL,          -- JSON object
    received_at REAL NOT NULL,
    command_id  TEXT
);
CREATE INDEX IF NOT EXISTS tb_events_customer
    ON tb_events (customer_id, timestamp);
CREATE INDEX IF NOT EXISTS tb_events_received
    ON tb_events (project, received_at);

-- Customer property updates (customers commands), one row each, as sent.
CREATE TABLE IF NOT EXISTS tb_customer_updates (
    id          INTEGER PRIMARY KEY,
    project     TEXT NOT NULL,
    customer_id INTEGER NOT NULL REFERENCES tb_customers (id),
    properties  TEXT NOT NULL,          -- JSON object
    update_time REAL NOT NULL,          -- update_timestamp, else receipt
    received_at REAL NOT NULL,
    command_id  TEXT
);
CREATE INDEX IF NOT EXISTS tb_customer_updates_received
    ON tb_customer_updates (project, received_at);

-- Current properties: per property, the value with the latest update time.
CREATE TABLE IF NOT EXISTS tb_customer_properties (
    customer_id INTEGER NOT NULL REFERENCES tb_customers (id),
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,          -- JSON value
    updated_at  REAL NOT NULL,
    PRIMARY KEY (customer_id, name)
);
