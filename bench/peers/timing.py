"""The contenders and timed loops of bench/strategies.py, shared by its two processes
(ours under .venv, the peers under .venv-bench): nothing here imports ``gateway`` or a
peer library."""

from __future__ import annotations

import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any


class Case:
    """One contender: ``call`` is awaited (or called, when ``sync``) once per call;
    ``arm`` puts its breaker in the state the path needs before each timed loop."""

    def __init__(self, call: Callable[[], Any], *, sync: bool = False,
                 arm: Callable[[], None] | None = None) -> None:
        self.call = call
        self.sync = sync
        self.arm = arm or (lambda: None)
        self.n = 200


Refused = type[BaseException] | tuple[type[BaseException], ...]


async def timed_async(call: Callable[[], Awaitable[Any]], n: int, refused: Refused) -> float:
    """Seconds per call over ``n`` calls (a refusal is caught, as a caller would)."""
    gc.disable()  # as timeit does (a full collection per loop would cost more than it)
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            try:  # noqa: SIM105 (suppress() would add its enter and exit to each call)
                await call()
            except refused:
                pass
        return (time.perf_counter() - t0) / n
    finally:
        gc.enable()


def timed_sync(call: Callable[[], Any], n: int, refused: Refused) -> float:
    """The same for a plain function."""
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            try:  # noqa: SIM105
                call()
            except refused:
                pass
        return (time.perf_counter() - t0) / n
    finally:
        gc.enable()
