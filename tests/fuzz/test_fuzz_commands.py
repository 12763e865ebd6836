"""Remote commands over MQTT (``gateway.telemetry.commands.RemoteCommands.handle``): any
topic name, payload and retain flag is refused with a reason or executed, exactly once
each, and never raises; a real SQLite store takes the ids."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from gateway.clock import iso
from gateway.store.store import Store
from gateway.telemetry.commands import RemoteCommands
from tests.fuzz.strategies import Deep, fuzz_settings, json_bytes, json_values, text

TOKEN = "fuzz-token"
MAX_AGE_S = 30.0
NOW = time.time()
PREFIX = "parking/gates/gate-1/cmd/"


class FixedClock:
    """A synchronised wall clock that stands still: the fuzz chooses how old a command is."""

    def monotonic(self) -> float:
        return 1000.0

    def wall(self) -> float:
        return NOW

    def wall_synced(self) -> bool:
        return True

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass
class Lane:
    refuse: bool = False
    done: list[tuple[str, ...]] = field(default_factory=list)

    def manual_open(self, who: str, why: str) -> bool:
        self.done.append(("open", who, why))
        return not self.refuse

    def set_mode(self, mode: str, who: str) -> bool:
        self.done.append(("mode", mode, who))
        return not self.refuse


@dataclass
class Gate:
    commands: RemoteCommands
    records: list[tuple[str, dict[str, Any]]]


@pytest.fixture
async def gate() -> AsyncIterator[Gate]:
    with tempfile.TemporaryDirectory(prefix="fuzz-commands-") as d:
        store = await Store.open(Path(d) / "gateway.sqlite3")
        records: list[tuple[str, dict[str, Any]]] = []
        lanes = {"entry-1": Lane(), "exit-1": Lane(refuse=True)}
        commands = RemoteCommands(lanes, TOKEN, lambda t, data: records.append((t, data)),
                                  store=store, clock=FixedClock(), max_age_s=MAX_AGE_S)
        yield Gate(commands, records)
        await store.close()


_ids = itertools.count()
fresh_ids = st.builds(lambda: f"fuzz-{next(_ids):08d}")  # never seen: gets past the replay check
timestamps = st.one_of(
    st.floats(-3 * MAX_AGE_S, 3 * MAX_AGE_S).map(lambda age: iso(NOW - age)),
    st.floats(-MAX_AGE_S, MAX_AGE_S).map(lambda age: iso(NOW - age)),
    st.sampled_from(["2026-12-01T10:00:00", "0001-01-01T00:00:00+14:00",
                     "9999-12-31T23:59:59-14:00", "2026-02-30T00:00:00Z", "1970-01-01T00:00Z",
                     "2026-12-01T10:00:00+25:00", "x" * 41]))


@st.composite
def commands(draw: Any) -> tuple[str, bytes]:
    """A command near a valid one (one field changed, added or removed), or anything."""
    name = draw(st.sampled_from(["open", "mode"]) if draw(st.integers(0, 7)) else text)
    if draw(st.integers(0, 7)) == 0:
        return name, draw(json_values.map(json_bytes) | st.binary(max_size=100))
    body: dict[str, Any] = {"token": TOKEN, "ts": draw(timestamps),
                            "id": draw(fresh_ids | st.sampled_from(["replayed-01", "replayed-02"])),
                            "lane_id": draw(st.sampled_from(["entry-1", "exit-1"]) | text)}
    if name == "mode":
        body["mode"] = draw(st.sampled_from(["normal", "closed"]))
    body |= draw(st.fixed_dictionaries({}, optional={"who": text.filter(bool)}))
    if name == "open":
        body |= draw(st.fixed_dictionaries({}, optional={"why": text}))
    if draw(st.integers(0, 2)) == 0:
        key = draw(st.sampled_from(sorted(body)) | text)
        if draw(st.booleans()):
            body.pop(key, None)
        else:
            body[key] = draw(json_values)
    return name, json_bytes(body)


@fuzz_settings(1.0, io=True)
@given(commands(), st.integers(0, 7).map(lambda n: n == 0))
@example(("open", b'{"token": "fuzz-token", "x": ' + json_bytes(Deep(10_000)) + b"}"), False)
@example(("open", b"\xff" * 5000), False)
async def test_any_message_is_refused_with_a_reason_or_executed_once(
        tried, gate: Gate, command: tuple[str, bytes], retain: bool):
    tried("MQTT commands")
    name, payload = command
    msg = paho.MQTTMessage(mid=1, topic=(PREFIX + name).encode())
    msg.payload, msg.retain = payload, retain
    gate.records.clear()
    gate.commands.handle(msg)
    await gate.commands.drain()
    assert len(gate.records) == 1, gate.records
    [(kind, data)] = gate.records
    assert kind in ("command_refused", "command_executed")
    event(data.get("reason", kind).split(":")[0])  # --hypothesis-show-statistics
    if kind == "command_refused":
        assert isinstance(data["reason"], str) and data["reason"]
    assert TOKEN not in repr(data)  # the token is never recorded
