"""The reader on generated scenes, with the real rapidocr/onnxruntime model (loaded once).

Also what must never crash it or make it read a wrong plate: bad frames, an engine that
throws or hangs, a model that fails to load or is missing, and no network at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import threading

import cv2
import numpy as np
import pytest

from gateway.plates.engine import DET_MODEL, REC_MODEL, Engine, TextLine, packaged_model_dir
from gateway.plates.reader import PlateReader
from gateway.plates.render import NEGATIVE_CONDITIONS, POSITIVE_CONDITIONS, render_scene
from gateway.plates.roi import Roi
from gateway.settings import PlateSettings
from tests.plates.conftest import ALL_FORMATS
from tests.plates.make_scenes import make_vehicles


async def started(reader: PlateReader) -> PlateReader:
    await reader.start()
    assert reader.ready, reader.fault
    return reader


async def test_generated_plates_are_read_exactly_and_negatives_never(make_reader):
    reader = await started(make_reader())
    misses = []
    for v in make_vehicles(seed=11, vehicles=2):
        r = await reader.read_burst(v.frames)
        if r.plate != v.plate:
            misses.append((v.condition, v.fmt, v.font, v.plate, r.plate, r.candidates))
        if v.condition in NEGATIVE_CONDITIONS:
            assert r.plate is None, (v.condition, r)
        else:
            assert r.plate is None or r.plate == v.plate, (v, r)  # unreadable, never wrong
    positives = 2 * len(POSITIVE_CONDITIONS)
    assert len(misses) <= 1, misses  # at most one of 14 positives unreadable
    assert positives == 14


async def test_a_reading_carries_its_crop_votes_and_latency(make_reader):
    reader = await started(make_reader())
    frames = [render_scene("34 ABC 123", np.random.default_rng(i), font="hershey_duplex")
              for i in range(3)]
    r = await reader.read_burst(frames)
    assert r.plate == "34ABC123" and r.confidence >= 0.8 and r.frames == 3
    assert r.source == "local" and r.error == "" and 0 < r.latency_ms < 1000
    assert r.candidates["34ABC123"] > 2.4
    assert r.crop_jpeg is not None and r.crop_jpeg[:2] == b"\xff\xd8"
    crop = cv2.imdecode(np.frombuffer(r.crop_jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert crop.shape[1] < 640  # the plate, not the frame


async def test_lanes_reading_at_once_each_get_their_plate(make_reader):
    reader = await started(make_reader())
    plates = ["34 ABC 123", "AB12 CDE", "HG-142-G"]
    bursts = [[render_scene(p, np.random.default_rng(60 + i))] * 2 for i, p in enumerate(plates)]
    readings = await asyncio.gather(*(reader.read_burst(b) for b in bursts))
    assert [r.plate for r in readings] == ["34ABC123", "AB12CDE", "HG142G"]


async def test_the_region_of_interest_decides_what_is_searched(make_reader):
    reader = await started(make_reader())
    frames = [render_scene("35 KL 456", np.random.default_rng(40 + i)) for i in range(3)]
    assert (await reader.read_burst(frames, Roi.parse([0.0, 0.5, 1.0, 1.0]))).plate == "35KL456"
    assert (await reader.read_burst(frames, Roi.parse([0, 0, 1280, 300]))).plate is None


async def test_the_ocr_detector_localisation_reads_too(make_reader):
    reader = await started(make_reader(localisation="ocr", deadline_s=5.0))
    frames = [render_scene("06 A 1234", np.random.default_rng(7), font="DejaVuSans-Bold.ttf")]
    r = await reader.read_burst(frames)
    assert r.plate == "06A1234" and r.frames == 1


def _huge() -> np.ndarray:
    scene = render_scene("34 ABC 123", np.random.default_rng(3))
    return cv2.resize(scene, (8000, 8000), interpolation=cv2.INTER_NEAREST)


@pytest.mark.parametrize(("frames", "error"), [
    ([], "no frames"),
    ([np.zeros((0, 0, 3), np.uint8)], "empty or too small"),
    ([np.zeros((720, 1280, 3), np.uint8)] * 3, "frame is blank"),
    ([np.zeros((720, 1280, 3), np.float32)], "frame is float32, expected uint8"),
    ([np.frombuffer(b"\xff\xd8 not a jpeg", np.uint8)], "is not an image"),
    ([b"\xff\xd8 not a jpeg"], "not an image array: bytes"),
    ([np.zeros((720, 1280, 7), np.uint8)], "is not an image"),
    ([np.zeros((10_001, 10_001), np.uint8)], "too large"),
])
async def test_bad_frames_are_unreadable_with_the_reason(make_reader, frames, error):
    reader = await started(make_reader())
    r = await reader.read_burst(frames)
    assert r.plate is None and r.confidence == 0.0 and error in r.error


async def test_a_huge_frame_is_downscaled_and_read(make_reader):
    reader = await started(make_reader())
    r = await reader.read_burst([_huge()])
    assert r.plate == "34ABC123" and r.error == ""


async def test_good_frames_are_read_past_a_corrupt_one(make_reader):
    reader = await started(make_reader())
    good = render_scene("34 ABC 123", np.random.default_rng(5))
    r = await reader.read_burst([np.zeros((4, 4), np.uint8), good, good])
    assert r.plate == "34ABC123" and r.frames == 2


class ThrowingEngine:
    def recognise(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        raise RuntimeError("onnxruntime: bad allocation")

    def detect(self, image: np.ndarray) -> list[TextLine]:
        raise RuntimeError("onnxruntime: bad allocation")


class HangingEngine:
    """Blocks until released, then reads every crop as ``plate``."""

    def __init__(self, plate: str) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.plate = plate

    def recognise(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        self.entered.set()
        self.release.wait()
        return [(self.plate, 0.99)] * len(crops)

    def detect(self, image: np.ndarray) -> list[TextLine]:
        raise NotImplementedError


class WithEngine(PlateReader):
    def __init__(self, settings: PlateSettings, engine: Engine) -> None:
        super().__init__(settings)
        self.engine = engine

    def _load_engine(self) -> Engine:
        return self.engine


async def test_an_engine_that_throws_gives_an_unreadable_reading():
    reader = await started(WithEngine(PlateSettings(formats=ALL_FORMATS), ThrowingEngine()))
    try:
        r = await reader.read_burst([render_scene("34 ABC 123", np.random.default_rng(1))])
        assert r.plate is None and r.error == ("plate reader error: RuntimeError: onnxruntime: "
                                               "bad allocation")
    finally:
        reader.close()


async def test_an_engine_that_hangs_meets_the_deadline_and_the_reader_recovers():
    engine = HangingEngine("34ABC123")
    reader = await started(WithEngine(PlateSettings(deadline_s=0.3), engine))
    frames = [render_scene("34 ABC 123", np.random.default_rng(2))] * 3
    try:
        r = await reader.read_burst(frames)
        assert engine.entered.is_set()
        assert r.plate is None and r.error == "plate reading overran its deadline of 0.3 s"
        assert 250 < r.latency_ms < 1000
        busy = await reader.read_burst(frames)
        assert busy.plate is None and "busy" in busy.error
        engine.release.set()
        assert reader._overrun is not None
        with contextlib.suppress(Exception):  # the overrun read stops at its next frame
            await asyncio.wrap_future(reader._overrun)
        again = await reader.read_burst(frames)
        assert again.plate == "34ABC123" and again.error == ""
    finally:
        engine.release.set()
        reader.close()


class FailingLoad(PlateReader):
    def _load_engine(self) -> Engine:
        raise OSError("cannot map the model: out of memory")


async def test_a_reader_that_fails_to_load_is_a_fault_not_a_crash():
    reader = FailingLoad(PlateSettings())
    await reader.start()
    assert not reader.ready
    assert reader.fault == ("plate reader failed to load: OSError: cannot map the model: out of "
                            "memory")
    r = await reader.read_burst([render_scene("34 ABC 123", np.random.default_rng(1))])
    assert r.plate is None and r.error == reader.fault
    reader.close()


@pytest.mark.parametrize(("localisation", "present", "missing"), [
    ("contours", DET_MODEL, REC_MODEL), ("ocr", REC_MODEL, DET_MODEL)])
async def test_a_missing_model_file_is_a_fault_and_nothing_is_fetched(
        tmp_path, localisation, present, missing):
    shutil.copy(packaged_model_dir() / present, tmp_path / present)
    reader = PlateReader(PlateSettings(localisation=localisation), model_dir=tmp_path)
    await reader.start()
    assert not reader.ready
    assert reader.fault.startswith(f"plate reader failed to load: ModelMissing: model file "
                                   f"missing: {tmp_path / missing}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [present]  # nothing downloaded
    r = await reader.read_burst([render_scene("34 ABC 123", np.random.default_rng(1))])
    assert r.plate is None and "model file missing" in r.error
    reader.close()


async def test_the_model_loads_and_reads_with_no_network(monkeypatch):
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network use during plate reading")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with pytest.raises(OSError, match="network use"):  # the guard does catch a connection
        socket.create_connection(("127.0.0.1", 9))
    attempts.clear()
    reader = PlateReader(PlateSettings())
    await reader.start()
    try:
        assert reader.ready, reader.fault
        assert 0 < reader.load_s < 30
        engine = reader._engine
        assert engine is not None
        paths = engine.model_paths  # type: ignore[attr-defined]
        assert all(p.parent == packaged_model_dir() and p.is_file() for p in paths)
        r = await reader.read_burst([render_scene("34 ABC 123", np.random.default_rng(4))])
        assert r.plate == "34ABC123"
    finally:
        reader.close()
    assert attempts == []


async def test_a_disabled_reader_says_so():
    reader = PlateReader(PlateSettings(enabled=False))
    await reader.start()
    r = await reader.read_burst([render_scene("34 ABC 123", np.random.default_rng(4))])
    assert not reader.ready and r.plate is None and "disabled" in r.error
    reader.close()
