"""The daemon's threads carry their names in the OS (what ``top -H`` and the footprint
benchmark show): read back from /proc, as a technician's tools read them."""

from __future__ import annotations

import threading
from pathlib import Path

from gateway.os_threads import name_this_thread, named_pool, os_name
from hardware.camera_grabber import LatestFrameGrabber
from hardware.sim import SimCameraSource


def comm(native_id: int | None) -> str:
    return Path(f"/proc/self/task/{native_id}/comm").read_text().strip()


def test_a_thread_is_named_in_the_os_after_its_python_name() -> None:
    seen: list[str] = []

    def work() -> None:
        name_this_thread()
        seen.append(comm(threading.get_native_id()))

    t = threading.Thread(target=work, name="sqlite")
    t.start()
    t.join()
    assert seen == ["sqlite"]


def test_a_long_name_is_cut_to_the_kernels_15_bytes_never_inside_a_character() -> None:
    assert os_name("grab entry-lane-north") == b"grab entry-lane"
    assert os_name("grab é" + "x" * 8) == "grab é".encode() + b"x" * 8  # 15 bytes
    assert os_name("grab xxxxxxxxxé") == b"grab xxxxxxxxx"  # é: bytes 15 and 16


def test_the_cameras_grabber_and_watchdog_carry_the_lanes_name() -> None:
    grabber = LatestFrameGrabber(SimCameraSource(64, 48), name="entry-1")
    grabber.start()
    try:
        assert grabber.latest(timeout_s=5) is not None
        assert comm(grabber._thread.native_id) == "grab entry-1"
        assert comm(grabber._watchdog.native_id) == "camwatch entry-"
    finally:
        grabber.stop()


def test_a_pools_workers_are_named_in_the_os() -> None:
    with named_pool(1, "plate-reader") as pool:
        assert pool.submit(lambda: comm(threading.get_native_id())).result(5) == \
            "plate-reader_0"
