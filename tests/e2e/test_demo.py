"""The demo shows everything: the embedded demo configuration, run as a process (its data
dir in a temporary directory, the web page on a free port, the sim central on a free
port), starts a private Mosquitto and the sim backup service on it, so every service is
online; then the README's walk-through (everything online: the gate reads the plate itself
and central decides; central in blackhole: the backup decides and the breaker opens; the
backup silent too: the cache decides and the record is queued, a new plate at the entry is
refused; both back: the queue drains and central decides again); what the gate did reaches
central monitoring on the private broker (the events, Home Assistant's discovery); a stop
leaves neither the broker running nor a relay energised."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.core.errors import ConfigError
from gateway.settings import parse_settings
from gateway.sim.private_broker import PrivateBroker
from gateway.telemetry.mqtt import MqttConnection, MqttOptions
from hardware.sim import board_path
from tests.e2e.daemon import Daemon, demo_config, get, until

PLATE = "34KLM257"  # no O or I: the entry's reader may take them for 0 and 1
FIRST, STRANGER, LAST = "06TRK742", "35DYZ918", "16VNH503"  # far from PLATE and each other
QUEUE_S = 120  # behind at most 3 of the demo's own vehicles, each that stalls holds ~20 s




def alive(pid: int) -> bool:
    """Running (a zombie nobody has reaped yet is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def broker_pid(daemon: Daemon) -> int:
    m = next(re.search(r"mosquitto pid (\d+)", line) for line in daemon.log
             if "mosquitto pid" in line)
    assert m is not None
    return int(m.group(1))


def broker_port(daemon: Daemon) -> int:
    m = next(re.search(r"mosquitto pid \d+\) on 127\.0\.0\.1:(\d+)", line)
             for line in daemon.log if "mosquitto pid" in line)
    assert m is not None
    return int(m.group(1))


def online(status: dict[str, Any]) -> bool:
    s = status["services"]
    return bool(s["central"]["circuit"] == "closed" and s["backup"]["circuit"] == "closed"
                and s["mqtt"]["connected"])


@pytest.mark.timeout(900)  # the five steps, each queued behind the demo's own traffic
async def test_the_demo_starts_every_service_and_shows_each_fallback(
        tmp_path: Path) -> None:
    daemon = Daemon(demo_config(tmp_path), cut_model=False)  # a first start, as make demo's
    await daemon.start()
    pid = 0
    monitoring: MqttConnection | None = None
    try:
        pid = broker_pid(daemon)
        assert alive(pid)
        assert (tmp_path / "data" / "mosquitto" / "mosquitto.conf").exists()
        # central monitoring and Home Assistant, as they would subscribe to the broker
        published: dict[str, list[dict[str, Any]]] = {"events": [], "discovery": []}
        monitoring = MqttConnection(MqttOptions("127.0.0.1", broker_port(daemon),
                                                client_id="monitoring"))
        monitoring.subscribe("parking/gates/demo-gate/events", lambda m: published[
            "events"].append(json.loads(m.payload)))
        monitoring.start()
        await monitoring.wait_connected()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            try:
                await _walk_through(http, daemon.url)
            except (TimeoutError, AssertionError):  # what the gate did, to tell why
                print("\n".join(daemon.log[-80:]))
                for plate in (FIRST, PLATE, STRANGER, LAST):
                    print(plate, json.dumps(await _story(http, daemon.url, plate)))
                print("world", json.dumps(await get(http, f"{daemon.url}/api/sim/world")))
                print("lanes", json.dumps((await get(http, f"{daemon.url}/api/status"))["lanes"]))
                raise
            mine = await until(lambda: [e for e in published["events"] if e["type"]
                                        in ("vehicle_entered", "vehicle_exited")
                                        and e["data"].get("license_plate") == PLATE]
                               if len(published["events"]) else None, 15)
            # what monitoring got is what the gate recorded, in its order
            recorded = {e["seq"]: e for e in await get(http, f"{daemon.url}/api/events"
                                                       "?limit=1000")}
            # Home Assistant, started later, finds the gate's entities (retained configs)
            hass = MqttConnection(MqttOptions("127.0.0.1", broker_port(daemon),
                                              client_id="home-assistant"))
            hass.subscribe("homeassistant/+/+/+/config", lambda m: published[
                "discovery"].append({"topic": m.topic, "retained": bool(m.retain)}))
            hass.start()
            try:
                await until(lambda: len(published["discovery"]) >= 4, 10, "discovery")
            finally:
                await hass.stop()
        assert [e["type"] for e in mine][:2] == ["vehicle_entered", "vehicle_exited"]
        assert all(recorded[e["seq"]]["event_id"] == e["event_id"] for e in mine)
        seqs = [e["seq"] for e in published["events"]]
        assert seqs == sorted(set(seqs)), "events out of order or twice"
        found = published["discovery"]
        assert found and all(d["retained"] for d in found), found
        assert any("/demo-gate" in d["topic"] or "demo_gate" in d["topic"] for d in found)
    finally:
        if monitoring is not None:
            await monitoring.stop()
        code = await daemon.stop()
    assert code == 0, "\n".join(daemon.log[-30:])
    assert pid and not alive(pid), "the private broker outlived the daemon"
    for lane in ("entry-1", "exit-1"):
        levels = json.loads(board_path(tmp_path / "data", lane).read_text())
        assert not any(levels.values()), (lane, levels)


async def _walk_through(http: aiohttp.ClientSession, url: str) -> None:
    """The README's steps: every service online, the gate reads the plate and central
    decides; central in blackhole, the backup decides and the breaker opens; the backup
    silent too, a parked car leaves on the cache and its record is queued, a new plate at
    the entry is refused; both back, the queue drains and central decides again."""
    # the entry's camera gives frames only: wait for the gate's own reader, or the plate
    # goes to the services as an image that the backup cannot read
    # (its first start cuts the recogniser first: seconds on a loaded machine)
    status = await until(lambda: _status_if(
        http, url, lambda s: online(s) and bool(s["plate_reader"]["ready"])), 60)
    assert status["sim_backup"]["mode"] == "ok"
    assert not [p for p in status["problems"] if "private broker" in p]
    # the demo's first start cut the recogniser to plate characters, in its data directory
    model = status["plate_reader"]["model"]
    assert model["slim"] and "made now" in model["note"], model
    # each vehicle the test sends queues behind the demo's own traffic (a car every 5 s per
    # lane, at most 3 waiting): one that stalls under the arm or is turned away holds the
    # lane for its driver's patience, so the wait in the queue is not bounded by the gate;
    # once the vehicle comes up the lane (the lane free: the last vehicle decided and
    # gone), the next vehicle the gate decides is it, within its deadlines
    decided_s = 30
    # step 2: the gate reads the plate from the camera's frames, central decides
    after = await _drive_up(http, url, "entry-1", FIRST)
    first = await until(lambda: _next_entry(http, url, after), decided_s, every_s=0.1)
    assert first["type"] == "saga_completed", first
    assert first["data"]["sources"]["verify_license_plate"] == "central", first
    verify = await _verify_step(http, url, first["data"]["saga_id"])
    assert verify["result"]["reading"]["source"] == "local", verify
    await _post(http, f"{url}/api/sim/central/fault", {"mode": "blackhole"})
    mark = await _drive_up(http, url, "entry-1", PLATE, after)
    entry = await until(lambda: _saga_of(http, url, mark, "entry"), decided_s, every_s=0.1)
    assert entry["type"] == "saga_completed", entry
    assert entry["data"]["sources"]["verify_license_plate"] == "backup", entry
    assert entry["data"]["sources"]["create_entry_record"] == "backup", entry
    await until(lambda: _status_if(
        http, url, lambda s: s["services"]["central"]["circuit"] == "open"), 15, every_s=0.1)
    await _post(http, f"{url}/api/sim/backup/fault", {"mode": "blackhole"})
    mark = await _drive_up(http, url, "exit-1", PLATE, mark)
    exit_ = await until(lambda: _saga_of(http, url, mark, "exit"), decided_s, every_s=0.1)
    assert exit_["type"] == "saga_completed", exit_
    assert exit_["data"]["sources"]["verify_license_plate"] == "cache", exit_
    assert exit_["data"]["sources"]["create_exit_record"] == "queue", exit_
    # a plate nobody can verify is refused at the entry (entry_when_unverifiable = "deny")
    mark = await _drive_up(http, url, "entry-1", STRANGER, mark)
    refused = await until(lambda: _denied(http, url, mark), decided_s, every_s=0.1)
    assert refused["data"]["reason"].startswith("unverifiable"), refused
    await _post(http, f"{url}/api/sim/backup/fault", {"mode": "ok"})
    await _post(http, f"{url}/api/sim/central/fault", {"mode": "ok"})
    await until(lambda: _status_if(http, url, lambda s: s["offline_queue"]["pending"] == 0
                                   and s["services"]["central"]["circuit"] == "closed"),
                20, every_s=0.1)
    # step 5: the next vehicle is decided by central again
    mark = await _drive_up(http, url, "entry-1", LAST, mark)
    last = await until(lambda: _next_entry(http, url, mark), decided_s, every_s=0.1)
    assert last["data"]["sources"]["verify_license_plate"] == "central", last


async def _drive_up(http: aiohttp.ClientSession, url: str, lane: str, plate: str,
                    since: int = 0) -> int:
    """A vehicle for ``lane``, and the wait until it comes up the lane (out of the queue the
    demo's own traffic may have built); returns the newest event's seq read before the last
    look that still saw it queued: every event of the vehicle comes after it (``since``: a
    seq already seen, where the reading starts)."""
    mark = await _last_seq(http, url, since)  # if it comes up at once: nothing of it yet
    async with http.post(f"{url}/api/sim/lanes/{lane}/vehicles", json={"plate": plate}) as r:
        assert r.status == 202, await r.text()
        vehicle = (await r.json())["vehicle_id"]

    async def up() -> bool:
        nonlocal mark
        seen = await _last_seq(http, url, mark)  # before the look: nothing of it yet
        queued = (await get(http, f"{url}/api/sim/vehicles/{vehicle}"))["status"] == "queued"
        if queued:
            mark = seen
        return not queued
    await until(up, QUEUE_S, f"{plate} out of {lane}'s queue", every_s=0.05)
    return mark


async def _last_seq(http: aiohttp.ClientSession, url: str, after: int) -> int:
    """The newest event's seq, read on from ``after`` (a seq already seen, or 0)."""
    while page := await get(http, f"{url}/api/events?after_seq={after}&limit=1000"):
        after = page[-1]["seq"]
    return after


async def _post(http: aiohttp.ClientSession, url: str, body: dict[str, Any],
                expect: int = 200) -> None:
    async with http.post(url, json=body) as resp:
        assert resp.status == expect, await resp.text()


async def _saga_of(http: aiohttp.ClientSession, url: str, after: int, kind: str,
                   plate: str = PLATE) -> dict[str, Any] | None:
    """The finished saga of ``kind`` that let ``plate`` in or out, after event ``after``."""
    found = await get(http, f"{url}/api/events?after_seq={after}&limit=1000")
    sagas = {e["data"].get("saga_id") for e in found
             if e["type"] in ("vehicle_entered", "vehicle_exited")
             and e["data"].get("license_plate") == plate}
    return next((e for e in found if e["type"].startswith("saga_")
                 and e["data"].get("saga") == kind and e["data"].get("saga_id") in sagas),
                None)


async def _events(http: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    """Every event the gate keeps, oldest first (a page holds 1,000)."""
    found: list[dict[str, Any]] = []
    while page := await get(http, f"{url}/api/events?after_seq="
                            f"{found[-1]['seq'] if found else 0}&limit=1000"):
        found += page
    return found


async def _story(http: aiohttp.ClientSession, url: str, plate: str) -> list[dict[str, Any]]:
    """The events of ``plate``'s sagas (and any naming it), oldest first."""
    found = await _events(http, url)
    sagas = {e["data"].get("saga_id") for e in found if plate in json.dumps(e["data"])}
    sagas.discard(None)
    return [e for e in found
            if plate in json.dumps(e["data"]) or e["data"].get("saga_id") in sagas]


async def _next_entry(http: aiohttp.ClientSession, url: str,
                      after: int) -> dict[str, Any] | None:
    """The first entry saga that let a vehicle in after event ``after``, whatever plate the
    gate read (the demo's own traffic may come first: it is decided the same way)."""
    found = await get(http, f"{url}/api/events?after_seq={after}&limit=1000")
    return next((e for e in found if e["type"] == "saga_completed"
                 and e["data"].get("saga") == "entry"), None)


async def _denied(http: aiohttp.ClientSession, url: str, after: int) -> dict[str, Any] | None:
    """The first vehicle turned away at the entry after event ``after`` (a new plate, or the
    demo's own traffic: none can be verified now)."""
    found = await get(http, f"{url}/api/events?after_seq={after}&limit=1000")
    return next((e for e in found if e["type"] == "entry_denied"), None)


async def _verify_step(http: aiohttp.ClientSession, url: str, saga_id: str) -> dict[str, Any]:
    saga = await get(http, f"{url}/api/sagas/{saga_id}")
    step: dict[str, Any] = next(s for s in saga["steps"]
                                if s["name"] == "verify_license_plate")
    return step


async def _status_if(http: aiohttp.ClientSession, url: str,
                     check: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    status = await get(http, f"{url}/api/status")
    return status if check(status) else None


def test_the_private_broker_and_the_sim_backup_need_simulation() -> None:
    for key in ("private_broker", "start_backup"):
        with pytest.raises(ConfigError) as exc:
            parse_settings(f"[simulation]\nenabled = false\n{key} = true\n", "t.toml")
        assert f"simulation.{key}: only with simulation.enabled = true" in str(exc.value)


async def test_a_missing_mosquitto_is_a_fault_not_a_crash(tmp_path: Path) -> None:
    broker = PrivateBroker(tmp_path, binary=str(tmp_path / "no-such-mosquitto"))
    assert await broker.start() is False
    assert broker.fault.startswith("private broker: cannot run") and broker.pid is None
    await broker.stop()  # nothing to stop, no error


async def test_a_killed_daemon_takes_its_broker_with_it(tmp_path: Path) -> None:
    daemon = Daemon(demo_config(tmp_path))
    await daemon.start()
    pid = broker_pid(daemon)
    assert alive(pid)
    assert await daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    await until(lambda: not alive(pid), 5)
