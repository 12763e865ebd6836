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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

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


class RapidEngine:
    """``Engine`` over rapidocr, loaded eagerly from ``model_dir``."""

    def __init__(self, model_dir: Path, threads: int, *, detector: bool = True) -> None:
        paths = [model_dir / DET_MODEL, model_dir / REC_MODEL] if detector else [
            model_dir / REC_MODEL]
        for path in paths:
            if not path.is_file():
                raise ModelMissing(f"model file missing: {path} (models are never downloaded; "
                                   "reinstall rapidocr==3.10.0)")
        from rapidocr import RapidOCR
        from rapidocr.ch_ppocr_rec import TextRecInput

        self._rec_input = TextRecInput
        self.model_paths = tuple(paths)
        self._ocr = RapidOCR(params={
            "Global.use_cls": False,
            "Global.log_level": "error",
            "Global.model_root_dir": str(model_dir),
            "Det.model_path": str(model_dir / DET_MODEL),  # loaded only if detector
            "Rec.model_path": str(model_dir / REC_MODEL),
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        })
        blank = np.full((64, 256, 3), 255, np.uint8)
        if detector:
            self._ocr(blank, use_det=True, use_cls=False, use_rec=False)  # loads the detector
        self._ocr(blank, use_det=False, use_cls=False, use_rec=True)  # loads the recogniser
        det: Any = self._ocr.text_det
        rec: Any = self._ocr.text_rec
        if (detector and det is None) or rec is None:
            raise ModelMissing("rapidocr did not load its models at start-up")
        if not rec.session.have_key():
            raise ModelMissing(f"{model_dir / REC_MODEL} carries no character list (rapidocr "
                               "would download one)")
        self.detector = detector
        self._rec: Any = rec

    def recognise(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        if not crops:
            return []
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
