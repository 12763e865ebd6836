"""The loop detector's serial lines (``hardware.serial_loop.LoopLineParser``): any bytes, cut
into reads of any size, never raise; every line that is not a reading is counted as garbage
and skipped; the same bytes give the same readings and the same count however the port's
reads cut them; the buffer never holds more than a line."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from hardware.serial_loop import MAX_LINE, ChannelFault, Heartbeat, LoopLevel, LoopLineParser
from tests.fuzz.strategies import fuzz_settings

LINES = [b"L1=1", b"L1=0", b"L16=1", b"L99=0", b"HB", b"F2=OPEN", b"F1=SHORT_CIRCUIT",
         b"L1=2", b"L=1", b"F1=open", b"F1=" + b"X" * 17, b"hb", b" HB ", b"L1=1\r",
         b"\xff\xfe", b"\x00", b"L\xd9\xa1=1", b"X" * (MAX_LINE + 1), b" " * (MAX_LINE + 1),
         b"L1=1" + b" " * MAX_LINE]
streams = st.lists(st.sampled_from(LINES) | st.binary(max_size=80), max_size=30).flatmap(
    lambda parts: st.lists(st.sampled_from([b"\n", b"\r\n", b"\r", b""]),
                           min_size=len(parts), max_size=len(parts)).map(
        lambda ends: b"".join(p + e for p, e in zip(parts, ends, strict=True))))


def feed_in_reads(stream: bytes, cuts: list[int]) -> tuple[list[object], int]:
    parser = LoopLineParser()
    out: list[object] = []
    start = 0
    for cut in [*sorted(c % (len(stream) + 1) for c in cuts), len(stream)]:
        out += parser.feed(stream[start:max(start, cut)])
        start = max(start, cut)
        assert len(parser._buf) <= MAX_LINE  # a run-on line is never kept
    return out, parser.garbage


@fuzz_settings(2.0)
@given(streams | st.binary(max_size=400), st.lists(st.integers(0, 500), max_size=12))
# a line of 65 bytes, a reading once stripped: it was a reading when read whole, garbage
# (a run-on line) when a read ended after its 65th byte, before its newline
@example(b"L1=1" + b" " * 61 + b"\n", [65])
@example(b" " * 70 + b"\n", [68])  # blank once stripped: skipped, or garbage
def test_any_bytes_in_any_reads_give_the_same_readings_and_garbage(tried, stream: bytes,
                                                                   cuts: list[int]):
    tried("serial lines")
    whole, garbage = feed_in_reads(stream, [])
    assert feed_in_reads(stream, cuts) == (whole, garbage)
    for r in whole:
        assert isinstance(r, LoopLevel | Heartbeat | ChannelFault)
    lines = stream.split(b"\n")
    complete = [ln.strip() for ln in lines[:-1]]
    # each complete line gives one reading or one garbage count, or nothing if blank; an
    # unfinished line at the end at most one garbage count (a run-on line)
    assert len(whole) + garbage <= len(complete) + 1
    assert len(whole) <= sum(1 for ln in complete if ln)
    assert len(whole) + garbage >= sum(1 for ln in complete if 0 < len(ln) <= MAX_LINE)


def test_every_kind_of_garbage_is_counted_and_skipped():
    p = LoopLineParser()
    bad = [b"L1=2", b"hb", b"\xff\xfe", b"F1=open", b"X" * (MAX_LINE + 1)]
    assert p.feed(b"\n".join([*bad, b"L1=1", b""])) == [LoopLevel(1, True)]
    assert p.garbage == len(bad)
