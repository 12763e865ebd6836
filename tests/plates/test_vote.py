"""The burst's vote: agreement raises the confidence, disagreement lowers it, never a guess."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.plates.vote import vote

A, B = "34ABC123", "34ABC128"


def test_frames_agreeing_give_the_plate_with_more_confidence_than_each():
    v = vote([{A: 0.9}, {A: 0.9}, {A: 0.9}], 0.8)
    assert v.plate == A and v.confidence > 0.97 and v.candidates == {A: 2.7}
    assert vote([{A: 0.9}], 0.8).confidence == 0.9


def test_a_disagreeing_frame_lowers_the_confidence():
    agreed = vote([{A: 0.95}, {A: 0.95}, {}], 0.0)
    disputed = vote([{A: 0.95}, {A: 0.95}, {B: 0.95}], 0.0)
    assert agreed.plate == disputed.plate == A
    assert disputed.confidence < agreed.confidence


def test_two_frames_agreeing_outvote_one_weaker_misread_but_not_an_equal_one():
    assert vote([{A: 0.97}, {A: 0.97}, {B: 0.78}], 0.8).plate == A
    assert vote([{A: 0.95}, {A: 0.95}, {B: 0.95}], 0.8).plate is None


def test_below_min_confidence_is_unreadable_never_the_runner_up():
    v = vote([{A: 0.6}, {B: 0.55}, {}], 0.8)
    assert v.plate is None and 0 <= v.confidence < 0.8 and set(v.candidates) == {A, B}


def test_a_tie_is_unreadable():
    assert vote([{A: 0.99}, {B: 0.99}], 0.0).plate is None


def test_nothing_read_is_unreadable_with_no_confidence():
    v = vote([{}, {}, {}], 0.8)
    assert v.plate is None and v.confidence == 0.0 and v.candidates == {}
    assert vote([], 0.8).plate is None


def test_one_frame_among_empty_ones_is_weaker_than_all_frames():
    alone = vote([{A: 0.95}, {}, {}], 0.0)
    assert alone.plate == A and alone.confidence < 0.95


frames_st = st.lists(st.dictionaries(st.sampled_from([A, B, "06A1234"]),
                                     st.floats(0, 1), max_size=3), max_size=6)


@given(frames_st, st.floats(0, 1))
def test_the_vote_is_a_candidate_or_none_in_range_and_order_free(frames, min_conf):
    v = vote(frames, min_conf)
    assert 0.0 <= v.confidence <= 1.0
    assert v.plate is None or (v.plate in v.candidates and v.confidence >= min_conf)
    assert vote(list(reversed(frames)), min_conf) == v


@given(frames_st, st.floats(0.01, 1))
def test_a_rival_frame_never_raises_the_winners_confidence(frames, rival_conf):
    before = vote(frames, 0.0)
    if before.plate is None:
        return
    rival = "99ZZ999"
    after = vote([*frames, {rival: rival_conf}], 0.0)
    if after.plate == before.plate:
        assert after.confidence <= before.confidence
    else:  # a rival at least as strong: it wins or nobody does
        assert after.plate in (rival, None)
