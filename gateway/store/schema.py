"""The database schema as an ordered list of migrations. ``user_version`` is the number of
migrations applied; a database with a higher number was written by a newer gateway and is
refused, untouched. Never edit a released migration: add one."""

from __future__ import annotations

APPLICATION_ID = 0x50475759  # "PGWY": marks the file as a parking gateway database

MIGRATIONS: list[str] = [
    # 1: the foundation
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);

    CREATE TABLE spaces (
        space_id TEXT PRIMARY KEY,
        zone     TEXT NOT NULL,
        number   INTEGER NOT NULL,
        kind     TEXT NOT NULL CHECK (kind IN ('standard','reserved','accessible','ev')),
        state    TEXT NOT NULL CHECK (state IN ('free','allocated','out_of_service')),
        plate    TEXT,
        saga_id  TEXT,
        since    TEXT,
        retired  INTEGER NOT NULL DEFAULT 0,
        CHECK ((state = 'allocated') = (saga_id IS NOT NULL))
    );
    -- one saga can never hold two spaces
    CREATE UNIQUE INDEX spaces_one_per_saga ON spaces(saga_id) WHERE saga_id IS NOT NULL;
    CREATE INDEX spaces_by_state ON spaces(state, kind, zone, number);

    CREATE TABLE vehicle_sessions (
        session_id    INTEGER PRIMARY KEY,
        plate         TEXT NOT NULL,
        space_id      TEXT,
        entry_saga_id TEXT UNIQUE,
        entry_id      TEXT,
        entered_at    TEXT,
        exit_saga_id  TEXT UNIQUE,
        exit_id       TEXT,
        exited_at     TEXT,
        status        TEXT NOT NULL CHECK (status IN ('inside','exiting','exited')),
        flags         TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX sessions_by_plate ON vehicle_sessions(plate, status);

    CREATE TABLE sagas (
        saga_id     TEXT PRIMARY KEY,
        kind        TEXT NOT NULL,
        gate_id     TEXT NOT NULL,
        lane_id     TEXT NOT NULL DEFAULT '',
        plate       TEXT NOT NULL DEFAULT '',
        status      TEXT NOT NULL,
        reason      TEXT NOT NULL DEFAULT '',
        context     TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL,
        duration_ms REAL
    );
    CREATE INDEX sagas_by_status ON sagas(status, created_at);

    CREATE TABLE saga_steps (
        saga_id         TEXT NOT NULL REFERENCES sagas(saga_id) ON DELETE CASCADE,
        step_index      INTEGER NOT NULL,
        phase           TEXT NOT NULL CHECK (phase IN ('forward','compensation')),
        name            TEXT NOT NULL,
        status          TEXT NOT NULL CHECK (status IN ('started','succeeded','failed')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        service         TEXT NOT NULL DEFAULT '',
        source          TEXT NOT NULL DEFAULT '',
        idempotency_key TEXT,
        outcome_unknown INTEGER NOT NULL DEFAULT 0,
        started_at      TEXT,
        finished_at     TEXT,
        duration_ms     REAL,
        result          TEXT,
        error           TEXT,
        attempt_log     TEXT NOT NULL DEFAULT '[]',
        PRIMARY KEY (saga_id, step_index, phase)
    );

    -- AUTOINCREMENT: a seq is never reused, even after the oldest events are pruned
    CREATE TABLE events (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id   TEXT NOT NULL UNIQUE,
        gate_id    TEXT NOT NULL,
        type       TEXT NOT NULL,
        ts         TEXT NOT NULL,
        wall_synced INTEGER NOT NULL DEFAULT 0,
        lane_id    TEXT,
        data       TEXT NOT NULL
    );
    -- events not yet acknowledged by the MQTT broker
    CREATE TABLE outbox (seq INTEGER PRIMARY KEY REFERENCES events(seq) ON DELETE CASCADE);

    CREATE TABLE plate_cache (
        plate      TEXT PRIMARY KEY,
        result     TEXT NOT NULL,
        source     TEXT NOT NULL,
        stored_at  REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX plate_cache_by_expiry ON plate_cache(expires_at);
    """,
    # 2: records waiting for the central service (written while it was unreachable, or
    # created by the backup service and to be confirmed at the central service)
    """
    CREATE TABLE offline_queue (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        saga_id         TEXT NOT NULL,
        operation       TEXT NOT NULL,
        idempotency_key TEXT NOT NULL UNIQUE,
        payload         TEXT NOT NULL,
        reason          TEXT NOT NULL CHECK (reason IN ('unreachable','confirm')),
        local_id        TEXT,
        remote_id       TEXT,
        state           TEXT NOT NULL CHECK (state IN ('pending','sent','dead','dropped')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL DEFAULT 0,
        last_error      TEXT NOT NULL DEFAULT '',
        created_at      TEXT NOT NULL,
        updated_at      TEXT NOT NULL
    );
    CREATE INDEX offline_queue_due ON offline_queue(state, next_attempt_at, id);
    """,
    # 3: ids of the remote commands already taken (a replay, a second delivery, is refused,
    # also after a restart); kept a few command_max_age_s, longer than any accepted ts
    """
    CREATE TABLE command_ids (
        id      TEXT PRIMARY KEY,
        seen_at REAL NOT NULL
    );
    CREATE INDEX command_ids_by_age ON command_ids(seen_at);
    """,
    # 4: the offline queue's rows change only by compare-and-set: a row is claimed
    # ('sending', committed) before it is sent; ``version`` counts transitions; ``outcome``
    # says whether the central service may hold the record ('unsent': it cannot; 'unknown':
    # sent and not answered; 'done': answered with its id; 'refused': answered no);
    # ``depends_on`` is the row whose record this one refers to (a cancel's create, an
    # exit's entry), sent first. The table is rebuilt for the new state.
    """
    CREATE TABLE offline_queue_v4 (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        saga_id         TEXT NOT NULL,
        operation       TEXT NOT NULL,
        idempotency_key TEXT NOT NULL UNIQUE,
        payload         TEXT NOT NULL,
        reason          TEXT NOT NULL CHECK (reason IN ('unreachable','confirm')),
        local_id        TEXT,
        remote_id       TEXT,
        state           TEXT NOT NULL
                        CHECK (state IN ('pending','sending','sent','dead','dropped')),
        outcome         TEXT NOT NULL DEFAULT 'unknown'
                        CHECK (outcome IN ('unsent','unknown','done','refused')),
        version         INTEGER NOT NULL DEFAULT 0,
        depends_on      INTEGER,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL DEFAULT 0,
        last_error      TEXT NOT NULL DEFAULT '',
        created_at      TEXT NOT NULL,
        updated_at      TEXT NOT NULL
    );
    -- a row queued before this version may have been sent by its saga: outcome unknown
    INSERT INTO offline_queue_v4(id, saga_id, operation, idempotency_key, payload, reason,
        local_id, remote_id, state, outcome, version, depends_on, attempts, next_attempt_at,
        last_error, created_at, updated_at)
    SELECT q.id, q.saga_id, q.operation, q.idempotency_key, q.payload, q.reason, q.local_id,
        q.remote_id, q.state,
        CASE q.state WHEN 'sent' THEN 'done' WHEN 'dead' THEN 'refused'
                     WHEN 'dropped' THEN 'unsent' ELSE 'unknown' END,
        0,
        (SELECT p.id FROM offline_queue p
          WHERE p.local_id IS NOT NULL AND p.id <> q.id
            AND p.local_id IN (json_extract(q.payload, '$.entry_id'),
                               json_extract(q.payload, '$.exit_id'))
          ORDER BY p.id DESC LIMIT 1),
        q.attempts, q.next_attempt_at, q.last_error, q.created_at, q.updated_at
    FROM offline_queue q;
    -- ids are never reused: the new table goes on from the old one's sequence
    INSERT INTO sqlite_sequence(name, seq)
    SELECT 'offline_queue_v4', coalesce(max(seq), 0) FROM sqlite_sequence
     WHERE name IN ('offline_queue', 'offline_queue_v4');
    DELETE FROM sqlite_sequence WHERE name = 'offline_queue_v4'
       AND rowid <> (SELECT max(rowid) FROM sqlite_sequence WHERE name = 'offline_queue_v4');
    DROP TABLE offline_queue;
    ALTER TABLE offline_queue_v4 RENAME TO offline_queue;
    CREATE INDEX offline_queue_due ON offline_queue(state, next_attempt_at, id);
    CREATE INDEX offline_queue_by_saga ON offline_queue(saga_id, id);
    CREATE INDEX offline_queue_by_local_id ON offline_queue(local_id)
        WHERE local_id IS NOT NULL;
    CREATE INDEX offline_queue_by_peer ON offline_queue(depends_on)
        WHERE depends_on IS NOT NULL;
    """,
    # 5: retention of terminal rows and lookups without scans. Indexes for the saga list
    # by time, terminal sagas by age, sessions by status and by entry id, exited sessions
    # by age, queue rows by state and age and by state in id order (the dead letters).
    # The saga counts by status are kept in ``counters`` ('sagas.status.<status>') by
    # triggers, so no query counts the table.
    """
    CREATE INDEX sagas_by_created ON sagas(created_at);
    CREATE INDEX sagas_by_status_updated ON sagas(status, updated_at);
    CREATE INDEX sessions_by_status ON vehicle_sessions(status, session_id);
    CREATE INDEX sessions_by_entry_id ON vehicle_sessions(entry_id, status)
        WHERE entry_id IS NOT NULL;
    CREATE INDEX sessions_by_status_exited ON vehicle_sessions(status, exited_at);
    CREATE INDEX offline_queue_by_state_age ON offline_queue(state, updated_at);
    CREATE INDEX offline_queue_by_state ON offline_queue(state);  -- (state, id): dead letters

    INSERT INTO counters(name, value)
    SELECT 'sagas.status.' || status, count(*) FROM sagas GROUP BY status;
    CREATE TRIGGER sagas_count_insert AFTER INSERT ON sagas BEGIN
        INSERT INTO counters(name, value) VALUES ('sagas.status.' || NEW.status, 1)
        ON CONFLICT(name) DO UPDATE SET value = value + 1;
    END;
    CREATE TRIGGER sagas_count_update AFTER UPDATE OF status ON sagas
    WHEN OLD.status IS NOT NEW.status BEGIN
        UPDATE counters SET value = value - 1 WHERE name = 'sagas.status.' || OLD.status;
        INSERT INTO counters(name, value) VALUES ('sagas.status.' || NEW.status, 1)
        ON CONFLICT(name) DO UPDATE SET value = value + 1;
    END;
    CREATE TRIGGER sagas_count_delete AFTER DELETE ON sagas BEGIN
        UPDATE counters SET value = value - 1 WHERE name = 'sagas.status.' || OLD.status;
    END;
    """,
    # 6: the local permit list: plates always let in, from the central service
    # (GET /v1/permits, synced) or entered at the gate; validity as UTC epoch seconds
    # (NULL: open) beside the text the central service sent. A central row marked deleted
    # is kept as such (so a later sync that skips it cannot bring it back); the sync's
    # cursor is meta 'permits_as_of'.
    """
    CREATE TABLE permits (
        plate       TEXT NOT NULL,
        source      TEXT NOT NULL CHECK (source IN ('central','local')),
        kind        TEXT NOT NULL DEFAULT 'resident',
        valid_from  TEXT,
        valid_until TEXT,
        from_ts     REAL,
        until_ts    REAL,
        deleted     INTEGER NOT NULL DEFAULT 0,
        note        TEXT NOT NULL DEFAULT '',
        updated_at  TEXT NOT NULL,
        PRIMARY KEY (plate, source)
    );
    CREATE INDEX permits_by_length ON permits(length(plate)) WHERE deleted = 0;
    """,
    # 7: the events of one saga (the page's saga view, recovery's device evidence) found by
    # an index on the saga id inside the event's data, not a walk over recent events.
    """
    CREATE INDEX events_by_saga ON events(json_extract(data, '$.saga_id'), seq)
        WHERE json_extract(data, '$.saga_id') IS NOT NULL;
    """,
    # 8: is this plate inside? (asked at every entry, before a space is allocated) by a
    # seek on the allocated spaces' plates, not a walk of every allocated space
    """
    CREATE INDEX spaces_allocated_by_plate ON spaces(plate) WHERE state = 'allocated';
    """,
    # 9: the retention's time indexes hold only what retention can delete (terminal sagas,
    # one index per terminal status; exited sessions): a saga in flight or a vehicle
    # inside is in none, so a saga's first commit and a vehicle's entry write two index
    # pages fewer, and a saga's end or a vehicle's exit only adds its entry there
    """
    DROP INDEX sagas_by_status_updated;
    CREATE INDEX sagas_completed_by_updated ON sagas(updated_at) WHERE status = 'completed';
    CREATE INDEX sagas_compensated_by_updated ON sagas(updated_at)
        WHERE status = 'compensated';
    CREATE INDEX sagas_failed_by_updated ON sagas(updated_at) WHERE status = 'failed';
    DROP INDEX sessions_by_status_exited;
    CREATE INDEX sessions_exited_by_time ON vehicle_sessions(exited_at)
        WHERE status = 'exited';
    """,
    # 10: a saga's commits write fewer pages (issue 13). The events table is rebuilt:
    # - the saga id is a column of its own (taken from the data of the rows there are),
    #   and its last 8 characters (random in a UUID) another, indexed: a third of the whole
    #   id's entry, so fewer leaves split in a commit; a lookup checks the whole id. (An
    #   index on substr() of the id would not do: SQLite 3.40 uses no partial index on an
    #   expression for an equality with it.) This replaces an index on an expression over
    #   the JSON, entries as long as the whole id;
    # - no UNIQUE index on event_id: nothing looks an event up by its id, and the ids are
    #   unique by construction (a random 64-bit prefix per process, then a counter);
    # - no AUTOINCREMENT (its sqlite_sequence row was a page more in every commit): a seq
    #   is still never reused, even after every event was pruned, because the insert
    #   takes the seq after both the newest and the high-water mark that a pruning
    #   leaves in counters ('events.last_seq', read, not written, by a saga's commit); it
    #   starts from the old sequence here.
    # The outbox is rebuilt with it (its foreign key refers to the new table; dropping the
    # old one first would cascade to the outbox's rows).
    # And the saga counts: only the terminal statuses are kept counters (the insert of a
    # running saga and its end wrote the counters page in both its commits); the few
    # sagas in flight are counted on sagas_by_status when asked. And a vehicle's entry no
    # longer writes an index page for its exit saga's id, NULL until the exit: the table
    # is rebuilt with that UNIQUE as a partial index (no row changes, no id changes).
    """
    CREATE TABLE events_v10 (
        seq         INTEGER PRIMARY KEY,
        event_id    TEXT NOT NULL,
        gate_id     TEXT NOT NULL,
        type        TEXT NOT NULL,
        ts          TEXT NOT NULL,
        wall_synced INTEGER NOT NULL DEFAULT 0,
        lane_id     TEXT,
        saga_id     TEXT,
        saga_key    TEXT,  -- substr(saga_id, -8)
        data        TEXT NOT NULL
    );
    INSERT INTO events_v10(seq, event_id, gate_id, type, ts, wall_synced, lane_id, saga_id,
                           saga_key, data)
    SELECT seq, event_id, gate_id, type, ts, wall_synced, lane_id, saga_id,
           substr(saga_id, -8), data
      FROM (SELECT *, CASE json_type(data, '$.saga_id')
                      WHEN 'text' THEN json_extract(data, '$.saga_id') END AS saga_id
              FROM events)
     ORDER BY seq;
    INSERT INTO counters(name, value)
    SELECT 'events.last_seq', max(coalesce((SELECT max(seq) FROM sqlite_sequence
                                             WHERE name = 'events'), 0),
                                  coalesce((SELECT max(seq) FROM events), 0))
     WHERE true
    ON CONFLICT(name) DO UPDATE SET value = max(value, excluded.value);
    CREATE TABLE outbox_v10 (
        seq INTEGER PRIMARY KEY REFERENCES events_v10(seq) ON DELETE CASCADE);
    -- an outbox row whose event is gone (deleted by hand, foreign keys off) was never
    -- sent; it would fail the new table's foreign key and the migration with it
    INSERT INTO outbox_v10(seq)
    SELECT o.seq FROM outbox o JOIN events_v10 e ON e.seq = o.seq ORDER BY o.seq;
    DROP TABLE outbox;
    DROP TABLE events;
    DELETE FROM sqlite_sequence WHERE name = 'events';
    ALTER TABLE events_v10 RENAME TO events;
    ALTER TABLE outbox_v10 RENAME TO outbox;
    CREATE INDEX events_by_saga ON events(saga_key) WHERE saga_key IS NOT NULL;

    CREATE TABLE vehicle_sessions_v10 (
        session_id    INTEGER PRIMARY KEY,
        plate         TEXT NOT NULL,
        space_id      TEXT,
        entry_saga_id TEXT UNIQUE,
        entry_id      TEXT,
        entered_at    TEXT,
        exit_saga_id  TEXT,
        exit_id       TEXT,
        exited_at     TEXT,
        status        TEXT NOT NULL CHECK (status IN ('inside','exiting','exited')),
        flags         TEXT NOT NULL DEFAULT ''
    );
    INSERT INTO vehicle_sessions_v10(session_id, plate, space_id, entry_saga_id, entry_id,
        entered_at, exit_saga_id, exit_id, exited_at, status, flags)
    SELECT session_id, plate, space_id, entry_saga_id, entry_id, entered_at, exit_saga_id,
           exit_id, exited_at, status, flags
      FROM vehicle_sessions ORDER BY session_id;
    DROP TABLE vehicle_sessions;
    ALTER TABLE vehicle_sessions_v10 RENAME TO vehicle_sessions;
    CREATE UNIQUE INDEX sessions_by_exit_saga ON vehicle_sessions(exit_saga_id)
        WHERE exit_saga_id IS NOT NULL;
    CREATE INDEX sessions_by_plate ON vehicle_sessions(plate, status);
    CREATE INDEX sessions_by_status ON vehicle_sessions(status, session_id);
    CREATE INDEX sessions_by_entry_id ON vehicle_sessions(entry_id, status)
        WHERE entry_id IS NOT NULL;
    CREATE INDEX sessions_exited_by_time ON vehicle_sessions(exited_at)
        WHERE status = 'exited';

    DROP TRIGGER sagas_count_insert;
    DROP TRIGGER sagas_count_update;
    DROP TRIGGER sagas_count_delete;
    DELETE FROM counters WHERE name IN ('sagas.status.running', 'sagas.status.compensating');
    CREATE TRIGGER sagas_count_insert AFTER INSERT ON sagas
    WHEN NEW.status NOT IN ('running', 'compensating') BEGIN
        INSERT INTO counters(name, value) VALUES ('sagas.status.' || NEW.status, 1)
        ON CONFLICT(name) DO UPDATE SET value = value + 1;
    END;
    CREATE TRIGGER sagas_count_update AFTER UPDATE OF status ON sagas
    WHEN OLD.status IS NOT NEW.status BEGIN
        INSERT INTO counters(name, value)
        SELECT 'sagas.status.' || status, delta
          FROM (SELECT NEW.status AS status, 1 AS delta UNION ALL SELECT OLD.status, -1)
         WHERE status NOT IN ('running', 'compensating')
        ON CONFLICT(name) DO UPDATE SET value = value + excluded.value;
    END;
    CREATE TRIGGER sagas_count_delete AFTER DELETE ON sagas
    WHEN OLD.status NOT IN ('running', 'compensating') BEGIN
        UPDATE counters SET value = value - 1 WHERE name = 'sagas.status.' || OLD.status;
    END;
    """,
]

LATEST_VERSION = len(MIGRATIONS)
