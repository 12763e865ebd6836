from hypothesis import given
from hypothesis import strategies as st

from hardware.serial_loop import ChannelFault, Heartbeat, LoopLevel, LoopLineParser


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
