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


FREED_BIG_BLOCKS = """
import sys
import numpy as np
from gateway.app import tune_allocator

def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

if sys.argv[1] == "tuned":
    tune_allocator()
# a float copy of a frame (a colour conversion, a blur: 11 MB), freed: glibc's sliding
# threshold now puts every smaller block on the heap
np.zeros((720, 1280, 3), np.float32).fill(1.0)
kept = []
for _ in range(3):  # a burst's frames, then what outlives them (an event, a log record)
    frames = [np.full((720, 1280, 3), 7, np.uint8) for _ in range(3)]
    kept.append([bytearray(200) for _ in range(100)])
    del frames
before = rss_mb()
frames = [np.full((720, 1280, 3), 7, np.uint8) for _ in range(3)]
kept.append([bytearray(200) for _ in range(100)])
held = rss_mb()
del frames
print(held - before, held - rss_mb())
"""


def test_a_freed_frame_is_given_back_to_the_system_at_once() -> None:
    """A fresh process allocates and frees bursts of three 720p frames: with the allocator
    tuned, the memory of a freed burst leaves the process at once; left to glibc's sliding
    mmap threshold it stays in the heap (the daemon's growth under traffic)."""
    import subprocess
    import sys

    def run(mode: str) -> tuple[float, float]:
        out = subprocess.run([sys.executable, "-c", FREED_BIG_BLOCKS, mode], check=True,
                             capture_output=True, text=True).stdout.split()
        return float(out[0]), float(out[1])

    grew, given_back = run("tuned")
    assert grew > 7 and given_back > 7  # 3 x 2.6 MB taken, and returned when freed
    _, given_back_untuned = run("untuned")
    # the model holds: left to glibc, the freed burst stays in the process
    assert given_back_untuned < 1
