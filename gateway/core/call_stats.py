"""What the last calls to one service did, for the page's plain words: answered or not, how
long each took, the last error. Pure: the caller gives the times."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from statistics import median


@dataclass(frozen=True, slots=True)
class Call:
    at: float
    duration_s: float
    answered: bool
    error: str = ""


class CallStats:
    """The last ``keep`` calls. Recorded at every call of a service, read when the page is
    drawn: a call is kept as a plain tuple and made a ``Call`` when read."""

    def __init__(self, keep: int = 20) -> None:
        self._calls: deque[tuple[float, float, bool, str]] = deque(maxlen=keep)
        self.failures_in_a_row = 0
        self.last_error = ""

    @property
    def calls(self) -> list[Call]:
        """The calls kept, oldest first."""
        return [Call(*c) for c in self._calls]

    def record(self, at: float, duration_s: float, answered: bool, error: str = "") -> None:
        self._calls.append((at, duration_s, answered, error))
        if answered:
            self.failures_in_a_row = 0
        else:
            self.failures_in_a_row += 1
            self.last_error = error

    def median_ms(self) -> float | None:
        answered = [c[1] for c in self._calls if c[2]]
        return round(median(answered) * 1000, 1) if answered else None

    def last_answered(self) -> bool | None:
        return self._calls[-1][2] if self._calls else None
