"""The lane cycle, driven with a fake clock: events in, commands out."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.lane import (
    AnswerOpen,
    Capture,
    Close,
    Emit,
    Lane,
    LaneState,
    LaneTimings,
    LoopFault,
    LoopRaw,
    ManualOpen,
    OpenRequested,
    PassageResult,
    PlateCaptured,
    PulseOpen,
    SagaFinished,
    StartSaga,
    Tick,
)

T = LaneTimings(debounce_s=0.05, capture_timeout_s=2, passage_timeout_s=10, arm_travel_s=1,
                stuck_occupied_s=60, duplicate_window_s=5)


class Driver:
    def __init__(self) -> None:
        self.lane = Lane("entry-1", "entry", T)
        self.now = 0.0
        self.log: list[object] = []

    def at(self, dt: float, event=None):
        """Advance time by ``dt`` (firing due timers on the way), then deliver ``event``."""
        end = self.now + dt
        out = []
        while (d := self.lane.next_deadline()) is not None and d <= end:
            self.now = max(self.now, d)
            out += self.lane.handle(Tick(), self.now)
        self.now = end
        if event is not None:
            out += self.lane.handle(event, self.now)
        else:
            out += self.lane.handle(Tick(), self.now)
        self.log += out
        return out

    def loop(self, name: str, occupied: bool, dt: float = 0.0):
        out = self.at(dt, LoopRaw(name, occupied))
        return out + self.at(0.06)  # past the debounce

    def types(self, cmds) -> list[str]:
        return [c.type for c in cmds if isinstance(c, Emit)]


def arrive_and_grant(d: Driver, plate: str = "34ABC123") -> None:
    out = d.loop("arming", True)
    assert "vehicle_detected" in d.types(out) and Capture() in out
    out = d.at(0.1, PlateCaptured(plate, "s1", 0.9))
    assert StartSaga("s1", plate, 0.9, None) in out
    assert d.lane.state is LaneState.DECIDING
    out = d.at(0.1, OpenRequested("s1"))
    assert PulseOpen() in out and AnswerOpen("s1", True) in out


def test_a_vehicle_passes_through_the_whole_cycle():
    d = Driver()
    arrive_and_grant(d)
    assert d.lane.barrier == "open"
    d.loop("safety", True, 0.5)
    d.loop("arming", False, 0.2)
    assert d.lane.state is LaneState.PASSING
    out = d.loop("safety", False, 0.5)
    assert PassageResult("s1", True) in out and Close() in out
    out = d.at(1.1)
    assert "barrier_closed" in d.types(out)
    assert d.lane.state is LaneState.IDLE


def test_backing_out_reports_a_failed_passage_and_closes():
    d = Driver()
    arrive_and_grant(d)
    out = d.loop("arming", False, 1.0)
    assert PassageResult("s1", False, "backed_out") in out
    assert "vehicle_backed_out" in d.types(out) and Close() in out


def test_passage_timeout_when_the_vehicle_stalls():
    d = Driver()
    arrive_and_grant(d)
    out = d.at(10.5)
    assert PassageResult("s1", False, "passage_timeout") in out


def test_tailgater_is_detected_and_the_barrier_waits_for_it():
    d = Driver()
    arrive_and_grant(d)
    d.loop("safety", True, 0.2)
    d.loop("arming", False)
    d.loop("safety", False, 0.3)  # first car through; closing
    out = d.loop("safety", True, 0.1)  # a second car under the barrier
    assert "tailgating_detected" in d.types(out)
    assert d.lane.state is LaneState.TAILGATE
    assert Close() not in out
    out = d.loop("safety", False, 0.5)
    assert Close() in out


def test_denied_vehicle_waits_then_lane_idles():
    d = Driver()
    d.loop("arming", True)
    d.at(0.1, PlateCaptured("66BAD66", "s1"))
    d.at(0.2, SagaFinished("s1", "compensated", "blocked"))
    assert d.lane.state is LaneState.DENIED
    d.loop("arming", False, 3)
    assert d.lane.state is LaneState.IDLE
    assert not any(isinstance(c, PulseOpen) for c in d.log)


def test_vehicle_leaving_before_the_decision_gets_its_open_refused():
    d = Driver()
    d.loop("arming", True)
    d.at(0.1, PlateCaptured("34ABC123", "s1"))
    d.loop("arming", False, 0.5)
    out = d.at(0.1, OpenRequested("s1"))
    assert out[0] == AnswerOpen("s1", False, out[0].reason) and not out[0].opened
    assert not any(isinstance(c, PulseOpen) for c in d.log)


def test_no_plate_read_in_time_is_a_denial():
    d = Driver()
    d.loop("arming", True)
    out = d.at(2.5)
    assert "entry_denied" in d.types(out)


def test_chatter_shorter_than_the_debounce_is_ignored():
    d = Driver()
    for _ in range(5):
        d.at(0.01, LoopRaw("arming", True))
        d.at(0.01, LoopRaw("arming", False))
    d.at(0.5)
    assert d.lane.state is LaneState.IDLE and d.log == []


def test_the_same_plate_moments_after_its_passage_is_one_vehicle():
    d = Driver()
    arrive_and_grant(d)
    d.loop("safety", True, 0.2)
    d.loop("arming", False)
    d.loop("safety", False, 0.2)
    d.at(1.1)
    d.loop("arming", True, 0.5)
    out = d.at(0.1, PlateCaptured("34ABC123", "s2"))
    assert "duplicate_read" in d.types(out)
    assert not any(isinstance(c, StartSaga) for c in out)


def test_stuck_loop_is_a_fault_until_it_clears():
    d = Driver()
    d.loop("arming", True)
    d.at(0.1, PlateCaptured("66BAD66", "s1"))
    d.at(0.1, SagaFinished("s1", "compensated"))
    out = d.at(61)
    assert "hardware_fault" in d.types(out)
    assert d.lane.state is LaneState.FAULT
    out = d.loop("arming", False)
    assert "hardware_recovered" in d.types(out)
    assert d.lane.state is LaneState.IDLE


def test_reported_fault_blocks_detection_and_manual_open_still_works():
    d = Driver()
    d.at(0, LoopFault("arming", "serial port gone"))
    d.loop("arming", True)
    assert d.lane.state is LaneState.FAULT
    out = d.at(0.1, ManualOpen("operator", "loop broken"))
    assert PulseOpen(manual=True) in out and "manual_open" in d.types(out)
    out = d.at(0.1, ManualOpen("operator", "again"))
    assert "manual_open_refused" in d.types(out)


EVENTS = st.one_of(
    st.builds(LoopRaw, st.sampled_from(["arming", "safety"]), st.booleans()),
    st.just(Tick()),
    st.builds(PlateCaptured, st.sampled_from(["34ABC123", "06XYZ99", None]),
              st.sampled_from(["s1", "s2", "s3"])),
    st.builds(OpenRequested, st.sampled_from(["s1", "s2", "s3"])),
    st.builds(SagaFinished, st.sampled_from(["s1", "s2", "s3"]), st.just("compensated")),
    st.builds(ManualOpen, st.just("op")),
    st.builds(LoopFault, st.sampled_from(["arming", "safety"]), st.just("x"), st.booleans()),
)


@settings(max_examples=300)
@given(st.lists(st.tuples(st.floats(0, 3, allow_nan=False), EVENTS), max_size=60))
def test_safety_invariants_hold_for_any_event_sequence(steps):
    lane = Lane("l", "entry", T)
    now = 0.0
    granted: list[str] = []
    pulses = manual = 0
    for dt, event in steps:
        now += dt
        for cmd in lane.handle(event, now):
            if isinstance(cmd, Close):
                assert not lane.safety.stable, "close commanded onto an occupied safety loop"
            if isinstance(cmd, AnswerOpen) and cmd.opened:
                assert cmd.saga_id not in granted, "one decision opened twice"
                granted.append(cmd.saga_id)
            if isinstance(cmd, PulseOpen):
                pulses += 1
                manual += cmd.manual
    assert pulses - manual <= len(granted)


def test_a_closed_lane_lets_nobody_in_and_cannot_close_on_a_vehicle():
    d = Driver()
    ok, out = d.lane.set_mode("closed", "op")
    assert ok and "lane_mode_changed" in d.types(out)
    out = d.loop("arming", True)
    assert "entry_denied" in d.types(out) and Capture() not in out
    d.loop("arming", False, 1)
    d.lane.set_mode("normal", "op")
    arrive_and_grant(d)
    d.loop("safety", True, 0.2)
    ok, out = d.lane.set_mode("closed", "op")
    assert not ok and "lane_mode_refused" in d.types(out)
