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
    def __init__(self, keep: int = 20) -> None:
        self.calls: deque[Call] = deque(maxlen=keep)
        self.failures_in_a_row = 0
        self.last_error = ""

    def record(self, at: float, duration_s: float, answered: bool, error: str = "") -> None:
        self.calls.append(Call(at, duration_s, answered, error))
        if answered:
            self.failures_in_a_row = 0
        else:
            self.failures_in_a_row += 1
            self.last_error = error

    def median_ms(self) -> float | None:
        answered = [c.duration_s for c in self.calls if c.answered]
        return round(median(answered) * 1000, 1) if answered else None

    def last_answered(self) -> bool | None:
        return self.calls[-1].answered if self.calls else None
