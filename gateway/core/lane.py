"""The lane cycle as a pure state machine: ``Lane.handle(event, now) -> [commands]``.

Every rule lives in ``TRANSITIONS`` (``lane_table.py``, as in h11's ``_state.py``): a
(state, trigger) pair names its handler and every state the handler may lead to. The
README's diagram is drawn from it, a handler that lands elsewhere raises
``LaneTableError``, and so does a pair the table does not name: a gap in the design is an
error the tests see, not a silent no-op.

Rules it holds, whatever the events (``tests/unit/test_lane_machine.py`` checks them over
random sequences):
- ``Close`` only while the safety loop is clear and no granted vehicle is on either loop;
- the safety loop occupied while the arm is closing re-opens it at once (``barrier_reversed``);
- a passage goes arming loop -> safety loop -> clear, with drop-out hold times, so a
  trailer's drawbar does not end it and a vehicle that reverses out is not entered;
- every state but ``idle`` has a timeout, every timeout is an event, and each state has a
  way back to rest.
"""

from __future__ import annotations

from typing import Any

from gateway.core.arm import Arm
from gateway.core.debounce import Debouncer, PulsePresence
from gateway.core.errors import LaneTableError
from gateway.core.lane_table import TRANSITIONS as TRANSITIONS
from gateway.core.lane_table import render_mermaid as render_mermaid
from gateway.core.lane_types import (
    AnswerOpen,
    ArmLimit,
    BarrierInterlock,
    Capture,
    Close,
    Command,
    Emit,
    Event,
    InputChanged,
    LaneConfig,
    LaneState,
    LoopFault,
    LoopRaw,
    ManualOpen,
    OpenRequested,
    PassageResult,
    PlateCaptured,
    PulseOpen,
    SagaFinished,
    StartSaga,
)

S = LaneState
TIMERS = ("timeout", "gap", "dropout")


class Lane:
    def __init__(self, lane_id: str, direction: str, config: LaneConfig | None = None) -> None:
        self.lane_id = lane_id
        self.direction = direction
        self.c = c = config or LaneConfig()
        self.state = S.IDLE
        self.arming: Debouncer | PulsePresence = (
            Debouncer(c.debounce_s) if c.arming_mode == "presence"
            else PulsePresence(c.debounce_s, c.pulse_hold_s))
        # the safety loop counts as occupied until it has been read, and an occupancy counts
        # at once (only its clearing is debounced)
        self.safety = Debouncer(c.debounce_s, initial=True, rise_s=0.0)
        self.arm = Arm(c.arm_travel_s, c.limits)
        self.timers: dict[str, float] = {}
        self.presence = 0  # numbers each vehicle on the arming loop; captures carry it
        self.attempt = 0
        self.saga_id: str | None = None
        self.plate: str | None = None
        self.granted = False  # a vehicle let through in this cycle has not passed yet
        self.passages = 0  # vehicles through the safety loop in this open cycle
        self.tailgated = False
        self.hold_all = False  # holding until both loops are clear (tailgate "hold")
        self.held = False  # the hold-open input
        self.faults: dict[str, str] = {}
        self.mode = "normal"  # normal | closed (no new vehicle is let in)
        self.stale_captures = 0
        self._open_waiting: str | None = None  # a saga told "opened" once the arm is up
        self._arming_left_at: float | None = None
        self._arming_cleared = False  # the arming loop cleared since the safety loop was hit
        self._occupied_since: dict[str, float] = {}
        self._last_granted: tuple[str, float] | None = None

    # -- public ------------------------------------------------------------------------
    @property
    def barrier(self) -> str:
        if self.state is S.CLOSING:
            return "closing"
        return "open" if self.arm.commanded == "up" else "closed"

    def may_close(self) -> bool:
        return not (self.safety.stable or "safety" in self.faults
                    or (self.granted and self.arming.stable))

    def next_deadline(self) -> float | None:
        times = [*self.timers.values(), *(t for t in (
            self.arming.deadline(), self.safety.deadline(), self.arm.check_at) if t is not None)]
        for loop, since in self._occupied_since.items():
            if loop not in self.faults:
                times.append(since + self.c.stuck_occupied_s)
        return min(times) if times else None

    def handle(self, event: Event, now: float) -> list[Command]:
        out: list[Command] = []
        if isinstance(event, LoopRaw):
            (self.arming if event.loop == "arming" else self.safety).raw(event.occupied, now)
        elif isinstance(event, PlateCaptured):
            out += self._fire("plate", now, event)
        elif isinstance(event, OpenRequested):
            out += self._fire("open", now, event)
        elif isinstance(event, SagaFinished):
            if event.saga_id == self.saga_id:  # else an earlier cycle's saga
                out += self._fire("saga_done", now, event)
        elif isinstance(event, ManualOpen):
            out += self._fire("manual", now, event)
        elif isinstance(event, LoopFault):
            out += self._fault(event.loop, event.reason, event.recovered, now)
        elif isinstance(event, ArmLimit):
            out += self._arm_limit(event, now)
        elif isinstance(event, InputChanged):
            out += self._input(event, now)
        elif isinstance(event, BarrierInterlock):
            out += [self._emit("barrier_interlock", reason=event.reason),
                    *self._fire("interlock", now, event)]
        out += self._settle(now)
        return out

    def set_mode(self, mode: str, who: str, why: str = "") -> tuple[bool, list[Command]]:
        """Operator change of the lane's mode; refused while a vehicle is under the
        barrier (closing the lane then would mean bringing the arm down on it)."""
        if mode not in ("normal", "closed"):
            return False, [self._emit("lane_mode_refused", who=who, why=why,
                                      reason=f"no mode {mode!r}")]
        if mode == "closed" and (self.safety.stable or self.barrier != "closed"):
            return False, [self._emit("lane_mode_refused", who=who, why=why, mode=mode,
                                      reason=f"unsafe: barrier {self.barrier}, safety loop "
                                             f"{'occupied' if self.safety.stable else 'clear'}")]
        self.mode = mode
        return True, [self._emit("lane_mode_changed", who=who, why=why, mode=mode)]

    # -- the engine --------------------------------------------------------------------
    def _fire(self, trigger: str, now: float, event: Event | None) -> list[Command]:
        row = TRANSITIONS.get((self.state, trigger))
        if row is None:
            raise LaneTableError(f"lane {self.lane_id}: no rule for {trigger!r} in "
                                 f"{self.state.value!r}")
        handler, targets = row
        before = self.state
        result: list[Command] = getattr(self, f"_on_{handler}")(now, event)
        if self.state not in targets:
            raise LaneTableError(f"lane {self.lane_id}: {handler} took {before.value!r} to "
                                 f"{self.state.value!r}; the table allows "
                                 f"{[t.value for t in targets]}")
        return result

    def _settle(self, now: float) -> list[Command]:
        """Apply debounced loop changes, stuck loops, due timers and arm checks."""
        out: list[Command] = []
        for _ in range(10):  # a few rounds: one change can make another due
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
                    if self.faults.get(name) == "stuck occupied":
                        out += self._fault(name, "", True, now)
                out += self._fire(f"{name}_{'on' if level else 'off'}", now, None)
            for name, since in list(self._occupied_since.items()):
                if name not in self.faults and now >= since + self.c.stuck_occupied_s:
                    out += self._fault(name, "stuck occupied", False, now)
                    changed = True
            for name in TIMERS:
                if name in self.timers and now >= self.timers[name]:
                    del self.timers[name]
                    out += self._fire(name, now, None)
                    changed = True
            due = self.arm.due(now)
            if due is not None:
                out += self._arm_due(due, now)
                changed = True
            if not changed:
                break
        return out

    def _go(self, state: LaneState, timeout_s: float | None = None, now: float = 0.0) -> None:
        if state not in (S.DECIDING, S.OPENING):
            self.timers.pop("gap", None)
        if state is not self.state or state not in (S.PASSING, S.HOLDING):
            self.timers.pop("dropout", None)
        self.state = state
        if timeout_s is None:
            self.timers.pop("timeout", None)
        else:
            self.timers["timeout"] = now + timeout_s

    def _emit(self, type_: str, **data: Any) -> Emit:
        return Emit(type_, {"lane_id": self.lane_id, **data})

    # -- the arm -----------------------------------------------------------------------
    def _raise(self, now: float, reason: str, manual: bool = False) -> list[Command]:
        self.arm.command("up", now)
        return [PulseOpen(manual=manual, reason=reason)]

    def _close(self, now: float) -> list[Command]:
        """The one place that brings the arm down (callers hold ``may_close()``)."""
        self.arm.command("down", now)
        # with a closed limit the arm check decides; this timeout is the last way out
        travel = self.c.arm_travel_s
        self._go(S.CLOSING, 2 * (1.5 * travel + 0.5) + 1.0 if "closed" in self.c.limits
                 else travel, now)
        return [Close()]

    def _close_or_hold(self, now: float) -> list[Command]:
        if self.may_close():
            return self._close(now)
        return self._hold(now)

    def _hold(self, now: float, all_loops: bool = False) -> list[Command]:
        self.hold_all = all_loops
        self._go(S.HOLDING, self.c.passage_timeout_s, now)
        return self._on_check_clear(now, None)

    def _arm_limit(self, event: ArmLimit, now: float) -> list[Command]:
        reached = self.arm.limit(event.limit, event.on)
        out: list[Command] = []
        if reached and event.limit == "open" and self._open_waiting is not None:
            out.append(AnswerOpen(self._open_waiting, True, arm="confirmed"))
            self._open_waiting = None
        if event.limit == "closed" and event.on and "barrier" in self.faults:
            out += self._fault("barrier", "", True, now)
        if event.limit == "closed":
            out += self._fire("arm_down" if event.on else "arm_up", now, event)
        elif event.on:
            out += self._fire("arm_up", now, event)
        return out

    def _arm_due(self, due: str, now: float) -> list[Command]:
        where = self.arm.target
        if due == "retry":
            out: list[Command] = [self._emit("barrier_retry", expected=where)]
            if self.arm.commanded == "up":
                return [*out, PulseOpen(reason="retry")]
            if self.may_close():
                return [*out, Close(retry=True)]
            self.arm.check_at = None  # something came under it: stop closing, open again
            return out + (self._fire("interlock", now, None) if self.state is S.CLOSING
                          else [])
        return [self._emit("barrier_fault", reason=f"the arm did not reach {where} within "
                           f"{1.5 * self.c.arm_travel_s + 0.5:g}s, twice"),
                *self._fire("arm_stuck", now, None)]

    # -- faults and inputs -------------------------------------------------------------
    def _fault(self, name: str, reason: str, recovered: bool, now: float) -> list[Command]:
        device = name if name == "barrier" else f"{name}_loop"
        if recovered:
            if self.faults.pop(name, None) is None:
                return []
            out: list[Command] = [self._emit("hardware_recovered", device=device)]
            if not self.faults:
                out += self._fire("fault_cleared", now, None)
            return out
        if name in self.faults:
            return []
        self.faults[name] = reason
        return [self._emit("hardware_fault", device=device, reason=reason),
                *self._fire("fault", now, None)]

    def _input(self, event: InputChanged, now: float) -> list[Command]:
        if event.name == "help":
            return [self._emit("help_requested")] if event.on else []
        if event.on == self.held:
            return []
        self.held = event.on
        return [self._emit("hold_open_input", on=event.on),
                *self._fire("hold_on" if event.on else "hold_off", now, event)]

    # -- back to rest ------------------------------------------------------------------
    def _rest(self, now: float) -> list[Command]:
        out = self._answer_waiting()
        self.saga_id = self.plate = None
        self.granted = self.tailgated = self.hold_all = False
        self.passages = 0
        if self.held or (self.faults and self.c.fail_open):
            return out + self._on_hold_open(now, None)
        if self.faults:
            self._go(S.FAULT, self.c.stuck_occupied_s, now)
            return out
        self._go(S.IDLE)
        if self.arming.stable:  # the next vehicle is already waiting
            return out + self._on_present(now, None)
        return out

    def _answer_waiting(self) -> list[Command]:
        """A saga still waiting to hear that the arm is up hears that it was not seen."""
        if self._open_waiting is None:
            return []
        waiting, self._open_waiting = self._open_waiting, None
        return [AnswerOpen(waiting, True, arm="not_confirmed")]

    def _end_cycle(self, passed: bool, reason: str) -> list[Command]:
        """Tell a saga waiting on its passage how it ended (leaving a cycle early); the
        vehicle is no longer held for (callers that still hold for it set ``granted``)."""
        out = self._answer_waiting()
        if self.saga_id is not None and self.state in (S.OPENING, S.PASSING):
            out.append(PassageResult(self.saga_id, passed, reason))
        self.saga_id = None
        self.granted = False
        return out

    # -- handlers (named in TRANSITIONS) -----------------------------------------------
    def _on_quiet(self, now: float, _: Event | None) -> list[Command]:
        return []

    def _on_stale_capture(self, now: float, _: Event | None) -> list[Command]:
        self.stale_captures += 1  # taken for a vehicle that is no longer the one here
        return []

    def _on_refuse_open(self, now: float, event: Event | None) -> list[Command]:
        assert isinstance(event, OpenRequested)
        return [AnswerOpen(event.saga_id, False,
                           f"lane is {self.state.value}, not waiting for this decision")]

    def _on_back_to_rest(self, now: float, _: Event | None) -> list[Command]:
        return self._rest(now)

    def _on_present(self, now: float, _: Event | None) -> list[Command]:
        self.presence += 1
        self.attempt = 1
        detected = self._emit("vehicle_detected", direction=self.direction,
                              presence=self.presence)
        if self.mode == "closed":
            self._go(S.DENIED, self.c.passage_timeout_s, now)
            return [detected, self._emit(f"{self.direction}_denied", reason="lane_closed")]
        self._go(S.PRESENT, self.c.capture_timeout_s, now)
        return [detected, Capture(self.presence)]

    def _on_decide(self, now: float, event: Event | None) -> list[Command]:
        assert isinstance(event, PlateCaptured)
        if event.presence != self.presence:
            return self._on_stale_capture(now, event)
        if not event.plate and not event.image_b64:  # the burst failed
            if self.attempt < self.c.capture_attempts:
                self.attempt += 1
                self._go(S.PRESENT, self.c.capture_timeout_s, now)
                return [self._emit("capture_retry", attempt=self.attempt),
                        Capture(self.presence)]
            return self._unreadable(now, "no_plate_found")
        if self._last_granted and self._last_granted[0] == event.plate \
                and now - self._last_granted[1] < self.c.duplicate_window_s:
            # The same plate again moments after its passage: the same vehicle (it
            # rolled back over the loop), not a second one.
            self._go(S.DENIED, self.c.passage_timeout_s, now)
            return [self._emit("duplicate_read", license_plate=event.plate)]
        # With an image but no local reading, the central service reads the plate.
        self.plate = event.plate or ""
        self.saga_id = event.saga_id
        self._go(S.DECIDING, self.c.decision_timeout_s, now)
        return [StartSaga(event.saga_id, self.plate, event.confidence, event.image_b64,
                          event.source if self.plate else "")]

    def _unreadable(self, now: float, reason: str) -> list[Command]:
        if self.direction == "exit" and self.c.unreadable_exit == "allow":
            # nobody can read it, and the policy lets exits out: no record to make
            self.granted = True
            return [self._emit("exit_granted", reason=reason, source="policy"),
                    *self._open_for_vehicle(now, None, "grant")]
        self._go(S.DENIED, self.c.passage_timeout_s, now)
        return [self._emit(f"{self.direction}_denied", reason=reason)]

    def _on_capture_timeout(self, now: float, _: Event | None) -> list[Command]:
        return [self._emit("capture_timeout", presence=self.presence),
                *self._unreadable(now, "no_plate_read")]

    def _on_open(self, now: float, event: Event | None) -> list[Command]:
        assert isinstance(event, OpenRequested)
        if event.saga_id != self.saga_id:
            return self._on_refuse_open(now, event)
        self.granted = True
        return self._open_for_vehicle(now, event.saga_id, "grant")

    def _open_for_vehicle(self, now: float, saga_id: str | None, reason: str,
                          manual: bool = False) -> list[Command]:
        self.passages = 0
        out = self._raise(now, reason, manual)
        self._go(S.OPENING, self.c.passage_timeout_s, now)
        if saga_id is not None:
            if self.arm.assumed:
                out.append(AnswerOpen(saga_id, True, arm="assumed"))
            elif self.arm.position() == "open":
                out.append(AnswerOpen(saga_id, True, arm="confirmed"))
            else:
                self._open_waiting = saga_id
        out.append(self._emit("barrier_opened", saga_id=saga_id, manual=manual))
        return out

    def _on_deny(self, now: float, _: Event | None) -> list[Command]:
        self.saga_id = None
        if not self.arming.stable:
            return self._rest(now)
        self._go(S.DENIED, self.c.passage_timeout_s, now)
        return []

    def _on_decision_timeout(self, now: float, _: Event | None) -> list[Command]:
        # the saga did not answer in time: its open will be refused, and it compensates
        out: list[Command] = [self._emit("decision_timeout", saga_id=self.saga_id)]
        return out + self._on_deny(now, None)

    def _on_arming_left(self, now: float, _: Event | None) -> list[Command]:
        self.timers["gap"] = now + self.c.gap_hold_s
        return []

    def _on_arming_back(self, now: float, _: Event | None) -> list[Command]:
        self.timers.pop("gap", None)
        return []

    def _on_left_while_deciding(self, now: float, _: Event | None) -> list[Command]:
        # The vehicle drove off before the decision: its saga's open is refused later,
        # and the saga compensates.
        return [self._emit("vehicle_left", presence=self.presence, saga_id=self.saga_id),
                *self._rest(now)]

    def _on_denied_waiting(self, now: float, _: Event | None) -> list[Command]:
        out: list[Command] = [self._emit("vehicle_waiting", presence=self.presence)]
        if self.direction == "exit" and self.arming.stable and self.mode == "normal":
            # nobody is trapped at an exit: read it again (the camera or central may be back)
            self.attempt = 1
            self._go(S.PRESENT, self.c.capture_timeout_s, now)
            return [*out, Capture(self.presence)]
        self._go(S.DENIED, self.c.passage_timeout_s, now)
        return out

    def _on_passing(self, now: float, _: Event | None) -> list[Command]:
        self.passages += 1
        self._arming_cleared = not self.arming.stable
        self._arming_left_at = None if self.arming.stable else now
        self._go(S.PASSING, self.c.passage_timeout_s, now)
        return []

    def _on_backed_out(self, now: float, _: Event | None) -> list[Command]:
        saga = self.saga_id
        out = [self._emit("vehicle_backed_out", saga_id=saga), *self._end_cycle(False,
                                                                               "backed_out")]
        return out + self._close_or_hold(now)

    def _on_passage_timeout(self, now: float, _: Event | None) -> list[Command]:
        if self.arming.stable or "gap" in self.timers:
            # the granted vehicle is still in front of the arm: keep it up, say so
            self._go(S.OPENING, self.c.passage_timeout_s, now)
            return [self._emit("passage_stalled", saga_id=self.saga_id, where="arming loop")]
        saga = self.saga_id
        out = [self._emit("passage_timeout", saga_id=saga),
               *self._end_cycle(False, "passage_timeout")]
        return out + self._close_or_hold(now)

    def _on_arming_left_passing(self, now: float, _: Event | None) -> list[Command]:
        self._arming_cleared = True
        self._arming_left_at = now
        return []

    def _on_arming_back_passing(self, now: float, _: Event | None) -> list[Command]:
        gap = None if self._arming_left_at is None else now - self._arming_left_at
        self._arming_left_at = None
        if gap is not None and gap >= self.c.dropout_hold_s:  # longer than a drawbar
            return self._tailgate("a second vehicle on the arming loop during the passage")
        return []

    def _tailgate(self, how: str) -> list[Command]:
        if self.tailgated:
            return []
        self.tailgated = True
        return [self._emit("tailgating_detected", saga_id=self.saga_id,
                           license_plate=self.plate, passages=self.passages, how=how)]

    def _on_safety_left(self, now: float, _: Event | None) -> list[Command]:
        self.timers["dropout"] = now + self.c.dropout_hold_s
        return []

    def _on_safety_back(self, now: float, _: Event | None) -> list[Command]:
        self.timers.pop("dropout", None)  # a gap shorter than the hold: the same vehicle
        return []

    def _on_safety_cleared(self, now: float, _: Event | None) -> list[Command]:
        if self.arming.stable and not self._arming_cleared:
            # It left the safety loop the way it came: reversing. Still granted, still
            # in front of the arm: the arm stays up until it drives on or leaves.
            self.passages -= 1
            self._go(S.OPENING, self.c.passage_timeout_s, now)
            return [self._emit("vehicle_reversed", saga_id=self.saga_id)]
        out = self._answer_waiting()
        if self.saga_id is not None:
            out.append(PassageResult(self.saga_id, True))
            if self.plate:
                self._last_granted = (self.plate, now)
        self.saga_id = None
        self.granted = False
        if self.tailgated and self.c.tailgate_response == "hold":
            return out + self._hold(now, all_loops=True)
        return out + self._close_or_hold(now)

    def _on_passage_stalled(self, now: float, _: Event | None) -> list[Command]:
        self._go(S.PASSING, self.c.passage_timeout_s, now)
        return [self._emit("passage_stalled", saga_id=self.saga_id, where="safety loop")]

    def _on_reverse(self, now: float, _: Event | None) -> list[Command]:
        self.passages += 1
        return [*self._reverse(now, "safety loop occupied while closing"),
                *self._tailgate("a vehicle under the closing arm"), *self._hold(now)]

    def _reverse(self, now: float, why: str) -> list[Command]:
        return [*self._raise(now, "reverse"), self._emit("barrier_reversed", reason=why)]

    def _on_interlock(self, now: float, _: Event | None) -> list[Command]:
        # the close did not go on (refused, or reversed below us): the arm is going up
        return [*self._reverse(now, "the barrier's interlock stopped the close"),
                *self._hold(now)]

    def _on_closed(self, now: float, _: Event | None) -> list[Command]:
        return [self._emit("barrier_closed", position="confirmed" if "closed" in self.c.limits
                           else "assumed"), *self._rest(now)]

    def _on_closing_timeout(self, now: float, event: Event | None) -> list[Command]:
        if "closed" in self.c.limits and self.arm.position() != "closed":
            return self._on_close_failed(now, event)
        return self._on_closed(now, event)

    def _on_fault_while_closing(self, now: float, event: Event | None) -> list[Command]:
        if "safety" in self.faults:  # a safety loop that cannot be trusted: stop, open
            return [*self._reverse(now, "safety loop fault while closing"), *self._hold(now)]
        return []

    def _on_close_failed(self, now: float, _: Event | None) -> list[Command]:
        return [*self._fault("barrier", "the arm did not close", False, now), *self._rest(now)]

    def _clear_to_close(self) -> bool:
        return self.may_close() and not (self.hold_all and self.arming.stable)

    def _on_check_clear(self, now: float, _: Event | None) -> list[Command]:
        clear = self._clear_to_close()
        if clear and "dropout" not in self.timers:
            self.timers["dropout"] = now + self.c.dropout_hold_s
        elif not clear:
            self.timers.pop("dropout", None)
        return []

    def _on_another_under_the_arm(self, now: float, event: Event | None) -> list[Command]:
        out: list[Command] = []
        if self.passages:  # after this cycle's vehicle: the safety loop's pattern says two
            self.passages += 1
            out = self._tailgate("another vehicle on the safety loop after the first")
        return out + self._on_check_clear(now, event)

    def _on_clear_to_close(self, now: float, _: Event | None) -> list[Command]:
        if self._clear_to_close():  # still: a fault may have come since the timer started
            return self._close(now)
        return []

    def _on_holding_timeout(self, now: float, _: Event | None) -> list[Command]:
        self._go(S.HOLDING, self.c.passage_timeout_s, now)
        return [self._emit("holding_timeout", safety_loop=self.safety.stable,
                           arming_loop=self.arming.stable)]

    def _on_manual_open(self, now: float, event: Event | None) -> list[Command]:
        assert isinstance(event, ManualOpen)
        # a saga still deciding for this vehicle will have its open refused
        self.saga_id = None
        self.granted = True
        return [self._emit(f"{event.source}_open" if event.source != "manual" else
                           "manual_open", who=event.who, why=event.why),
                *self._open_for_vehicle(now, None, "manual", manual=True)]

    def _on_reassert_open(self, now: float, event: Event | None) -> list[Command]:
        assert isinstance(event, ManualOpen)
        self.granted = True  # the operator lets this vehicle through: hold the arm for it
        return [self._emit("manual_open", who=event.who, why=event.why, already_open=True),
                *self._raise(now, "manual", manual=True)]

    def _on_hold_open(self, now: float, _: Event | None) -> list[Command]:
        granted = self.granted  # a vehicle let through stays held for after the hold ends
        out = self._end_cycle(self.state is S.PASSING, "held_open")
        self.granted = granted
        self._go(S.HELD_OPEN, self.c.passage_timeout_s, now)
        return [*out, self._emit("held_open", hold_input=self.held, faults=dict(self.faults)),
                *self._raise(now, "hold")]

    def _on_release_hold(self, now: float, _: Event | None) -> list[Command]:
        if self.held or (self.faults and self.c.fail_open):
            return []
        # vehicles drove freely under the held arm: close only once both loops are clear
        return [self._emit("hold_released"), *self._hold(now, all_loops=True)]

    def _on_reassert_hold(self, now: float, _: Event | None) -> list[Command]:
        self._go(S.HELD_OPEN, self.c.passage_timeout_s, now)
        return [self._emit("held_open_reasserted"), *self._raise(now, "hold")]

    def _on_fault_persists(self, now: float, _: Event | None) -> list[Command]:
        self._go(S.FAULT, self.c.stuck_occupied_s, now)
        return [self._emit("fault_persists", faults=dict(self.faults))]

    def _on_arm_moved(self, now: float, _: Event | None) -> list[Command]:
        # the arm is up though nobody here raised it (at start-up, or by hand): bring it
        # down once nothing is under it
        out = [self._emit("barrier_unexpected", position=self.arm.position())]
        self.arm.commanded = "up"
        self.saga_id = None
        return out + self._hold(now)

    def _on_arm_fell(self, now: float, _: Event | None) -> list[Command]:
        return [self._emit("barrier_fault", reason="the arm came down while it should be up"),
                *self._raise(now, "reassert")]

    def _on_arm_fault(self, now: float, _: Event | None) -> list[Command]:
        return self._answer_waiting()
