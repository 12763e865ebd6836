"""Configuration: one TOML file parsed into one frozen, typed tree.

Every problem is reported at once, each naming the file, the key path and what was
expected. Secrets may come from the environment (``GATEWAY_MQTT_PASSWORD``,
``GATEWAY_ADMIN_TOKEN``); this module is the only reader of the environment, and secrets
are wrapped so they never print.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import msgspec

from gateway.core.allocation import ZoneSpec
from gateway.core.errors import ConfigError
from gateway.core.wiring import Wiring
from gateway.plates.formats import compile_formats
from gateway.plates.roi import roi_problem
from gateway.sim.planted import PLANTED_FAULTS

Positive = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Count = Annotated[int, msgspec.Meta(ge=0)]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Ident = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]


class Secret:
    """A value that must never be printed: ``repr``/``str`` show ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class GateSettings(_Section, frozen=True):
    id: Ident = "gate-01"
    data_dir: str = "/var/lib/parking-gateway"
    # the zone of the gate's days (the daily summary, "today" on the page): an IANA name
    # ("Europe/Istanbul"); records stay stamped in UTC whatever it is
    timezone: str = "UTC"


class CentralSettings(_Section, frozen=True):
    base_urls: list[str] = msgspec.field(default_factory=lambda: ["http://127.0.0.1:9000"])
    load_balancing: Literal["round_robin", "random", "least_outstanding", "weighted"] = (
        "round_robin"
    )
    deadline_s: Positive = 0.8
    retry_count: Count = 2
    backoff_initial_s: NonNegative = 0.05
    backoff_max_s: NonNegative = 0.5
    failure_threshold: Annotated[int, msgspec.Meta(ge=1)] = 5
    failure_rate: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.5
    failure_window_s: Positive = 60.0
    min_calls_in_window: Annotated[int, msgspec.Meta(ge=1)] = 10
    reset_timeout_s: Positive = 30.0
    half_open_probes: Annotated[int, msgspec.Meta(ge=1)] = 1
    decision_deadline_s: Positive = 2.5
    max_body_bytes: Annotated[int, msgspec.Meta(ge=256)] = 65536
    hedge_after_s: NonNegative = 0.0  # > 0: ask the backup too when central is this slow


class CacheSettings(_Section, frozen=True):
    max_stale_s: NonNegative = 86_400.0  # an expired answer is still used this long
    permit_misread_tolerance: bool = False  # a permit plate one character off matches


class PermitSettings(_Section, frozen=True):
    """The local permit list (synced from GET /v1/permits; editable with the admin token)."""

    sync: bool = True  # ask the central service for its changes
    sync_interval_s: Positive = 300.0
    retry_s: Positive = 30.0  # after a failed sync


class BackupSettings(_Section, frozen=True):
    enabled: bool = True
    deadline_s: Positive = 1.0


class MqttSettings(_Section, frozen=True):
    host: str = "127.0.0.1"
    port: Port = 1883
    topic_prefix: str = "parking"
    username: str = ""
    tls: bool = False
    ca_file: str = ""
    keepalive_s: Annotated[int, msgspec.Meta(ge=5, le=3600)] = 30
    reconnect_max_s: Positive = 5.0


class WebSettings(_Section, frozen=True):
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8080


class PolicySettings(_Section, frozen=True):
    entry_when_unverifiable: Literal["deny", "allow"] = "deny"
    exit_when_unverifiable: Literal["allow", "deny"] = "allow"
    record_when_unreachable: Literal["queue", "deny"] = "queue"
    anti_passback: Literal["deny", "allow"] = "deny"  # a plate already inside enters again
    exit_without_entry: Literal["allow", "deny"] = "allow"  # an exit with no matching entry
    exit_on_fault: Literal["fail_open", "stay_closed"] = "fail_open"  # exit lane, loop fault


class SagaSettings(_Section, frozen=True):
    step_deadline_s: Positive = 1.0
    compensation_backoff_initial_s: Positive = 0.2
    compensation_backoff_max_s: Positive = 30.0


class StoreSettings(_Section, frozen=True):
    synchronous: Literal["full", "normal"] = "full"
    busy_timeout_ms: Annotated[int, msgspec.Meta(ge=100)] = 5000
    events_max_rows: Annotated[int, msgspec.Meta(ge=1000)] = 200_000
    events_max_age_days: Annotated[int, msgspec.Meta(ge=1)] = 30
    plate_cache_max_rows: Annotated[int, msgspec.Meta(ge=100)] = 50_000
    # retention of terminal rows only, by age against a synchronised clock (README
    # "Durability"): finished sagas with their steps, exited sessions, sent/dead/dropped
    # offline-queue rows no live row needs; deleted in transactions of at most
    # retention_batch_rows rows each
    sagas_max_age_days: Annotated[int, msgspec.Meta(ge=1)] = 90
    sessions_max_age_days: Annotated[int, msgspec.Meta(ge=1)] = 400
    offline_queue_max_age_days: Annotated[int, msgspec.Meta(ge=1)] = 30
    retention_batch_rows: Annotated[int, msgspec.Meta(ge=10, le=100_000)] = 1000


class TelemetrySettings(_Section, frozen=True):
    enabled: bool = True  # events, state and metrics to central monitoring over MQTT
    state_min_interval_s: NonNegative = 1.0  # the retained state at most this often
    metrics_interval_s: Positive = 30.0
    inflight: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 200  # events awaiting acks
    home_assistant: bool = False  # MQTT discovery: one device per lane
    commands: bool = False  # remote commands (open, mode) over MQTT, with the admin token
    command_max_age_s: Positive = 30.0  # an older command (by its ts) is refused as a replay
    discovery_prefix: str = "homeassistant"


class PlateSettings(_Section, frozen=True):
    """The gate's own plate reader (``gateway/plates/``)."""

    enabled: bool = True
    formats: list[str] = msgspec.field(default_factory=lambda: ["TR"])  # codes or regexes
    min_confidence: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.8  # below: unreadable
    deadline_s: Positive = 1.0  # per vehicle (the whole burst)
    localisation: Literal["contours", "ocr"] = "contours"
    threads: Annotated[int, msgspec.Meta(ge=1, le=4)] = 2  # onnxruntime's intra-op threads
    compare_anpr: bool = True  # read an ANPR camera's bursts too; a disagreement is an event


class ImagesSettings(_Section, frozen=True):
    """The camera images of each decision, kept on disk (``gateway/store/images.py``)."""

    enabled: bool = True
    dir: str = ""  # an absolute path; empty: <gate.data_dir>/images
    max_mb: Positive = 200.0  # the oldest images go first beyond this
    max_age_days: Annotated[int, msgspec.Meta(ge=1)] = 30  # by a synchronised clock only
    keep: Literal["crops", "frames", "both"] = "both"
    # what a viewer without the admin token may fetch: a frame shows the whole scene
    # (people, other cars), a crop the plate only
    public: Literal["crops", "all", "none"] = "crops"


class LoggingSettings(_Section, frozen=True):
    """The daemon's log (journald under systemd); SIGHUP applies a change."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    mask_plates: bool = False  # the per-vehicle line shows 34A***23, not the whole plate


class SimulationSettings(_Section, frozen=True):
    enabled: bool = False
    start_central: bool = False  # run the sim central service on central.base_urls[0]
    traffic: bool = False  # generate vehicles on every lane
    traffic_interval_s: Positive = 6.0
    reaction_s: NonNegative = 0.8  # barrier up -> vehicle moves onto the safety loop
    arm_travel_s: NonNegative = 1.0  # the arm going up or down
    patience_s: Positive = 8.0  # a vehicle that is not let in leaves after this long
    stall_s: Positive = 20.0  # how long a stalling vehicle stays
    time_scale: Annotated[float, msgspec.Meta(ge=0.1, le=20)] = 1.0  # the world runs faster
    # deliberately broken paths for the reliability campaign (gateway/sim/planted.py):
    # refused unless simulation is enabled, names from PLANTED_FAULTS
    planted_faults: list[str] = msgspec.field(default_factory=list)
    # the demo's own MQTT: a private mosquitto on a free 127.0.0.1 port, its data under
    # gate.data_dir (gateway/sim/private_broker.py); mqtt.host/port then point at it
    private_broker: bool = False
    start_backup: bool = False  # run the sim backup service on the MQTT broker


Pull = Literal["up", "down", "external_up", "external_down", "none"]
Level = Literal["low", "high", "auto"]


class LoopSettings(_Section, frozen=True):
    """A loop detector's output. What its levels mean is declared, not assumed (README
    "Wiring"; ``gateway.core.wiring``)."""

    kind: Literal["sim", "gpio", "serial"] = "sim"
    pin: int | str = 0  # gpio: BCM number or a name like "GPIO17"
    pull: Pull = "up"  # how the pin rests when nothing drives it (a cut wire)
    active_level: Level = "auto"  # the level while the detector's output is on
    active_means: Literal["occupied", "clear"] = "occupied"
    mode: Literal["presence", "pulse_on_entry", "pulse_on_exit"] = "presence"
    pulse_hold_s: Positive = 5.0  # pulse modes: a pulse stands for a vehicle this long
    port: str = ""  # serial: e.g. /dev/ttyUSB0
    baudrate: Annotated[int, msgspec.Meta(ge=300, le=921600)] = 9600
    channel: Annotated[int, msgspec.Meta(ge=1, le=16)] = 1
    silent_s: Positive = 10.0  # serial: no line for this long is a fault

    def wiring(self) -> Wiring:
        return Wiring(self.pull, self.active_level, self.active_means)


class SafetyLoopSettings(LoopSettings, frozen=True):
    # fail-safe by default: the detector's contact is closed while the loop is clear
    active_means: Literal["occupied", "clear"] = "clear"


class InputSettings(_Section, frozen=True):
    """An optional contact input: a ticket machine's "open", a help button, a hold-open
    (fire) input, or an arm limit switch."""

    kind: Literal["none", "gpio", "sim"] = "none"
    pin: int | str = 0
    pull: Pull = "up"
    active_level: Level = "auto"
    active_means: Literal["on", "off"] = "on"  # off: a normally-closed contact

    def wiring(self) -> Wiring:
        return Wiring(self.pull, self.active_level, self.active_means)


class BarrierSettings(_Section, frozen=True):
    kind: Literal["sim", "gpio"] = "sim"
    open_pin: int | str = 0
    close_pin: int | str | None = None  # the close relay
    # true for a barrier whose own controller closes it (no close relay): the gateway then
    # cannot hold it open or reverse it, so its safety loop must be wired to it as well
    closes_itself: bool = False
    active_high: bool = True
    pulse_s: Positive = 0.5


class CameraSettings(_Section, frozen=True):
    kind: Literal["sim", "opencv", "none"] = "sim"
    # sim only: "anpr" gives the plate reading with the frame, "plain" only the frame
    # (the gate's own reader reads it)
    mode: Literal["anpr", "plain"] = "anpr"
    source: str = ""  # opencv: USB index ("0"), rtsp://… URL, or a video/image file
    burst: Annotated[int, msgspec.Meta(ge=1, le=10)] = 3
    frame_timeout_s: Positive = 1.0
    max_width: Annotated[int, msgspec.Meta(ge=160, le=4096)] = 1280
    jpeg_quality: Annotated[int, msgspec.Meta(ge=10, le=100)] = 80
    # what the lane uploads: "frame", the plate "crop" (the frame when none is found), or
    # "both" (the frame, and the crop beside it); unset: the older crop_plate decides
    # (true: "crop", false: "frame"), and with neither, "both"
    upload: Literal["crop", "frame", "both"] | None = None
    crop_plate: bool | None = None
    watchdog_s: Positive = 5.0  # no usable frame (frozen, hung, stale) this long: a fault
    max_frame_age_s: Positive = 0.5  # frames captured longer before their read are dropped
    rtsp_transport: Literal["tcp", "udp"] = "tcp"  # rtsp:// sources; udp smears on loss
    width: Annotated[int, msgspec.Meta(ge=160, le=4096)] = 1280  # sim frames
    height: Annotated[int, msgspec.Meta(ge=120, le=2160)] = 720
    # where plates appear: [x0, y0, x1, y1], fractions 0..1 or pixels (None: whole frame)
    roi: list[float | int] | None = None


class IndicatorSettings(_Section, frozen=True):
    kind: Literal["sim", "gpio", "none"] = "none"
    active_high: bool = True  # false for relay boards that energise on a low input
    green_pin: int | str | None = None
    red_pin: int | str | None = None
    full_sign_pin: int | str | None = None


class TimingSettings(_Section, frozen=True):
    debounce_s: NonNegative = 0.05
    capture_timeout_s: Positive = 3.0
    capture_attempts: Annotated[int, msgspec.Meta(ge=1, le=10)] = 3
    decision_timeout_s: Positive = 10.0
    passage_timeout_s: Positive = 30.0
    arm_travel_s: NonNegative = 2.0
    dropout_hold_s: NonNegative = 0.5
    gap_hold_s: NonNegative = 3.0
    stuck_occupied_s: Positive = 900.0
    duplicate_window_s: NonNegative = 10.0


class ZoneSettings(_Section, frozen=True):
    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Z][A-Z0-9]{0,7}$")]
    spaces: Annotated[int, msgspec.Meta(ge=1, le=9999)]
    reserved: Count = 0
    accessible: Count = 0
    ev: Count = 0

    def spec(self) -> ZoneSpec:
        return ZoneSpec(self.name, self.spaces, self.reserved, self.accessible, self.ev)


class LaneSettings(_Section, frozen=True):
    id: Ident
    direction: Literal["entry", "exit"]
    zone_order: list[str] = msgspec.field(default_factory=list)
    timings: TimingSettings = TimingSettings()
    tailgate_response: Literal["report", "hold"] = "report"
    arming_loop: LoopSettings = LoopSettings()
    safety_loop: SafetyLoopSettings = SafetyLoopSettings()
    barrier: BarrierSettings = BarrierSettings()
    camera: CameraSettings = CameraSettings()
    indicators: IndicatorSettings = IndicatorSettings()
    arm_open_limit: InputSettings = InputSettings()
    arm_closed_limit: InputSettings = InputSettings()
    vend_input: InputSettings = InputSettings()
    help_input: InputSettings = InputSettings()
    hold_open_input: InputSettings = InputSettings()


class Settings(_Section, frozen=True):
    gate: GateSettings = GateSettings()
    central: CentralSettings = CentralSettings()
    backup: BackupSettings = BackupSettings()
    mqtt: MqttSettings = MqttSettings()
    web: WebSettings = WebSettings()
    policy: PolicySettings = PolicySettings()
    saga: SagaSettings = SagaSettings()
    cache: CacheSettings = CacheSettings()
    permits: PermitSettings = PermitSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    store: StoreSettings = StoreSettings()
    simulation: SimulationSettings = SimulationSettings()
    plates: PlateSettings = PlateSettings()
    images: ImagesSettings = ImagesSettings()
    logging: LoggingSettings = LoggingSettings()
    zones: list[ZoneSettings] = msgspec.field(
        default_factory=lambda: [ZoneSettings(name="A", spaces=50)]
    )
    lanes: list[LaneSettings] = msgspec.field(default_factory=list)
    # Filled from the environment, never from the file.
    mqtt_password: Secret = msgspec.field(default_factory=lambda: Secret(""))
    admin_token: Secret = msgspec.field(default_factory=lambda: Secret(""))
    notify_socket: str = ""  # systemd's NOTIFY_SOCKET
    watchdog_s: float = 0.0  # systemd's WATCHDOG_USEC, in seconds (0: no watchdog)
    # GATEWAY_TEST_UNGUARDED_SAFETY=1, for one test only: the safety loop is read the way
    # gpiozero reads a pulled-up pin and the barrier's interlock is off (see hardware/).
    test_unguarded_safety: bool = False
    source: str = "<defaults>"

    @property
    def data_dir(self) -> Path:
        return Path(self.gate.data_dir)

    @property
    def database_path(self) -> Path:
        return self.data_dir / "gateway.sqlite3"

    @property
    def images_dir(self) -> Path:
        return Path(self.images.dir) if self.images.dir else self.data_dir / "images"

    def zone_specs(self) -> list[ZoneSpec]:
        return [z.spec() for z in self.zones]


_FILE_SECTIONS = {"mqtt_password", "admin_token", "notify_socket", "watchdog_s", "source",
                  "test_unguarded_safety"}
# Keys that were replaced: what to write instead (an old file gets the fix, not a guess).
_REPLACED = {
    ("LoopSettings", "active_high"): 'replaced by active_level and active_means: for a '
    'fail-safe detector (contact closed while the loop is clear) with pull = "up" write '
    'active_level = "low" and active_means = "clear"; for an output that is on while a '
    'vehicle is present write active_means = "occupied" (README "Wiring")',
}


# -- validation that reports every problem --------------------------------------------------
def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Annotated:
        base, *metas = get_args(tp)
        bits = [_describe(base)]
        for meta in metas:
            if isinstance(meta, msgspec.Meta):
                for attr, text in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
                    v = getattr(meta, attr)
                    if v is not None:
                        bits.append(f"{text} {v}")
                if meta.pattern:
                    bits.append(f"matching {meta.pattern}")
        return " ".join(bits)
    if origin is Literal:
        return "one of " + " | ".join(repr(a) for a in get_args(tp))
    if origin is list:
        return f"a list of {_describe(get_args(tp)[0])}"
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return "a table"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _check(value: Any, tp: Any, path: str, problems: list[str]) -> None:
    """Append one problem per wrong key below ``path``; recurse into tables and lists."""
    if isinstance(value, int) and not -(2**63) <= value < 2**63:  # TOML integers are 64-bit
        problems.append(f"{path or '(top level)'}: expected {_describe(tp)}, got an integer "
                        "beyond 64 bits")
        return
    base = get_args(tp)[0] if get_origin(tp) is Annotated else tp
    if isinstance(base, type) and issubclass(base, msgspec.Struct):
        if not isinstance(value, Mapping):
            problems.append(f"{path or '(top level)'}: expected a table, got {_shown(value)}")
            return
        fields = {f.name: f for f in msgspec.structs.fields(base)}
        for key, sub in value.items():
            where = f"{path}.{key}" if path else key
            hint = next((h for (struct, k), h in _REPLACED.items()
                         if k == key and struct in [c.__name__ for c in base.__mro__]), None)
            if hint is not None and key not in fields:
                problems.append(f"{where}: {hint}")
                continue
            if key not in fields or (base is Settings and key in _FILE_SECTIONS):
                known = ", ".join(
                    k for k in fields if not (base is Settings and k in _FILE_SECTIONS)
                )
                problems.append(f"{where}: unknown key (known keys here: {known})")
                continue
            _check(sub, fields[key].type, where, problems)
        for name, f in fields.items():
            if f.required and name not in value:
                problems.append(f"{path}.{name}: missing; expected {_describe(f.type)}")
        return
    if get_origin(base) is list and isinstance(value, list):
        (item_tp,) = get_args(base)
        for i, item in enumerate(value):
            _check(item, item_tp, f"{path}[{i}]", problems)
        return
    try:
        msgspec.convert(value, tp, strict=True)
    except msgspec.ValidationError:
        problems.append(f"{path}: expected {_describe(tp)}, got {_shown(value)}")


def _shown(value: Any) -> str:
    """A value from the file, for a message (an integer of over 4300 digits has no repr)."""
    try:
        return repr(value)
    except ValueError:
        return f"{type(value).__name__} holding an integer of more than 4300 digits"


INPUTS = ("arm_open_limit", "arm_closed_limit", "vend_input", "help_input", "hold_open_input")


def _safety_loop_checks(where: str, loop: LoopSettings) -> list[str]:
    """The safety loop is what keeps the arm off a car: presence only, wired fail-safe."""
    problems = []
    if loop.mode != "presence":
        problems.append(f'{where}.mode: must be "presence": a pulse cannot tell that a '
                        "vehicle is still under the arm (use the detector's presence output)")
    if loop.kind == "gpio":
        why = loop.wiring().fail_safe_problem()
        if why:
            problems.append(f"{where}: not fail-safe: {why}")
    return problems


def _cross_checks(s: Settings) -> list[str]:
    problems: list[str] = []
    for i, url in enumerate(s.central.base_urls):
        if not url.startswith(("http://", "https://")):
            problems.append(f"central.base_urls[{i}]: expected an http:// or https:// URL, "
                            f"got {url!r}")
    if not s.central.base_urls:
        problems.append("central.base_urls: expected at least one URL")
    names = [z.name for z in s.zones]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"zones: zone {name!r} is defined twice; zone names must be unique")
    for i, z in enumerate(s.zones):
        if z.reserved + z.accessible + z.ev > z.spaces:
            special = z.reserved + z.accessible + z.ev
            problems.append(f"zones[{i}]: reserved + accessible + ev ({special}) "
                            f"exceeds spaces ({z.spaces})")
    ids = [lane.id for lane in s.lanes]
    for lane_id in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f"lanes: lane id {lane_id!r} is used twice; lane ids must be unique")
    for i, lane in enumerate(s.lanes):
        for zone in lane.zone_order:
            if zone not in names:
                problems.append(f"lanes[{i}].zone_order: unknown zone {zone!r} "
                                f"(zones: {', '.join(names)})")
    for i, lane in enumerate(s.lanes):
        problems += _safety_loop_checks(f"lanes[{i}].safety_loop", lane.safety_loop)
        for part in ("arming_loop", "safety_loop", "barrier", "camera", *INPUTS):
            kind = getattr(lane, part).kind
            if kind == "sim" and not s.simulation.enabled:
                problems.append(f"lanes[{i}].{part}.kind: 'sim' needs simulation.enabled = true "
                                "(or configure the real device)")
        for part in ("arming_loop", "safety_loop"):
            loop = getattr(lane, part)
            if loop.kind == "serial" and not loop.port:
                problems.append(f"lanes[{i}].{part}.port: a serial loop needs its port, "
                                "e.g. /dev/ttyUSB0")
        b = lane.barrier
        if b.kind == "gpio" and b.close_pin is None and not b.closes_itself:
            problems.append(f"lanes[{i}].barrier.close_pin: give the close relay's pin; for a "
                            "barrier that closes on its own set closes_itself = true and wire "
                            "the safety loop detector to the barrier's own safety input too "
                            "(the gateway cannot hold such an arm up or reverse it)")
        if lane.camera.kind == "opencv" and not lane.camera.source:
            problems.append(f"lanes[{i}].camera.source: an opencv camera needs a source "
                            "(USB index, rtsp:// URL or a file)")
    try:
        compile_formats(s.plates.formats)
    except ConfigError as exc:
        problems += exc.problems
    for i, lane in enumerate(s.lanes):
        why = roi_problem(lane.camera.roi) if lane.camera.roi is not None else ""
        if why:
            problems.append(f"lanes[{i}].camera.roi: {why}")
    for name in s.simulation.planted_faults:
        if name not in PLANTED_FAULTS:
            problems.append(f"simulation.planted_faults: unknown planted fault {name!r} "
                            f"(known: {', '.join(PLANTED_FAULTS)})")
    if s.simulation.planted_faults and not s.simulation.enabled:
        problems.append("simulation.planted_faults: deliberately broken paths for the "
                        "reliability campaign; only with simulation.enabled = true")
    for key in ("private_broker", "start_backup"):
        if getattr(s.simulation, key) and not s.simulation.enabled:
            problems.append(f"simulation.{key}: only with simulation.enabled = true")
    problems += _images_checks(s)
    problems += _timezone_checks(s)
    if s.central.deadline_s > s.central.decision_deadline_s:
        problems.append("central.deadline_s: must not exceed central.decision_deadline_s "
                        f"({s.central.deadline_s} > {s.central.decision_deadline_s})")
    return problems


def _images_checks(s: Settings) -> list[str]:
    d = s.images.dir
    if d and not Path(d).is_absolute():
        return [f"images.dir: expected an absolute path, got {d!r} (or leave it out for "
                f"{s.data_dir / 'images'})"]
    if d and Path(d) == s.data_dir:
        return ["images.dir: must not be gate.data_dir itself: the images need a directory "
                f"of their own (leave it out for {s.data_dir / 'images'})"]
    return []


def _timezone_checks(s: Settings) -> list[str]:
    from gateway.timezones import zone

    try:
        zone(s.gate.timezone)
    except ValueError as exc:
        return [f"gate.timezone: {exc}"]
    return []


BOOT_PULLED_HIGH = range(0, 9)  # BCM GPIO0-8 are pulled up while a Pi boots; 9-27 down


def _bcm(pin: int | str | None) -> int | None:
    if isinstance(pin, int):
        return pin
    digits = pin[4:] if isinstance(pin, str) and pin.upper().startswith("GPIO") else ""
    if digits.isascii() and digits.isdigit() and len(digits) <= 3:  # not "GPIO²" (no int)
        return int(digits)
    return None


def boot_warnings(s: Settings) -> list[str]:
    """Relays that a Pi's power-on pulls would energise before the gateway runs."""
    out = []
    for i, lane in enumerate(s.lanes):
        b, ind = lane.barrier, lane.indicators
        relays: list[tuple[str, str, int | str | None, bool, str]] = [
                  ("barrier", "open_pin", b.open_pin, b.active_high, b.kind),
                  ("barrier", "close_pin", b.close_pin, b.active_high, b.kind)]
        relays += [("indicators", key, getattr(ind, key), ind.active_high, ind.kind)
                   for key in ("green_pin", "red_pin", "full_sign_pin")]
        for part, key, pin, active_high, kind in relays:
            n = _bcm(pin)
            if kind != "gpio" or n is None:
                continue
            high = n in BOOT_PULLED_HIGH
            if high == active_high:
                better = "GPIO9-27" if active_high else "GPIO4-8"
                out.append(f"{s.source}: lanes[{i}].{part}.{key}: GPIO{n} is pulled "
                           f"{'high' if high else 'low'} while the Pi boots, which energises "
                           f"an active-{'high' if active_high else 'low'} relay until the "
                           f"gateway starts: use {better}, or set active_high for a board of "
                           "the other kind")
    return out


def config_warnings(s: Settings) -> list[str]:
    """What ``check-config`` warns of: allowed, but an installer should know."""
    out = boot_warnings(s)
    if s.store.synchronous == "normal":
        out.append(f"{s.source}: store.synchronous: \"normal\" may lose the last commits on a "
                   "power cut: a saga step or a space allocation the gate acted on can vanish, "
                   "so a record may be sent twice or a space given twice after it; use \"full\"")
    if s.images.enabled and s.images.public == "all" and s.images.keep != "crops":
        out.append(f"{s.source}: images.public: \"all\" lets anyone who reaches the web port "
                   "see whole camera frames (people, other cars) without the admin token; "
                   "use \"crops\" unless the page is on a closed network")
    return out


def parse_settings(
    text: str, source: str = "<string>", env: Mapping[str, str] | None = None
) -> Settings:
    """Parse TOML text. Raises ``ConfigError`` listing every problem, each prefixed with
    ``source``."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: not valid TOML: {exc}"]) from None
    except RecursionError:  # tomllib recurses into each nested array or inline table
        raise ConfigError([f"{source}: not valid TOML: arrays or tables nested too deeply"]
                          ) from None
    except ValueError as exc:  # int() refuses an integer of more than 4300 digits
        raise ConfigError([f"{source}: not valid TOML: {str(exc).split(';')[0]}"]) from None
    problems: list[str] = []
    _check(raw, Settings, "", problems)
    if problems:
        raise ConfigError([f"{source}: {p}" for p in problems])
    settings = msgspec.convert(raw, Settings, strict=True)
    cross = _cross_checks(settings)
    if cross:
        raise ConfigError([f"{source}: {p}" for p in cross])
    env = env or {}
    try:
        watchdog_s = int(env.get("WATCHDOG_USEC", "0")) / 1e6
    except ValueError:
        watchdog_s = 0.0
    unguarded = env.get("GATEWAY_TEST_UNGUARDED_SAFETY") == "1"
    if unguarded and not (settings.simulation.enabled and all(
            lane.safety_loop.kind == "sim" for lane in settings.lanes)):
        raise ConfigError([f"{source}: GATEWAY_TEST_UNGUARDED_SAFETY is set: it turns the "
                           "safety loop's guard off and is for tests of the simulator only; "
                           "remove it from the environment"])
    return msgspec.structs.replace(
        settings,
        mqtt_password=Secret(env.get("GATEWAY_MQTT_PASSWORD", "")),
        admin_token=Secret(env.get("GATEWAY_ADMIN_TOKEN", "")),
        notify_socket=env.get("NOTIFY_SOCKET", ""),
        watchdog_s=max(0.0, watchdog_s),
        test_unguarded_safety=unguarded,
        source=source,
    )


def mqtt_password(env: Mapping[str, str]) -> str:
    """For tools without a configuration file (``monitor``)."""
    return env.get("GATEWAY_MQTT_PASSWORD", "")


def load_settings(path: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    """Read and parse a configuration file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{p}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{p}: cannot be read: {exc}"]) from None
    return parse_settings(text, str(p), env)


def embedded_default_text() -> str:
    """The demo configuration shipped inside the package (``config/demo.toml``)."""
    return resources.files("gateway").joinpath("defaults/demo.toml").read_text("utf-8")


def load_default(env: Mapping[str, str] | None = None) -> Settings:
    return parse_settings(embedded_default_text(), "<embedded demo.toml>", env)
