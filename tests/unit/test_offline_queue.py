"""The offline queue's rows against a real SQLite file: every transition is compare-and-set,
order is kept per saga and per dependency, and a version-3 database migrates."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from gateway.store import offline_queue as q
from gateway.store.db import Database, _statements
from gateway.store.schema import APPLICATION_ID, LATEST_VERSION, MIGRATIONS

NOW = "2026-01-01T00:00:00+00:00"
Json = dict[str, Any]


def db(tmp_path) -> Database:
    return Database(tmp_path / "q.sqlite3")


def put(conn, saga: str, op: str, payload: Json | None = None, local: str | None = None,
        outcome: str = "unsent") -> int:
    q.enqueue(conn, saga_id=saga, operation=op, key=f"{saga}:{op}", payload=payload or {},
              reason="unreachable", now=NOW, local_id=local, outcome=outcome)
    return int(conn.execute("SELECT id FROM offline_queue WHERE idempotency_key=?",
                            (f"{saga}:{op}",)).fetchone()[0])


def row(conn, row_id: int) -> Json:
    return dict(conn.execute("SELECT * FROM offline_queue WHERE id=?", (row_id,)).fetchone())


def test_a_claimed_row_cannot_be_dropped_and_a_dropped_row_cannot_be_claimed(tmp_path):
    d = db(tmp_path)
    with d.transaction() as c:
        a = put(c, "s1", "create_entry_record", local="local-s1")
        b = put(c, "s2", "create_entry_record", local="local-s2")
        version = q.claim(c, a, 0, NOW)
        assert version == 1 and q.claim(c, a, 0, NOW) is None  # a second claim loses
        undo = q.undo_create(c, "local-s1", NOW)
        assert undo.action == "follow" and row(c, a)["state"] == "sending"
        assert q.undo_create(c, "local-s2", NOW).action == "dropped"
        assert q.claim(c, b, 0, NOW) is None  # the saga won: nothing is sent
        assert q.mark_sent(c, b, 1, "e-1", NOW) is False
        assert row(c, b)["state"] == "dropped"
        assert q.mark_sent(c, a, 0, "e-2", NOW) is False  # a stale version changes nothing
        assert q.mark_sent(c, a, version, "e-2", NOW) is True
        assert q.undo_create(c, "local-s1", NOW) == q.Undo("cancel", remote_id="e-2")


def test_a_row_sent_and_unanswered_is_never_dropped(tmp_path):
    d = db(tmp_path)
    with d.transaction() as c:
        a = put(c, "s1", "create_entry_record", local="local-s1", outcome="unknown")
        assert q.undo_create(c, "local-s1", NOW) == q.Undo("follow", row_id=a)
        b = put(c, "s2", "create_entry_record", local="local-s2")
        v = q.claim(c, b, 0, NOW)
        assert v is not None and q.mark_failed(c, b, v, "timeout", 0.0, NOW)
        assert row(c, b)["outcome"] == "unknown"  # once claimed, it may have landed
        assert q.undo_create(c, "local-s2", NOW).action == "follow"


def test_dependents_wait_for_their_peer_and_get_its_id(tmp_path):
    d = db(tmp_path)
    with d.transaction() as c:
        entry = put(c, "in", "create_entry_record", local="local-in")
        exit_ = put(c, "out", "create_exit_record", {"entry_id": "local-in"}, "local-out")
        other = put(c, "x", "create_entry_record", local="local-x")
        assert row(c, exit_)["depends_on"] == entry
        assert [r["id"] for r in q.due(c, 1e12)] == [entry, other]
        v = q.claim(c, entry, 0, NOW)
        assert v is not None
        assert q.mark_failed(c, entry, v, "HTTP 500", 1e9, NOW)
        assert [r["id"] for r in q.due(c, 0.0)] == [other]  # the exit backs off with it
        assert q.next_due_at(c) == 0.0
        with_other_sent = q.claim(c, other, 0, NOW)
        assert with_other_sent is not None and q.mark_sent(c, other, with_other_sent, "e-x", NOW)
        assert q.next_due_at(c) == 1e9  # only the entry's own backoff counts
        v = q.claim(c, entry, row(c, entry)["version"], NOW)
        assert v is not None and q.mark_sent(c, entry, v, "e-in", NOW)
        (due,) = q.due(c, 0.0)
        assert due["id"] == exit_ and due["payload"]["entry_id"] == "e-in"


def test_a_dead_row_takes_its_dependents_and_later_rows_of_its_saga(tmp_path):
    d = db(tmp_path)
    with d.transaction() as c:
        entry = put(c, "in", "create_entry_record", local="local-in")
        cancel = put(c, "in", "cancel_entry_record", {"entry_id": "local-in"})
        exit_ = put(c, "out", "create_exit_record", {"entry_id": "local-in"}, "local-out")
        ex_cancel = put(c, "out", "cancel_exit_record", {"exit_id": "local-out"})
        other = put(c, "x", "create_entry_record", local="local-x")
        v = q.claim(c, entry, 0, NOW)
        assert v is not None
        assert sorted(q.mark_dead(c, entry, v, "HTTP 422", NOW)) == sorted(
            [entry, cancel, exit_, ex_cancel])
        assert [r["id"] for r in q.due(c, 0.0)] == [other]
        late = put(c, "late", "create_exit_record", {"entry_id": "local-in"}, "local-late")
        assert row(c, late)["state"] == "dead"  # born dead: its peer is
        nowhere = put(c, "n", "create_exit_record", {"entry_id": "local-gone"}, "local-n")
        assert row(c, nowhere)["state"] == "dead"


def test_claims_left_by_a_stopped_sync_are_released_outcome_unknown(tmp_path):
    d = db(tmp_path)
    with d.transaction() as c:
        a = put(c, "s1", "create_entry_record", local="local-s1")
        assert q.claim(c, a, 0, NOW) == 1
        assert q.release_claims(c, NOW) == 1
        r = row(c, a)
        assert (r["state"], r["outcome"]) == ("pending", "unknown")
        assert q.undo_create(c, "local-s1", NOW).action == "follow"


def test_a_version_3_queue_migrates_keeping_rows_ids_and_references(tmp_path):
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    conn.execute("PRAGMA journal_mode=WAL")
    for number in range(1, 4):
        for statement in _statements(MIGRATIONS[number - 1]):
            conn.execute(statement)
    conn.execute("PRAGMA user_version=3")
    cols = ("saga_id, operation, idempotency_key, payload, reason, local_id, state, "
            "created_at, updated_at")
    for saga, op, payload, local, state in (
            ("in", "create_entry_record", {}, "local-in", "pending"),
            ("out", "create_exit_record", {"entry_id": "local-in"}, "local-out", "pending"),
            ("gone", "create_entry_record", {}, "local-gone", "sent"),
            ("bad", "create_entry_record", {}, "local-bad", "dead")):
        conn.execute(f"INSERT INTO offline_queue({cols}) VALUES (?,?,?,?,?,?,?,?,?)",
                     (saga, op, f"{saga}:{op}", json.dumps(payload), "unreachable", local,
                      state, NOW, NOW))
    conn.execute("DELETE FROM offline_queue WHERE saga_id='gone'")  # the highest id is gone
    conn.execute("UPDATE offline_queue SET id=3 WHERE saga_id='bad'")
    conn.execute("UPDATE sqlite_sequence SET seq=9 WHERE name='offline_queue'")
    conn.close()
    d = Database(path)
    assert d.version == LATEST_VERSION
    c = d.conn
    rows = {r["saga_id"]: dict(r) for r in c.execute("SELECT * FROM offline_queue")}
    assert rows["out"]["depends_on"] == rows["in"]["id"]
    assert (rows["in"]["outcome"], rows["bad"]["outcome"]) == ("unknown", "refused")
    with d.transaction() as t:
        new = put(t, "new", "create_entry_record", local="local-new")
    assert new == 10  # ids go on from the old sequence, never reused
    assert q.counts(c)["pending"] == 3  # in, out and the new one
