"""The lane cycle as a pure state machine: ``Lane.handle(event, now) -> [commands]``.

All transition rules live in ``TRANSITIONS`` (the README's diagram is generated from it).
The lane never touches a device: it says what to do (``PulseOpen``, ``Close``, ``Capture``…)
and the lane controller does it. Safety rules it holds, whatever the events:
- ``Close`` is never commanded while the safety loop (debounced) is occupied;
- one ``PulseOpen`` per granted decision; only a manual open adds one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gateway.core.debounce import Debouncer


class LaneState(StrEnum):
    IDLE = "idle"
    PRESENT = "present"  # a vehicle on the arming loop; capturing
    DECIDING = "deciding"  # plate read; the saga decides
    OPENING = "opening"  # barrier opening; waiting for the vehicle to reach the safety loop
    PASSING = "passing"  # vehicle on the safety loop
    CLOSING = "closing"  # barrier coming down
    DENIED = "denied"  # no entry; waiting for the vehicle to leave the arming loop
    TAILGATE = "tailgate"  # a second vehicle under the barrier in one cycle
    FAULT = "fault"  # a loop is stuck: nothing is decided until it recovers


# -- events -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LoopRaw:
    loop: str  # "arming" | "safety"
    occupied: bool


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed (the controller calls this at ``next_deadline()``)."""


@dataclass(frozen=True, slots=True)
class PlateCaptured:
    """The camera's answer. ``saga_id`` is chosen by the controller (ids are random, and
    the core draws no random numbers)."""

    plate: str | None
    saga_id: str
    confidence: float = 0.0
    image_b64: str | None = None


@dataclass(frozen=True, slots=True)
class OpenRequested:
    saga_id: str


@dataclass(frozen=True, slots=True)
class SagaFinished:
    saga_id: str
    status: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ManualOpen:
    who: str
    why: str = ""


@dataclass(frozen=True, slots=True)
class LoopFault:
    loop: str
    reason: str
    recovered: bool = False


Event = LoopRaw | Tick | PlateCaptured | OpenRequested | SagaFinished | ManualOpen | LoopFault


# -- commands -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Capture:
    pass


@dataclass(frozen=True, slots=True)
class StartSaga:
    saga_id: str
    plate: str
    confidence: float
    image_b64: str | None


@dataclass(frozen=True, slots=True)
class PulseOpen:
    manual: bool = False


@dataclass(frozen=True, slots=True)
class Close:
    pass


@dataclass(frozen=True, slots=True)
class PassageResult:
    saga_id: str
    passed: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Emit:
    type: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AnswerOpen:
    """Reply to the saga's ``open_barrier``: opened, or refused with a reason."""

    saga_id: str
    opened: bool
    reason: str = ""


Command = Capture | StartSaga | PulseOpen | Close | PassageResult | Emit | AnswerOpen


@dataclass(frozen=True, slots=True)
class LaneTimings:
    debounce_s: float = 0.05
    capture_timeout_s: float = 3.0
    passage_timeout_s: float = 30.0
    arm_travel_s: float = 2.0
    stuck_occupied_s: float = 900.0
    duplicate_window_s: float = 10.0


# (state, trigger) -> handler. Triggers: arming_on, arming_off, safety_on, safety_off,
# plate, open, saga_done, manual, timeout, fault.
TRANSITIONS: dict[tuple[LaneState, str], str] = {
    (LaneState.IDLE, "arming_on"): "present",
    (LaneState.PRESENT, "plate"): "decide",
    (LaneState.PRESENT, "arming_off"): "idle_quietly",
    (LaneState.PRESENT, "timeout"): "capture_failed",
    (LaneState.DECIDING, "open"): "open",
    (LaneState.DECIDING, "saga_done"): "deny",
    (LaneState.DECIDING, "arming_off"): "left_while_deciding",
    (LaneState.OPENING, "safety_on"): "passing",
    (LaneState.OPENING, "arming_off"): "backed_out",
    (LaneState.OPENING, "timeout"): "passage_timeout",
    (LaneState.PASSING, "safety_off"): "passed",
    (LaneState.CLOSING, "safety_on"): "tailgate",
    (LaneState.CLOSING, "timeout"): "closed",
    (LaneState.TAILGATE, "safety_off"): "tailgater_through",
    (LaneState.DENIED, "arming_off"): "idle_quietly",
    (LaneState.FAULT, "fault_cleared"): "recovered",
}
# Manual open is accepted in these states (not while the barrier is already up).
MANUAL_OPEN_STATES = {LaneState.IDLE, LaneState.PRESENT, LaneState.DECIDING, LaneState.DENIED,
                      LaneState.FAULT}


class Lane:
    def __init__(self, lane_id: str, direction: str, timings: LaneTimings | None = None) -> None:
        self.lane_id = lane_id
        self.direction = direction
        self.t = timings or LaneTimings()
        self.state = LaneState.IDLE
        self.arming = Debouncer(self.t.debounce_s)
        self.safety = Debouncer(self.t.debounce_s)
        self.saga_id: str | None = None
        self.plate: str | None = None
        self.manual = False
        self.deadline: float | None = None
        self.passages = 0  # safety-loop passages in this open cycle
        self.faults: dict[str, str] = {}
        self._occupied_since: dict[str, float] = {}
        self._last_granted: tuple[str, float] | None = None
        self.mode = "normal"  # normal | closed (no new vehicle is let in)

    # -- public ------------------------------------------------------------------------
    @property
    def barrier(self) -> str:
        return {LaneState.OPENING: "open", LaneState.PASSING: "open",
                LaneState.TAILGATE: "open", LaneState.CLOSING: "closing"}.get(self.state, "closed")

    def next_deadline(self) -> float | None:
        times = [t for t in (self.deadline, self.arming.deadline(), self.safety.deadline())
                 if t is not None]
        for loop, since in self._occupied_since.items():
            if loop not in self.faults:
                times.append(since + self.t.stuck_occupied_s)
        return min(times) if times else None

    def handle(self, event: Event, now: float) -> list[Command]:
        out: list[Command] = []
        if isinstance(event, LoopRaw):
            (self.arming if event.loop == "arming" else self.safety).raw(event.occupied, now)
        elif isinstance(event, PlateCaptured):
            out += self._fire("plate", now, event)
        elif isinstance(event, OpenRequested):
            if self.state is LaneState.DECIDING and event.saga_id == self.saga_id:
                out += self._fire("open", now, event)
            else:
                out.append(AnswerOpen(event.saga_id, False,
                                      f"lane is {self.state}, not waiting for this decision"))
        elif isinstance(event, SagaFinished):
            if event.saga_id == self.saga_id and self.state is LaneState.DECIDING:
                out += self._fire("saga_done", now, event)
        elif isinstance(event, ManualOpen):
            out += self._manual_open(event, now)
        elif isinstance(event, LoopFault):
            out += self._loop_fault(event.loop, event.reason, event.recovered, now)
        out += self._settle(now)
        return out

    # -- internals ---------------------------------------------------------------------
    def _settle(self, now: float) -> list[Command]:
        """Apply debounced loop changes and due timers."""
        out: list[Command] = []
        for _ in range(8):  # a few rounds: one change can make another due
            changed = False
            for name, deb in (("safety", self.safety), ("arming", self.arming)):
                level = deb.poll(now)
                if level is None:
                    continue
                changed = True
                if level:
                    self._occupied_since[name] = now
                else:
                    self._occupied_since.pop(name, None)
                    if name in self.faults and self.faults[name] == "stuck occupied":
                        out += self._loop_fault(name, "", True, now)
                out += self._fire(f"{name}_{'on' if level else 'off'}", now, None)
            for name, since in list(self._occupied_since.items()):
                if name not in self.faults and now >= since + self.t.stuck_occupied_s:
                    out += self._loop_fault(name, "stuck occupied", False, now)
                    changed = True
            if self.deadline is not None and now >= self.deadline:
                self.deadline = None
                out += self._fire("timeout", now, None)
                changed = True
            if not changed:
                break
        return out

    def _fire(self, trigger: str, now: float, event: Event | None) -> list[Command]:
        handler = TRANSITIONS.get((self.state, trigger))
        if handler is None:
            return []
        result: list[Command] = getattr(self, f"_on_{handler}")(now, event)
        return result

    def _go(self, state: LaneState, deadline: float | None = None) -> None:
        self.state = state
        self.deadline = deadline

    def _emit(self, type_: str, **data: Any) -> Emit:
        return Emit(type_, {"lane_id": self.lane_id, **data})

    def _idle(self, now: float) -> list[Command]:
        self._go(LaneState.FAULT if self.faults else LaneState.IDLE)
        self.saga_id = self.plate = None
        self.manual = False
        self.passages = 0
        if self.arming.stable and not self.faults:  # the next vehicle is already waiting
            return self._on_present(now, None)
        return []

    # -- handlers (named in TRANSITIONS) -----------------------------------------------
    def _on_present(self, now: float, _: Event | None) -> list[Command]:
        if self.faults:
            return []
        if self.mode == "closed":
            self._go(LaneState.DENIED)
            return [self._emit("vehicle_detected", direction=self.direction),
                    self._emit(f"{self.direction}_denied", reason="lane_closed")]
        self._go(LaneState.PRESENT, now + self.t.capture_timeout_s)
        return [self._emit("vehicle_detected", direction=self.direction), Capture()]

    def _on_decide(self, now: float, event: Event | None) -> list[Command]:
        assert isinstance(event, PlateCaptured)
        if not event.plate and not event.image_b64:
            self._go(LaneState.DENIED)
            return [self._emit(f"{self.direction}_denied", reason="no_plate_found")]
        # With an image but no local reading, the central service reads the plate.
        self.plate = event.plate or ""
        self.saga_id = event.saga_id
        if self._last_granted and self._last_granted[0] == event.plate \
                and now - self._last_granted[1] < self.t.duplicate_window_s:
            # The same plate again moments after its passage: the same vehicle (it
            # rolled back over the loop), not a second one.
            self._go(LaneState.DENIED)
            return [self._emit("duplicate_read", license_plate=event.plate)]
        self._go(LaneState.DECIDING)
        return [StartSaga(event.saga_id, self.plate, event.confidence, event.image_b64)]

    def _on_idle_quietly(self, now: float, _: Event | None) -> list[Command]:
        return self._idle(now)

    def _on_capture_failed(self, now: float, _: Event | None) -> list[Command]:
        self._go(LaneState.DENIED)
        return [self._emit(f"{self.direction}_denied", reason="no_plate_read")]

    def _on_open(self, now: float, event: Event | None) -> list[Command]:
        assert isinstance(event, OpenRequested)
        self._go(LaneState.OPENING, now + self.t.passage_timeout_s)
        self.passages = 0
        return [PulseOpen(), AnswerOpen(event.saga_id, True),
                self._emit("barrier_opened", saga_id=event.saga_id)]

    def _on_deny(self, now: float, event: Event | None) -> list[Command]:
        assert isinstance(event, SagaFinished)
        self._go(LaneState.DENIED)
        if not self.arming.stable:
            return self._idle(now)
        return []

    def _on_left_while_deciding(self, now: float, _: Event | None) -> list[Command]:
        # The vehicle drove off before the decision: its saga's open is refused later,
        # and the saga compensates.
        return self._idle(now)

    def _on_passing(self, now: float, _: Event | None) -> list[Command]:
        self.passages += 1
        self._go(LaneState.PASSING, now + self.t.passage_timeout_s)
        return []

    def _end_of_passage(self, now: float, passed: bool, reason: str) -> list[Command]:
        out: list[Command] = []
        if self.saga_id is not None:
            out.append(PassageResult(self.saga_id, passed, reason))
        if passed and self.plate:
            self._last_granted = (self.plate, now)
        if self.safety.stable:  # never command the barrier down onto a vehicle
            self._go(LaneState.TAILGATE)
            return out
        self._go(LaneState.CLOSING, now + self.t.arm_travel_s)
        out.append(Close())
        return out

    def _on_passed(self, now: float, _: Event | None) -> list[Command]:
        return self._end_of_passage(now, True, "")

    def _on_backed_out(self, now: float, _: Event | None) -> list[Command]:
        out = self._end_of_passage(now, False, "backed_out")
        return [self._emit("vehicle_backed_out", saga_id=self.saga_id), *out]

    def _on_passage_timeout(self, now: float, _: Event | None) -> list[Command]:
        # The vehicle never reached the safety loop (stalled before the barrier).
        return [self._emit("passage_timeout", saga_id=self.saga_id),
                *self._end_of_passage(now, False, "passage_timeout")]

    def _on_tailgate(self, now: float, _: Event | None) -> list[Command]:
        self.passages += 1
        self._go(LaneState.TAILGATE)
        return [self._emit("tailgating_detected", saga_id=self.saga_id,
                           license_plate=self.plate, passages=self.passages)]

    def _on_tailgater_through(self, now: float, _: Event | None) -> list[Command]:
        self._go(LaneState.CLOSING, now + self.t.arm_travel_s)
        return [Close()]

    def _on_closed(self, now: float, _: Event | None) -> list[Command]:
        out: list[Command] = [self._emit("barrier_closed", saga_id=self.saga_id)]
        return out + self._idle(now)

    def _on_recovered(self, now: float, _: Event | None) -> list[Command]:
        return self._idle(now)

    def set_mode(self, mode: str, who: str) -> tuple[bool, list[Command]]:
        """Operator change of the lane's mode; refused while a vehicle is under the
        barrier (closing the lane then would mean bringing the arm down on it)."""
        if mode not in ("normal", "closed"):
            return False, [self._emit("lane_mode_refused", who=who, reason=f"no mode {mode!r}")]
        if mode == "closed" and (self.safety.stable or self.barrier != "closed"):
            return False, [self._emit("lane_mode_refused", who=who, mode=mode,
                                      reason=f"unsafe: barrier {self.barrier}, safety loop "
                                             f"{'occupied' if self.safety.stable else 'clear'}")]
        self.mode = mode
        return True, [self._emit("lane_mode_changed", who=who, mode=mode)]

    def _manual_open(self, event: ManualOpen, now: float) -> list[Command]:
        if self.state not in MANUAL_OPEN_STATES:
            return [self._emit("manual_open_refused", who=event.who,
                               reason=f"barrier is {self.barrier} ({self.state})")]
        self.manual = True
        self.saga_id = None  # a saga still deciding for this vehicle will be refused
        self._go(LaneState.OPENING, now + self.t.passage_timeout_s)
        self.passages = 0
        return [PulseOpen(manual=True),
                self._emit("manual_open", who=event.who, why=event.why),
                self._emit("barrier_opened", manual=True)]

    def _loop_fault(self, loop: str, reason: str, recovered: bool, now: float) -> list[Command]:
        if recovered:
            if self.faults.pop(loop, None) is None:
                return []
            out: list[Command] = [self._emit("hardware_recovered", device=f"{loop}_loop")]
            if not self.faults:
                out += self._fire("fault_cleared", now, None)
            return out
        if loop in self.faults:
            return []
        self.faults[loop] = reason
        out = [self._emit("hardware_fault", device=f"{loop}_loop", reason=reason)]
        if self.state in (LaneState.IDLE, LaneState.PRESENT, LaneState.DENIED):
            self._go(LaneState.FAULT)
        return out


def render_mermaid() -> str:
    """The lane cycle as a Mermaid state diagram, generated from ``TRANSITIONS``."""
    lines = ["stateDiagram-v2", "  [*] --> idle"]
    targets = {
        "present": "present", "decide": "deciding", "idle_quietly": "idle",
        "capture_failed": "denied", "open": "opening", "deny": "denied",
        "left_while_deciding": "idle", "passing": "passing", "backed_out": "closing",
        "passage_timeout": "closing", "passed": "closing", "tailgate": "tailgate",
        "closed": "idle", "tailgater_through": "closing", "recovered": "idle",
    }
    for (state, trigger), handler in TRANSITIONS.items():
        lines.append(f"  {state.value} --> {targets[handler]}: {trigger}")
    for state in sorted(MANUAL_OPEN_STATES, key=lambda s: s.value):
        lines.append(f"  {state.value} --> opening: manual open")
    lines.append("  idle --> fault: loop stuck or reported faulty")
    return "\n".join(lines)
