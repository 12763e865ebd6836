"""The sim's scene renderer runs in the daemon (a plain sim camera renders each vehicle):
its working memory counts in the gate's footprint, and its scenes must stay what the
reader's accuracy figures were measured on."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from gateway.plates.render import CONDITIONS, render_scene

FRAME = 1280 * 720 * 3


@pytest.mark.parametrize("condition", ["clean", "low_light", "noisy", "blurred"])
def test_a_scene_is_rendered_in_a_few_frames_of_memory(condition: str) -> None:
    render_scene("34ABC123", np.random.default_rng(1), condition=condition)  # fonts loaded
    tracemalloc.start()  # numpy's buffers are traced
    try:
        scene = render_scene("34ABC123", np.random.default_rng(2), condition=condition)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert scene.shape == (720, 1280, 3)
    # the whole frame's float noise at once was ~20 frames (float64 normal, float32 sums)
    assert peak < 6 * FRAME, f"{peak / FRAME:.1f} frames of memory"


def _whole_frame_noise(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    noisy = img.astype(np.float32) + rng.normal(0, sigma, img.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("condition", CONDITIONS)
def test_the_scenes_are_those_drawn_with_the_whole_frames_noise(
        condition: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Noise drawn a band of rows at a time takes the same numbers from the generator in
    the same order: the same seed gives the same scene, pixel for pixel."""
    import gateway.plates.render as render

    banded = render_scene("B-XY 1234", np.random.default_rng(5), condition=condition)
    monkeypatch.setattr(render, "_noise", _whole_frame_noise)
    whole = render_scene("B-XY 1234", np.random.default_rng(5), condition=condition)
    assert np.array_equal(banded, whole)
