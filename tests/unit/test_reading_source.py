"""Which reading a decision went by (issue 10, item 3): the hint sent to the central service
says whose reading it is, and every verification records the reading it used."""

from __future__ import annotations

from gateway.core.lane import Lane
from gateway.core.lane_types import LaneConfig, LoopRaw, PlateCaptured, StartSaga, Tick
from gateway.sagas import payloads


def ctx(**kw):
    return {"gate_id": "g", "lane_id": "entry-1", "kind": "entry", "captured_at": "t",
            "saga_id": "s1", **kw}


def test_the_hint_carries_its_source_and_confidence():
    body = payloads.build("verify_license_plate", "verify_license_plate",
                          ctx(license_plate="34ABC123", plate_confidence=0.934,
                              reading_source="local", image_jpeg_b64="aaa"), {})
    assert body["license_plate"] == "34ABC123" and body["image_jpeg_b64"] == "aaa"
    assert (body["reading_source"], body["reading_confidence"]) == ("local", 0.934)
    # no reading: only the image, and no claim about a reading that is not there
    body = payloads.build("verify_license_plate", "verify_license_plate",
                          ctx(license_plate="", plate_confidence=0.0, reading_source="",
                              image_jpeg_b64="aaa"), {})
    assert "license_plate" not in body and "reading_source" not in body


def test_the_reading_used_is_the_central_services_when_it_read_another_plate():
    c = ctx(license_plate="34ABC128", plate_confidence=0.81, reading_source="local")
    assert payloads.reading_used(c, {"license_plate": "34ABC123", "confidence": 0.97},
                                 "central") == {"source": "central", "confidence": 0.97,
                                                "plate": "34ABC123"}
    assert payloads.reading_used(c, {"license_plate": "34ABC128"}, "central")["source"] \
        == "local"
    assert payloads.reading_used(c, {"license_plate": "34ABC128"}, "cache") == \
        {"source": "local", "confidence": 0.81, "plate": "34ABC128"}
    image_only = ctx(license_plate="", reading_source="")
    assert payloads.reading_used(image_only, {"license_plate": "06XY99"}, "central")[
        "source"] == "central"


def test_the_lane_passes_the_reading_source_to_its_saga():
    c = LaneConfig(debounce_s=0.05, capture_timeout_s=2, passage_timeout_s=10,
                   arm_travel_s=1, decision_timeout_s=5)
    lane = Lane("lane-1", "entry", c)
    lane.handle(LoopRaw("arming", False), 0.0)
    lane.handle(LoopRaw("safety", False), 0.0)
    lane.handle(Tick(), 0.1)
    lane.handle(LoopRaw("arming", True), 0.2)
    lane.handle(Tick(), 0.3)
    out = lane.handle(PlateCaptured("34ABC123", "s1", 0.9, "img", lane.presence, "local"), 0.4)
    assert StartSaga("s1", "34ABC123", 0.9, "img", "local") in out
