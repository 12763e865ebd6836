"""The local permit list (issue 10, item 4) with real components: the sim central on
127.0.0.1 serving ``GET /v1/permits``, SQLite in ``tmp_path``, the real runner, chain and
``PermitSync``. Plates always let in are asked for when nothing else answers (central down,
no backup, nothing cached), before the lane's policy."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from gateway.clock import SystemClock
from gateway.sagas.permit_sync import PermitSync
from gateway.store import permits
from gateway.store.schema import MIGRATIONS
from tests.integration.test_offline_queue_faults import World, make_world


def stamp(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat(timespec="seconds")


def permit_sync(w: World) -> PermitSync:
    return PermitSync(w.store, w.sync.central, SystemClock(), gate_id="g1", deadline_s=2.0)


async def test_the_list_is_synced_since_the_last_answer_and_keeps_revocations(tmp_path):
    async with make_world(tmp_path) as w:
        w.central.permit_list = {"34RES1": ("resident", None, None),
                                 "06DEL2": ("delivery", stamp(-1), stamp(1))}
        sync = permit_sync(w)
        assert await sync.sync_once()
        rows = {r["plate"]: r for r in await w.store.read(permits.list_all)}
        assert rows["34RES1"]["kind"] == "resident" and rows["06DEL2"]["kind"] == "delivery"
        first_as_of = await w.store.read(permits.as_of)
        assert first_as_of
        w.central.revoked.add("34RES1")
        assert await sync.sync_once()
        assert w.central.permit_requests == ["", first_as_of]  # since = the last as_of
        rows = {r["plate"]: r for r in await w.store.read(permits.list_all)}
        assert rows["34RES1"]["deleted"] == 1
        assert await w.store.read(lambda c: permits.valid(c, "34RES1", 0, False)) is None


async def test_a_malformed_permit_reply_changes_nothing(tmp_path):
    async with make_world(tmp_path) as w:
        w.central.permit_list = {"34RES1": ("resident", None, None)}
        sync = permit_sync(w)
        assert await sync.sync_once()
        before = await w.store.read(permits.list_all)
        await w.fault("garbage")
        assert not await sync.sync_once()
        assert sync.failures == 1 and "malformed" in sync.last_error
        assert await w.store.read(permits.list_all) == before


async def test_a_permit_holder_enters_on_the_local_list_when_nothing_answers(tmp_path):
    async with make_world(tmp_path) as w:
        w.central.permit_list = {"34RES1": ("resident", None, None),
                                 "06DEL2": ("delivery", stamp(-3), stamp(-1))}  # window over
        assert await permit_sync(w).sync_once()
        await w.fault("refuse")  # central down, no backup, nothing cached for these plates
        resident = await w.entry("34RES1")
        assert resident.status == "completed", resident.reason
        assert resident.sources["verify_license_plate"] == "permits"
        assert resident.results["verify_license_plate"]["permit_kind"] == "resident"
        late = await w.entry("06DEL2")  # its delivery window has closed: the policy (deny)
        assert late.status == "compensated"
        stranger = await w.entry("99ZZZ99")
        assert stranger.status == "compensated"
        assert "verify_license_plate" not in stranger.sources


async def test_a_misread_permit_plate_matches_only_with_the_tolerance_and_only_one(tmp_path):
    async with make_world(tmp_path) as w:
        w.central.permit_list = {"34RES12": ("resident", None, None),
                                 "34RAS13": ("staff", None, None)}
        assert await permit_sync(w).sync_once()
        await w.fault("refuse")
        assert (await w.entry("34RES72")).status == "compensated"  # no tolerance configured
        w.runner.chain.permit_misread_tolerance = True
        read = await w.entry("34RES72")  # one character off 34RES12 only
        assert read.status == "completed", read.reason
        assert read.results["verify_license_plate"]["license_plate"] == "34RES12"
        assert read.results["verify_license_plate"]["misread_of"] == "34RES72"
        # one character off two permits: ambiguous, no guessing
        assert (await w.entry("34RAS12")).status == "compensated"


def test_validity_windows_and_an_unsynchronised_clock(tmp_path):
    conn = sqlite3.connect(tmp_path / "p.db")
    conn.row_factory = sqlite3.Row
    for migration in MIGRATIONS:
        conn.executescript(migration)
    now = datetime.now(UTC).timestamp()
    permits.apply_central(conn, [
        {"license_plate": "RES1", "kind": "resident", "valid_from": stamp(-24)},
        {"license_plate": "DEL1", "kind": "delivery", "valid_from": stamp(-1),
         "valid_until": stamp(1)},
        {"license_plate": "NEW1", "kind": "staff", "valid_from": stamp(2)},
    ], as_of=stamp(0), now=stamp(0))
    assert permits.valid(conn, "RES1", now, True) is not None
    assert permits.valid(conn, "DEL1", now, True) is not None
    assert permits.valid(conn, "DEL1", now + 7200, True) is None  # its window is over
    assert permits.valid(conn, "NEW1", now, True) is None  # not yet
    # a Pi that started in 1970: only permits with no end count, whatever their start
    assert permits.valid(conn, "RES1", 0.0, False) is not None
    assert permits.valid(conn, "NEW1", 0.0, False) is not None
    assert permits.valid(conn, "DEL1", 0.0, False) is None
    # the gate's own entry wins over the central one, and is the gate's to delete
    permits.put_local(conn, "DEL1", kind="resident", valid_from=None, valid_until=None,
                      note="moved in", now=stamp(0))
    hit = permits.valid(conn, "DEL1", now + 7200, True)
    assert hit is not None and hit["source"] == "local"
    assert permits.delete_local(conn, "DEL1") and not permits.delete_local(conn, "DEL1")
    assert permits.valid(conn, "DEL1", now + 7200, True) is None
