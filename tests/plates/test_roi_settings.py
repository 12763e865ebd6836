"""A lane's region of interest and the [plates] settings: validated, every problem named."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.core.errors import ConfigError
from gateway.plates.roi import Roi, roi_problem
from gateway.settings import parse_settings

LANE = '[simulation]\nenabled = true\n[[lanes]]\nid = "entry-1"\ndirection = "entry"\n'


def test_fractions_and_pixels_give_the_same_box():
    frame = np.zeros((720, 1280, 3), np.uint8)
    assert Roi.parse([0.25, 0.5, 0.75, 1.0]).pixels(1280, 720) == (320, 360, 960, 720)
    assert Roi.parse([320, 360, 960, 720]).crop(frame).shape == (360, 640, 3)
    assert Roi.parse([0, 0, 5000, 5000]).pixels(1280, 720) == (0, 0, 1280, 720)  # clipped


@pytest.mark.parametrize(("values", "why"), [
    ([0.1, 0.2, 0.3], "expected [x0, y0, x1, y1], got 3 values"),
    ([0.5, 0.2, 0.4, 0.9], "expected x0 < x1 and y0 < y1"),
    ([-1, 0, 100, 100], "coordinates must not be negative"),
    ([0.5, 10, 640, 480], "give fractions (all four in 0..1) or whole pixels, not a mix"),
])
def test_a_bad_region_says_why(values, why):
    assert roi_problem(values) == why
    with pytest.raises(ValueError, match="not a region of interest"):
        Roi.parse(values)


def test_plates_section_defaults_and_lane_roi():
    s = parse_settings(LANE + "camera.roi = [0, 200, 1280, 720]\n")
    assert s.plates.enabled and s.plates.formats == ["TR"] and s.plates.min_confidence == 0.8
    assert s.plates.localisation == "contours" and s.plates.threads == 2
    assert s.lanes[0].camera.roi == [0, 200, 1280, 720]


def test_bad_plate_settings_are_each_reported_with_their_key():
    with pytest.raises(ConfigError) as err:
        parse_settings(LANE + "camera.roi = [0.9, 0.1, 0.2, 0.5]\n"
                       '[plates]\nformats = ["TR", "[0-9"]\n')
    assert err.value.problems == [
        "<string>: plates.formats[1]: not a valid regular expression '[0-9': unterminated "
        "character set at position 0",
        "<string>: lanes[0].camera.roi: expected x0 < x1 and y0 < y1"]
    with pytest.raises(ConfigError, match=r"plates\.threads: expected an integer >= 1 <= 4"):
        parse_settings("[plates]\nthreads = 8\n")
    with pytest.raises(ConfigError, match=r"plates\.localisation: expected one of"):
        parse_settings('[plates]\nlocalisation = "yolo"\n')
