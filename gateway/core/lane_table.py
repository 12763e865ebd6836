"""The lane's transition table, the one source of its rules (as in h11's ``_state.py``):
``(state, trigger) -> (handler, states it may lead to)``. ``gateway.core.lane.Lane`` runs
it, the README's diagram is drawn from it (``render_mermaid``), and a pair it does not name
is an error, never a silent no-op.
"""

from __future__ import annotations

from gateway.core.lane_types import LaneState

S = LaneState
ALL = tuple(S)
REST = (S.IDLE, S.PRESENT, S.DENIED, S.FAULT, S.HELD_OPEN)  # where _rest() may lead
FAULTED = (S.FAULT, S.HELD_OPEN)  # where _rest() leads while a fault stands
UP = (S.OPENING, S.PASSING, S.HOLDING, S.HELD_OPEN)  # the arm is meant to be up

# (state, trigger) -> (handler, states it may lead to). "quiet" rows say on purpose that
# nothing happens. Triggers: loop changes (arming_on …), plate, open, saga_done, manual,
# fault, fault_cleared, hold_on, hold_off, arm_up, arm_down, arm_stuck, interlock (the
# barrier refused or reversed a close), and the timers
# timeout (each state's own), gap (arming loop left, safety loop not reached) and dropout
# (the safety loop, or both loops while holding, clear for the hold time).
Row = tuple[str, tuple[LaneState, ...]]
TRANSITIONS: dict[tuple[LaneState, str], Row] = {}


def _rows(states: tuple[LaneState, ...], trigger: str, handler: str,
          targets: tuple[LaneState, ...] | None = None) -> None:
    for state in states:
        TRANSITIONS[(state, trigger)] = (handler, targets if targets is not None else (state,))


for _s in ALL:  # what every state answers the same way
    _rows((_s,), "plate", "stale_capture")
    _rows((_s,), "open", "refuse_open")
    _rows((_s,), "saga_done", "quiet")
    _rows((_s,), "hold_off", "quiet")
    _rows((_s,), "fault_cleared", "quiet")
_rows((S.IDLE, S.PRESENT, S.DECIDING, S.DENIED, S.CLOSING, S.FAULT), "manual", "manual_open",
      (S.OPENING,))
_rows(UP, "manual", "reassert_open")
_rows(tuple(s for s in ALL if s is not S.HELD_OPEN), "hold_on", "hold_open", (S.HELD_OPEN,))
_rows((S.HELD_OPEN,), "hold_on", "quiet")
_rows((S.IDLE, S.PRESENT, S.DENIED), "fault", "back_to_rest", FAULTED)
_rows((S.DECIDING, S.OPENING, S.PASSING, S.HOLDING, S.HELD_OPEN, S.FAULT), "fault",
      "quiet")  # recorded; it takes effect when the cycle returns to rest
_rows((S.CLOSING,), "fault", "fault_while_closing", (S.CLOSING, S.HOLDING))
# the barrier's own interlock refused or reversed a close: only a closing lane must follow
_rows(tuple(s for s in ALL if s is not S.CLOSING), "interlock", "quiet")
_rows((S.IDLE, S.PRESENT, S.DECIDING, S.DENIED), "arm_up", "arm_moved", (S.HOLDING,))
_rows((*UP, S.CLOSING, S.FAULT), "arm_up", "quiet")
_rows((S.IDLE, S.PRESENT, S.DECIDING, S.DENIED, S.FAULT), "arm_down", "quiet")
_rows(UP, "arm_down", "arm_fell")
_rows(UP, "arm_stuck", "arm_fault")
for _loop in ("arming_on", "arming_off", "safety_on", "safety_off"):
    _rows((S.IDLE, S.HELD_OPEN, S.FAULT), _loop, "quiet")
    _rows((S.HOLDING,), _loop, "check_clear")
_rows((S.HOLDING,), "safety_on", "another_under_the_arm")
_rows((S.PRESENT, S.DECIDING, S.DENIED), "safety_on", "quiet")
_rows((S.PRESENT, S.DECIDING, S.DENIED, S.OPENING), "safety_off", "quiet")
_rows((S.CLOSING,), "arming_on", "quiet")
_rows((S.CLOSING,), "arming_off", "quiet")
TRANSITIONS.update({
    (S.IDLE, "arming_on"): ("present", (S.PRESENT, S.DENIED)),
    (S.PRESENT, "arming_off"): ("back_to_rest", REST),
    (S.PRESENT, "plate"): ("decide", (S.PRESENT, S.DECIDING, S.DENIED, S.OPENING)),
    (S.PRESENT, "timeout"): ("capture_timeout", (S.DENIED, S.OPENING)),
    # an open for this decision opens; one of an earlier saga is refused, still deciding
    (S.DECIDING, "open"): ("open", (S.OPENING, S.DECIDING)),
    (S.DECIDING, "saga_done"): ("deny", (S.DENIED, *REST)),
    (S.DECIDING, "arming_off"): ("arming_left", (S.DECIDING,)),
    (S.DECIDING, "arming_on"): ("arming_back", (S.DECIDING,)),
    (S.DECIDING, "gap"): ("left_while_deciding", REST),
    (S.DECIDING, "timeout"): ("decision_timeout", (S.DENIED, *REST)),
    (S.DENIED, "arming_off"): ("back_to_rest", REST),
    (S.DENIED, "timeout"): ("denied_waiting", (S.DENIED, S.PRESENT)),
    (S.OPENING, "safety_on"): ("passing", (S.PASSING,)),
    (S.OPENING, "arming_off"): ("arming_left", (S.OPENING,)),
    (S.OPENING, "arming_on"): ("arming_back", (S.OPENING,)),
    (S.OPENING, "gap"): ("backed_out", (S.CLOSING, S.HOLDING)),
    (S.OPENING, "timeout"): ("passage_timeout", (S.OPENING, S.CLOSING, S.HOLDING)),
    (S.PASSING, "arming_off"): ("arming_left_passing", (S.PASSING,)),
    (S.PASSING, "arming_on"): ("arming_back_passing", (S.PASSING,)),
    (S.PASSING, "safety_off"): ("safety_left", (S.PASSING,)),
    (S.PASSING, "safety_on"): ("safety_back", (S.PASSING,)),
    (S.PASSING, "dropout"): ("safety_cleared", (S.OPENING, S.CLOSING, S.HOLDING)),
    (S.PASSING, "timeout"): ("passage_stalled", (S.PASSING,)),
    (S.CLOSING, "safety_on"): ("reverse", (S.HOLDING,)),
    (S.CLOSING, "arm_down"): ("closed", REST),
    (S.CLOSING, "timeout"): ("closing_timeout", (*REST, *FAULTED)),
    (S.CLOSING, "interlock"): ("interlock", (S.HOLDING,)),
    (S.CLOSING, "arm_stuck"): ("close_failed", FAULTED),
    (S.CLOSING, "arm_up"): ("quiet", (S.CLOSING,)),
    (S.HOLDING, "dropout"): ("clear_to_close", (S.CLOSING, S.HOLDING)),
    (S.HOLDING, "timeout"): ("holding_timeout", (S.HOLDING,)),
    (S.HELD_OPEN, "hold_off"): ("release_hold", (S.HELD_OPEN, S.HOLDING)),
    (S.HELD_OPEN, "fault_cleared"): ("release_hold", (S.HELD_OPEN, S.HOLDING)),
    (S.HELD_OPEN, "timeout"): ("reassert_hold", (S.HELD_OPEN,)),
    (S.FAULT, "fault_cleared"): ("back_to_rest", REST),
    (S.FAULT, "timeout"): ("fault_persists", (S.FAULT,)),
})


def render_mermaid() -> str:
    """The lane cycle as a Mermaid state diagram, generated from ``TRANSITIONS``: one
    edge per trigger and target that leaves the state (staying put is not drawn)."""
    lines = ["stateDiagram-v2", "  [*] --> idle"]
    edges: dict[tuple[str, str], list[str]] = {}
    for (state, trigger), (_, targets) in TRANSITIONS.items():
        for target in targets:
            if target is not state:
                edges.setdefault((state.value, target.value), []).append(trigger)
    for (src, dst), triggers in edges.items():
        lines.append(f"  {src} --> {dst}: {', '.join(dict.fromkeys(triggers))}")
    return "\n".join(lines)
