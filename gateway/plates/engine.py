"""The OCR engine: rapidocr's PP-OCR ONNX models on onnxruntime, from local files only.

rapidocr's wheel ships its detection and recognition models; given no path it resolves a
download URL and fetches any file it lacks, which a gate must never do (no network is
promised, and a model appearing at run time is not the model that was tested). So the paths
are given explicitly, each is checked to exist before rapidocr sees it (a missing file is a
``ModelMissing`` fault), the recogniser must carry its character list inside the ONNX file
(otherwise rapidocr would fetch a dictionary), and both models are loaded and run once here,
at start-up, instead of on the first vehicle (rapidocr loads lazily). The detector is
loaded only for ``localisation = "ocr"``: with contour localisation it would cost memory
and start-up time for nothing.

With contour localisation only the recogniser is needed, and it runs on onnxruntime
directly (``OnnxRecogniser``: rapidocr's preprocessing and CTC decoding, a few lines):
importing rapidocr costs ~30 MB and a second or more of start-up (omegaconf, shapely,
requests), and its session cannot be told to stop spinning. Crops are recognised one at a
time: a batch of 6 needed ~70 MB of onnxruntime's working memory at once (one crop: ~12 MB)
and was no faster.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from gateway.plates.slim_model import Prepared, discard, prepare

DET_MODEL = "PP-OCRv6_det_small.onnx"
REC_MODEL = "PP-OCRv6_rec_small.onnx"


class ModelMissing(Exception):
    """A model file the reader needs is not on disk (it is never downloaded)."""


def packaged_model_dir() -> Path:
    """Where the installed rapidocr wheel keeps its models."""
    import rapidocr

    return Path(rapidocr.__file__).resolve().parent / "models"


@dataclass(frozen=True)
class TextLine:
    text: str
    score: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the searched image


class Engine(Protocol):
    def recognise(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """Text and score per crop (one line each), in order."""

    def detect(self, image: np.ndarray) -> list[TextLine]:
        """Text lines found anywhere in ``image``, each recognised."""


REC_HEIGHT, REC_MIN_WIDTH = 48, 320  # the recogniser's input: 48 high, padded to 320+


class OnnxRecogniser:
    """The PP-OCR text recogniser on onnxruntime, as rapidocr runs it (its
    ``TextRecognizer.resize_norm_img`` and ``CTCLabelDecode``), one crop at a time."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort  # type: ignore[import-untyped]

        options = ort.SessionOptions()
        options.log_severity_level = 4
        options.enable_cpu_mem_arena = False  # what a run needs is given back after it
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = max(1, min(threads, os.cpu_count() or 1))
        options.inter_op_num_threads = 1
        # the pool's threads sleep between runs instead of spinning for work (CPU burnt
        # for nothing at every read, while the other lane needs the core)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), sess_options=options,
                                            providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if "character" not in meta:
            raise ModelMissing(f"{path} carries no character list (rapidocr would download "
                               "one)")
        # index 0 is CTC's blank (never kept by decode); the space is the last class. One
        # string where every class is one character (PP-OCR's are): 18,700 one-character
        # strings in a list were 1.5 MB of objects.
        lines = ["", *meta["character"].splitlines(), " "]
        self.characters: Sequence[str] = "\0" + "".join(lines[1:]) if all(
            len(line) == 1 for line in lines[1:]) else lines
        self._input = self.session.get_inputs()[0].name

    def __call__(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        out = []
        for crop in crops:
            preds = self.session.run(None, {self._input: normalise(crop)[np.newaxis]})[0]
            out.append(self.decode(preds[0]))
        return out

    def decode(self, preds: np.ndarray) -> tuple[str, float]:
        """Greedy CTC: the best class per step, repeats merged, blanks dropped; the score
        is the mean of the kept steps' probabilities (0 when none is kept)."""
        index = preds.argmax(axis=1)
        prob = preds.max(axis=1)
        keep = np.ones(len(index), dtype=bool)
        keep[1:] = index[1:] != index[:-1]
        keep &= index != 0
        text = "".join(self.characters[i] for i in index[keep])
        probs = np.round(prob[keep].astype(np.float64), 5)
        return text, round(float(probs.mean()), 5) if len(probs) else 0.0


def normalise(crop: np.ndarray) -> np.ndarray:
    """A crop as the recogniser's input: 48 high at its own aspect, scaled to -1..1, padded
    with zeros to 320 wide (wider crops keep their width)."""
    h, w = crop.shape[:2]
    ratio = w / float(h)
    width = int(REC_HEIGHT * max(REC_MIN_WIDTH / REC_HEIGHT, ratio))
    resized_w = min(width, math.ceil(REC_HEIGHT * ratio))
    resized = cv2.resize(crop, (resized_w, REC_HEIGHT)).astype(np.float32).transpose((2, 0, 1))
    padded = np.zeros((3, REC_HEIGHT, width), dtype=np.float32)
    padded[:, :, :resized_w] = (resized / 255 - 0.5) / 0.5
    return padded


def _check(paths: list[Path]) -> None:
    for path in paths:
        if not path.is_file():
            raise ModelMissing(f"model file missing: {path} (models are never downloaded; "
                               "reinstall rapidocr==3.10.0)")


class RapidEngine:
    """``Engine`` over the PP-OCR models, loaded eagerly from ``model_dir``: the
    recogniser alone on onnxruntime, or with ``detector`` rapidocr's whole pipeline."""

    def __init__(self, model_dir: Path, threads: int, *, detector: bool = True,
                 cache_dir: Path | None = None, stop: threading.Event | None = None) -> None:
        paths = [model_dir / DET_MODEL, model_dir / REC_MODEL] if detector else [
            model_dir / REC_MODEL]
        _check(paths)
        self.detector = detector
        self._own: OnnxRecogniser | None = None
        # the recogniser cut to plate characters (slim_model.py), else the shipped one
        prepared = prepare(model_dir / REC_MODEL, cache_dir, stop=stop)
        try:
            self._load(model_dir, prepared.path, threads)
        except Exception as exc:
            if not prepared.slim:
                raise
            cut = prepared
            prepared = Prepared(model_dir / REC_MODEL, f"full model: the cut one "
                                f"({cut.path.name}) did not load: {type(exc).__name__}: "
                                f"{str(exc)[:200]}", False)
            self._load(model_dir, prepared.path, threads)  # raises if the full one fails too
            discard(cut)  # only now: the full one loads, so the cut was at fault
        self.model = prepared
        self.model_paths = (*paths[:-1], prepared.path)

    def _load(self, model_dir: Path, rec_path: Path, threads: int) -> None:
        if not self.detector:
            self._own = OnnxRecogniser(rec_path, threads)
            self._own([np.full((48, 160, 3), 255, np.uint8)])  # its first run, not a car's
            return
        from rapidocr import RapidOCR
        from rapidocr.ch_ppocr_rec import TextRecInput

        self._rec_input = TextRecInput
        self._ocr = RapidOCR(params={
            "Global.use_cls": False,
            "Global.log_level": "error",
            "Global.model_root_dir": str(model_dir),
            "Det.model_path": str(model_dir / DET_MODEL),  # loaded only if detector
            "Rec.model_path": str(rec_path),
            "Rec.rec_batch_num": 1,  # one crop at a time: see the module's docstring
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        })
        blank = np.full((64, 256, 3), 255, np.uint8)
        self._ocr(blank, use_det=True, use_cls=False, use_rec=False)  # loads the detector
        self._ocr(blank, use_det=False, use_cls=False, use_rec=True)  # loads the recogniser
        det: Any = self._ocr.text_det
        rec: Any = self._ocr.text_rec
        if det is None or rec is None:
            raise ModelMissing("rapidocr did not load its models at start-up")
        if not rec.session.have_key():
            raise ModelMissing(f"{rec_path} carries no character list (rapidocr "
                               "would download one)")
        self._rec: Any = rec

    def recognise(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        if not crops:
            return []
        if self._own is not None:
            return self._own(crops)
        out = self._rec(self._rec_input(img=crops))
        return [(str(t), float(s)) for t, s in zip(out.txts or (), out.scores, strict=False)]

    def detect(self, image: np.ndarray) -> list[TextLine]:
        if not self.detector:
            raise RuntimeError("the text detector was not loaded (localisation is not 'ocr')")
        res: Any = self._ocr(image, use_det=True, use_cls=False, use_rec=True)
        if getattr(res, "boxes", None) is None or res.txts is None:
            return []
        lines = []
        for box, text, score in zip(res.boxes, res.txts, res.scores, strict=False):
            xs, ys = box[:, 0], box[:, 1]
            lines.append(TextLine(str(text), float(score),
                                  (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))))
        return lines
