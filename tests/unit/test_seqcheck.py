from gateway.core.seqcheck import SeqTracker


def test_gaps_repeats_and_conflicts_are_told_apart():
    t = SeqTracker()
    assert t.observe(1, "a") == []
    assert t.observe(2, "b") == []
    assert t.observe(2, "b") == ["repeat of seq 2 (a redelivery)"]
    assert t.observe(5, "e") == ["gap: seq 3-4 missing"]
    assert t.observe(7, "g") == ["gap: seq 6 missing"]
    assert "another event_id" in t.observe(7, "x")[0]
    assert (t.gaps, t.repeats, t.conflicts) == (2, 1, 1)
