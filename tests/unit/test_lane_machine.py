"""The lane machine's safety rules over any sequence of loop changes, arm limit switches,
timers, camera results, decisions and operator commands (hypothesis, stateful).

The lane is checked where a command leaves it: every function that can produce ``Close``
(a table handler or the arm check) is watched, and right after it ran the safety loop must
be clear and no granted vehicle on either loop. A close interrupted by the safety loop
must answer with an open in the same step. Any (state, trigger) the table does not name
raises ``LaneTableError`` and fails the run.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gateway.core.lane import Lane
from gateway.core.lane_types import (
    AnswerOpen,
    ArmLimit,
    Close,
    InputChanged,
    LaneConfig,
    LaneState,
    LoopFault,
    LoopRaw,
    ManualOpen,
    OpenRequested,
    PlateCaptured,
    PulseOpen,
    SagaFinished,
    StartSaga,
    Tick,
)


class WatchedLane(Lane):
    """The lane under test, checked at the moment a command is produced."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.unsafe: list[str] = []
        self.closes = 0

    def _check(self, where: str, out: list[Any]) -> None:
        if any(isinstance(c, Close) for c in out):
            self.closes += 1
            # the rule itself, not the lane's own predicate (which a bug could break)
            if self.safety.stable or "safety" in self.faults or (
                    self.granted and self.arming.stable):
                self.unsafe.append(f"Close from {where} with safety={self.safety.stable} "
                                   f"granted={self.granted} arming={self.arming.stable}")
        if any(isinstance(c, StartSaga) for c in out) and self.granted:
            self.unsafe.append(f"a second saga for a granted vehicle from {where}")

    def _fire(self, trigger: str, now: float, event: Any) -> list[Any]:
        closing = self.state is LaneState.CLOSING
        out = super()._fire(trigger, now, event)
        self._check(trigger, out)
        if closing and trigger == "safety_on" and not any(isinstance(c, PulseOpen)
                                                          for c in out):
            self.unsafe.append("the safety loop interrupted a close and nothing opened")
        return out

    def _arm_due(self, due: str, now: float) -> list[Any]:
        out = super()._arm_due(due, now)
        self._check(f"arm check {due}", out)
        return out


CONFIGS = st.builds(
    LaneConfig, debounce_s=st.sampled_from([0.0, 0.05]), capture_timeout_s=st.just(2.0),
    capture_attempts=st.integers(1, 3), passage_timeout_s=st.just(10.0),
    arm_travel_s=st.sampled_from([0.0, 1.0]), dropout_hold_s=st.sampled_from([0.0, 0.5]),
    gap_hold_s=st.sampled_from([0.0, 1.5]), stuck_occupied_s=st.just(60.0),
    arming_mode=st.sampled_from(["presence", "presence", "pulse_on_entry"]),
    tailgate_response=st.sampled_from(["report", "hold"]), fail_open=st.booleans(),
    unreadable_exit=st.sampled_from(["deny", "allow"]),
    limits=st.sampled_from([frozenset(), frozenset({"closed"}),
                            frozenset({"open", "closed"})]))


class LaneMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.lane: WatchedLane | None = None
        self.now = 0.0
        self.sagas: list[str] = []
        self.opened: set[str] = set()

    @rule(config=CONFIGS, direction=st.sampled_from(["entry", "exit"]))
    @precondition(lambda self: self.lane is None)
    def start(self, config: LaneConfig, direction: str) -> None:
        self.lane = WatchedLane("lane", direction, config)

    def feed(self, event: Any) -> list[Any]:
        assert self.lane is not None
        out = self.lane.handle(event, self.now)
        for cmd in out:
            if isinstance(cmd, StartSaga):
                self.sagas.append(cmd.saga_id)
            if isinstance(cmd, AnswerOpen) and cmd.opened:
                assert cmd.saga_id not in self.opened, "one decision opened twice"
                self.opened.add(cmd.saga_id)
        return out

    @rule(loop=st.sampled_from(["arming", "safety"]), occupied=st.booleans())
    @precondition(lambda self: self.lane is not None)
    def loop_change(self, loop: str, occupied: bool) -> None:
        self.feed(LoopRaw(loop, occupied))

    @rule(dt=st.sampled_from([0.01, 0.06, 0.3, 1.0, 2.5, 11.0]))
    @precondition(lambda self: self.lane is not None)
    def time_passes(self, dt: float) -> None:
        end = self.now + dt
        while (d := self.lane.next_deadline()) is not None and d <= end:
            self.now = max(self.now, d)
            self.feed(Tick())
        self.now = end
        self.feed(Tick())

    @rule(plate=st.sampled_from(["34ABC123", "06XYZ99", None]), stale=st.booleans(),
          image=st.booleans())
    @precondition(lambda self: self.lane is not None)
    def camera(self, plate: str | None, stale: bool, image: bool) -> None:
        presence = self.lane.presence - (1 if stale else 0)
        self.feed(PlateCaptured(plate, f"s{len(self.sagas) + 1}", 0.9,
                                "img" if image else None, presence))

    @rule(which=st.integers(0, 3))
    @precondition(lambda self: self.lane is not None and self.sagas)
    def decision(self, which: int) -> None:
        self.feed(OpenRequested(self.sagas[-1 - which % len(self.sagas)]))

    @rule()
    @precondition(lambda self: self.lane is not None
                  and self.lane.state is LaneState.DECIDING)
    def an_earlier_saga_asks_to_open(self) -> None:
        """Reliability campaign finding F1: an earlier vehicle's saga (it drove off while
        its decision was being made) asks to open while the lane decides for the next one.
        It must be answered (refused), not lost."""
        assert self.lane is not None
        stale = next((s for s in reversed(self.sagas) if s != self.lane.saga_id), "s-gone")
        out = self.feed(OpenRequested(stale))
        assert any(isinstance(c, AnswerOpen) and c.saga_id == stale and not c.opened
                   for c in out), f"the open of {stale} went unanswered: {out}"

    @rule(status=st.sampled_from(["compensated", "completed", "failed"]))
    @precondition(lambda self: self.lane is not None and self.sagas)
    def saga_ends(self, status: str) -> None:
        self.feed(SagaFinished(self.sagas[-1], status))

    @rule(source=st.sampled_from(["manual", "vend"]))
    @precondition(lambda self: self.lane is not None)
    def operator(self, source: str) -> None:
        self.feed(ManualOpen("op", source=source))

    @rule(loop=st.sampled_from(["arming", "safety", "barrier"]), recovered=st.booleans())
    @precondition(lambda self: self.lane is not None)
    def fault(self, loop: str, recovered: bool) -> None:
        self.feed(LoopFault(loop, "x", recovered))

    @rule(limit=st.sampled_from(["open", "closed"]), on=st.booleans())
    @precondition(lambda self: self.lane is not None)
    def limit_switch(self, limit: str, on: bool) -> None:
        self.feed(ArmLimit(limit, on))

    @rule(name=st.sampled_from(["hold_open", "help"]), on=st.booleans())
    @precondition(lambda self: self.lane is not None)
    def contact(self, name: str, on: bool) -> None:
        self.feed(InputChanged(name, on))

    @invariant()
    def safe(self) -> None:
        if self.lane is not None:
            assert not self.lane.unsafe, self.lane.unsafe

    @invariant()
    def captures_belong_to_the_vehicle_present(self) -> None:
        if self.lane is not None and self.lane.state is LaneState.PRESENT:
            assert self.lane.arming.stable or self.lane.presence > 0


LaneMachine.TestCase.settings = settings(max_examples=400, stateful_step_count=60,
                                         deadline=None)
TestLaneMachine = LaneMachine.TestCase


def test_the_watch_sees_an_unsafe_close():
    """The checks above can fail: a lane whose close guard is broken is caught."""

    class Reckless(WatchedLane):
        def may_close(self) -> bool:
            return True  # the guard broken

    lane = Reckless("lane", "entry", LaneConfig(debounce_s=0.0, dropout_hold_s=0.5))
    lane.handle(LoopRaw("safety", False), 0.0)  # read at start-up: clear
    lane.handle(LoopRaw("arming", True), 0.0)
    lane.handle(PlateCaptured("34ABC123", "s1", presence=lane.presence), 0.0)
    lane.handle(OpenRequested("s1"), 0.0)
    lane.handle(LoopRaw("safety", True), 1.0)
    lane.handle(LoopRaw("arming", False), 2.0)
    lane.handle(LoopRaw("safety", False), 3.0)
    lane.handle(Tick(), 3.5)  # passed: closing
    assert lane.state is LaneState.CLOSING and not lane.unsafe
    lane.handle(LoopRaw("safety", True), 3.6)  # a vehicle under it: reversed, holding
    lane.handle(Tick(), 4.2)  # the broken guard lets the hold close on it
    assert any("Close" in u for u in lane.unsafe)
