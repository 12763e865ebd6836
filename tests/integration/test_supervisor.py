"""Background tasks under the supervisor (issue 9, item 11), with the real gateway: its real
SQLite database locked by an outside ``sqlite3`` connection holding ``BEGIN EXCLUSIVE``, so
that the housekeeping's writes fail after ``busy_timeout``. The task is restarted with
backoff, named by ``/healthz`` (503) and ``/api/status``, the systemd watchdog is no longer
fed, and all of it recovers once the lock is released."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import gateway.app
from gateway.app import Gateway, _watchdog
from gateway.core.backoff import BackoffSchedule
from gateway.core.supervision import RestartPolicy
from gateway.settings import parse_settings
from gateway.sim.central import SimCentralState
from tests.broker import Broker
from tests.conftest import start_central
from tests.e2e.daemon import e2e_config, until

EXTRA = """
[store]
busy_timeout_ms = 100
[telemetry]
enabled = false
"""
FAST = RestartPolicy(backoff=BackoffSchedule(initial_s=0.05, max_delay_s=0.2, jitter=0.5,
                                             retries=None),
                     failing_after=3, stable_after_s=1.2, watchdog_grace_s=0.8)


@contextmanager
def locked(path: str) -> Iterator[None]:
    """Another process's ``sqlite3`` shell holding the database: writers wait
    ``busy_timeout``, then fail with 'database is locked'."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


class Running:
    def __init__(self, gw: Gateway, sock: socket.socket, http: aiohttp.ClientSession) -> None:
        self.gw = gw
        self.sock = sock
        self.http = http
        self.url = f"http://127.0.0.1:{gw.web_port}"
        self.stopped = False

    async def stop(self) -> None:
        self.stopped = True
        await self.gw.stop()

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(self.url + path) as resp:
            return resp.status, await resp.json()

    def notifications(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return out


@asynccontextmanager
async def gateway_running(tmp_path: Path, extra: str) -> AsyncIterator[Running]:
    notify = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(notify)
    sock.setblocking(False)
    central = await start_central(SimCentralState())
    settings = parse_settings(e2e_config(tmp_path / "data", central.url, extra=extra),
                              env={"NOTIFY_SOCKET": notify})
    gw = Gateway(settings)
    gw.supervisor.policy = FAST
    running: Running | None = None
    try:
        await gw.start()
        async with aiohttp.ClientSession() as http:
            running = Running(gw, sock, http)
            yield running
    finally:
        if running is None or not running.stopped:
            await gw.stop()
        await central.runner.cleanup()
        sock.close()


@pytest.fixture
async def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Running]:
    monkeypatch.setattr(gateway.app, "HOUSEKEEPING_INTERVAL_S", 0.05)  # a pass every 50 ms
    async with gateway_running(tmp_path, EXTRA) as r:
        yield r


async def test_a_locked_database_fails_housekeeping_which_is_restarted_reported_and_recovers(
        running: Running) -> None:
    gw = running.gw
    assert (await running.get("/healthz"))[0] == 200
    status = (await running.get("/api/status"))[1]
    assert status["tasks"]["recovery"]["state"] == "done"
    assert status["tasks"]["housekeeping"]["state"] == "running"
    # fed every 0.3 s (the daemon: every WatchdogSec / 2), longer than a locked write waits
    watchdog = asyncio.create_task(_watchdog(gw, 0.3))
    try:
        await until(lambda: any("WATCHDOG=1" in m for m in running.notifications()), 5)

        with locked(gw.settings.database_path):
            async def reported() -> Any:
                code, body = await running.get("/healthz")
                return code == 503 and any("housekeeping" in p for p in body["problems"])
            await until(reported, 10)
            code, body = await running.get("/healthz")
            assert code == 503 and not body["healthy"]
            [problem] = [p for p in body["problems"] if "housekeeping" in p]
            assert "database is locked" in problem
            task = (await running.get("/api/status"))[1]["tasks"]["housekeeping"]
            assert task["failing"] and task["restarts"] >= 2 and task["failures"] >= 3
            assert "database is locked" in task["last_error"]
            # while it keeps failing the watchdog is not fed: systemd restarts the daemon
            await asyncio.sleep(0.4)
            assert any("STATUS=task housekeeping: failing" in m
                       for m in running.notifications())  # what `systemctl status` shows
            await asyncio.sleep(1.0)
            assert not any("WATCHDOG=1" in m for m in running.notifications())
            assert (await running.get("/healthz"))[0] == 503
            failures_while_locked = task["failures"]

        # released: the next restart succeeds and, once it has run for a while, it is healthy
        async def healthy() -> Any:
            return (await running.get("/healthz"))[0] == 200
        await until(healthy, 10)
        task = (await running.get("/api/status"))[1]["tasks"]["housekeeping"]
        assert task["state"] == "running" and not task["failing"]
        assert task["failures"] >= failures_while_locked
        await until(lambda: any("WATCHDOG=1" in m for m in running.notifications()), 5)
    finally:
        watchdog.cancel()
        await asyncio.gather(watchdog, return_exceptions=True)
    # the daemon stops cleanly: a cancel at shutdown is no failure
    failures = gw.supervisor.tasks["housekeeping"].failures
    await running.stop()
    assert gw.supervisor.tasks["housekeeping"].state == "stopped"
    assert gw.supervisor.tasks["housekeeping"].failures == failures


async def test_the_telemetry_drain_failing_to_mark_events_sent_is_restarted_and_recovers(
        tmp_path: Path) -> None:
    """A real Mosquitto: events wait in the outbox while the broker is down; it comes back
    while the database is locked, so the drain publishes them, the broker acknowledges, and
    removing them from the outbox fails. The drain is restarted (sending them again: at
    least once), reported, and empties the outbox once the lock is gone."""
    broker = Broker(tmp_path)
    await broker.start()
    extra = f"""
[store]
busy_timeout_ms = 100
[mqtt]
port = {broker.port}
[telemetry]
state_min_interval_s = 0.05
"""
    try:
        async with gateway_running(tmp_path, extra) as running:
            gw = running.gw
            assert gw.mqtt is not None

            async def outbox(pending: int) -> bool:
                return bool((await running.get("/api/status"))[1]["outbox"]["pending"]
                            == pending)

            await until(lambda: gw.mqtt is not None and gw.mqtt.connected, 10)
            await until(lambda: outbox(0), 10)
            await broker.stop()
            await until(lambda: gw.mqtt is not None and not gw.mqtt.connected, 10)
            for i in range(5):
                await gw.store.record_event(gw.clock, gw.settings.gate.id, "test", {"i": i})
            assert await outbox(5)

            with locked(gw.settings.database_path):
                await broker.start()

                async def reported() -> Any:
                    code, body = await running.get("/healthz")
                    return code == 503 and any("task telemetry events: failing" in p
                                               for p in body["problems"])
                await until(reported, 20)
                task = (await running.get("/api/status"))[1]["tasks"]["telemetry events"]
                assert task["restarts"] >= 2 and "database is locked" in task["last_error"]
                assert await outbox(5)  # nothing lost
                others = (await running.get("/api/status"))[1]["tasks"]
                assert not others["telemetry state"]["failing"]

            async def healthy() -> Any:
                return (await running.get("/healthz"))[0] == 200
            await until(healthy, 20)
            await until(lambda: outbox(0), 10)
            assert gw.publisher is not None and gw.publisher.published >= 5
    finally:
        await broker.stop()


async def test_the_telemetry_is_stopped_before_the_lanes_pins_are_freed(tmp_path: Path) -> None:
    """The state snapshot reads each lane's pins: a telemetry task still running when the pins
    are closed (a lane's stop wakes it) fails with gpiozero's GPIODeviceClosed. At the moment
    any lane's devices are released, every telemetry task must be over."""
    broker = Broker(tmp_path)
    await broker.start()
    try:
        async with gateway_running(tmp_path, f"[mqtt]\nport = {broker.port}\n") as running:
            gw = running.gw
            assert gw.publisher is not None and gw.devices
            await until(lambda: gw.mqtt is not None and gw.mqtt.connected, 10)
            still_running: list[str] = []
            for devices in gw.devices.values():
                def release(real: Any = devices.release) -> None:
                    assert gw.publisher is not None
                    still_running.extend(t.get_name() for t in gw.publisher._tasks
                                         if not t.done())
                    real()
                devices.release = release  # type: ignore[method-assign]
            await running.stop()
            assert still_running == []
    finally:
        await broker.stop()
