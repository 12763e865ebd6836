"""The camera pipeline on real OpenCV: generated video files, a file that ends, a file
that breaks mid-stream, and a source that never opens."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from gateway.core.errors import DeviceError
from hardware.camera import (
    CaptureSettings,
    LatestFrameGrabber,
    OpenCvSource,
    capture,
    find_plate_region,
    sharpness,
)
from hardware.sim import SimCameraSource, render_frame


def write_video(path: Path, frames: int, plate: str = "34ABC123") -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 15, (640, 360))
    assert writer.isOpened()
    for i in range(frames):
        frame = render_frame(plate, 640, 360)
        if i % 2:  # every other frame blurred: the burst must pick a sharp one
            frame = cv2.GaussianBlur(frame, (15, 15), 0)
        writer.write(frame)
    writer.release()


def test_plate_region_found_on_a_rendered_car_and_not_on_an_empty_lane():
    region = find_plate_region(render_frame("34ABC123", 1280, 720))
    assert region is not None
    x, _, w, h = region
    assert 2 <= w / h <= 6.5 and 500 < x < 700
    assert find_plate_region(render_frame(None, 1280, 720)) is None


def test_sharpness_prefers_the_sharp_frame():
    frame = render_frame("34ABC123", 640, 360)
    assert sharpness(frame) > sharpness(cv2.GaussianBlur(frame, (15, 15), 0))


def test_burst_from_a_video_file_is_cropped_encoded_and_sharp(tmp_path):
    video = tmp_path / "lane.avi"
    write_video(video, 30)
    grabber = LatestFrameGrabber(OpenCvSource(str(video)), frame_interval_s=0.01,
                                 backoff_initial_s=0.05)
    grabber.start()
    try:
        shot = capture(grabber, CaptureSettings(burst=4, max_width=320, jpeg_quality=70))
    finally:
        grabber.stop()
    assert shot.cropped
    image = cv2.imdecode(np.frombuffer(shot.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[1] <= 320
    assert image.shape[1] / image.shape[0] > 2  # the plate, not the whole frame
    assert shot.plate is None  # a plain camera gives no reading


def test_a_file_that_ends_is_reopened_and_health_is_reported(tmp_path):
    video = tmp_path / "short.avi"
    write_video(video, 3)
    reopened = threading.Event()
    health: list[bool] = []

    def on_health(ok: bool, why: str) -> None:
        health.append(ok)
        if not ok:
            reopened.set()

    grabber = LatestFrameGrabber(OpenCvSource(str(video)), backoff_initial_s=0.01,
                                 on_health=on_health)
    grabber.start()
    try:
        assert reopened.wait(5)
        assert grabber.latest(timeout_s=5) is not None
    finally:
        grabber.stop()
    assert health[:2] == [True, False]
    assert grabber.stats.reconnects >= 1


def test_a_file_broken_mid_stream_gives_the_frames_it_has_then_a_fault(tmp_path):
    video = tmp_path / "broken.avi"
    write_video(video, 40)
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 2])  # cut in the middle of the stream
    grabber = LatestFrameGrabber(OpenCvSource(str(video)), backoff_initial_s=0.05)
    grabber.start()
    try:
        first = grabber.latest(timeout_s=5)
        assert first is not None
        shot = capture(grabber, CaptureSettings(burst=2, frame_timeout_s=2))
        assert shot.jpeg[:2] == b"\xff\xd8"
    finally:
        grabber.stop()
    assert grabber.stats.frames >= 2


def test_a_source_that_never_opens_is_a_fault_not_a_hang(tmp_path):
    faults: list[str] = []
    grabber = LatestFrameGrabber(OpenCvSource(str(tmp_path / "missing.mp4"),
                                              open_timeout_ms=500),
                                 backoff_initial_s=0.05,
                                 on_health=lambda ok, why: faults.append(why))
    grabber.start()
    try:
        with pytest.raises(DeviceError, match="no frame"):
            capture(grabber, CaptureSettings(frame_timeout_s=0.3))
    finally:
        grabber.stop()
    assert faults and "could not be opened" in faults[0]


def test_sim_camera_gives_the_reading_with_the_frame():
    cam = SimCameraSource(320, 240)
    grabber = LatestFrameGrabber(cam, frame_interval_s=0.005)
    grabber.start()
    try:
        cam.show("06XYZ99")
        shot = capture(grabber, CaptureSettings(burst=2))
        assert shot.plate == "06XYZ99" and shot.confidence > 0.9
        cam.show(None)
        assert capture(grabber, CaptureSettings(burst=1)).plate is None
    finally:
        grabber.stop()
