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
    command_id  TEXT,
    dedup_key   TEXT                    -- identifies an identical event
);
CREATE INDEX IF NOT EXISTS tb_events_customer
    ON tb_events (customer_id, timestamp);
-- An identical event has the same timestamp, so tb_events_customer finds
-- it.  An index on the dedup key, whose keys land anywhere, made every
-- batch change many more pages; databases made with it lose it.
DROP INDEX IF EXISTS tb_events_dedup;
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

-- command_ids seen per project and key, so a retry is not recorded twice;
-- each remembered until expires_at (receipt + the location's
-- TrackBatchDedupWindow), then purged.
CREATE TABLE IF NOT EXISTS tb_command_log (
    project     TEXT NOT NULL,
    key_id      TEXT NOT NULL,          -- '' on an open location
    command_id  TEXT NOT NULL,
    received_at REAL NOT NULL,
    expires_at  REAL NOT NULL,
    PRIMARY KEY (project, key_id, command_id)
);
CREATE INDEX IF NOT EXISTS tb_command_log_expires
    ON tb_command_log (expires_at);

-- Projects and their access keys (managed with track-batch-admin).
CREATE TABLE IF NOT EXISTS tb_projects (
    token       TEXT PRIMARY KEY,
    name        TEXT,
    created_at  REAL NOT NULL
);

-- A public key is used whole ("Token <key>", ?access_token=<key>) and is
-- found by the SHA-256 of it; a private key is "Basic key_id:secret" and
-- keeps only the SHA-256 of its secret.  Plaintext is never stored.
CREATE TABLE IF NOT EXISTS tb_keys (
    key_id        TEXT PRIMARY KEY,
    project       TEXT NOT NULL REFERENCES tb_projects (token),
    kind          TEXT NOT NULL CHECK (kind IN ('public', 'private')),
    token_digest  TEXT UNIQUE,            -- public: hex SHA-256 of the key
    secret_digest TEXT,                   -- private: hex SHA-256 of the secret
    old_digest    TEXT,                   -- private: the secret before rotation
    old_until     REAL,                   -- ... accepted until then
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    REAL NOT NULL
);

-- What a key may do: 'customers' (update customer properties) or 'events'
-- (add events), for every name ('*') or one property name / event type.
CREATE TABLE IF NOT EXISTS tb_key_permissions (
    key_id      TEXT NOT NULL REFERENCES tb_keys (key_id),
    what        TEXT NOT NULL CHECK (what IN ('customers', 'events')),
    name        TEXT NOT NULL,
    PRIMARY KEY (key_id, what, name)
);
