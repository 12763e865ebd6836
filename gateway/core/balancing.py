"""Choosing a service instance: round robin, random, least outstanding, weighted.

Instances whose breaker is open are skipped; when none is available the choice is ``None``
and the caller falls back. Randomness comes in as an argument in [0, 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import NamedTuple


class BalancingPolicy(StrEnum):
    ROUND_ROBIN = "round_robin"
    RANDOM = "random"
    LEAST_OUTSTANDING = "least_outstanding"
    WEIGHTED = "weighted"


# Plain names for the policies (Python 3.11 finds an enum member through a descriptor, and
# ``choose`` is asked at every call)
_ROUND_ROBIN, _RANDOM = BalancingPolicy.ROUND_ROBIN, BalancingPolicy.RANDOM
_LEAST_OUTSTANDING = BalancingPolicy.LEAST_OUTSTANDING


class Candidate(NamedTuple):
    """What the balancer needs to know of one instance (a named tuple: immutable, and made
    for every instance at every call of a pool, three times cheaper than a frozen
    dataclass)."""

    name: str
    available: bool = True
    outstanding: int = 0
    weight: float = 1.0


class Balancer:
    def __init__(self, policy: BalancingPolicy | str = BalancingPolicy.ROUND_ROBIN) -> None:
        self.policy = BalancingPolicy(policy)
        self._next = 0

    def choose(self, candidates: Sequence[Candidate], rand: float = 0.0) -> int | None:
        """Index of the chosen candidate, or ``None`` when none is available."""
        if self.policy is _ROUND_ROBIN:  # the default: asked at every call
            # Walk the full list from the cursor so that skipping an unavailable instance
            # does not shift the rotation of the others.
            n = len(candidates)
            for step in range(n):
                i = (self._next + step) % n
                if candidates[i].available:
                    self._next = (i + 1) % n
                    return i
            return None
        usable = [i for i, c in enumerate(candidates) if c.available]
        if not usable:
            return None
        if self.policy is _RANDOM:
            return usable[min(int(rand * len(usable)), len(usable) - 1)]
        if self.policy is _LEAST_OUTSTANDING:
            # Ties go round-robin so an idle pool still spreads its load.
            least = min(candidates[i].outstanding for i in usable)
            tied = [i for i in usable if candidates[i].outstanding == least]
            pick = tied[self._next % len(tied)]
            self._next += 1
            return pick
        total = sum(max(candidates[i].weight, 0.0) for i in usable)
        if total <= 0:
            return usable[0]
        point = min(max(rand, 0.0), 0.999999999) * total
        for i in usable:
            point -= max(candidates[i].weight, 0.0)
            if point < 0:
                return i
        return usable[-1]

    def order(self, candidates: Sequence[Candidate], rand: float = 0.0) -> list[int]:
        """The chosen instance first, then the other available ones: the failover order."""
        first = self.choose(candidates, rand)
        if first is None:
            return []
        if len(candidates) == 1:
            return [first]
        rest = [i for i, c in enumerate(candidates) if c.available and i != first]
        return [first, *rest]
