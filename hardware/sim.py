"""Simulated hardware that goes through the real interfaces: gpiozero mock pins for loops,
inputs and relays, and a camera that renders a plate on a car-like background and, like an
ANPR camera, also gives its reading.

The mock pins are wired as real detectors are (``SIM_WIRING``): each input has the Pi's
pull-up and a contact to ground, so the simulator *closes a contact* (drives the pin low)
or *opens it* (the pull-up wins), never "sets occupied". The safety loop's detector is
fail-safe: its contact is closed while the loop is clear.

A mock board can keep its output levels in a file (``board_file``), the way a Pi's kernel
keeps GPIO outputs driven after the process that set them dies: a test can then SIGKILL
the daemon and see what ``relays-off`` leaves behind.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from gpiozero.pins.mock import MockFactory, MockPin

from gateway.core.wiring import Wiring

Listener = Callable[[bool], None]
CONTACT_TO_GROUND = "up", "low"  # pull, active level
SIM_WIRING = {
    "arming": Wiring(*CONTACT_TO_GROUND, "occupied"),  # output on while a vehicle is there
    "safety": Wiring(*CONTACT_TO_GROUND, "clear"),  # fail-safe: contact closed while clear
    "limit": Wiring(*CONTACT_TO_GROUND, "on"),  # the arm is at this limit
    "input": Wiring(*CONTACT_TO_GROUND, "on"),  # a button or a hold-open contact
}


def drive(pin: Any, wiring: Wiring, on: bool) -> None:
    """Set a simulated input the way its contact would: closed or open."""
    (pin.drive_high if wiring.reads(True) == on else pin.drive_low)()


class ObservedMockPin(MockPin):  # type: ignore[misc]
    """A mock pin that tells listeners about output changes (the simulated barrier arm
    "sees" its relay) and keeps a bounded history (the demo runs for days)."""

    def __init__(self, factory: Any, info: Any) -> None:
        super().__init__(factory, info)
        self.listeners: list[Listener] = []
        self._recorded: bool | None = None

    def _change_state(self, value: bool) -> bool:
        changed = bool(super()._change_state(value))
        if len(self.states) > 64:
            del self.states[:-32]
        if changed:
            for listener in list(self.listeners):
                listener(value)
        return changed

    def _set_state(self, value: Any) -> None:
        super()._set_state(value)
        board = getattr(self.factory, "board_file", None)
        if board is not None and bool(value) != self._recorded:  # an output the board keeps
            self._recorded = bool(value)
            record_output(board, self.info.name, bool(value))


def board_path(data_dir: Path, lane_id: str) -> Path:
    """Where a simulated lane's mock board keeps its output levels."""
    return data_dir / f"sim-board-{lane_id}.json"


def sim_factory(board_file: Path | None = None) -> MockFactory:
    factory = MockFactory(pin_class=ObservedMockPin)
    factory.board_file = board_file
    if board_file is not None:
        board_file.parent.mkdir(parents=True, exist_ok=True)
    return factory


_board_lock = threading.Lock()


def record_output(board_file: Path, pin: str, level: bool) -> None:
    """Keep an output's level in the board file (atomically replaced)."""
    with _board_lock:
        levels = read_board(board_file)
        levels[pin] = level
        tmp = board_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(levels, sort_keys=True))
        os.replace(tmp, board_file)


def read_board(board_file: Path) -> dict[str, bool]:
    try:
        return dict(json.loads(board_file.read_text()))
    except (FileNotFoundError, ValueError):
        return {}


SIM_NOISE_VARIANTS = 2


class SimCameraSource:
    """Synthetic frames: a car with the current vehicle's plate, or an empty lane.

    ``plain = False`` (an ANPR camera): the plate drawn simply, and the camera's own
    reading given with the frame. ``plain = True`` (an ordinary camera): no reading, and a
    scene rendered by ``gateway.plates.render`` for the gate's reader to read, each vehicle
    in a condition (clean, angled, blurred, low light, night IR, occluded) and font drawn
    by a generator seeded with ``seed`` and the plate, so a run can be repeated."""

    def __init__(self, width: int = 1280, height: int = 720, fps: float = 25.0, *,
                 plain: bool = False, seed: int = 7) -> None:
        self.width, self.height = width, height
        self.frame_interval_s = 1.0 / fps
        self.plain = plain
        self.seed = seed
        self._lock = threading.Lock()
        self._plate: str | None = None
        self._frame_for: str | None = "-"
        # the scene with a little sensor noise, in a few variants given in turn (read-only:
        # every reader of a frame may keep it): a 720p copy per frame cost 0.4 ms, 25 times
        # a second per lane, and churned 70 MB/s through the allocator
        self._frames: list[np.ndarray[Any, Any]] = []
        self._turn = 0
        self._rng = np.random.default_rng(seed)
        self.conditions: dict[str, str] = {}  # plate -> the condition it was shown in
        # scenes rendered ahead (``prepare``), each taken by the first read that shows it
        self._prepared: dict[str | None, list[np.ndarray[Any, Any]]] = {}
        self._render_lock = threading.Lock()  # the generator and the fonts: one at a time

    def show(self, plate: str | None) -> None:
        """The vehicle in front of the camera (``None``: the lane is empty)."""
        with self._lock:
            self._plate = plate

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def prepare(self, plate: str | None) -> None:
        """Render ``plate``'s scene now (blocking: run it in a thread), before its vehicle
        comes in view: a camera's frame costs the gate nothing, so the simulator's rendering
        (a plain scene: a few hundred ms of CPU on a loaded machine, the first one importing
        Pillow) must not fall between the gate's trigger and its frame."""
        frames = self._scene(plate)
        with self._lock:
            self._prepared[plate] = frames
            while len(self._prepared) > 4:  # vehicles that never came in view
                self._prepared.pop(next(iter(self._prepared)))

    def read(self) -> np.ndarray[Any, Any] | None:
        with self._lock:
            plate = self._plate
            ready = self._prepared.pop(plate, None) if plate != self._frame_for else None
        if plate != self._frame_for or not self._frames:
            self._frames = ready or self._scene(plate)
            self._frame_for = plate
        self._turn = (self._turn + 1) % len(self._frames)
        return self._frames[self._turn]

    def _scene(self, plate: str | None) -> list[np.ndarray[Any, Any]]:
        with self._render_lock:
            return self._variants(self._render(plate))

    def _variants(self, scene: np.ndarray[Any, Any]) -> list[np.ndarray[Any, Any]]:
        """The scene with a little sensor noise (frames differ; sharpness has something to
        choose), each variant's noise unlike the one before it."""
        out = []
        for level in range(SIM_NOISE_VARIANTS):
            noisy = scene.copy()
            noise = self._rng.integers(0, 6, size=(8, 8), dtype=np.uint8)
            noise[0, 0] = 6 + level  # never the same as the variant given before it
            noisy[:8, :8] = noise[..., None]
            noisy.flags.writeable = False
            out.append(noisy)
        return out

    def reading(self) -> tuple[str | None, float]:
        with self._lock:
            if self.plain:
                return None, 0.0  # an ordinary camera reads nothing
            return (self._plate, 0.95) if self._plate else (None, 0.0)

    def _render(self, plate: str | None) -> np.ndarray[Any, Any]:
        if not self.plain or plate is None:
            return render_frame(plate, self.width, self.height)
        from gateway.plates.render import render_scene  # only plain cameras need it

        rng, condition = sim_condition(plate, self.seed)
        self.conditions[plate] = condition
        return render_scene(plate, rng, width=self.width, height=self.height,
                            condition=condition)


# how often each condition comes at a simulated plain camera (mostly a clear view)
SIM_CONDITIONS = ("clean", "angled", "blurred", "low_light", "night_ir", "occluded")
SIM_CONDITION_WEIGHTS = (0.55, 0.15, 0.1, 0.1, 0.05, 0.05)


def sim_condition(plate: str, seed: int = 7) -> tuple[np.random.Generator, str]:
    """The generator a plain sim camera renders ``plate`` with, and the condition drawn."""
    rng = np.random.default_rng([seed, *plate.encode()])
    return rng, str(rng.choice(SIM_CONDITIONS, p=SIM_CONDITION_WEIGHTS))


def render_frame(plate: str | None, width: int, height: int) -> np.ndarray[Any, Any]:
    frame = np.full((height, width, 3), (70, 75, 80), dtype=np.uint8)  # asphalt
    if plate is None:
        return frame
    cx, cy = width // 2, int(height * 0.55)
    cw, ch = int(width * 0.55), int(height * 0.5)
    cv2.rectangle(frame, (cx - cw // 2, cy - ch // 2), (cx + cw // 2, cy + ch // 2),
                  (40, 40, 150), -1)  # the car body
    cv2.rectangle(frame, (cx - cw // 3, cy - ch // 2 - ch // 4), (cx + cw // 3, cy - ch // 2),
                  (60, 60, 170), -1)  # the roof
    pw, ph = int(width * 0.2), int(width * 0.2 / 4.5)
    x0, y0 = cx - pw // 2, cy + ch // 6
    cv2.rectangle(frame, (x0, y0), (x0 + pw, y0 + ph), (245, 245, 245), -1)
    scale = ph / 40
    cv2.putText(frame, plate, (x0 + int(pw * 0.06), y0 + int(ph * 0.75)),
                cv2.FONT_HERSHEY_SIMPLEX, scale, (10, 10, 10), max(1, int(scale * 2)),
                cv2.LINE_AA)
    return frame
