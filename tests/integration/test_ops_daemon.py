"""The operations commands against a running gate: one daemon process for the module (the
sim world, real vehicles through the sim API, its own database in WAL mode), and the real
command line (``python -m gateway status|backup|export``) as the operator runs it.

- ``status``: the page's summary from the local API; exit 0 healthy, 1 needs attention (a
  real fault: the daemon's disk "fills" and a write fails), 2 unreachable.
- ``backup``: copies taken while vehicles keep coming (the daemon writing all the time) are
  whole and consistent (integrity check, the gateway's own Database opens them, the saga
  counters the triggers keep agree with the rows: one snapshot), an existing file is kept
  unless --force, no temporary file is left.
- ``export``: read-only from the live database while it runs; what it writes agrees with
  the daemon's own API.
About 20 s in all (one daemon start, about 14 vehicles, 8 command runs).
"""

from __future__ import annotations

import asyncio
import csv
import json
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from gateway.sim.central import SimCentralState
from gateway.store.db import Database
from gateway.store.schema import LATEST_VERSION
from tests.broker import free_port
from tests.conftest import start_central
from tests.e2e.daemon import ADMIN_TOKEN, ROOT, Daemon, e2e_config, get, until

pytestmark = pytest.mark.asyncio(loop_scope="module")
TOKEN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Gate:
    def __init__(self, daemon: Daemon, http: aiohttp.ClientSession, config: Path) -> None:
        self.daemon, self.http, self.config = daemon, http, config
        self.url = daemon.url

    async def drive(self, lane: str, plate: str, behaviour: str = "pass") -> str:
        """One vehicle through the sim API; its status once the world is done with it."""
        async with self.http.post(f"{self.url}/api/sim/lanes/{lane}/vehicles",
                                  json={"plate": plate, "behaviour": behaviour}) as resp:
            assert resp.status == 202, await resp.text()
            vid = (await resp.json())["vehicle_id"]

        async def finished() -> Any:
            v = await get(self.http, f"{self.url}/api/sim/vehicles/{vid}")
            return v["status"] if v.get("status") in ("passed", "left") else None
        status = await until(finished, 20, f"{plate} through {lane}")

        async def idle() -> bool:
            lanes = (await get(self.http, f"{self.url}/api/status"))["lanes"]
            return any(x["id"] == lane and x["state"] == "idle" for x in lanes)
        await until(idle, 10, f"{lane} at rest")
        return str(status)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gate(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gate]:
    tmp = tmp_path_factory.mktemp("ops")
    central = await start_central(SimCentralState(blocked={"66BAD66"}))
    config = tmp / "gateway.toml"
    config.write_text(e2e_config(tmp / "data", central.url, spaces=40))
    daemon = Daemon(config)
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as http:
            g = Gate(daemon, http, config)
            assert await g.drive("entry-1", "34ABC123") == "passed"
            assert await g.drive("entry-1", "66BAD66") == "left"  # blocked: denied
            assert await g.drive("exit-1", "34ABC123") == "passed"
            yield g
    finally:
        try:
            assert await daemon.stop() == 0, "\n".join(daemon.log[-40:])
        finally:
            await central.runner.cleanup()


async def cli(*args: str) -> tuple[int, str, str]:
    """The real command line, as a separate process (the daemon's log keeps being read
    meanwhile: this waits on the event loop)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# -- status -------------------------------------------------------------------------------
async def test_status_of_a_healthy_gate(gate: Gate) -> None:
    code, out, err = await cli("status", "--url", gate.url)
    assert code == 0, out + err
    for words in ("gate e2e-gate", "(clock synchronised)", "HEALTHY", "Services", "central",
                  "storage       database", "Occupancy",
                  "40 free of 40", "zone A", "entry-1", "exit-1", "barrier closed",
                  "Last vehicles", "34ABC123", "let out", "let in",
                  "turned away: not authorized: blocked"):
        assert words in out, (words, out)
    assert "\x1b" not in out  # a pipe is not a terminal: no colour


async def test_status_of_an_unreachable_daemon() -> None:
    code, out, err = await cli("status", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 2 and out == ""
    assert "cannot be reached" in err


async def test_status_of_a_gate_that_needs_attention(gate: Gate) -> None:
    """The disk fills (the sim's daemon fault: SQLite may not grow) and a write fails: the
    daemon says so until a write commits again, and so does ``status``."""
    url = gate.url

    async def fault(full: bool) -> None:
        async with gate.http.post(f"{url}/api/sim/faults", json={"disk_full": full},
                                  headers=TOKEN) as resp:
            assert resp.status == 200, await resp.text()

    async def set_space(state: str) -> int:
        async with gate.http.post(f"{url}/api/spaces/A-040/state", headers=TOKEN,
                                  json={"state": state, "who": "test", "why": "ops"}) as r:
            return r.status

    await fault(True)
    try:
        # fill the last free page, then a write that needs a new one fails
        for _ in range(200):
            if await set_space("out_of_service") >= 500 or await set_space("free") >= 500:
                break
        code, out, _ = await cli("status", "--url", url)
        assert code == 1, out
        assert "NEEDS ATTENTION" in out and "store: disk full" in out
    finally:
        await fault(False)
    assert await set_space("free") == 200  # a write commits: healthy again
    code, out, _ = await cli("status", "--url", url)
    assert code == 0, out


# -- backup -------------------------------------------------------------------------------
def check_copy(path: Path) -> dict[str, int]:
    """A whole, consistent copy: the integrity check passes, the gateway's own Database
    opens it, and the saga counts the triggers keep agree with the rows (a copy torn
    between two transactions would disagree)."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one file
        rows = dict(conn.execute("SELECT status, count(*) FROM sagas GROUP BY status"))
        kept = {name.removeprefix("sagas.status."): value for name, value in conn.execute(
            "SELECT name, value FROM counters WHERE name LIKE 'sagas.status.%' AND value")}
        # the terminal statuses are kept counters (those in flight are counted: migration 10)
        assert {s: n for s, n in rows.items() if s not in ("running", "compensating")} == kept
        sessions = conn.execute("SELECT count(*) FROM vehicle_sessions").fetchone()[0]
        last_seq = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
    finally:
        conn.close()
    db = Database(path)
    try:
        assert db.version == LATEST_VERSION
        assert db.query("SELECT count(*) AS n FROM sagas")[0]["n"] == sum(rows.values())
    finally:
        db.close()
    return {"sagas": sum(rows.values()), "sessions": sessions, "events": last_seq}


async def test_backups_taken_while_vehicles_come_are_whole(gate: Gate,
                                                           tmp_path: Path) -> None:
    done: list[str] = []

    async def traffic(lane: str, prefix: str) -> None:
        for i in range(40):
            await gate.drive(lane, f"{prefix}{i:03d}")
            done.append(lane)

    drivers = [asyncio.create_task(traffic("entry-1", "35BK")),
               asyncio.create_task(traffic("exit-1", "35BK"))]
    copies = []
    try:
        await until(lambda: len(done) >= 2, 30, "vehicles moving")
        for n in range(3):  # while vehicles keep coming on both lanes
            dest = tmp_path / f"copy-{n}.sqlite3"
            code, out, err = await cli("backup", str(dest), "--config", str(gate.config))
            assert code == 0, out + err
            assert "integrity ok" in out
            copies.append(dest)
            with closing(sqlite3.connect(f"file:{dest}?mode=ro", uri=True)) as conn:
                last = conn.execute("SELECT max(seq) FROM events").fetchone()[0]

            async def written_since(after: int = last) -> Any:
                return await get(gate.http, f"{gate.url}/api/events?after_seq={after}&limit=1")
            await until(written_since, 30, "an event after the copy")  # the next copy has it
        moved = len(done)
    finally:
        for task in drivers:
            task.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)
    assert moved >= 4, "the backups must run while the daemon writes"
    counts = [check_copy(c) for c in copies]
    assert [c["events"] for c in counts] == sorted({c["events"] for c in counts}), counts
    assert [c["sagas"] for c in counts] == sorted(c["sagas"] for c in counts), counts
    assert counts[0]["sagas"] >= 3, counts
    assert names(tmp_path) == [c.name for c in copies]  # no temporary file left


async def test_backup_keeps_an_existing_file_unless_forced(gate: Gate,
                                                           tmp_path: Path) -> None:
    dest = tmp_path / "gateway.sqlite3"
    dest.write_bytes(b"yesterday's backup")
    code, _, err = await cli("backup", str(dest), "--config", str(gate.config))
    assert code == 1 and "already exists" in err and "--force" in err
    assert dest.read_bytes() == b"yesterday's backup"
    code, out, err = await cli("backup", str(dest), "--config", str(gate.config), "--force")
    assert code == 0, out + err
    assert check_copy(dest)["sessions"] >= 1
    # into a directory: a file named by the time
    code, out, err = await cli("backup", str(tmp_path), "--config", str(gate.config))
    assert code == 0, out + err
    named = [n for n in names(tmp_path) if n.startswith("gateway-")]
    assert len(named) == 1 and named[0].endswith(".sqlite3")
    assert names(tmp_path) == sorted(["gateway.sqlite3", named[0]])


# -- export -------------------------------------------------------------------------------
def _days() -> tuple[str, str]:
    """Yesterday to tomorrow (UTC): every record of this test, even across midnight."""
    today = datetime.now(UTC).date()
    return (str(today - timedelta(days=1)), str(today + timedelta(days=1)))


async def test_export_of_the_live_database_agrees_with_the_api(gate: Gate,
                                                               tmp_path: Path) -> None:
    start, end = _days()
    code, out, err = await cli("export", "--from", start, "--to", end, "--what", "all",
                               "--format", "jsonl", "--out", str(tmp_path),
                               "--config", str(gate.config))
    assert code == 0, out + err
    files = {n.split("-")[0]: tmp_path / n for n in names(tmp_path)}
    assert set(files) == {"sessions", "events", "sagas"}
    assert all(p.name.endswith(f"-{start}-{end}.jsonl") for p in files.values())
    events = [json.loads(line) for line in files["events"].read_text().splitlines()]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    api = {e["seq"]: e for e in await get(gate.http, f"{gate.url}/api/events?limit=1000")}
    # the export is one snapshot taken before these were read: every exported event is the
    # daemon's, word for word
    for e in events:
        mine = api[e["seq"]]
        assert (e["type"], e["ts"], e["lane_id"], e["data"]) == (
            mine["type"], mine["ts"], mine["lane_id"], mine["data"])
    sagas = [json.loads(line) for line in files["sagas"].read_text().splitlines()]
    by_id = {s["saga_id"]: s for s in sagas}
    listed = (await get(gate.http, f"{gate.url}/api/vehicles?limit=500"))["vehicles"]
    for v in listed:
        if v["saga_id"] in by_id:
            s = by_id[v["saga_id"]]
            assert (s["plate"], s["status"], s["reason"]) == (
                v["license_plate"], v["status"], v["reason"])
            assert s["compensated"] == v["compensated"]
            if v["source"]:
                assert s["decision_source"] == v["source"]
    blocked = [s for s in sagas if s["plate"] == "66BAD66"]
    assert blocked and blocked[0]["steps"][0]["name"] == "verify_license_plate"
    assert "context" not in blocked[0]  # the camera image stays in the database
    sessions = [json.loads(line) for line in files["sessions"].read_text().splitlines()]
    first = next(s for s in sessions if s["plate"] == "34ABC123")
    assert first["status"] == "exited" and first["entered_at"] < first["exited_at"]


async def test_export_as_csv_to_standard_output(gate: Gate) -> None:
    start, end = _days()
    code, out, err = await cli("export", "--from", start, "--to", end, "--what", "sagas",
                               "--config", str(gate.config))
    assert code == 0, err
    rows = list(csv.DictReader(out.splitlines()))
    assert rows and {"saga_id", "plate", "decision_source", "steps"} <= set(rows[0])
    assert any(r["plate"] == "66BAD66" and r["status"] == "compensated" for r in rows)
    assert f"{len(rows)} sagas from {start}T00:00:00.000+00:00" in err
    code, _, err = await cli("export", "--from", end, "--to", start, "--config",
                             str(gate.config))
    assert code == 1 and "is not before" in err
