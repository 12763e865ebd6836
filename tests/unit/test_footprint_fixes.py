"""What bench/footprint.py's fixes rely on: the grabber's frozen-frame check (first rows,
then the whole frame), the sim camera's shared read-only frames, and the allocator calls
(glibc here; nothing elsewhere)."""

from __future__ import annotations

import itertools

import numpy as np

from gateway.app import _libc, _malloc_trim, tune_allocator
from hardware.camera_grabber import same_frame
from hardware.sim import SimCameraSource


def test_a_frame_is_the_same_only_when_every_pixel_is() -> None:
    a = np.random.default_rng(1).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    assert same_frame(a, a.copy()) and same_frame(a, a)
    late = a.copy()
    late[700, 1200, 2] ^= 1  # the first rows alike, a difference further down
    assert not same_frame(a, late)
    early = a.copy()
    early[0, 0, 0] ^= 1
    assert not same_frame(a, early)
    assert not same_frame(None, a) and not same_frame(a, a[:, :640])
    assert not same_frame(a, a.astype(np.uint16))


def test_the_sim_camera_gives_frames_that_differ_from_the_one_before_and_stay_unchanged() -> None:
    cam = SimCameraSource(320, 240)
    cam.show("34ABC123")
    frames = [cam.read() for _ in range(5)]
    for before, after in itertools.pairwise(frames):
        assert not same_frame(before, after)  # never taken for a frozen camera
    assert all(not f.flags.writeable for f in frames)  # shared: no reader may change one
    cam.show(None)
    assert not np.array_equal(cam.read()[100:], frames[-1][100:])  # the new scene


def test_the_allocator_calls_are_glibcs_or_nothing() -> None:
    tune_allocator()  # at most two arenas; never raises
    assert _libc("no_such_function_here") is None
    if _malloc_trim is not None:
        assert _malloc_trim(0) in (0, 1)
