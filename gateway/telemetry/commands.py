"""Remote commands over MQTT (opt-in, off by default): ``{p}/gates/{gate}/cmd/open`` and
``{p}/gates/{gate}/cmd/mode``. Each carries the admin token, a unique ``id`` and the
sender's wall time ``ts``. A command is acted on at most once and only while it is fresh:

token (constant-time compare) -> not retained -> ``ts`` within ``max_age_s`` of the
gateway's synchronised wall clock -> ``id`` never seen (kept in SQLite, so also across a
restart; recorded before the command runs) -> the lane exists -> the lane runs it (it still
refuses an unsafe one, such as closing with a vehicle under the barrier).

A retained message is never acted on: the broker delivers it again on every subscribe, so a
retained "open" would reopen the barrier on every reconnect. Every refusal is an event
(``command_refused``, with a reason), every execution too (``command_executed``, with the
id); the token is never recorded."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

import msgspec
import paho.mqtt.client as paho

from gateway.clock import Clock
from gateway.store import commands_seen
from gateway.store.store import Store

log = logging.getLogger(__name__)

Who = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
# \Z, not $: "$" would also accept a trailing newline
CommandId = Annotated[str, msgspec.Meta(min_length=8, max_length=64,
                                        pattern=r"\A[A-Za-z0-9_-]{8,64}\Z")]
Timestamp = Annotated[str, msgspec.Meta(min_length=10, max_length=40)]
KEEP_IDS_MAX_AGES = 10  # an id is kept this many max ages (a replay of it is "too old")


class Lane(Protocol):
    def manual_open(self, who: str, why: str) -> bool: ...
    def set_mode(self, mode: str, who: str) -> bool: ...


class OpenCommand(msgspec.Struct, forbid_unknown_fields=True):
    token: str
    id: CommandId
    ts: Timestamp
    lane_id: str
    who: Who = "remote"
    why: Annotated[str, msgspec.Meta(max_length=200)] = ""


class ModeCommand(msgspec.Struct, forbid_unknown_fields=True):
    token: str
    id: CommandId
    ts: Timestamp
    lane_id: str
    mode: Literal["normal", "closed"]
    who: Who = "remote"


COMMANDS: dict[str, type[OpenCommand] | type[ModeCommand]] = {
    "open": OpenCommand, "mode": ModeCommand}


def parse_ts(ts: str) -> float | None:
    """The wall time of an RFC 3339 timestamp with an offset; ``None`` if it is not one."""
    try:
        when = datetime.fromisoformat(ts)
        return when.timestamp() if when.tzinfo is not None else None
    except (ValueError, OverflowError):
        return None


class RemoteCommands:
    def __init__(self, lanes: Mapping[str, Lane], token: str,
                 record: Callable[[str, dict[str, Any]], None], *, store: Store,
                 clock: Clock, max_age_s: float) -> None:
        self.lanes = lanes
        self.token = token
        self.record = record  # (event type, data) -> written as an event
        self.store = store
        self.clock = clock
        self.max_age_s = max_age_s
        self._tasks: set[asyncio.Task[None]] = set()

    def handle(self, msg: paho.MQTTMessage) -> None:
        """Called on the event loop for each message: every check that needs no database
        here, then a task takes the id (one database write) and runs the command."""
        name = msg.topic.rsplit("/", 1)[-1]
        kind = COMMANDS.get(name)
        if kind is None:
            return self._refuse(name, "unknown command")
        try:
            cmd = msgspec.json.decode(bytes(msg.payload)[:4096], type=kind)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return self._refuse(name, f"malformed: {str(exc)[:120]}")
        sent_at = parse_ts(cmd.ts)
        if sent_at is None:
            return self._refuse(name, "malformed: ts is not RFC 3339 with an offset")
        if not self.token or not hmac.compare_digest(cmd.token.encode(), self.token.encode()):
            return self._refuse(name, "bad token")  # the token itself is never recorded
        if msg.retain:
            return self._refuse(name, "retained", cmd)
        if not self.clock.wall_synced():
            return self._refuse(name, "clock not synchronised", cmd)
        age = self.clock.wall() - sent_at
        if age > self.max_age_s:
            return self._refuse(name, "too old", cmd, age_s=round(age, 3))
        if -age > self.max_age_s:
            return self._refuse(name, "from the future", cmd, age_s=round(age, 3))
        task = asyncio.get_running_loop().create_task(self._take_and_run(name, cmd),
                                                      name=f"remote command {cmd.id}")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def _take_and_run(self, name: str, cmd: OpenCommand | ModeCommand) -> None:
        now = self.clock.wall()
        keep_s = KEEP_IDS_MAX_AGES * self.max_age_s
        try:
            new = await self.store.write(
                lambda conn: commands_seen.take(conn, cmd.id, now, keep_s))
        except Exception:
            self._refuse(name, "cannot record the id", cmd)  # not taken: not run
            raise
        if not new:
            return self._refuse(name, "already seen", cmd)
        lane = self.lanes.get(cmd.lane_id)
        if lane is None:
            return self._refuse(name, f"no lane {cmd.lane_id[:40]!r}", cmd)
        if isinstance(cmd, OpenCommand):
            done = lane.manual_open(cmd.who, cmd.why or "remote command")
        else:
            done = lane.set_mode(cmd.mode, cmd.who)
        if not done:
            return self._refuse(name, "the lane refused it (unsafe or busy)", cmd)
        self.record("command_executed", {"command": name, "id": cmd.id,
                                         "lane_id": cmd.lane_id, "who": cmd.who})

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("remote command failed", exc_info=task.exception())

    async def drain(self) -> None:
        """Wait for the commands being taken (tests; a clean stop)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _refuse(self, name: str, reason: str, cmd: OpenCommand | ModeCommand | None = None,
                **extra: Any) -> None:
        data: dict[str, Any] = {"command": name[:40], "reason": reason, **extra}
        if cmd is not None:  # decoded and authenticated: its id and lane help the audit
            data |= {"id": cmd.id, "lane_id": cmd.lane_id[:40], "who": cmd.who}
        self.record("command_refused", data)
