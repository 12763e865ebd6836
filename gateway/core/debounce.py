"""Debouncing with time as input: a raw level becomes the stable level once it has held
for ``settle_s``. (gpiozero's mock pins ignore ``bounce_time`` and lgpio delays every edge
by it, so debouncing belongs here, where a fake clock can test it.)"""

from __future__ import annotations


class Debouncer:
    def __init__(self, settle_s: float, initial: bool = False) -> None:
        self.settle_s = settle_s
        self.stable = initial
        self._raw = initial
        self._since = 0.0
        self.raw_edges = 0

    def raw(self, value: bool, now: float) -> None:
        if value != self._raw:
            self._raw = value
            self._since = now
            self.raw_edges += 1

    def poll(self, now: float) -> bool | None:
        """The new stable level if it changed at ``now``, else ``None``."""
        if self._raw != self.stable and now >= self._since + self.settle_s:
            self.stable = self._raw
            return self.stable
        return None

    def deadline(self) -> float | None:
        """When ``poll`` may next report a change."""
        if self._raw != self.stable:
            return self._since + self.settle_s
        return None
