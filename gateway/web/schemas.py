"""The web API's types: every request body and every JSON reply, as msgspec Structs.

One source for three things: the handlers decode each request body into its type, encode
each JSON reply through its type (``encode``, called by ``gateway.web.http.reply``), and
``gateway/web/openapi.py`` generates the OpenAPI document from the same types
(``msgspec.json.schema_components``), so the document is the code's own description.

Replies are strict: ``Reply`` types have ``forbid_unknown_fields=True``. A handler (or
``Gateway.status()``) that adds a field to a reply without adding it here fails the reply
with a 500, so the in-process tests and the schemathesis run fail until the type (and with
it the document) says what the field is. A field a reply may leave out is ``T | UnsetType =
UNSET``: left out on encode, not required in the schema. Encoding through the type thus
keeps every reply's shape as it was; the status snapshot (``Status``) is also the MQTT
``state`` payload (contracts/mqtt.md), described here, not changed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

import msgspec
from msgspec import UNSET, UnsetType

from gateway.core.lane_types import LaneState
from gateway.core.saga import SagaStatus
from gateway.sim.backup import BACKUP_MODES
from gateway.sim.daemon_faults import DaemonFaultRequest
from gateway.sim.faults import FaultRequest, Mode
from gateway.sim.physics import BEHAVIOURS
from gateway.sim.traffic import FOLLOW_GAP_M

__all__ = ["DaemonFaultRequest", "FaultRequest"]  # the simulator's own request bodies

# -- shared pieces -----------------------------------------------------------------------
Time = Annotated[str, msgspec.Meta(description="RFC 3339 time, UTC")]
Ms = Annotated[float, msgspec.Meta(description="milliseconds")]
SagaKind = Annotated[str, msgspec.Meta(
    description="entry or exit (a seed-compatible saga: its own name)")]
Plate = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{1,12}$")]
# a plate in a URL path: 1 to 12 ASCII letters and digits; case, spaces and dashes ignored
PATH_PLATE = r"^[ -]*([A-Za-z0-9][ -]*){1,12}$"
Who = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Why = Annotated[str, msgspec.Meta(max_length=200)]
# a permit's validity: RFC 3339 (a time without an offset is UTC), year 1 or later
PermitTime = Annotated[str, msgspec.Meta(max_length=40, extra_json_schema={
    "format": "date-time"})]

Behaviour = Literal["pass", "back_out", "stall", "tailgate", "trailer", "motorbike", "reverse",
                    "bumper", "stall_under_arm"]
assert set(get_args(Behaviour)) == set(BEHAVIOURS)  # one list: gateway.sim.physics
BackupMode = Literal["ok", "blackhole", "error", "garbage", "oversized", "slow", "duplicate",
                     "forge_correlation", "forge_plate"]
assert get_args(BackupMode) == BACKUP_MODES  # one list: gateway.sim.backup
# the car the simulator sends right behind a tailgating or bumper vehicle
Follower = Literal["tailgate_follower", "bumper_follower"]
assert set(get_args(Follower)) == {f"{b}_follower" for b in FOLLOW_GAP_M}


class Reply(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every JSON reply: an unknown field is an error, not passed through."""


def encode(data: Any, type_: Any) -> bytes:
    """``data`` (dicts, lists, Structs) as JSON, through ``type_``: a field the type does
    not have, or a value of the wrong type, raises ``msgspec.ValidationError``."""
    return msgspec.json.encode(msgspec.convert(data, type_))


# -- request bodies (decoded by gateway.web.http.read_body; an empty body is {}) ---------
class Request(msgspec.Struct, forbid_unknown_fields=True):
    """Base of every request body: an unknown field is a 400 with the reason."""


class BackupFaultRequest(Request):
    mode: BackupMode = "ok"
    fail_fraction: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.0
    delay_s: Annotated[float, msgspec.Meta(ge=0, le=60)] = 2.0


class SimVehicleRequest(Request):
    plate: Plate
    behaviour: Behaviour = "pass"


class AdminNote(Request):
    """Who acts and why: recorded with every admin action."""

    who: Who = "operator"
    why: Why = ""


class ManualOpenRequest(AdminNote):
    pass


class LaneModeRequest(AdminNote):
    mode: Literal["normal", "closed"] = "normal"


class SpaceStateRequest(AdminNote, kw_only=True):
    state: Literal["free", "out_of_service"]


class PermitRequest(AdminNote):
    kind: Literal["resident", "staff", "delivery"] = "resident"
    valid_from: PermitTime | None = None
    valid_until: PermitTime | None = None
    note: Annotated[str, msgspec.Meta(max_length=200)] = ""


# -- errors ------------------------------------------------------------------------------
class Error(Reply, kw_only=True):
    """Every error reply of the API (400, 401, 404, 409, 413, 500)."""

    error: str


# -- health and status -------------------------------------------------------------------
class Health(Reply, kw_only=True):
    """200 with no problems, 503 with them."""

    healthy: bool
    problems: list[str]


class ZoneOccupancy(Reply, kw_only=True):
    zone: str
    total: int
    free: int
    allocated: int
    out_of_service: int
    full: bool


class Occupancy(Reply, kw_only=True):
    total: int
    free: int
    allocated: int
    out_of_service: int
    zones: list[ZoneOccupancy] | UnsetType = UNSET


class Arm(Reply, kw_only=True):
    position: Literal["open", "closed", "between"]
    assumed: bool


class Loops(Reply, kw_only=True):
    """Each loop's occupancy; empty for a lane that could not start."""

    arming: bool | UnsetType = UNSET
    safety: bool | UnsetType = UNSET


class Stages(Reply, kw_only=True):
    """A vehicle's stage latencies (ms): loop to frame, to plate, to decision, to relay."""

    frame: Ms | UnsetType = UNSET
    plate: Ms | UnsetType = UNSET
    decision: Ms | UnsetType = UNSET
    relay: Ms | UnsetType = UNSET
    total: Ms | UnsetType = UNSET


class LastDecision(Reply, kw_only=True):
    """The lane's last saga (empty before the first)."""

    saga_id: str | UnsetType = UNSET
    license_plate: str | UnsetType | None = UNSET
    status: SagaStatus | UnsetType = UNSET
    reason: str | UnsetType = UNSET
    sources: dict[str, str] | UnsetType = UNSET
    duration_ms: Ms | UnsetType = UNSET
    source: str | UnsetType = UNSET
    stages_ms: Stages | UnsetType | None = UNSET


class LocalReading(Reply, kw_only=True):
    """What the gate's own reader saw of the lane's last vehicle (empty before any)."""

    license_plate: str | UnsetType | None = UNSET
    confidence: float | UnsetType = UNSET
    latency_ms: Ms | UnsetType = UNSET
    error: str | UnsetType = UNSET
    used: str | UnsetType = UNSET


class LaneVehicle(Reply, kw_only=True):
    """The vehicle the lane is handling now."""

    license_plate: str | None
    saga_id: str


class LaneCrop(Reply, kw_only=True):
    """The plate crop the lane's tile shows (``GET /api/status`` only)."""

    of: Annotated[Literal["decision", "reading"], msgspec.Meta(
        description="decision: the stored crop of the lane's last decision; reading: the "
                    "gate reader's last crop, until the decision's is on disk")]
    url: str
    key: Annotated[str, msgspec.Meta(description="changes when the image changes")]
    public: Annotated[bool, msgspec.Meta(description="false: fetch it with the admin token")]


class LaneStatus(Reply, kw_only=True):
    """One lane. A lane that could not start has only id, direction "", state "fault",
    barrier "unknown", empty loops and last, and its fault."""

    id: str
    direction: Literal["entry", "exit", ""]
    state: LaneState
    mode: Literal["normal", "closed"] | UnsetType = UNSET
    barrier: Literal["open", "closed", "closing", "unknown"]
    arm: Arm | UnsetType = UNSET
    loops: Loops
    stale_captures: int | UnsetType = UNSET
    faults: dict[str, str]
    fault_fixes: dict[str, str] | UnsetType = UNSET
    last: LastDecision
    reading: LocalReading | UnsetType = UNSET
    vehicle: LaneVehicle | UnsetType | None = UNSET
    crop: LaneCrop | UnsetType | None = UNSET


Circuit = Literal["closed", "open", "half_open", "unknown", "disabled"]


class ServiceStatus(Reply, kw_only=True):
    """The central or the backup service: the breaker's state and the same in words."""

    circuit: Circuit
    state: Literal["online", "slow", "offline", "paused", "disabled"] | UnsetType = UNSET
    summary: str | UnsetType = UNSET
    failures: int | UnsetType = UNSET
    retry_in_s: float | UnsetType | None = UNSET
    last_error: str | UnsetType | None = UNSET


class MqttStatus(Reply, kw_only=True):
    connected: bool
    error: str | UnsetType = UNSET
    state: Literal["online", "offline", "disabled"] | UnsetType = UNSET
    summary: str | UnsetType = UNSET


class Services(Reply, kw_only=True):
    central: ServiceStatus
    backup: ServiceStatus
    mqtt: MqttStatus


class Outbox(Reply, kw_only=True):
    """Events not yet acknowledged by the broker."""

    pending: int
    dropped: int
    summary: str | UnsetType = UNSET


class DeadLetter(Reply, kw_only=True):
    """A record the central service refused (not retried)."""

    id: int
    saga_id: str
    operation: str
    idempotency_key: str
    attempts: int
    last_error: str
    updated_at: Time
    outcome: Literal["unsent", "unknown", "done", "refused"]


class OfflineQueue(Reply, kw_only=True):
    pending: int
    dead: int
    dead_letters: list[DeadLetter]
    advice: str | UnsetType = UNSET


class PlateModelStatus(Reply, kw_only=True):
    slim: bool  # the recogniser cut to plate characters (gateway/plates/slim_model.py)
    note: str  # which model was loaded and why, e.g. why the full one


class PlateReaderStatus(Reply, kw_only=True):
    ready: bool
    fault: str | None
    load_s: float
    model: PlateModelStatus | None = None  # None until the model is loaded


class PermitCounts(Reply, kw_only=True):
    central: int
    local: int
    as_of: str | None
    last_error: str | None


class StoreStatus(Reply, kw_only=True):
    disk_full: bool
    write_failures: int
    last_write_error: str | None


class TaskStatus(Reply, kw_only=True):
    """A supervised background task."""

    state: Literal["starting", "running", "backoff", "done", "stopped"]
    failing: bool
    restarts: int
    failures: int
    failures_in_a_row: int
    last_error: str | None
    last_failure: str | None
    retry_in_s: float | None


class ImagesStatus(Reply, kw_only=True):
    """The decisions' camera images on disk ([images]): use, bounds and failures."""

    dir: str
    bytes: int
    files: int
    oldest: Time | None
    max_bytes: int
    max_age_days: float
    keep: Literal["crops", "frames", "both"]
    public: Literal["crops", "all", "none"]
    written: int
    pruned: int
    too_big: int
    write_failures: int
    disk_full: bool
    last_error: str | None
    dropped: int
    pending: int


class StorageBounds(Reply, kw_only=True):
    """Every bound on what the gateway writes ([store], [images]; 0: images off)."""

    events_max_rows: int
    events_max_age_days: int
    sagas_max_age_days: int
    sessions_max_age_days: int
    offline_queue_max_age_days: int
    images_max_bytes: int
    images_max_age_days: int


class StorageUsage(Reply, kw_only=True):
    """What each part uses now, and the data disk (null: it could not be read)."""

    database_bytes: int
    wal_bytes: int
    images_bytes: int
    broker_bytes: int
    disk_free_bytes: int | None
    disk_total_bytes: int | None


class StorageStatus(Reply, kw_only=True):
    bounds: StorageBounds
    usage: StorageUsage
    summary: str
    problem: Annotated[str | None, msgspec.Meta(description="a nearly full data disk")]


class ClockStatus(Reply, kw_only=True):
    synced: bool
    summary: str


class SimulationStatus(Reply, kw_only=True):
    collisions: int


class SimCentralFaults(Reply, kw_only=True):
    """The simulated central service's fault mode."""

    mode: Mode
    fail_fraction: float
    delay_s: float
    injected: int


class SimBackupStatus(Reply, kw_only=True):
    mode: BackupMode
    requests: int


class Status(Reply, kw_only=True):
    """The gate's snapshot; the same as the MQTT ``state`` topic's payload."""

    gate_id: str
    version: str
    uptime_s: float
    time: Time
    wall_synced: bool
    occupancy: Occupancy
    lanes: list[LaneStatus]
    services: Services
    outbox: Outbox
    offline_queue: OfflineQueue
    plate_reader: PlateReaderStatus | None
    permits: PermitCounts
    store: StoreStatus
    images: ImagesStatus | UnsetType | None = UNSET
    storage: StorageStatus | UnsetType = UNSET
    clock: ClockStatus | UnsetType = UNSET
    healthy: bool
    problems: list[str]
    tasks: dict[str, TaskStatus]
    simulation: SimulationStatus | None
    sim_central: SimCentralFaults | None
    sim_backup: SimBackupStatus | None


# -- events, spaces, sagas ---------------------------------------------------------------
class Event(Reply, kw_only=True):
    """The event envelope of contracts/mqtt.md; ``data`` depends on the type."""

    seq: int
    event_id: str
    gate_id: str
    type: str
    ts: Time
    lane_id: str | None
    wall_synced: bool
    data: dict[str, Any]


class Space(Reply, kw_only=True):
    space_id: str
    zone: str
    number: int
    kind: Literal["standard", "reserved", "accessible", "ev"]
    state: Literal["free", "allocated", "out_of_service"]
    plate: str | None
    saga_id: str | None
    since: Time | None


class Saga(Reply, kw_only=True):
    """One saga (a vehicle at a lane) of the saga log."""

    saga_id: str
    kind: SagaKind
    gate_id: str
    lane_id: str
    plate: str
    status: SagaStatus
    reason: str
    context: dict[str, Any]
    created_at: Time
    updated_at: Time
    duration_ms: Ms | None


class Attempt(Reply, kw_only=True):
    """One call made for a step: the service, how it ended, how long it took."""

    service: str
    outcome: Annotated[str, msgspec.Meta(
        description="ok | transient | permanent | circuit_open | cache | permit")]
    duration_ms: Ms
    error: str


class SagaStep(Reply, kw_only=True):
    """One step (or its compensation) with its attempts, service, source and timing."""

    saga_id: str
    step_index: int
    phase: Literal["forward", "compensation"]
    name: str
    status: Literal["started", "succeeded", "failed"]
    attempts: int
    service: str
    source: str
    idempotency_key: str | None
    outcome_unknown: bool
    started_at: Time | None
    finished_at: Time | None
    duration_ms: Ms | None
    result: dict[str, Any] | None
    error: str | None
    attempt_log: list[Attempt]


class SagaImage(Reply, kw_only=True):
    """A decision's camera image kept on disk (gateway/store/images.py)."""

    name: str
    kind: Literal["crop", "frame"]
    url: str
    bytes: int
    public: Annotated[bool, msgspec.Meta(
        description="false: fetch it with the admin token")]


class SagaDetail(Saga, kw_only=True):
    """A saga for the saga view: its steps, its events (oldest first) and its images. The
    camera image it carried for the central service is left out of ``context``
    (``context.image_bytes`` gives its size)."""

    steps: list[SagaStep]
    events: list[Event]
    images: list[SagaImage]


class VehicleRow(Reply, kw_only=True):
    """One vehicle at a lane (a saga), for the vehicle list."""

    saga_id: str
    kind: SagaKind
    lane_id: str
    license_plate: str
    status: SagaStatus
    outcome: Annotated[str, msgspec.Meta(description="what happened, in words")]
    reason: str
    source: Annotated[str, msgspec.Meta(
        description="where the decision came from: central, backup, cache, permits, "
                    "policy, queue, or empty (none yet)")]
    created_at: Time
    duration_ms: Ms | None
    compensated: bool


class VehicleList(Reply, kw_only=True):
    vehicles: list[VehicleRow]


class LatencyRow(Stages, kw_only=True):
    """One vehicle: its stage timings (ms); a refused one has none after the decision."""

    lane_id: str
    at: float | UnsetType = UNSET
    opened: Annotated[bool | UnsetType, msgspec.Meta(
        description="false: decided without the arm opening (frame, plate, decision)")] = UNSET


class Latency(Reply, kw_only=True):
    """The stage timings of the last vehicles, let through or refused, oldest first."""

    stages: list[str]
    vehicles: list[LatencyRow]


# -- admin replies -----------------------------------------------------------------------
class ManualOpenReply(Reply, kw_only=True):
    lane_id: str
    opened: bool
    state: LaneState


class AdminCheck(Reply, kw_only=True):
    ok: Literal[True]


class LaneModeReply(Reply, kw_only=True):
    lane_id: str
    mode: Literal["normal", "closed"]
    changed: bool
    reason: Annotated[str, msgspec.Meta(description="why it was refused (empty if not)")]


class SpaceStateReply(Reply, kw_only=True):
    space_id: str
    state: Literal["free", "out_of_service"]


class Permit(Reply, kw_only=True):
    """A permit of the local list: the central service's (synced) or the gate's own."""

    plate: str
    source: Literal["central", "local"]
    kind: str
    valid_from: str | None
    valid_until: str | None
    deleted: Annotated[int, msgspec.Meta(ge=0, le=1, description="1: deleted centrally")]
    note: str
    updated_at: Time


class PermitList(Reply, kw_only=True):
    permits: list[Permit]
    as_of: str | None


class PermitSet(Reply, kw_only=True):
    license_plate: str
    kind: Literal["resident", "staff", "delivery"]
    valid_from: str | None
    valid_until: str | None
    source: Literal["local"]


class PermitDeleted(Reply, kw_only=True):
    license_plate: str
    deleted: bool


# -- simulation --------------------------------------------------------------------------
class SimVehicleAccepted(Reply, kw_only=True):
    vehicle_id: str


class SimVehicle(Reply, kw_only=True):
    vehicle_id: str
    lane_id: str
    plate: str
    behaviour: Behaviour | Follower
    status: Literal["queued", "arriving", "waiting", "passing", "passed", "leaving", "left"]
    position_m: float
    length_m: float
    collisions: int
    history: list[str]


class SimArm(Reply, kw_only=True):
    position: Annotated[float, msgspec.Meta(ge=0, le=1)]
    moving: Literal["up", "down"] | None


class SimWorld(Reply, kw_only=True):
    collisions: int
    arm: dict[str, SimArm]
    vehicles: list[SimVehicle]


class SimBackupFaults(Reply, kw_only=True):
    mode: BackupMode
    fail_fraction: float
    delay_s: float
    requests: int


class DaemonFaultCounts(Reply, kw_only=True):
    disk_full: int
    wall_offset: int


class DaemonFaults(Reply, kw_only=True):
    """Faults inside the daemon (simulation only)."""

    disk_full: bool
    wall_offset_s: float
    wall_synced: bool | None
    injected: DaemonFaultCounts
