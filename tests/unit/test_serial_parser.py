from hypothesis import given
from hypothesis import strategies as st

from hardware.serial_loop import (
    ChannelFault,
    DetectorState,
    FaultReport,
    Heartbeat,
    LoopLevel,
    LoopLineParser,
)


def test_lines_become_readings_and_garbage_is_counted():
    p = LoopLineParser()
    out = p.feed(b"L1=1\r\nHB\nL2=0\nF1=OPEN\nhello\nL1=7\n\n")
    assert out == [LoopLevel(1, True), Heartbeat(), LoopLevel(2, False), ChannelFault(1, "OPEN")]
    assert p.garbage == 2


def test_run_on_line_is_dropped_up_to_its_end():
    p = LoopLineParser()
    assert p.feed(b"X" * 100) == []
    assert p.feed(b"YYY\nL1=1\n") == [LoopLevel(1, True)]
    assert p.garbage == 1


@given(st.lists(st.sampled_from([b"L1=1\n", b"L1=0\n", b"HB\n", b"L2=1\r\n"]), max_size=20),
       st.data())
def test_any_chunking_gives_the_same_readings(lines, data):
    stream = b"".join(lines)
    whole = LoopLineParser().feed(stream)
    p = LoopLineParser()
    got = []
    i = 0
    while i < len(stream):
        n = data.draw(st.integers(1, 7))
        got += p.feed(stream[i:i + n])
        i += n
    assert got == whole and len(got) == len(lines)


@given(st.binary(max_size=300))
def test_random_bytes_never_crash(blob):
    p = LoopLineParser()
    for r in p.feed(blob):
        assert isinstance(r, LoopLevel | Heartbeat | ChannelFault)


# -- what is known of the channels (DetectorState: the latching rule, no I/O) -----------------
PROBLEM = "serial port P: silent for 10s"
readings = st.one_of(
    st.builds(LoopLevel, st.integers(1, 3), st.booleans()),
    st.just(Heartbeat()),
    st.builds(ChannelFault, st.integers(1, 3), st.sampled_from(["OPEN", "SHORT"])),
    st.just(PROBLEM))


def test_a_heartbeat_proves_the_link_not_the_loop():
    s = DetectorState()
    assert s.reading(LoopLevel(2, False)) == []
    assert s.reading(ChannelFault(2, "OPEN")) == [
        FaultReport(2, "detector fault on channel 2: OPEN", False)]
    assert s.reading(Heartbeat()) == [] and s.reading(LoopLevel(1, True)) == []
    assert s.level(2) is None and s.level(1) is True
    assert s.reading(LoopLevel(2, False)) == [
        FaultReport(2, "channel 2: level reported again", True)]
    assert s.level(2) is False


def test_a_port_problem_latches_every_channel_and_is_reported_once():
    s = DetectorState()
    s.reading(LoopLevel(1, True))
    out = s.port_problem("serial port P: disconnected", [1, 2])
    assert out == [FaultReport(None, "serial port P: disconnected", False),
                   FaultReport(1, "level unknown after serial port P: disconnected", False),
                   FaultReport(2, "level unknown after serial port P: disconnected", False)]
    assert s.port_problem("serial port P: cannot open: gone", [1, 2]) == []
    assert s.reading(Heartbeat()) == [FaultReport(
        None, "serial port P: disconnected (ended: the detector is heard again)", True)]
    assert s.level(1) is None and s.levels[1] is True  # the last level is kept, not trusted
    assert s.unreported("never heard", [1, 2, 3]) == [FaultReport(3, "never heard", False)]


@given(st.lists(readings, max_size=40))
def test_only_a_level_line_makes_a_channel_known_and_reports_alternate(events):
    s = DetectorState()
    model: dict[int, bool] = {}  # the known levels, by the rule
    last: dict[int | None, bool] = {}  # per channel (None: the port): was the last a recovery
    for ev in events:
        if ev == PROBLEM:
            out = s.port_problem(ev, [1, 2, 3])
            model.clear()
        else:
            assert not isinstance(ev, str)
            out = s.reading(ev)
            if isinstance(ev, LoopLevel):
                model[ev.channel] = ev.occupied
            elif isinstance(ev, ChannelFault):
                model.pop(ev.channel, None)
        for r in out:
            # a fault is reported once, then only its recovery; a recovery only after a fault
            assert last.get(r.channel, True) is not r.recovered
            last[r.channel] = r.recovered
            if r.recovered and r.channel is not None:
                assert isinstance(ev, LoopLevel) and ev.channel == r.channel
        for ch in (1, 2, 3):
            assert s.level(ch) == model.get(ch)
        assert set(s.channel_faults) == {ch for ch, rec in last.items()
                                         if ch is not None and not rec}
