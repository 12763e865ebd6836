"""The camera pipeline on real OpenCV: generated video files, a file that ends, a file
that breaks mid-stream, a source that never opens; the backend chosen by source kind, RTSP
over TCP (against an RTSP server on loopback), an HTTP MJPEG stream, frozen and hung
sources reported by the watchdog, stale frames from a source slower than real time, a stop
during a blocked read, and what is uploaded."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import pytest

from gateway.core.errors import DeviceError
from gateway.settings import CameraSettings
from hardware.camera import (
    CaptureSettings,
    LatestFrameGrabber,
    OpenCvSource,
    capture,
    find_plate_region,
    sharpness,
    upload_mode,
)
from hardware.camera_source import FFMPEG_OPTIONS
from hardware.sim import SimCameraSource, render_frame
from tests.integration.camera_peers import (
    BlockingSource,
    FreezingSource,
    mjpeg_server,
    rtsp_recorder,
    write_video,
)


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
        shot = capture(grabber, CaptureSettings(burst=4, max_width=320, jpeg_quality=70,
                                                upload="crop"))
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


# -- the camera as installers have it ---------------------------------------------------------
TIMEOUTS = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 700, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 800]


def recording(calls: list[tuple[int | str, int, list[int]]]
              ) -> Callable[[int | str, int, Sequence[int]], cv2.VideoCapture]:
    """cv2.VideoCapture itself, noting what it is given."""
    def factory(target: int | str, api: int, params: Sequence[int]) -> cv2.VideoCapture:
        calls.append((target, api, list(params)))
        return cv2.VideoCapture(target, api, list(params))
    return factory


def aspect(jpeg: bytes) -> float:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return float(image.shape[1] / image.shape[0])


def test_the_backend_follows_the_source_kind_and_only_ffmpeg_gets_the_timeouts(tmp_path):
    for uri in ("0", "/dev/video2"):
        plan = OpenCvSource(uri, open_timeout_ms=700, read_timeout_ms=800).plan
        assert (plan.api, plan.params) == (cv2.CAP_V4L2, ())
    for uri in ("rtsp://192.0.2.10/stream1", "http://192.0.2.10/video", "lane.avi", "a.jpg"):
        plan = OpenCvSource(uri, open_timeout_ms=700, read_timeout_ms=800).plan
        assert (plan.api, list(plan.params)) == (cv2.CAP_FFMPEG, TIMEOUTS)
    video, image = tmp_path / "lane.avi", tmp_path / "shot.jpg"
    write_video(video, 5)
    assert cv2.imwrite(str(image), render_frame("34ABC123", 640, 360))
    # what the timeouts do to another backend: OpenCV's own image backend refuses them
    assert cv2.VideoCapture(str(image), cv2.CAP_IMAGES).isOpened()
    assert not cv2.VideoCapture(str(image), cv2.CAP_IMAGES, TIMEOUTS).isOpened()
    calls: list[tuple[int | str, int, list[int]]] = []
    for path in (video, image):  # real opens, through FFmpeg, with the timeouts
        source = OpenCvSource(str(path), open_timeout_ms=700, read_timeout_ms=800,
                              capture_factory=recording(calls))
        source.open()
        try:
            assert source.read() is not None
            assert source.cap is not None and source.cap.getBackendName() == "FFMPEG"
        finally:
            source.close()
    index = OpenCvSource("7", capture_factory=recording(calls))  # no camera 7 here
    with pytest.raises(DeviceError, match="could not be opened"):
        index.open()
    assert calls == [(str(video), cv2.CAP_FFMPEG, TIMEOUTS), (str(image), cv2.CAP_FFMPEG,
                                                              TIMEOUTS), (7, cv2.CAP_V4L2, [])]


async def test_rtsp_is_asked_for_over_tcp_unless_the_installer_chose_udp(monkeypatch):
    monkeypatch.setenv(FFMPEG_OPTIONS, "")  # restored after the test
    async with rtsp_recorder() as (url, transports):
        with pytest.raises(DeviceError):  # the recorder refuses every SETUP
            await asyncio.to_thread(OpenCvSource(url, open_timeout_ms=1500).open)
        assert os.environ[FFMPEG_OPTIONS] == "rtsp_transport;tcp"
        assert transports and all(t.startswith("RTP/AVP/TCP") for t in transports), transports
        transports.clear()
        udp = OpenCvSource(url, open_timeout_ms=1500, rtsp_transport="udp")
        with pytest.raises(DeviceError):
            await asyncio.to_thread(udp.open)
        assert transports and not any("TCP" in t for t in transports), transports


async def test_an_http_mjpeg_stream_opens_through_ffmpeg_and_its_frames_are_fresh(monkeypatch):
    # left by an RTSP lane: other inputs ignore it
    monkeypatch.setenv(FFMPEG_OPTIONS, "rtsp_transport;tcp")
    async with mjpeg_server(fps=10) as url:  # FFmpeg numbers MJPEG frames as if at 25 fps
        grabber = LatestFrameGrabber(OpenCvSource(url), max_frame_age_s=0.5)
        grabber.start()
        try:
            shot = await asyncio.to_thread(capture, grabber, CaptureSettings(
                burst=15, frame_timeout_s=2, upload="frame"))
        finally:
            await asyncio.to_thread(grabber.stop)
    assert shot.jpeg[:2] == b"\xff\xd8"
    lag = grabber.stats.decode_lag_ms()
    print(f"http mjpeg 10 fps: decode lag {lag}")
    assert grabber.stats.frames >= 15 and grabber.stats.stale == 0 and lag["max"] < 500


async def test_an_mjpeg_stream_read_slower_than_it_comes_gives_stale_frames_dropped():
    # no timestamps: the read timing tells, reads that return at once come from a backlog
    async with mjpeg_server(fps=25) as url:
        stale = threading.Event()
        grabber = LatestFrameGrabber(
            OpenCvSource(url), frame_interval_s=0.12, max_frame_age_s=0.5, watchdog_s=0.8,
            on_health=lambda ok, why: stale.set() if why.startswith("stale") else None)
        grabber.start()
        try:
            assert await asyncio.to_thread(stale.wait, 10)
        finally:
            await asyncio.to_thread(grabber.stop)
    lag = grabber.stats.decode_lag_ms()
    print(f"http mjpeg 25 fps read at 8 fps: decode lag {lag}, {grabber.stats.stale} stale "
          f"of {grabber.stats.stale + grabber.stats.frames}")
    assert grabber.stats.stale >= 1 and lag["max"] > 500


@pytest.mark.parametrize("hang", [False, True], ids=["same-frame", "read-hangs"])
def test_a_frozen_source_is_a_camera_fault_within_watchdog_s_then_recovers(tmp_path, hang):
    video = tmp_path / "lane.avi"
    write_video(video, 300)
    source = FreezingSource(str(video), hang=hang)
    health: list[tuple[bool, str, float]] = []
    fault, recovered = threading.Event(), threading.Event()

    def on_health(ok: bool, why: str) -> None:
        health.append((ok, why, time.monotonic()))
        if not ok:
            fault.set()
        elif fault.is_set():
            recovered.set()

    grabber = LatestFrameGrabber(source, watchdog_s=0.5, frame_interval_s=0.02,
                                 on_health=on_health)
    grabber.start()
    try:
        assert grabber.latest(timeout_s=5) is not None
        source.freeze.set()
        assert source.frozen.wait(5)
        last_usable = grabber.stats.last_frame_at
        assert fault.wait(5)
        source.thaw.set()
        assert recovered.wait(5)
        assert capture(grabber, CaptureSettings(burst=1)).jpeg[:2] == b"\xff\xd8"
    finally:
        grabber.stop()
    assert [ok for ok, _, _ in health] == [True, False, True]
    _, why, fault_at = health[1]
    assert ("no frame" if hang else "frozen: the same frame") in why
    # checked every watchdog_s / 4: reported between watchdog_s and 1.25 x (+ a loaded CPU)
    assert 0.5 <= fault_at - last_usable < 0.5 * 1.25 + 0.5


def test_a_source_slower_than_real_time_gives_stale_frames_that_are_dropped(tmp_path):
    video = tmp_path / "lane.avi"
    write_video(video, 120, fps=15)  # a frame each 67 ms of the stream's clock
    in_time = LatestFrameGrabber(OpenCvSource(str(video)), frame_interval_s=0.03,
                                 max_frame_age_s=0.5)  # faster than real time: no lag
    in_time.start()
    try:
        capture(in_time, CaptureSettings(burst=10, frame_timeout_s=2))
    finally:
        in_time.stop()
    assert in_time.stats.stale == 0 and in_time.stats.decode_lag_ms()["max"] < 250
    stale = threading.Event()
    behind = LatestFrameGrabber(  # decodes a frame each 200 ms: 133 ms more lag a frame
        OpenCvSource(str(video)), frame_interval_s=0.2, max_frame_age_s=0.5, watchdog_s=0.8,
        on_health=lambda ok, why: stale.set() if why.startswith("stale") else None)
    behind.start()
    try:
        assert stale.wait(10)
        with pytest.raises(DeviceError, match="no frame"):
            capture(behind, CaptureSettings(burst=1, frame_timeout_s=0.5))
    finally:
        behind.stop()
    lag = behind.stats.decode_lag_ms()
    print(f"file at 2x: {in_time.stats.decode_lag_ms()}; at 1/3 x: {lag}, "
          f"{behind.stats.stale} stale of {behind.stats.stale + behind.stats.frames}")
    assert behind.stats.stale >= 1 and lag["max"] > 500
    assert behind.stats.frames <= 4  # 0, 133, 267, 400 ms old; the fifth is 533


def test_stop_never_closes_the_capture_while_a_read_runs(tmp_path):
    video = tmp_path / "lane.avi"
    write_video(video, 10)
    source = BlockingSource(str(video))
    grabber = LatestFrameGrabber(source)
    grabber.stop_timeout_s = 0.3  # how long stop() waits for the read
    grabber.start()
    assert grabber.latest(timeout_s=5) is not None
    assert source.in_read.wait(5)  # the second read, blocked
    grabber.stop()  # returns after its bound, the read still running
    assert not source.closed.is_set()
    source.release.set()
    assert source.closed.wait(5)  # the grabber thread closes it once the read returned
    assert not source.closed_during_read
    assert source.close_threads == ["grab camera"]


def test_upload_sends_the_frame_the_crop_or_both(tmp_path):
    video = tmp_path / "lane.avi"
    write_video(video, 60)
    grabber = LatestFrameGrabber(OpenCvSource(str(video)), frame_interval_s=0.01)
    grabber.start()
    try:
        shots = {mode: capture(grabber, CaptureSettings(burst=2, upload=mode))
                 for mode in ("frame", "crop", "both")}
    finally:
        grabber.stop()
    frame, crop, both = shots["frame"], shots["crop"], shots["both"]
    assert aspect(frame.jpeg) == pytest.approx(16 / 9, rel=0.01) and frame.crop_b64 is None
    assert aspect(crop.jpeg) > 2.5 and crop.crop_jpeg == crop.jpeg  # as crop_plate did
    assert aspect(both.jpeg) == pytest.approx(16 / 9, rel=0.01)  # image_b64: the frame
    assert both.crop_jpeg is not None and aspect(both.crop_jpeg) > 2.5
    assert both.cropped and both.crop_b64 is not None


def test_upload_defaults_to_both_and_an_explicit_crop_plate_keeps_its_meaning():
    def mode(**keys: object) -> str:
        c = CameraSettings(**keys)
        return upload_mode(c.upload, c.crop_plate)

    assert mode() == "both"
    assert mode(crop_plate=True) == "crop" and mode(crop_plate=False) == "frame"
    assert mode(upload="frame", crop_plate=True) == "frame"
    assert CameraSettings().max_frame_age_s == 0.5 and CameraSettings().rtsp_transport == "tcp"


def test_the_source_decodes_into_buffers_nobody_holds_and_never_into_a_held_frame(tmp_path):
    """No new frame allocation per read (2.7 MB at 720p, 25 times a second), yet a frame
    the grabber, a burst or a reader's crop still holds keeps its pixels."""
    video = tmp_path / "levels.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 25, (320, 240))
    for i in range(40):
        writer.write(np.full((240, 320, 3), 5 * i, np.uint8))
    writer.release()
    source = OpenCvSource(str(video))
    source.open()
    try:
        held = [source.read() for _ in range(8)]  # more frames than the pool has buffers
        assert all(f is not None for f in held)
        pixels = [f.copy() for f in held]
        for _ in range(10):
            assert source.read() is not None  # reads on while all are held
        assert all(np.array_equal(f, p) for f, p in zip(held, pixels, strict=True))
        crop = held[0][10:20, 10:20]  # a view holds its frame
        del held
        tracemalloc.start()  # numpy's buffers are traced
        try:
            for _ in range(10):
                assert source.read() is not None
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < pixels[0].nbytes, "a new frame was allocated for a read"
        assert np.array_equal(crop, pixels[0][10:20, 10:20])
    finally:
        source.close()
