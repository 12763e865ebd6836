"""The gate's own plate reader (issue 10): OCR of a plain camera's burst, on the gate.

``PlateReader`` / ``Reading`` (reader.py) are the surface the lanes use; ``render_scene``
(render.py) draws synthetic scenes for the tests, the bench and the simulator's camera.
The pure parts: formats.py (what a plate is, look-alike repair), vote.py (the burst's vote),
roi.py (a lane's region of interest); localise.py finds plate-like boxes with OpenCV and
engine.py is the only module that touches rapidocr.
"""

from gateway.plates.formats import COUNTRY_FORMATS, compile_formats, parse_plate
from gateway.plates.reader import PlateReader, Reading
from gateway.plates.roi import Roi
from gateway.plates.vote import Vote, vote

__all__ = ["COUNTRY_FORMATS", "PlateReader", "Reading", "Roi", "Vote", "compile_formats",
           "parse_plate", "vote"]
