"""The gate's own plate reader (issue 10): OCR of a plain camera's burst, on the gate.

The lanes use ``gateway.plates.reader`` (``PlateReader``, ``Reading``); it is not imported
here, so that the settings (which validate formats and regions with the pure modules below)
do not load OpenCV and onnxruntime. ``render.py`` draws the synthetic scenes of the tests,
the bench and the simulator's camera. Pure: ``formats.py`` (what a plate is, look-alike
repair), ``vote.py`` (the burst's vote), ``roi.py`` (a lane's region of interest);
``localise.py`` proposes plate-like boxes with OpenCV; ``engine.py`` alone touches rapidocr.
"""

from gateway.plates.formats import COUNTRY_FORMATS, compile_formats, parse_plate
from gateway.plates.roi import Roi
from gateway.plates.vote import Vote, vote

__all__ = ["COUNTRY_FORMATS", "Roi", "Vote", "compile_formats", "parse_plate", "vote"]
