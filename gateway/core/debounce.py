"""Debouncing with time as input: a raw level becomes the stable level once it has held
for ``settle_s``. (gpiozero's mock pins ignore ``bounce_time`` and lgpio delays every edge
by it, so debouncing belongs here, where a fake clock can test it.)"""

from __future__ import annotations


class Debouncer:
    """``rise_s`` (default ``settle_s``) is how long a True level must hold: 0 for an input
    whose "occupied" must count at once, with only its clearing debounced."""

    def __init__(self, settle_s: float, initial: bool = False,
                 rise_s: float | None = None) -> None:
        self.settle_s = settle_s
        self.rise_s = settle_s if rise_s is None else rise_s
        self.stable = initial
        self._raw = initial
        self._since = 0.0
        self.raw_edges = 0

    def raw(self, value: bool, now: float) -> None:
        if value != self._raw:
            self._raw = value
            self._since = now
            self.raw_edges += 1

    def _settle(self) -> float:
        return self.rise_s if self._raw else self.settle_s

    def poll(self, now: float) -> bool | None:
        """The new stable level if it changed at ``now``, else ``None``."""
        if self._raw != self.stable and now >= self._since + self._settle():
            self.stable = self._raw
            return self.stable
        return None

    def deadline(self) -> float | None:
        """When ``poll`` may next report a change."""
        if self._raw != self.stable:
            return self._since + self._settle()
        return None


class PulsePresence:
    """A detector's pulse output as a presence: each debounced pulse stands for a vehicle on
    (pulse on entry) or just past (pulse on exit) the loop for ``hold_s``; a later pulse
    extends it. Nothing toggles, so a bounce or a pulse missed at start-up cannot invert
    the occupancy: the worst is one presence that ends on its own. Same face as
    ``Debouncer`` (``raw`` takes the output's level)."""

    def __init__(self, settle_s: float, hold_s: float) -> None:
        self.output = Debouncer(settle_s)
        self.hold_s = hold_s
        self.stable = False
        self.pulses = 0
        self._until: float | None = None

    @property
    def raw_edges(self) -> int:
        return self.output.raw_edges

    def raw(self, value: bool, now: float) -> None:
        self.output.raw(value, now)

    def poll(self, now: float) -> bool | None:
        if self.output.poll(now) is True:  # a pulse (its debounced leading edge)
            self.pulses += 1
            self._until = now + self.hold_s
            if not self.stable:
                self.stable = True
                return True
        if self.stable and self._until is not None and now >= self._until:
            self.stable = False
            self._until = None
            return False
        return None

    def deadline(self) -> float | None:
        times = [t for t in (self.output.deadline(), self._until) if t is not None]
        return min(times) if times else None
