"""Each service in a chain is called with its own deadline, bounded by the decision
deadline (issue 9, item 1): the sim central on 127.0.0.1 answering garbage, a real
Mosquitto and the sim backup service answering late, but within ``[backup] deadline_s``."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from gateway.clock import SystemClock
from gateway.core.errors import TransientError
from gateway.core.steps import ALTERNATIVE_LICENSE_PLATE_SERVICE, ENTRY
from gateway.sagas.factory import build_registry, build_runner, central_session
from gateway.sagas.runner import SagaRunner
from gateway.services.backup import BackupClient
from gateway.settings import parse_settings
from gateway.sim.backup import SimBackup
from gateway.sim.central import SimCentralState, make_app
from gateway.sim.faults import FaultRequest, Faults, SimServer
from gateway.sim.gate import InstantGate
from gateway.store import Store
from gateway.telemetry.mqtt import MqttConnection, MqttOptions
from tests.broker import Broker

CENTRAL_DEADLINE_S = 0.3
BACKUP_DEADLINE_S = 1.0
BACKUP = ALTERNATIVE_LICENSE_PLATE_SERVICE
Json = dict[str, Any]


class TrackedBackup(SimBackup):
    """The sim backup, keeping its answering tasks (to end them with the test) and
    counting the replies it has sent."""

    def __init__(self, mqtt: MqttConnection, state: SimCentralState | None = None) -> None:
        super().__init__(mqtt, state=state)
        self.tasks: set[asyncio.Task[None]] = set()
        self.answered = 0

    def _on_request(self, msg: paho.MQTTMessage) -> None:
        self.requests += 1
        task = asyncio.get_running_loop().create_task(self._answer(msg))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, msg: paho.MQTTMessage) -> None:
        await super()._answer(msg)
        self.answered += 1


class SwitchingGate(InstantGate):
    """Runs ``before_confirm`` when the passage is to be confirmed (the world changes
    while the vehicle is under the barrier)."""

    def __init__(self, before_confirm: Callable[[], Awaitable[None]]) -> None:
        super().__init__()
        self.before_confirm = before_confirm

    async def call(self, operation: str, payload: Json, *, idempotency_key: str | None,
                   deadline_s: float) -> Json:
        if operation == "confirm_passage":
            await self.before_confirm()
        return await super().call(operation, payload, idempotency_key=idempotency_key,
                                  deadline_s=deadline_s)


@dataclass
class World:
    runner: SagaRunner
    store: Store
    central: SimCentralState
    faults: Faults
    backup: TrackedBackup

    async def steps(self, saga_id: str) -> dict[tuple[str, str], Json]:
        def read(conn: Any) -> dict[tuple[str, str], Json]:
            rows = conn.execute("SELECT * FROM saga_steps WHERE saga_id=?",
                                (saga_id,)).fetchall()
            return {(r["phase"], r["name"]): {**dict(r),
                                              "attempt_log": json.loads(r["attempt_log"])}
                    for r in rows}
        steps: dict[tuple[str, str], Json] = await self.store.read(read)
        return steps


@asynccontextmanager
async def world(tmp_path: Path, *, decision_deadline_s: float, backup_delay_s: float,
                backup_shares_central: bool = False,
                gate: Callable[[Faults], InstantGate] | None = None) -> AsyncIterator[World]:
    broker = Broker(tmp_path)
    await broker.start()
    central_state, faults = SimCentralState(), Faults()
    central = SimServer(make_app(central_state, faults), faults, "127.0.0.1", 0)
    await central.start()
    gate_mqtt = MqttConnection(MqttOptions("127.0.0.1", broker.port, client_id="gate"))
    svc_mqtt = MqttConnection(MqttOptions("127.0.0.1", broker.port, client_id="backup"))
    backup = TrackedBackup(svc_mqtt, central_state if backup_shares_central else None)
    settings = parse_settings(f"""
[gate]
id = "g1"
data_dir = "{tmp_path / 'data'}"
[central]
base_urls = ["{central.url}"]
deadline_s = {CENTRAL_DEADLINE_S}
retry_count = 1
backoff_initial_s = 0.01
decision_deadline_s = {decision_deadline_s}
failure_threshold = 50
[backup]
enabled = true
deadline_s = {BACKUP_DEADLINE_S}
[simulation]
enabled = true
[policy]
entry_when_unverifiable = "deny"
[[zones]]
name = "A"
spaces = 10
[[lanes]]
id = "entry-1"
direction = "entry"
""", "t.toml")
    store = await Store.open(settings.database_path, settings.zone_specs())
    session = central_session(settings)
    client = BackupClient(gate_mqtt, "parking", "g1")
    gate_mqtt.start()
    svc_mqtt.start()
    try:
        await asyncio.wait_for(asyncio.gather(gate_mqtt.wait_connected(),
                                              svc_mqtt.wait_connected()), 10)
        # both subscriptions are live once one request has made the round trip
        for _ in range(50):
            try:
                await client.call("verify_license_plate", {"license_plate": "PROBE1"},
                                  idempotency_key=None, deadline_s=0.2)
                break
            except TransientError:
                continue
        else:
            raise AssertionError("the backup service never answered the probe")
        backup.requests = backup.answered = 0
        backup.mode, backup.delay_s = "slow", backup_delay_s
        clock = SystemClock()
        registry = build_registry(settings, session, clock,
                                  gate(faults) if gate else InstantGate(), client)
        runner = build_runner(settings, store, registry, clock)
        yield World(runner, store, central_state, faults, backup)
    finally:
        for task in list(backup.tasks):
            task.cancel()
        await asyncio.gather(*backup.tasks, return_exceptions=True)
        await faults.set(FaultRequest(mode="ok"))
        await session.close()
        await store.close()
        await gate_mqtt.stop()
        await svc_mqtt.stop()
        await central.stop()
        await broker.stop()


def _given_deadline(error: str) -> float:
    match = re.search(r"no reply within ([0-9.]+)s", error)
    assert match, error
    return float(match.group(1))


async def test_a_slow_backup_is_waited_for_its_own_deadline(tmp_path):
    async with world(tmp_path, decision_deadline_s=2.5, backup_delay_s=0.5) as w:
        await w.faults.set(FaultRequest(mode="garbage"))
        out = await w.runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": "34ABC123"})
        assert out.status == "completed", out.reason
        assert out.sources["verify_license_plate"] == "backup"
        assert out.sources["create_entry_record"] == "backup"
        assert len(w.backup.state.entries) == 1
        steps = await w.steps(out.saga_id)
        for name in ("verify_license_plate", "create_entry_record"):
            log = steps[("forward", name)]["attempt_log"]
            assert [a["outcome"] for a in log if a["service"] != BACKUP] == ["transient"] * 2
            (asked,) = [a for a in log if a["service"] == BACKUP]
            assert asked["outcome"] == "ok"
            assert asked["duration_ms"] > CENTRAL_DEADLINE_S * 1000  # longer than central's


async def test_a_cancel_through_the_backup_uses_its_deadline(tmp_path):
    async def central_breaks() -> None:  # while the vehicle is under the barrier
        await faults.set(FaultRequest(mode="garbage"))

    faults: Faults

    def gate(f: Faults) -> InstantGate:
        nonlocal faults
        faults = f
        return SwitchingGate(central_breaks)

    # a backup that forwards to the central service: it can cancel what central made
    async with world(tmp_path, decision_deadline_s=2.5, backup_delay_s=0.5,
                     backup_shares_central=True, gate=gate) as w:
        out = await w.runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": "34ABC123",
                                         "behaviour": "back_out"})
        assert out.status == "compensated", out.reason
        assert out.sources["create_entry_record"] == "central"
        (record,) = w.central.entries.values()
        assert record["status"] == "cancelled"
        steps = await w.steps(out.saga_id)
        cancel = steps[("compensation", "cancel_entry_record")]
        assert cancel["source"] == "backup", cancel
        (asked,) = [a for a in cancel["attempt_log"] if a["service"] == BACKUP]
        assert asked["outcome"] == "ok"
        assert asked["duration_ms"] > CENTRAL_DEADLINE_S * 1000


async def test_the_decision_deadline_bounds_the_backups_deadline(tmp_path):
    decision_s = 0.8
    # the backup would answer within its own deadline, but after the decision's
    assert decision_s < 0.95 < BACKUP_DEADLINE_S
    async with world(tmp_path, decision_deadline_s=decision_s, backup_delay_s=0.95) as w:
        await w.faults.set(FaultRequest(mode="garbage"))
        # bounded by an await: the run must end by the decision deadline (plus slack)
        out = await asyncio.wait_for(
            w.runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": "34ABC123"}),
            timeout=decision_s + 0.5)
        assert out.status == "compensated" and "unverifiable" in out.reason, out
        assert w.backup.requests >= 1
        assert w.backup.answered == 0  # the step did not wait for the late reply
        verify = (await w.steps(out.saga_id))[("forward", "verify_license_plate")]
        assert verify["status"] == "failed"
        assert verify["duration_ms"] <= (decision_s + 0.15) * 1000, verify
        (asked, *_) = [a for a in verify["attempt_log"] if a["service"] == BACKUP]
        assert asked["outcome"] == "transient"
        given = _given_deadline(asked["error"])
        # more than the central service's deadline, no more than the decision's remainder
        assert CENTRAL_DEADLINE_S < given <= decision_s, asked
        assert asked["duration_ms"] > CENTRAL_DEADLINE_S * 1000
