"""Which plate a lane goes by for a burst (gateway/services/plate_reading.py), with the real
reader on scenes rendered as the sim's plain camera renders them: a plain camera's burst is
read at the gate; an ANPR camera's reading is used and compared; a burst nobody can read is
no plate (the image alone), never another plate."""

from __future__ import annotations

import numpy as np

from gateway.plates.render import render_scene
from gateway.services.plate_reading import reading_for
from hardware.camera import Shot


def shot(plate_shown: str | None, camera_reads: str | None = None, *, condition="clean",
         confidence: float = 0.95) -> Shot:
    frame = render_scene(plate_shown, np.random.default_rng(5), width=960, height=540,
                         condition=condition)
    return Shot(b"jpeg", camera_reads, confidence if camera_reads else 0.0, False, 1.0,
                frames=[frame, frame.copy()])


async def started(make_reader, **overrides):
    reader = make_reader(**overrides)
    await reader.start()
    assert reader.ready
    return reader


async def test_a_plain_cameras_burst_is_read_at_the_gate(make_reader):
    reader = await started(make_reader)
    got = await reading_for(shot("34ABC123"), reader, None, compare_anpr=True)
    assert (got.plate, got.source) == ("34ABC123", "local") and got.confidence >= 0.8
    ((kind, data),) = got.events
    assert kind == "local_reading" and data["license_plate"] == "34ABC123"


async def test_an_anpr_reading_is_used_and_a_disagreement_is_an_event(make_reader):
    reader = await started(make_reader)
    got = await reading_for(shot("34ABC123", camera_reads="34ABC128"), reader, None,
                            compare_anpr=True)
    assert (got.plate, got.source) == ("34ABC128", "camera")
    kinds = dict(got.events)
    assert kinds["reading_disagreement"] == {"camera": "34ABC128", "camera_confidence": 0.95,
                                             "local": "34ABC123", "local_confidence":
                                             round(got.local.confidence, 3)}
    agree = await reading_for(shot("34ABC123", camera_reads="34ABC123"), reader, None,
                              compare_anpr=True)
    assert "reading_disagreement" not in dict(agree.events)
    unread = await reading_for(shot("34ABC123", camera_reads="34ABC128"), reader, None,
                               compare_anpr=False)
    assert unread.local is None and unread.events == []


async def test_a_burst_nobody_can_read_is_no_plate_never_another(make_reader):
    reader = await started(make_reader)
    for condition in ("no_plate", "badge", "timestamp"):
        got = await reading_for(shot("34ABC123", condition=condition), reader, None,
                                compare_anpr=True)
        assert (got.plate, got.source) == (None, ""), condition
    # no reader (disabled, or its model failed to load): the image alone, as before
    got = await reading_for(shot("34ABC123"), None, None, compare_anpr=True)
    assert (got.plate, got.source, got.events) == (None, "", [])
