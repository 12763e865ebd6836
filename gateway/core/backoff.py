"""Capped exponential backoff with jitter and a total deadline, as a pure schedule.

The schedule never sleeps and never reads a clock: the caller says how many attempts have
failed, how long it has been trying and gives a random number in [0, 1); the schedule says
how long to wait before the next attempt, or ``None`` when it is time to give up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class BackoffSchedule:
    """``retries`` further attempts after the first; ``None`` retries without a count limit.

    ``jitter`` is the fraction of each delay that is randomised downwards ("equal jitter"
    when 0.5, "full jitter" when 1.0), so that gates that failed together do not retry in
    lockstep. ``deadline_s`` bounds the whole sequence: a retry whose wait would end after
    the deadline is not made.
    """

    initial_s: float = 0.05
    factor: float = 2.0
    max_delay_s: float = 2.0
    jitter: float = 0.5
    retries: int | None = 2
    deadline_s: float = math.inf

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.max_delay_s < 0:
            raise ValueError("backoff delays must not be negative")
        if self.factor < 1:
            raise ValueError("backoff factor must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff jitter must be within [0, 1]")
        if self.retries is not None and self.retries < 0:
            raise ValueError("retries must not be negative")

    def base_delay(self, failed_attempts: int) -> float:
        """The un-jittered wait after ``failed_attempts`` failures (1 = after the first)."""
        exponent = max(0, failed_attempts - 1)
        # Cap the exponent so huge attempt counts (compensations retried for hours) stay finite.
        raw = self.initial_s * self.factor ** min(exponent, 64)
        return min(self.max_delay_s, raw)

    def next_delay(self, failed_attempts: int, elapsed_s: float, rand: float) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to give up."""
        if self.retries is not None and failed_attempts > self.retries:
            return None
        base = self.base_delay(failed_attempts)
        delay = base * (1.0 - self.jitter * min(max(rand, 0.0), 1.0))
        if elapsed_s + delay >= self.deadline_s:
            return None
        return delay


@lru_cache(maxsize=256)
def cached_schedule(initial_s: float, factor: float, max_delay_s: float, jitter: float,
                    retries: int | None, deadline_s: float) -> BackoffSchedule:
    """``BackoffSchedule(...)`` made and checked once per set of values (the last 256), for
    callers that need one per call but consult it only after a failure
    (``retry_with_backoff``). Values it refuses are refused at every call, as a new one
    would be."""
    return BackoffSchedule(initial_s, factor, max_delay_s, jitter, retries, deadline_s)
