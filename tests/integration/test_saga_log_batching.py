"""What a saga's commits carry, written with less work: the events of a commit without
their envelopes (``events.write_many``), the step records waiting in the batch written with
the local step's own (and kept for the next commit when its transaction is rolled back),
and the step table of a saga not the daemon's made once per table."""

from __future__ import annotations

import sqlite3
from functools import partial
from pathlib import Path

from gateway.clock import SystemClock
from gateway.core.allocation import ZoneSpec
from gateway.core.saga import SagaDefinition
from gateway.core.steps import ENTRY, EXIT, GATE_SERVICE
from gateway.sagas.factory import build_registry, build_runner, central_session
from gateway.sagas.runner import SagaRunner, _definition_of
from gateway.sagas.saga_with_fallbacks import default_registry
from gateway.settings import parse_settings
from gateway.sim.gate import InstantGate
from gateway.store import Store, events, saga_log
from gateway.store.db import Database

TS = "2026-01-02T03:04:05.678+00:00"


def _rows(n: int) -> list[dict[str, object]]:
    return [{"gate_id": "g", "type": f"t{i % 3}", "ts": TS, "lane_id": "entry-1" if i % 2
             else None, "wall_synced": bool(i % 2), "data": {"saga_id": f"s-{i % 4}", "i": i}}
            for i in range(n)]


def _steps_of(conn: sqlite3.Connection, saga_id: str) -> list[sqlite3.Row]:
    return conn.execute("SELECT step_index, phase, name, status, source, error FROM "
                        "saga_steps WHERE saga_id = ? ORDER BY rowid", (saga_id,)).fetchall()


def _table(db: Database) -> list[tuple[object, ...]]:
    return [tuple(r) for r in db.conn.execute(
        "SELECT e.seq, gate_id, type, ts, wall_synced, lane_id, saga_id, saga_key, data, "
        "o.seq FROM events e LEFT JOIN outbox o ON o.seq = e.seq ORDER BY e.seq")]


def test_write_many_writes_the_rows_append_many_writes(tmp_path: Path) -> None:
    by_append, by_write = Database(tmp_path / "a.sqlite3"), Database(tmp_path / "w.sqlite3")
    for n in (1, 3, 450):  # 450: more than one statement's worth of rows
        with by_append.transaction() as conn:
            envelopes = events.append_many(conn, _rows(n))
        with by_write.transaction() as conn:
            events.write_many(conn, _rows(n))
        assert [e["data"]["i"] for e in envelopes] == list(range(n))
    written = _table(by_write)
    assert written == _table(by_append)
    assert [r[0] for r in written] == list(range(1, 455))  # consecutive seqs, all queued
    assert all(r[-1] == r[0] for r in written)
    ids = [r[0] for r in by_write.conn.execute("SELECT event_id FROM events")]
    assert len(set(ids)) == len(ids) == 454
    by_append.close()
    by_write.close()


async def test_a_refused_allocation_keeps_the_verification_in_the_log(sim_central, tmp_path):
    settings = parse_settings(f"""
[gate]
id = "g1"
data_dir = "{tmp_path}"
[central]
base_urls = ["{sim_central.url}"]
[backup]
enabled = false
[simulation]
enabled = true
[policy]
anti_passback = "deny"
[[zones]]
name = "A"
spaces = 3
[[lanes]]
id = "entry-1"
direction = "entry"
""", "test.toml")
    store = await Store.open(settings.database_path, settings.zone_specs())
    session = central_session(settings)
    clock = SystemClock()
    runner = build_runner(settings, store, build_registry(settings, session, clock,
                                                          InstantGate()), clock)
    try:
        first = await runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": "34ABC123"})
        assert first.succeeded, first.reason
        # the allocation's transaction (with the verification's record waiting in the
        # batch) is rolled back: the record is written by the commit after it
        out = await runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": "34ABC123"})
        assert out.status == "compensated" and "anti_passback" in out.reason
        logged = {sid: await store.read(partial(_steps_of, saga_id=sid))
                  for sid in (first.saga_id, out.saga_id)}
        saga = await store.read(lambda c: saga_log.get(c, out.saga_id))
        seen = await store.read(lambda c: events.for_saga(c, out.saga_id))
    finally:
        await session.close()
        await store.close()
    # the first saga: each step's record once, in the order of the steps (the create's and
    # the barrier's written "started" before they ran, then updated)
    assert [tuple(r)[:4] for r in logged[first.saga_id]] == [
        (i, "forward", step.name, "succeeded") for i, step in enumerate(ENTRY.steps)]
    assert saga is not None and saga["status"] == "compensated"
    refused = logged[out.saga_id]
    assert [tuple(r)[:5] for r in refused] == [
        (0, "forward", "verify_license_plate", "succeeded", "central"),
        (1, "forward", "allocate_parking_space", "failed", "")]
    assert "anti_passback" in refused[1]["error"]
    assert [e["type"] for e in seen] == ["plate_read", "entry_granted", "saga_compensated"]


async def test_each_saga_of_a_table_not_the_daemons_logs_its_own_steps(tmp_path):
    three = SagaDefinition("entry", tuple(s for s in ENTRY.steps if s.service != GATE_SERVICE))
    two = SagaDefinition("entry", three.steps[:2])
    store = await Store.open(tmp_path / "g.sqlite3", [ZoneSpec("A", 10)])
    runner = SagaRunner(store, default_registry(), SystemClock(), gate_id="g")
    ran = []
    try:
        for n, definition in enumerate((three, three, EXIT, two, three)):
            out = await runner.run(definition, {"lane_id": "l", "license_plate": f"34AB{n:03d}"})
            ran.append((definition, await store.read(partial(saga_log.get,
                                                             saga_id=out.saga_id))))
    finally:
        await store.close()
    for definition, saga in ran:
        assert saga is not None
        # the daemon's own tables are found by name; any other is kept in the log
        assert ("_steps" in saga["context"]) is (definition is not EXIT)
        assert _definition_of(saga) == definition
