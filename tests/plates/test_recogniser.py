"""The recogniser the gate runs with contour localisation (onnxruntime directly, no
rapidocr pipeline) reads every crop as rapidocr's own recogniser does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from gateway.plates.engine import Engine, OnnxRecogniser, RapidEngine, packaged_model_dir
from tests.plates.make_scenes import plate_crops


def crops() -> list[np.ndarray]:
    return plate_crops(seed=11, vehicles=2)


def test_it_reads_every_crop_as_rapidocr_does(engine: Engine, model_cache: Path) -> None:
    # the same (cut) model through both: the fixture is rapidocr's pipeline
    own = RapidEngine(packaged_model_dir(), threads=2, detector=False, cache_dir=model_cache)
    found = crops()
    assert len(found) >= 10
    got, want = own.recognise(found), engine.recognise(found)  # the fixture: rapidocr's
    assert [text for text, _ in got] == [text for text, _ in want]
    assert max(abs(a - b) for (_, a), (_, b) in zip(got, want, strict=True)) < 1e-3
    assert any(len(text) >= 6 for text, _ in got)  # plates were read, not only blanks


def test_a_crop_with_nothing_on_it_is_an_empty_text_scored_zero() -> None:
    own = OnnxRecogniser(packaged_model_dir() / "PP-OCRv6_rec_small.onnx", threads=1)
    assert own([np.full((48, 200, 3), 255, np.uint8)]) == [("", 0.0)]


def test_the_gate_reads_without_rapidocrs_pipeline() -> None:
    # rapidocr's pipeline (omegaconf, shapely, requests: ~30 MB, a second of start-up) is
    # loaded only for localisation = "ocr"
    code = ("from gateway.plates.engine import RapidEngine, packaged_model_dir\n"
            "import sys\n"
            "RapidEngine(packaged_model_dir(), 1, detector=False)\n"
            "heavy = [m for m in ('rapidocr.main', 'omegaconf', 'shapely') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
