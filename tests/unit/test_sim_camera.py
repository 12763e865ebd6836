"""The simulated plain camera draws a vehicle's scene before the vehicle comes in view: a
real camera's frame costs the gate nothing, so the drawing (hundreds of ms of CPU on a
loaded machine) must not fall between the gate's trigger and its first frame."""

from __future__ import annotations

from hardware.sim import SimCameraSource


def test_a_prepared_scene_is_what_the_first_read_shows() -> None:
    cam = SimCameraSource(320, 240, plain=True)
    cam.prepare("34ABC123")
    prepared = list(cam._prepared["34ABC123"])
    cam.show("34ABC123")
    first = cam.read()
    assert any(first is frame for frame in prepared)  # taken, not drawn again
    assert "34ABC123" not in cam._prepared  # used once
    cam.show(None)
    empty = cam.read()
    assert empty is not None and not any(empty is frame for frame in prepared)


def test_scenes_of_vehicles_that_never_came_are_not_kept() -> None:
    cam = SimCameraSource(160, 120, plain=True)
    for i in range(6):
        cam.prepare(f"34AB{i:03d}")
    assert list(cam._prepared) == [f"34AB{i:03d}" for i in range(2, 6)]
