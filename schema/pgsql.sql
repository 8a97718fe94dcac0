-- mod_track_batch schema for PostgreSQL (DBDriver pgsql).
-- The module runs this file (it is compiled in) on each new connection,
-- under an advisory lock; every statement is idempotent.  By hand:
--   psql -d track -f schema/pgsql.sql
-- The tables match schema/sqlite.sql column for column, so the README's
-- queries run on both.  Times are Unix seconds (double precision).
-- Stored JSON texts and id values compare byte-wise (COLLATE "C"), as in
-- SQLite, so ties between equal update times resolve the same way.

-- One customer profile per person; ids below point to it.
CREATE TABLE IF NOT EXISTS tb_customers (
    id          BIGSERIAL PRIMARY KEY,
    project     TEXT NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL
);

-- Customer ids (registered, cookie, ...): each value names one profile.
CREATE TABLE IF NOT EXISTS tb_customer_ids (
    project     TEXT NOT NULL,
    id_name     TEXT COLLATE "C" NOT NULL,
    id_value    TEXT COLLATE "C" NOT NULL,
    customer_id BIGINT NOT NULL REFERENCES tb_customers (id),
    hard        INTEGER NOT NULL,
    PRIMARY KEY (project, id_name, id_value)
);
CREATE INDEX IF NOT EXISTS tb_customer_ids_customer
    ON tb_customer_ids (customer_id);

-- Events (customers/events commands), one row each.
CREATE TABLE IF NOT EXISTS tb_events (
    id          BIGSERIAL PRIMARY KEY,
    project     TEXT NOT NULL,
    customer_id BIGINT NOT NULL REFERENCES tb_customers (id),
    event_type  TEXT NOT NULL,
    timestamp   DOUBLE PRECISION NOT NULL,
    properties  TEXT NOT NULL,          -- JSON object
    received_at DOUBLE PRECISION NOT NULL,
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
    id          BIGSERIAL PRIMARY KEY,
    project     TEXT NOT NULL,
    customer_id BIGINT NOT NULL REFERENCES tb_customers (id),
    properties  TEXT NOT NULL,          -- JSON object
    update_time DOUBLE PRECISION NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    command_id  TEXT
);
CREATE INDEX IF NOT EXISTS tb_customer_updates_received
    ON tb_customer_updates (project, received_at);

-- Current properties: per property, the value with the latest update time.
CREATE TABLE IF NOT EXISTS tb_customer_properties (
    customer_id BIGINT NOT NULL REFERENCES tb_customers (id),
    name        TEXT COLLATE "C" NOT NULL,
    value       TEXT COLLATE "C" NOT NULL,  -- JSON value
    updated_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (customer_id, name)
);

-- command_ids seen per project and key, so a retry is not recorded twice;
-- each remembered until expires_at (receipt + the location's
-- TrackBatchDedupWindow), then purged.
CREATE TABLE IF NOT EXISTS tb_command_log (
    project     TEXT NOT NULL,
    key_id      TEXT NOT NULL,          -- '' on an open location
    command_id  TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    expires_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (project, key_id, command_id)
);
CREATE INDEX IF NOT EXISTS tb_command_log_expires
    ON tb_command_log (expires_at);

-- Projects and their access keys (managed with track-batch-admin).
CREATE TABLE IF NOT EXISTS tb_projects (
    token       TEXT PRIMARY KEY,
    name        TEXT,
    created_at  DOUBLE PRECISION NOT NULL
);

CREATE TABLE IF NOT EXISTS tb_keys (
    key_id        TEXT PRIMARY KEY,
    project       TEXT NOT NULL REFERENCES tb_projects (token),
    kind          TEXT NOT NULL CHECK (kind IN ('public', 'private')),
    token_digest  TEXT UNIQUE,
    secret_digest TEXT,
    old_digest    TEXT,
    old_until     DOUBLE PRECISION,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    DOUBLE PRECISION NOT NULL
);

CREATE TABLE IF NOT EXISTS tb_key_permissions (
    key_id      TEXT NOT NULL REFERENCES tb_keys (key_id),
    what        TEXT NOT NULL CHECK (what IN ('customers', 'events')),
    name        TEXT NOT NULL,
    PRIMARY KEY (key_id, what, name)
);

-- SQLite's unixepoch('now'), so the README's queries run unchanged here.
CREATE OR REPLACE FUNCTION unixepoch(t text) RETURNS DOUBLE PRECISION
LANGUAGE sql STABLE AS $fn$
    SELECT extract(epoch FROM (CASE WHEN t = 'now' THEN now()
                                    ELSE t::timestamptz END))::double precision
$fn$;

-- The rest records a batch in one statement: the module sends the valid
-- commands as one JSON array and tb_record_batch() applies them in order,
-- with the same rules as the SQLite path in tb_store.c (tb_identify,
-- tb_merge, tb_write_command).  Keep the two in step; the test suite runs
-- against both engines.

-- The hard ids of a profile, name -> value.
CREATE OR REPLACE FUNCTION tb_hard_ids(p_customer BIGINT) RETURNS JSONB
LANGUAGE sql STABLE AS $fn$
    SELECT coalesce(jsonb_object_agg(id_name, id_value), '{}'::jsonb)
      FROM tb_customer_ids WHERE customer_id = p_customer AND hard = 1
$fn$;

-- A hard id name the two sets hold with different values, or NULL.
CREATE OR REPLACE FUNCTION tb_clash(a JSONB, b JSONB) RETURNS TEXT
LANGUAGE sql IMMUTABLE AS $fn$
    SELECT k FROM jsonb_each_text(a) AS x (k, v)
     WHERE b ? k AND b ->> k <> v
     ORDER BY k LIMIT 1
$fn$;

-- Counts, for the transaction, the merges and moved ids that change which
-- profile an id names (tb_record_batch's map of known ids is then void).
CREATE OR REPLACE FUNCTION tb_moved() RETURNS VOID
LANGUAGE sql AS $fn$
    SELECT set_config('track_batch.moves',
                      (coalesce(nullif(current_setting('track_batch.moves',
                                                       true), ''), '0')::int
                       + 1)::text, true)
$fn$;

-- Fold profile p_src into p_dst (see tb_merge in tb_store.c).
CREATE OR REPLACE FUNCTION tb_merge(p_project TEXT, p_dst BIGINT,
                                    p_src BIGINT, p_now DOUBLE PRECISION)
RETURNS VOID LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE tb_customer_ids SET customer_id = p_dst WHERE customer_id = p_src;
    UPDATE tb_events SET customer_id = p_dst WHERE customer_id = p_src;
    UPDATE tb_customer_updates SET customer_id = p_dst
     WHERE customer_id = p_src;
    INSERT INTO tb_customer_properties AS cur (customer_id, name, value,
                                               updated_at)
    SELECT p_dst, name, value, updated_at
      FROM tb_customer_properties WHERE customer_id = p_src
    ON CONFLICT (customer_id, name) DO UPDATE
       SET value = excluded.value, updated_at = excluded.updated_at
     WHERE excluded.updated_at > cur.updated_at
        OR (excluded.updated_at = cur.updated_at
            AND excluded.value > cur.value);
    DELETE FROM tb_customer_properties WHERE customer_id = p_src;
    DELETE FROM tb_customers WHERE id = p_src;
    INSERT INTO tb_events (project, customer_id, event_type, timestamp,
                           properties, received_at)
    VALUES (p_project, p_dst, 'merge', p_now,
            '{"merged_customer_id":' || p_src || '}', p_now);
    PERFORM tb_moved();
END
$fn$;

-- Bring id i's profile into the command's (see tb_join in tb_store.c).
CREATE OR REPLACE FUNCTION tb_join(p_project TEXT, p_now DOUBLE PRECISION,
                                   INOUT target BIGINT, INOUT owner BIGINT[],
                                   i INTEGER)
LANGUAGE plpgsql AS $fn$
DECLARE
    src BIGINT;
    dst BIGINT;
BEGIN
    IF target IS NULL THEN
        target := owner[i];
        RETURN;
    END IF;
    IF target = owner[i] THEN
        RETURN;
    END IF;
    dst := least(target, owner[i]);
    src := greatest(target, owner[i]);
    PERFORM tb_merge(p_project, dst, src, p_now);
    owner := array_replace(owner, src, dst);
    target := dst;
END
$fn$;

-- The profile a command's ids name (see tb_identify in tb_store.c).
-- Raises SQLSTATE TB001 with the clashing hard id name as message.
CREATE OR REPLACE FUNCTION tb_identify(p_project TEXT, p_now DOUBLE PRECISION,
                                       p_ids JSON)
RETURNS BIGINT LANGUAGE plpgsql AS $fn$
DECLARE
    n       INTEGER := json_array_length(p_ids);
    names   TEXT[];
    vals    TEXT[];
    hards   BOOLEAN[];
    owner   BIGINT[];              -- profile of each id, or NULL
    mine    JSONB := '{}'::jsonb;
    target  BIGINT;
    clash   TEXT;
    i       INTEGER;
    j       INTEGER;
BEGIN
    FOR i IN 1 .. n LOOP
        names[i] := p_ids -> (i - 1) ->> 0;
        vals[i] := p_ids -> (i - 1) ->> 1;
        hards[i] := (p_ids -> (i - 1) ->> 2)::boolean;
        owner[i] := (SELECT customer_id FROM tb_customer_ids
                      WHERE project = p_project AND id_name = names[i]
                        AND id_value = vals[i]);
        IF hards[i] THEN
            mine := mine || jsonb_build_object(names[i], vals[i]);
        END IF;
    END LOOP;

    -- hard ids first: their profiles must agree, then merge
    FOR i IN 1 .. n LOOP
        CONTINUE WHEN NOT hards[i] OR owner[i] IS NULL;
        clash := tb_clash(tb_hard_ids(owner[i]), mine);
        IF clash IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'TB001', MESSAGE = clash;
        END IF;
        FOR j IN 1 .. i - 1 LOOP
            IF hards[j] AND owner[j] IS NOT NULL AND owner[j] <> owner[i] THEN
                clash := tb_clash(tb_hard_ids(owner[i]), tb_hard_ids(owner[j]));
                IF clash IS NOT NULL THEN
                    RAISE EXCEPTION USING ERRCODE = 'TB001', MESSAGE = clash;
                END IF;
            END IF;
        END LOOP;
    END LOOP;
    FOR i IN 1 .. n LOOP
        CONTINUE WHEN NOT hards[i] OR owner[i] IS NULL;
        SELECT jr.target, jr.owner INTO target, owner
          FROM tb_join(p_project, p_now, target, owner, i) AS jr;
    END LOOP;

    -- soft ids: clash -> the id moves here; else the profiles merge
    FOR i IN 1 .. n LOOP
        CONTINUE WHEN hards[i] OR owner[i] IS NULL
                   OR owner[i] = coalesce(target, -1);
        IF tb_clash(tb_hard_ids(owner[i]),
                    CASE WHEN target IS NULL THEN mine
                         ELSE mine || tb_hard_ids(target) END) IS NOT NULL THEN
            owner[i] := NULL;
            CONTINUE;
        END IF;
        SELECT jr.target, jr.owner INTO target, owner
          FROM tb_join(p_project, p_now, target, owner, i) AS jr;
    END LOOP;

    IF target IS NULL THEN
        INSERT INTO tb_customers (project, created_at)
        VALUES (p_project, p_now) RETURNING id INTO target;
    END IF;
    -- unknown ids join the profile; moved soft ids are re-pointed
    FOR i IN 1 .. n LOOP
        CONTINUE WHEN owner[i] IS NOT NULL;
        UPDATE tb_customer_ids SET customer_id = target
         WHERE project = p_project AND id_name = names[i]
           AND id_value = vals[i];
        IF FOUND THEN
            PERFORM tb_moved();
        ELSE
            INSERT INTO tb_customer_ids (project, id_name, id_value,
                                         customer_id, hard)
            VALUES (p_project, names[i], vals[i], target,
                    CASE WHEN hards[i] THEN 1 ELSE 0 END);
        END IF;
    END LOOP;
    RETURN target;
END
$fn$;

DROP FUNCTION IF EXISTS tb_record_command(TEXT, TEXT, DOUBLE PRECISION,
                                          DOUBLE PRECISION, JSON);
DROP FUNCTION IF EXISTS tb_record_command(TEXT, TEXT, DOUBLE PRECISION,
                                          DOUBLE PRECISION, DOUBLE PRECISION,
                                          JSON);
DROP FUNCTION IF EXISTS tb_record_command(TEXT, TEXT, DOUBLE PRECISION,
                                          DOUBLE PRECISION, DOUBLE PRECISION,
                                          JSON, BIGINT);
DROP FUNCTION IF EXISTS tb_record_batch(TEXT, TEXT, DOUBLE PRECISION,
                                        DOUBLE PRECISION, JSON);

-- One command (see tb_write_command in tb_store.c): status 'ok', 'dup', or
-- 'conflict:<hard id name>'.  c: the command without its properties,
-- which are p.  customer: in, the profile every id of the command is
-- known to name (NULL: look them up); out, the profile used.
CREATE OR REPLACE FUNCTION tb_record_command(p_project TEXT, p_key TEXT,
                                             p_now DOUBLE PRECISION,
                                             p_since DOUBLE PRECISION,
                                             p_expires DOUBLE PRECISION,
                                             c JSON, p TEXT,
                                             INOUT customer BIGINT,
                                             OUT status TEXT)
LANGUAGE plpgsql AS $fn$
DECLARE
    cid      TEXT := c ->> 'cid';
    at       DOUBLE PRECISION := (c ->> 't')::double precision;
BEGIN
    IF cid IS NOT NULL AND EXISTS (SELECT 1 FROM tb_command_log
                                    WHERE project = p_project
                                      AND key_id = p_key
                                      AND command_id = cid
                                      AND expires_at > p_now) THEN
        customer := NULL;
        status := 'dup';
        RETURN;
    END IF;
    IF customer IS NULL THEN
        BEGIN                            -- a subtransaction: a conflict
            customer := tb_identify(p_project, p_now, c -> 'ids');  -- undoes
        EXCEPTION WHEN SQLSTATE 'TB001' THEN                        -- it
            status := 'conflict:' || SQLERRM;
            RETURN;
        END;
    END IF;
    IF cid IS NOT NULL THEN
        INSERT INTO tb_command_log (project, key_id, command_id, received_at,
                                    expires_at)
        VALUES (p_project, p_key, cid, p_now, p_expires)
        ON CONFLICT (project, key_id, command_id) DO UPDATE
           SET received_at = excluded.received_at,
               expires_at = excluded.expires_at;
    END IF;
    IF c ->> 'k' = 'e' THEN
        IF c ->> 'dk' IS NOT NULL
           AND EXISTS (SELECT 1 FROM tb_events
                        WHERE customer_id = customer
                          AND timestamp = at
                          AND dedup_key = c ->> 'dk'
                          AND received_at >= p_since) THEN
            status := 'dup';
            RETURN;
        END IF;
        INSERT INTO tb_events (project, customer_id, event_type, timestamp,
                               properties, received_at, command_id, dedup_key)
        VALUES (p_project, customer, c ->> 'et', at, p, p_now, cid,
                c ->> 'dk');
    ELSE
        INSERT INTO tb_customer_updates (project, customer_id, properties,
                                         update_time, received_at, command_id)
        VALUES (p_project, customer, p, at, p_now, cid);
        INSERT INTO tb_customer_properties AS cur (customer_id, name, value,
                                                   updated_at)
        SELECT customer, key, value::text, at FROM json_each(p::json)
        ON CONFLICT (customer_id, name) DO UPDATE
           SET value = excluded.value, updated_at = excluded.updated_at
         WHERE excluded.updated_at > cur.updated_at
            OR (excluded.updated_at = cur.updated_at
                AND excluded.value > cur.value);
    END IF;
    status := 'ok';
END
$fn$;

-- Whether every command of a batch is an event whose ids all name one
-- known profile (see tb_record_batch), with no command_id twice.  Each id
-- is looked up on its own (a subquery per id, on the primary key): as a
-- join, the planner's guess of 100 ids per command chose a hash join that
-- read all of tb_customer_ids once per command (28 of a batch's 35 ms).
CREATE OR REPLACE FUNCTION tb_simple_batch(p_project TEXT, p_commands JSONB)
RETURNS BOOLEAN LANGUAGE sql STABLE AS $fn$
    SELECT coalesce(bool_and(x.c ->> 'k' = 'e' AND own.n > 0
                             AND own.found = own.n AND own.lo = own.hi), false)
           AND count(x.c ->> 'cid') = count(DISTINCT x.c ->> 'cid')
      FROM jsonb_array_elements(p_commands) AS x (c)
     CROSS JOIN LATERAL (
           SELECT count(*) AS n, count(i.customer) AS found,
                  min(i.customer) AS lo, max(i.customer) AS hi
             FROM (SELECT (SELECT ci.customer_id FROM tb_customer_ids ci
                            WHERE ci.project = p_project
                              AND ci.id_name = e ->> 0
                              AND ci.id_value = e ->> 1) AS customer
                     FROM jsonb_array_elements(x.c -> 'ids') AS e
                   OFFSET 0) AS i) AS own
$fn$;

-- A batch, in one statement: the statuses of its commands, comma-separated.
-- p_commands holds the commands without their properties; p_props holds
-- them, in the same order, as the text to store (see tb_pg_write).
-- No JIT: the planner guesses 100 rows for each jsonb_array_elements, so
-- the nested ones cost past jit_above_cost, and compiling took ~25 ms a
-- call for statements that run in about one.
CREATE OR REPLACE FUNCTION tb_record_batch(p_project TEXT, p_key TEXT,
                                           p_now DOUBLE PRECISION,
                                           p_window DOUBLE PRECISION,
                                           p_commands JSON,
                                           p_props TEXT[])
RETURNS TEXT LANGUAGE plpgsql SET jit = off AS $fn$
DECLARE
    c       JSON;
    o       BIGINT;
    out     TEXT[] := '{}';
    simple  BOOLEAN;
    result  TEXT;
    jb      JSONB := p_commands::jsonb;     -- parsed once, for lookups
    known   JSONB := '{}';         -- [name, value] -> profile, this batch
    moves   TEXT;
    cust    BIGINT;
    st      TEXT;
BEGIN
    -- The common batch: events of known customers, each command's ids all
    -- on one profile, so identity has nothing to merge, attach or refuse
    -- (as tb_known in tb_store.c).  Then the batch is a few set-based
    -- statements instead of a loop of per-command ones, with the same
    -- outcome: a logged command_id is a duplicate and changes nothing; an
    -- event identical to a stored one, or to an earlier one of the batch,
    -- is a duplicate; the rest are inserted in batch order.
    --
    -- Locks: a batch that may merge profiles takes the project's lock
    -- alone (a merge reaches profiles through ids the batch does not
    -- name), as SQLite's write lock would.  Simple batches share it, so
    -- they run side by side, and each also locks the profiles it writes,
    -- in id order, so two batches of one customer (a retry, an identical
    -- event) still run one after the other and see each other's rows.
    -- Whether a batch is simple is checked once, holding the shared lock,
    -- in a block of its own: a batch found not simple leaves the block by
    -- an error, which lets the shared lock go with the block's
    -- subtransaction before the batch asks for the lock alone.  (Asking
    -- while holding it shared could deadlock with another such batch.)
    -- the schema is set up holding this lock alone (tb_store.c): its DDL
    -- never interleaves with a batch, whose table locks it could deadlock
    PERFORM pg_advisory_xact_lock_shared(7462626174);
    BEGIN
        PERFORM pg_advisory_xact_lock_shared(hashtextextended('track_batch/'
                                                              || p_project, 0));
        simple := tb_simple_batch(p_project, jb);
        IF NOT simple THEN
            RAISE EXCEPTION USING ERRCODE = 'TB002';
        END IF;
    EXCEPTION WHEN SQLSTATE 'TB002' THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('track_batch/'
                                                       || p_project, 0));
    END;
    DELETE FROM tb_command_log WHERE expires_at <= p_now;

    IF simple THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('track_batch/'
                                                       || p_project || '/'
                                                       || q.customer, 0))
           FROM (SELECT DISTINCT
                        (SELECT ci.customer_id FROM tb_customer_ids ci
                          WHERE ci.project = p_project
                            AND ci.id_name = x.c -> 'ids' -> 0 ->> 0
                            AND ci.id_value = x.c -> 'ids' -> 0 ->> 1)
                        AS customer
                   FROM jsonb_array_elements(jb) AS x (c)
                  ORDER BY 1) AS q;
        WITH x AS (
            SELECT x.o, x.c ->> 'cid' AS cid, x.c ->> 'dk' AS dk,
                   x.c ->> 'et' AS et, (x.c ->> 't')::double precision AS t,
                   (SELECT ci.customer_id
                      FROM tb_customer_ids ci
                     WHERE ci.project = p_project
                       AND ci.id_name = x.c -> 'ids' -> 0 ->> 0
                       AND ci.id_value = x.c -> 'ids' -> 0 ->> 1) AS customer
              FROM jsonb_array_elements(jb) WITH ORDINALITY AS x (c, o)
        ), r AS (
            SELECT x.*, (x.cid IS NOT NULL
                         AND EXISTS (SELECT 1 FROM tb_command_log l
                                      WHERE l.project = p_project
                                        AND l.key_id = p_key
                                        AND l.command_id = x.cid
                                        AND l.expires_at > p_now)) AS logged
              FROM x
        ), s AS (
            -- a lookup per event (LATERAL ... LIMIT 1), so the planner
            -- keeps to the index rather than hashing all of tb_events
            SELECT r.*, (NOT r.logged AND r.dk IS NOT NULL
                         AND (coalesce(stored.hit, false)
                              OR EXISTS (SELECT 1 FROM r r2
                                          WHERE NOT r2.logged AND r2.o < r.o
                                            AND r2.customer = r.customer
                                            AND r2.dk = r.dk))) AS same
              FROM r
              LEFT JOIN LATERAL (
                   SELECT true AS hit FROM tb_events e
                    WHERE e.customer_id = r.customer AND e.timestamp = r.t
                      AND e.dedup_key = r.dk
                      AND e.received_at >= p_now - 90 * 86400
                    LIMIT 1) AS stored ON true
        ), logged_now AS (
            INSERT INTO tb_command_log (project, key_id, command_id,
                                        received_at, expires_at)
            SELECT p_project, p_key, s.cid, p_now, p_now + p_window
              FROM s WHERE s.cid IS NOT NULL AND NOT s.logged
            ON CONFLICT (project, key_id, command_id) DO UPDATE
               SET received_at = excluded.received_at,
                   expires_at = excluded.expires_at
        ), added AS (
            INSERT INTO tb_events (project, customer_id, event_type,
                                   timestamp, properties, received_at,
                                   command_id, dedup_key)
            SELECT p_project, s.customer, s.et, s.t, p_props[s.o], p_now,
                   s.cid, s.dk
              FROM s
             WHERE NOT s.logged AND NOT s.same
             ORDER BY s.o
        )
        SELECT string_agg(CASE WHEN s.logged OR s.same THEN 'dup' ELSE 'ok' END,
                          ',' ORDER BY s.o)
          INTO result FROM s;
        RETURN result;
    END IF;

    -- A command whose ids all name one profile met earlier in the batch
    -- skips identity, as in tb_store.c (tb_known); a merge or a moved id
    -- voids the map.
    FOR c, o IN SELECT * FROM json_array_elements(p_commands)
                          WITH ORDINALITY LOOP
        SELECT CASE WHEN count(*) > 0 AND count(v) = count(*)
                         AND min(v) = max(v) THEN min(v) END
          INTO cust
          FROM (SELECT (known ->> jsonb_build_array(i ->> 0, i ->> 1)::text)
                       ::bigint AS v
                  FROM json_array_elements(c -> 'ids') AS i) AS q;
        moves := current_setting('track_batch.moves', true);
        SELECT r.customer, r.status INTO cust, st
          FROM tb_record_command(p_project, p_key, p_now, p_now - 90 * 86400,
                                 p_now + p_window, c, p_props[o], cust)
               AS r;
        IF current_setting('track_batch.moves', true)
           IS DISTINCT FROM moves THEN
            known := '{}';
        END IF;
        IF cust IS NOT NULL THEN
            SELECT known || coalesce(jsonb_object_agg(
                       jsonb_build_array(i ->> 0, i ->> 1)::text, cust), '{}')
              INTO known
              FROM json_array_elements(c -> 'ids') AS i;
        END IF;
        out := out || st;
    END LOOP;
    RETURN array_to_string(out, ',');
END
$fn$;

-- Which version of this file the database holds (its SHA-256, written by
-- the module): a new connection runs the file only when it changed, so
-- connections do not take DDL locks, and a schema owned by another role
-- (created by hand with psql -f) works.
CREATE TABLE IF NOT EXISTS tb_schema_version (
    digest      TEXT NOT NULL
);
