"""What goes into the lane machine (events), what comes out (commands), and its settings.

Loop levels are what the inputs *mean* (wiring already applied in ``hardware/``); for a
loop in a pulse mode ``occupied`` is the detector's output, which the lane interprets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class LaneState(StrEnum):
    IDLE = "idle"
    PRESENT = "present"  # a vehicle on the arming loop; capturing
    DECIDING = "deciding"  # plate read; the saga decides
    DENIED = "denied"  # no entry; waiting for the vehicle to leave the arming loop
    OPENING = "opening"  # arm up for a granted vehicle that has not reached the safety loop
    PASSING = "passing"  # the granted vehicle is on the safety loop
    CLOSING = "closing"  # arm coming down
    HOLDING = "holding"  # arm up, waiting for both loops to clear before closing
    HELD_OPEN = "held_open"  # the hold-open input (or an exit lane failing open) keeps it up
    FAULT = "fault"  # a loop or the barrier is faulty: nothing is decided until it recovers


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
    """The camera's answer for one presence (``presence`` is the number the lane gave the
    ``Capture``); no plate and no image means the burst failed. ``saga_id`` is chosen by
    the controller (ids are random, and the core draws no random numbers)."""

    plate: str | None
    saga_id: str
    confidence: float = 0.0
    image_b64: str | None = None
    presence: int = 0
    source: str = ""  # who read the plate: "camera" (ANPR), "local" (the gate's reader)


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
    source: str = "manual"  # manual | vend (the ticket machine's "open" input)


@dataclass(frozen=True, slots=True)
class LoopFault:
    loop: str  # a loop name, or "barrier"
    reason: str
    recovered: bool = False


@dataclass(frozen=True, slots=True)
class ArmLimit:
    """An arm limit switch: ``limit`` is "open" or "closed", ``on`` whether the arm is there."""

    limit: str
    on: bool


@dataclass(frozen=True, slots=True)
class InputChanged:
    """An optional contact input: "help" (intercom button) or "hold_open" (fire)."""

    name: str
    on: bool


@dataclass(frozen=True, slots=True)
class BarrierInterlock:
    """The barrier's own interlock refused a close or reversed a closing arm."""

    reason: str


Event = (LoopRaw | Tick | PlateCaptured | OpenRequested | SagaFinished | ManualOpen
         | LoopFault | ArmLimit | InputChanged | BarrierInterlock)


# -- commands -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Capture:
    presence: int = 0


@dataclass(frozen=True, slots=True)
class StartSaga:
    saga_id: str
    plate: str
    confidence: float
    image_b64: str | None
    reading_source: str = ""  # "camera" | "local" | "" (no reading: central reads the image)


@dataclass(frozen=True, slots=True)
class PulseOpen:
    manual: bool = False
    reason: str = "grant"  # grant | manual | reverse | retry | hold | reassert


@dataclass(frozen=True, slots=True)
class Close:
    retry: bool = False


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
    """Reply to the saga's ``open_barrier``: opened or refused, and whether the arm was
    seen up (``confirmed``), not seen up in time (``not_confirmed``) or has no open limit
    switch to tell (``assumed``)."""

    saga_id: str
    opened: bool
    reason: str = ""
    arm: str = "assumed"


Command = Capture | StartSaga | PulseOpen | Close | PassageResult | Emit | AnswerOpen


@dataclass(frozen=True, slots=True)
class LaneConfig:
    debounce_s: float = 0.05
    capture_timeout_s: float = 3.0
    capture_attempts: int = 3  # a failed burst is taken again while the vehicle is there
    decision_timeout_s: float = 10.0
    passage_timeout_s: float = 30.0
    arm_travel_s: float = 2.0
    dropout_hold_s: float = 0.5  # a loop must stay clear this long (trailer drawbars)
    gap_hold_s: float = 3.0  # arming loop left, safety loop not reached by then: backed out
    stuck_occupied_s: float = 900.0
    duplicate_window_s: float = 10.0
    arming_mode: str = "presence"  # presence | pulse_on_entry | pulse_on_exit
    pulse_hold_s: float = 5.0
    tailgate_response: str = "report"  # report | hold (keep the arm up for the follower)
    fail_open: bool = False  # an exit lane with a faulty loop keeps the arm up
    unreadable_exit: str = "deny"  # allow: an exit vehicle no camera can read is let out
    limits: frozenset[str] = frozenset()  # arm limit switches present: "open", "closed"
