"""The request bodies of the web API, decoded and validated by msgspec."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

import msgspec

from gateway.sim.backup import BACKUP_MODES
from gateway.sim.physics import BEHAVIOURS

Plate = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{1,12}$")]
Who = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Why = Annotated[str, msgspec.Meta(max_length=200)]


Behaviour = Literal["pass", "back_out", "stall", "tailgate", "trailer", "motorbike", "reverse",
                   "bumper", "stall_under_arm"]
assert set(get_args(Behaviour)) == set(BEHAVIOURS)  # one list: gateway.sim.physics


BackupMode = Literal["ok", "blackhole", "error", "garbage", "oversized", "slow", "duplicate",
                    "forge_correlation", "forge_plate"]
assert get_args(BackupMode) == BACKUP_MODES  # one list: gateway.sim.backup


class BackupFaultRequest(msgspec.Struct, forbid_unknown_fields=True):
    mode: BackupMode = "ok"
    fail_fraction: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.0
    delay_s: Annotated[float, msgspec.Meta(ge=0, le=60)] = 2.0


class SimVehicleRequest(msgspec.Struct, forbid_unknown_fields=True):
    plate: Plate
    behaviour: Behaviour = "pass"


class AdminNote(msgspec.Struct, forbid_unknown_fields=True):
    """Who acts and why: recorded with every admin action."""
    who: Who = "operator"
    why: Why = ""


class ManualOpenRequest(AdminNote, forbid_unknown_fields=True):
    pass


class LaneModeRequest(AdminNote, forbid_unknown_fields=True):
    mode: Literal["normal", "closed"] = "normal"


class SpaceStateRequest(AdminNote, forbid_unknown_fields=True, kw_only=True):
    state: Literal["free", "out_of_service"]


TIME = Annotated[str, msgspec.Meta(max_length=40)]


class PermitRequest(AdminNote, forbid_unknown_fields=True):
    kind: Literal["resident", "staff", "delivery"] = "resident"
    valid_from: TIME | None = None
    valid_until: TIME | None = None
    note: Annotated[str, msgspec.Meta(max_length=200)] = ""
