"""The ids the gate keeps for its records, against the races that left them wrong (issue 9,
defect 13), with real components (the sim central on 127.0.0.1, SQLite in ``tmp_path``,
the real runner and ``OfflineSync``):

- a session written after the sync already sent its queued entry carries the central
  service's id, not the gate's local one (which no exit could ever be matched by);
- an exit that refers to an entry still in the queue is never sent with the local id: it
  follows that entry from the queue, so the central service gets one body per key;
- a vehicle let in by policy with no plate read is matched by an exit that matches nothing
  (its space is not held for ever)."""

from __future__ import annotations

import asyncio
import sqlite3

from gateway.store import spaces
from gateway.store.schema import MIGRATIONS
from tests.integration.test_offline_queue_faults import make_world


async def test_a_session_gets_the_central_id_the_sync_got_before_the_saga_finished(tmp_path):
    async with make_world(tmp_path) as w:
        await w.visit("34ABC123")
        await w.fault("refuse")
        w.gate.hold = True  # the car waits on the loop after the barrier opened
        entry = asyncio.create_task(w.entry("34ABC123"))
        await w.gate.at_passage.wait()
        await w.fault("ok")
        assert await w.sync.drain() == 1  # the queued create is sent meanwhile
        w.gate.go.set()
        outcome = await entry
        assert outcome.sources["create_entry_record"] == "queue"
        (central_id,) = [i for i, r in w.central.entries.items()
                         if r["idempotency_key"] == f"{outcome.saga_id}:create_entry_record"]
        (session,) = [s for s in await w.store.read(spaces.list_sessions)
                      if s["entry_saga_id"] == outcome.saga_id]
        assert session["entry_id"] == central_id
        # and so the exit refers to the central service's entry
        out = await w.exit("34ABC123")
        assert out.succeeded
        (record,) = [r for r in w.central.exits.values()
                     if r["idempotency_key"] == f"{out.saga_id}:create_exit_record"]
        assert record["entry_id"] == central_id


async def test_an_exit_referring_to_a_queued_entry_follows_it_from_the_queue(tmp_path):
    async with make_world(tmp_path) as w:
        await w.visit("34ABC123")
        await w.fault("refuse")
        entry = await w.entry("34ABC123")
        assert entry.sources["create_entry_record"] == "queue"
        await w.fault("ok")  # the central service is back before the sync sent the entry
        out = await w.exit("34ABC123")
        assert out.succeeded and out.sources["create_exit_record"] == "queue"
        exit_key = f"{out.saga_id}:create_exit_record"
        assert exit_key not in w.central.key_hits  # not sent with the local id
        await w.drain_all()
        (central_entry,) = [i for i, r in w.central.entries.items()
                            if r["idempotency_key"] == f"{entry.saga_id}:create_entry_record"]
        (record,) = [r for r in w.central.exits.values() if r["idempotency_key"] == exit_key]
        assert record["entry_id"] == central_entry
        assert w.central.key_hits[exit_key] == 1
        w.check_central()


def test_an_unread_entry_is_matched_by_the_next_exit_that_matches_nothing(tmp_path):
    conn = sqlite3.connect(tmp_path / "g.db")
    conn.row_factory = sqlite3.Row
    for migration in MIGRATIONS:
        conn.executescript(migration)
    conn.execute("INSERT INTO spaces(space_id, zone, number, kind, state, plate, saga_id, "
                 "since) VALUES ('A-1','A',1,'standard','allocated','', 'e1', 'now')")
    spaces.open_session(conn, "", "A-1", "e1", "entry-1", "t0", "")
    spaces.open_session(conn, "", None, "e2", "entry-2", "t1", "")
    found = spaces.begin_exit(conn, "34ABC123", "x1", "t2")
    assert found is not None and found["entry_saga_id"] == "e1"  # the oldest unread one
    assert found["matched_unread"]
    assert conn.execute("SELECT state FROM spaces WHERE space_id='A-1'").fetchone()[0] == "free"
    # undone (the car backed off): inside again, not flagged as matched
    spaces.undo_exit(conn, "x1", "t3")
    (row,) = conn.execute("SELECT status, flags FROM vehicle_sessions "
                          "WHERE entry_saga_id='e1'").fetchall()
    assert (row["status"], row["flags"]) == ("inside", "")
    # an exit whose plate is inside takes its own session, not an unread one
    spaces.open_session(conn, "34XYZ9", None, "e3", "entry-3", "t4", "")
    mine = spaces.begin_exit(conn, "34XYZ9", "x2", "t5")
    assert mine is not None and mine["entry_saga_id"] == "e3" and not mine["matched_unread"]
