"""The lane cycle, driven with a fake clock: events in, commands out. The vehicle
movements are the ones a loop installation sees (arming loop, a gap, the safety loop)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.core.errors import LaneTableError
from gateway.core.lane import TRANSITIONS, Lane
from gateway.core.lane_types import (
    AnswerOpen,
    ArmLimit,
    Capture,
    Close,
    Emit,
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
    Tick,
)

C = LaneConfig(debounce_s=0.05, capture_timeout_s=2, passage_timeout_s=10, arm_travel_s=1,
               dropout_hold_s=0.5, gap_hold_s=1.5, stuck_occupied_s=60, duplicate_window_s=5,
               decision_timeout_s=5)
S = LaneState


def with_(**changes) -> LaneConfig:
    return replace(C, **changes)


class Driver:
    def __init__(self, config: LaneConfig = C, direction: str = "entry") -> None:
        self.lane = Lane("lane-1", direction, config)
        self.now = 0.0
        self.log: list[object] = []
        # the controller reads both loops at start-up; until then the safety loop counts
        # as occupied
        self.lane.handle(LoopRaw("arming", False), 0.0)
        self.lane.handle(LoopRaw("safety", False), 0.0)
        self.at(0.1)

    def at(self, dt: float, event=None):
        """Advance time by ``dt`` (firing due timers on the way), then deliver ``event``."""
        end = self.now + dt
        out = []
        while (d := self.lane.next_deadline()) is not None and d <= end:
            self.now = max(self.now, d)
            out += self.lane.handle(Tick(), self.now)
        self.now = end
        out += self.lane.handle(event if event is not None else Tick(), self.now)
        self.log += out
        return out

    def loop(self, name: str, occupied: bool, dt: float = 0.0):
        out = self.at(dt, LoopRaw(name, occupied))
        return out + self.at(0.06)  # past the debounce

    def types(self, cmds=None) -> list[str]:
        return [c.type for c in (self.log if cmds is None else cmds) if isinstance(c, Emit)]


def arrive_and_grant(d: Driver, plate: str = "34ABC123", saga: str = "s1") -> None:
    out = d.loop("arming", True)
    assert "vehicle_detected" in d.types(out)
    capture = next(c for c in out if isinstance(c, Capture))
    out = d.at(0.1, PlateCaptured(plate, saga, 0.9, None, capture.presence))
    assert StartSaga(saga, plate, 0.9, None) in out and d.lane.state is S.DECIDING
    out = d.at(0.1, OpenRequested(saga))
    assert PulseOpen() in out and AnswerOpen(saga, True) in out


def through_and_closing(d: Driver) -> None:
    """The granted vehicle drives through; the arm starts to close behind it."""
    d.loop("safety", True, 0.5)
    d.loop("arming", False)
    d.loop("safety", False, 0.5)
    d.at(0.5)
    assert d.lane.state is S.CLOSING


def closes(cmds) -> int:
    return sum(isinstance(c, Close) for c in cmds)


def test_a_vehicle_passes_arming_then_safety_then_clear():
    d = Driver()
    arrive_and_grant(d)
    d.loop("safety", True, 0.5)
    d.loop("arming", False, 0.2)
    assert d.lane.state is S.PASSING
    out = d.loop("safety", False, 0.5)
    assert closes(out) == 0  # the drop-out hold: not yet
    out = d.at(0.5)
    assert PassageResult("s1", True) in out and closes(out) == 1
    assert "barrier_closed" in d.types(d.at(1.1)) and d.lane.state is S.IDLE


def test_backing_out_is_the_arming_loop_clearing_with_the_safety_loop_never_reached():
    d = Driver()
    arrive_and_grant(d)
    out = d.loop("arming", False, 1.0)
    assert closes(out) == 0  # perhaps a short vehicle in the gap between the loops
    out = d.at(1.5)
    assert PassageResult("s1", False, "backed_out") in out
    assert "vehicle_backed_out" in d.types(out) and closes(out) == 1


def test_a_motorbike_in_the_gap_between_the_loops_is_not_taken_for_a_back_out():
    d = Driver()
    arrive_and_grant(d)
    d.loop("arming", False, 0.5)
    d.loop("safety", True, 0.4)  # it reached the safety loop within the gap hold
    d.loop("safety", False, 0.2)
    out = d.at(0.6)
    assert PassageResult("s1", True) in out
    assert "vehicle_backed_out" not in d.types()


def test_a_vehicle_reversing_out_of_the_safety_loop_is_compensated_not_entered():
    d = Driver()
    arrive_and_grant(d)
    d.loop("safety", True, 0.5)  # nose on the safety loop, body still on the arming loop
    d.loop("safety", False, 1.0)  # backing: the safety loop clears first
    out = d.at(0.6)
    assert "vehicle_reversed" in d.types(out) and closes(out) == 0
    assert d.lane.state is S.OPENING  # still granted, still in front of the arm
    d.loop("arming", False, 1.0)
    out = d.at(1.6)
    assert PassageResult("s1", False, "backed_out") in out and closes(out) == 1
    assert not any(isinstance(c, PassageResult) and c.passed for c in d.log)


def test_a_trailers_drawbar_gap_does_not_end_the_passage():
    d = Driver()
    arrive_and_grant(d)
    d.loop("safety", True, 0.5)
    d.loop("arming", False, 0.3)
    d.loop("arming", True, 0.2)  # the trailer, after a short drawbar gap: the same vehicle
    d.loop("safety", False, 0.3)  # the car off the safety loop, the drawbar over it
    d.loop("safety", True, 0.2)  # the trailer onto it, within the hold
    d.loop("arming", False, 0.5)
    out = d.loop("safety", False, 0.5) + d.at(0.6)
    assert [c for c in out if isinstance(c, PassageResult)] == [PassageResult("s1", True)]
    assert "tailgating_detected" not in d.types() and closes(d.log) == 1


def test_a_car_bumper_to_bumper_behind_is_reported_and_counted_once():
    d = Driver()
    arrive_and_grant(d)
    d.loop("safety", True, 0.5)
    d.loop("arming", False, 0.3)
    out = d.loop("arming", True, 0.8)  # a second vehicle: the arming gap was long
    assert "tailgating_detected" in d.types(out)
    d.loop("arming", False, 1.0)
    d.loop("safety", False, 1.0)  # the safety loop never cleared between the two
    d.at(0.6)
    assert d.types().count("tailgating_detected") == 1 and closes(d.log) == 1


def test_tailgate_hold_keeps_the_arm_up_until_both_loops_are_clear():
    d = Driver(with_(tailgate_response="hold"))
    arrive_and_grant(d)
    d.loop("safety", True, 0.5)
    d.loop("arming", False, 0.3)
    d.loop("arming", True, 0.8)
    d.loop("safety", False, 1.0)
    d.at(0.6)
    assert d.lane.state is S.HOLDING and closes(d.log) == 0  # the follower on the arming loop
    d.loop("arming", False, 1.0)
    assert closes(d.at(0.6)) == 1


def test_the_safety_loop_occupied_while_closing_reverses_the_arm():
    d = Driver()
    arrive_and_grant(d)
    through_and_closing(d)
    assert d.lane.state is S.CLOSING
    out = d.loop("safety", True, 0.2)  # something under the closing arm
    assert PulseOpen(reason="reverse") in out and "barrier_reversed" in d.types(out)
    assert d.lane.state is S.HOLDING
    d.loop("safety", False, 1.0)
    assert closes(d.at(0.6)) == 1


def test_manual_open_works_while_closing():
    d = Driver()
    arrive_and_grant(d)
    through_and_closing(d)
    out = d.at(0.1, ManualOpen("operator", "let the van in"))
    assert PulseOpen(manual=True, reason="manual") in out and d.lane.state is S.OPENING


def test_a_stalled_granted_vehicle_holds_the_arm_and_gets_no_second_saga():
    d = Driver()
    arrive_and_grant(d)
    out = d.at(25)  # it does not move for 25 s
    assert closes(out) == 0 and "passage_stalled" in d.types(out)
    assert not any(isinstance(c, StartSaga) for c in out) and d.lane.state is S.OPENING
    d.loop("arming", False, 1.0)
    out = d.at(1.6)
    assert PassageResult("s1", False, "backed_out") in out and closes(out) == 1


def test_a_vehicle_stalled_under_the_arm_is_never_closed_on():
    d = Driver()
    arrive_and_grant(d)
    d.loop("safety", True, 0.5)
    d.loop("arming", False, 0.5)
    out = d.at(40)
    assert closes(out) == 0 and "passage_stalled" in d.types(out)
    d.loop("safety", False, 0.1)
    assert closes(d.at(0.6)) == 1


def test_a_late_camera_result_for_an_earlier_vehicle_is_dropped():
    d = Driver()
    out = d.loop("arming", True)
    first = next(c for c in out if isinstance(c, Capture)).presence
    d.loop("arming", False, 0.5)  # vehicle A drives off before its burst came back
    out = d.loop("arming", True, 0.5)  # vehicle B
    second = next(c for c in out if isinstance(c, Capture)).presence
    assert second != first
    out = d.at(0.1, PlateCaptured("06AAA01", "sA", 0.9, None, first))  # A's, late
    assert not any(isinstance(c, StartSaga) for c in out) and d.lane.stale_captures == 1
    out = d.at(0.1, PlateCaptured("06BBB02", "sB", 0.9, None, second))
    assert StartSaga("sB", "06BBB02", 0.9, None) in out


def test_an_exit_lane_retries_a_failed_burst_then_lets_the_vehicle_out_by_policy():
    d = Driver(with_(unreadable_exit="allow"), "exit")
    out = d.loop("arming", True)
    presence = next(c for c in out if isinstance(c, Capture)).presence
    out = d.at(0.1, PlateCaptured(None, "s1", presence=presence))
    assert Capture(presence) in out and "capture_retry" in d.types(out)
    d.at(0.1, PlateCaptured(None, "s2", presence=presence))
    out = d.at(0.1, PlateCaptured(None, "s3", presence=presence))
    assert "exit_granted" in d.types(out) and PulseOpen() in out
    assert not any(isinstance(c, StartSaga) for c in d.log)


def test_an_entry_lane_denies_when_no_burst_succeeds():
    d = Driver()
    out = d.loop("arming", True)
    presence = next(c for c in out if isinstance(c, Capture)).presence
    for i in range(3):
        out = d.at(0.1, PlateCaptured(None, f"s{i}", presence=presence))
    assert "entry_denied" in d.types(out) and d.lane.state is S.DENIED


def test_an_exit_lane_fails_open_on_a_loop_fault_and_closes_after_it_clears():
    d = Driver(with_(fail_open=True), "exit")
    out = d.at(0.1, LoopFault("arming", "detector fault"))
    assert d.lane.state is S.HELD_OPEN and PulseOpen(reason="hold") in out
    out = d.at(0.1, LoopFault("arming", "", recovered=True))
    assert d.lane.state is S.HOLDING
    assert closes(d.at(0.6)) == 1


def test_a_faulty_safety_loop_never_lets_the_arm_down():
    d = Driver()
    arrive_and_grant(d)
    d.at(0.1, LoopFault("safety", "detector fault"))
    d.loop("arming", False, 0.5)
    assert closes(d.at(30)) == 0


def test_a_close_the_limit_switch_does_not_confirm_is_retried_once_then_a_fault():
    d = Driver(with_(limits=frozenset({"open", "closed"})))
    d.at(0, ArmLimit("closed", True))
    d.loop("arming", True)
    presence = d.lane.presence
    d.at(0.1, PlateCaptured("34ABC123", "s1", 0.9, None, presence))
    out = d.at(0.1, OpenRequested("s1"))
    assert not any(isinstance(c, AnswerOpen) for c in out)  # until the arm is seen up
    d.at(0.2, ArmLimit("closed", False))
    out = d.at(0.8, ArmLimit("open", True))
    assert AnswerOpen("s1", True, arm="confirmed") in out
    through_and_closing(d)
    assert closes(d.log) == 1
    out = d.at(2.1)  # no closed limit within 1.5 x travel + 0.5 s
    assert Close(retry=True) in out
    out = d.at(2.1)
    assert "barrier_fault" in d.types(out) and d.lane.state is S.FAULT
    out = d.at(1, ArmLimit("closed", True))  # someone freed the arm
    assert "hardware_recovered" in d.types(out) and d.lane.state is S.IDLE


def test_an_arm_found_up_at_start_up_is_closed_once_the_loops_are_clear():
    d = Driver(with_(limits=frozenset({"closed"})))
    d.at(0, LoopRaw("safety", True))
    out = d.at(0.1, ArmLimit("closed", False))
    assert d.lane.state is S.HOLDING and closes(out) == 0
    d.loop("safety", False, 0.1)
    assert closes(d.at(0.6)) == 1


def test_hold_open_input_keeps_the_arm_up_and_help_is_an_event():
    d = Driver()
    out = d.at(0.1, InputChanged("hold_open", True))
    assert d.lane.state is S.HELD_OPEN and PulseOpen(reason="hold") in out
    d.loop("arming", True, 0.1)
    d.loop("safety", True, 0.1)
    d.loop("arming", False, 0.1)
    d.loop("safety", False, 0.1)
    assert closes(d.at(20)) == 0
    out = d.at(0.1, InputChanged("hold_open", False))
    assert "hold_released" in d.types(out) and closes(d.at(0.6)) == 1
    assert d.types(d.at(0.1, InputChanged("help", True))) == ["help_requested"]


def test_a_pulse_arming_loop_neither_toggles_nor_sticks():
    d = Driver(with_(arming_mode="pulse_on_entry",
                             pulse_hold_s=3.0))
    d.at(0, LoopRaw("arming", True))  # a pulse, with a bounce inside it
    d.at(0.01, LoopRaw("arming", False))
    d.at(0.01, LoopRaw("arming", True))
    d.at(0.1, LoopRaw("arming", False))
    assert d.types().count("vehicle_detected") == 1
    d.at(3.5)  # the presence ends on its own: not inverted by the bounce
    assert d.lane.state in (S.IDLE, S.DENIED) and not d.lane.arming.stable


def test_the_same_plate_moments_after_its_passage_is_one_vehicle():
    d = Driver()
    arrive_and_grant(d)
    d.loop("safety", True, 0.2)
    d.loop("arming", False)
    d.loop("safety", False, 0.2)
    d.at(1.7)
    out = d.loop("arming", True, 0.5)
    presence = next(c for c in out if isinstance(c, Capture)).presence
    out = d.at(0.1, PlateCaptured("34ABC123", "s2", presence=presence))
    assert "duplicate_read" in d.types(out) and not any(isinstance(c, StartSaga) for c in out)


def test_denied_vehicle_waits_then_the_lane_idles():
    d = Driver()
    d.loop("arming", True)
    d.at(0.1, PlateCaptured("66BAD66", "s1", presence=d.lane.presence))
    d.at(0.2, SagaFinished("s1", "compensated", "blocked"))
    assert d.lane.state is S.DENIED
    assert "vehicle_waiting" in d.types(d.at(11))
    d.loop("arming", False, 3)
    assert d.lane.state is S.IDLE and not any(isinstance(c, PulseOpen) for c in d.log)


def test_stuck_loop_is_a_fault_until_it_clears():
    d = Driver()
    d.loop("arming", True)
    d.at(0.1, PlateCaptured("66BAD66", "s1", presence=d.lane.presence))
    d.at(0.1, SagaFinished("s1", "compensated"))
    out = d.at(61)
    assert "hardware_fault" in d.types(out) and d.lane.state is S.FAULT
    out = d.loop("arming", False)
    assert "hardware_recovered" in d.types(out) and d.lane.state is S.IDLE


def test_a_closed_lane_lets_nobody_in_and_cannot_close_on_a_vehicle():
    d = Driver()
    ok, out = d.lane.set_mode("closed", "op")
    assert ok and "lane_mode_changed" in d.types(out)
    out = d.loop("arming", True)
    assert "entry_denied" in d.types(out) and not any(isinstance(c, Capture) for c in out)
    d.loop("arming", False, 1)
    d.lane.set_mode("normal", "op")
    arrive_and_grant(d)
    d.loop("safety", True, 0.2)
    ok, out = d.lane.set_mode("closed", "op")
    assert not ok and "lane_mode_refused" in d.types(out)


def test_every_state_but_idle_has_a_timeout_and_every_handler_exists():
    for state in S:
        if state is not S.IDLE:
            assert (state, "timeout") in TRANSITIONS, state
    for handler, targets in TRANSITIONS.values():
        assert callable(getattr(Lane, f"_on_{handler}")) and targets


def test_a_pair_the_table_does_not_name_is_an_error(monkeypatch):
    lane = Lane("l", "entry", C)
    monkeypatch.delitem(TRANSITIONS, (S.IDLE, "manual"))
    with pytest.raises(LaneTableError, match="no rule for 'manual' in 'idle'"):
        lane.handle(ManualOpen("op"), 0.0)


def test_a_handler_that_lands_outside_its_row_is_an_error(monkeypatch):
    lane = Lane("l", "entry", C)
    monkeypatch.setitem(TRANSITIONS, (S.IDLE, "manual"), ("manual_open", (S.IDLE,)))
    with pytest.raises(LaneTableError, match="table allows"):
        lane.handle(ManualOpen("op"), 0.0)


def test_a_vehicle_let_through_is_still_held_for_after_a_hold_open_ends():
    d = Driver()
    arrive_and_grant(d)  # granted, still on the arming loop
    d.at(0.5, InputChanged("hold_open", True))
    d.at(1.0, InputChanged("hold_open", False))
    assert closes(d.at(5)) == 0  # never down in front of it
    d.loop("arming", False, 0.5)
    assert closes(d.at(0.6)) == 1


def test_an_operator_letting_a_vehicle_in_under_a_held_arm_holds_it_too():
    d = Driver()
    d.at(0.1, InputChanged("hold_open", True))
    d.loop("arming", True, 0.1)
    d.at(0.1, ManualOpen("operator", "this van"))
    d.at(0.1, InputChanged("hold_open", False))
    assert closes(d.at(5)) == 0
    d.loop("arming", False, 0.5)
    assert closes(d.at(0.6)) == 1


def test_a_saga_waiting_for_the_open_limit_always_hears_back():
    d = Driver(with_(limits=frozenset({"open", "closed"})))
    d.at(0, ArmLimit("closed", True))
    d.loop("arming", True)
    d.at(0.1, PlateCaptured("34ABC123", "s1", 0.9, None, d.lane.presence))
    d.at(0.1, OpenRequested("s1"))
    d.at(0.1, ArmLimit("closed", False))  # moving up, not there yet
    d.loop("safety", True, 0.1)  # a motorbike slips under the rising arm
    d.loop("arming", False)
    d.loop("safety", False, 0.1)
    out = d.at(0.6)
    assert PassageResult("s1", True) in out
    assert [c for c in d.log if isinstance(c, AnswerOpen)] == [
        AnswerOpen("s1", True, arm="not_confirmed")]


def test_a_close_the_barrier_refused_or_reversed_is_not_taken_for_closed():
    from gateway.core.lane_types import BarrierInterlock

    d = Driver()
    arrive_and_grant(d)
    through_and_closing(d)
    assert d.lane.state is S.CLOSING
    out = d.at(0.01, BarrierInterlock("close refused: the safety loop is occupied"))
    assert d.lane.state is S.HOLDING and PulseOpen(reason="reverse") in out
    assert d.lane.barrier == "open"
    assert closes(d.at(0.6)) == 1  # closed again once it is clear


def test_a_safety_loop_fault_while_closing_reverses_the_arm():
    d = Driver()
    arrive_and_grant(d)
    through_and_closing(d)
    out = d.at(0.1, LoopFault("safety", "detector fault"))
    assert PulseOpen(reason="reverse") in out and d.lane.state is S.HOLDING
    assert closes(d.at(30)) == 0


def test_an_exit_lane_reads_a_waiting_denied_vehicle_again():
    d = Driver(direction="exit")
    out = d.loop("arming", True)
    presence = d.lane.presence
    for i in range(3):
        d.at(0.1, PlateCaptured(None, f"s{i}", presence=presence))
    assert d.lane.state is S.DENIED  # the policy says deny; nobody can read it
    out = d.at(10.5)
    assert "vehicle_waiting" in d.types(out) and Capture(presence) in out
    out = d.at(0.1, PlateCaptured("34ABC123", "s9", 0.9, None, presence))
    assert StartSaga("s9", "34ABC123", 0.9, None) in out


def test_a_second_vehicle_on_the_safety_loop_after_the_first_is_tailgating():
    d = Driver(with_(tailgate_response="hold"))
    arrive_and_grant(d)
    d.loop("safety", True, 0.5)
    d.loop("arming", False, 0.3)
    d.loop("arming", True, 0.8)  # the follower: reported, and held for
    d.loop("safety", False, 1.0)
    d.at(0.6)
    assert d.lane.state is S.HOLDING
    out = d.loop("safety", True, 0.5)  # it drives under the held arm
    assert d.types().count("tailgating_detected") == 1  # one report per cycle
    assert closes(out) == 0 and d.lane.passages == 2


def test_the_open_of_an_earlier_saga_is_refused_while_the_next_vehicle_is_decided():
    """Reliability campaign finding F1: the first driver left while its saga was still
    deciding, the next one is being decided when the first saga asks to open. That open is
    refused (its saga undoes what it did) and the lane goes on deciding for the second."""
    d = Driver()
    d.loop("arming", True)
    d.at(0.1, PlateCaptured("34ABC123", "s1", 0.9, None, d.lane.presence))
    d.loop("arming", False, 0.1)
    d.at(C.gap_hold_s + 0.1)  # gone: back at rest
    d.loop("arming", True, 0.2)  # the next vehicle
    d.at(0.1, PlateCaptured("06XYZ99", "s2", 0.9, None, d.lane.presence))
    assert d.lane.state is S.DECIDING and d.lane.saga_id == "s2"
    out = d.at(0.1, OpenRequested("s1"))
    (answer,) = [c for c in out if isinstance(c, AnswerOpen)]
    assert answer.saga_id == "s1" and not answer.opened
    assert PulseOpen() not in out and d.lane.state is S.DECIDING
    out = d.at(0.1, OpenRequested("s2"))
    assert PulseOpen() in out and AnswerOpen("s2", True) in out
