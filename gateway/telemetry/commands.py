"""Remote commands over MQTT (opt-in, off by default): ``{p}/gates/{gate}/cmd/open`` and
``{p}/gates/{gate}/cmd/mode``. Each carries the admin token; a bad token or a malformed
payload is refused and recorded, never executed; an unsafe one (closing a lane with a
vehicle under the barrier) is refused by the lane. Every command is an event."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
import paho.mqtt.client as paho

from gateway.services.lane import LaneController

Who = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class OpenCommand(msgspec.Struct, forbid_unknown_fields=True):
    token: str
    lane_id: str
    who: Who = "remote"
    why: Annotated[str, msgspec.Meta(max_length=200)] = ""


class ModeCommand(msgspec.Struct, forbid_unknown_fields=True):
    token: str
    lane_id: str
    mode: Literal["normal", "closed"]
    who: Who = "remote"


COMMANDS: dict[str, type[msgspec.Struct]] = {"open": OpenCommand, "mode": ModeCommand}


class RemoteCommands:
    def __init__(self, lanes: dict[str, LaneController], token: str,
                 record: Callable[[str, dict[str, Any]], None]) -> None:
        self.lanes = lanes
        self.token = token
        self.record = record  # (event type, data) -> written as an event

    def handle(self, msg: paho.MQTTMessage) -> None:
        name = msg.topic.rsplit("/", 1)[-1]
        kind = COMMANDS.get(name)
        if kind is None:
            return self._refuse(name, "unknown command")
        try:
            cmd: Any = msgspec.json.decode(bytes(msg.payload)[:4096], type=kind)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return self._refuse(name, f"malformed: {str(exc)[:120]}")
        if not self.token or not hmac.compare_digest(cmd.token.encode(), self.token.encode()):
            return self._refuse(name, "bad token")  # the token itself is never recorded
        lane = self.lanes.get(cmd.lane_id)
        if lane is None:
            return self._refuse(name, f"no lane {cmd.lane_id[:40]!r}")
        if isinstance(cmd, OpenCommand):
            done = lane.manual_open(cmd.who, cmd.why or "remote command")
        else:
            done = lane.set_mode(cmd.mode, cmd.who)
        self.record("command_executed" if done else "command_refused",
                    {"command": name, "lane_id": cmd.lane_id, "who": cmd.who,
                     **({} if done else {"reason": "the lane refused it (unsafe or busy)"})})

    def _refuse(self, name: str, reason: str) -> None:
        self.record("command_refused", {"command": name[:40], "reason": reason})
