"""Fences around sagas being recovered: a lane does not decide for a plate (or on a lane)
whose earlier saga a crash left in flight until that saga is finished or compensated.

Without it a returning car meets its own half-recovered entry (its space still held, its
session not yet written) and anti-passback refuses it, or a lane opens for a new vehicle
while the recovered saga's barrier state is still being settled. Each unfinished saga
fences its lane and its plate from the moment the daemon reads the log until its own
recovery ends; sagas recover independently, so one that waits for a service fences only
its own lane and plate."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterable
from typing import Any


def fence_keys(lane_id: Any, plate: Any) -> tuple[str, ...]:
    keys = []
    if lane_id:
        keys.append(f"lane:{lane_id}")
    if plate:
        keys.append(f"plate:{plate}")
    return tuple(keys)


class RecoveryFences:
    def __init__(self) -> None:
        self._by_saga: dict[str, tuple[str, ...]] = {}
        self._count: Counter[str] = Counter()
        self._changed = asyncio.Event()

    def fence(self, saga_id: str, lane_id: Any, plate: Any) -> None:
        """Fence the saga's lane and plate (once per saga, however often it is called)."""
        if saga_id in self._by_saga:
            return
        keys = fence_keys(lane_id, plate)
        self._by_saga[saga_id] = keys
        self._count.update(keys)

    def lift(self, saga_id: str) -> None:
        for key in self._by_saga.pop(saga_id, ()):
            self._count[key] -= 1
            if self._count[key] <= 0:
                del self._count[key]
        self._changed.set()
        self._changed = asyncio.Event()

    def holding(self, keys: Iterable[str]) -> list[str]:
        """Which of ``keys`` are fenced now."""
        return [k for k in keys if self._count.get(k, 0) > 0]

    @property
    def sagas(self) -> list[str]:
        return list(self._by_saga)

    async def wait(self, keys: tuple[str, ...], within_s: float) -> list[str]:
        """Wait until none of ``keys`` is fenced, at most ``within_s``; the keys still
        fenced then (empty: free to go)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while self.holding(keys) and loop.time() < deadline:
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline - loop.time()):
                    await changed.wait()
        return self.holding(keys)
