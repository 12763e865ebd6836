"""The peers of bench/strategies.py: tenacity, stamina, aiobreaker and pybreaker around a
no-op call, timed per call. Runs under .venv-bench/bin/python (where the libraries are), in
its own process, and never imports ``gateway``.

    .venv-bench/bin/python bench/peers/strategy_peers.py --loop-ms MS

Each library is used the way its documentation shows for async code: tenacity's ``@retry``
on an ``async def`` and ``async for attempt in AsyncRetrying(...)``; stamina's
``@stamina.retry`` and ``async for attempt in stamina.retry_context(...)``; aiobreaker's
``CircuitBreaker`` as a decorator of an ``async def``; pybreaker's ``CircuitBreaker.call``,
on a sync no-op (its async support needs tornado, which no asyncio program would add for
it). Retries are set as the gateway's are (three attempts, 50 ms initial backoff, 500 ms
cap, on connection errors only), breakers open after five failures for 30 s. "Stacked" is
a retry decorator over a breaker decorator, what a user composes to get what the gateway's
per-call wrapper does; the retry does not retry a refusal of the breaker.

Protocol (one JSON object a line on stdout): first ``{"ready": ..., "versions": ...,
"calls": {case: n}}`` once each case is warmed up and its loop length calibrated to about
MS milliseconds; then, for each line ``round`` read on stdin, one timed loop of every case
(``{"round": {case: seconds per call}}``); ``quit`` or end of input ends it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import timedelta
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiobreaker
import pybreaker
import stamina
import tenacity

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run by path, in .venv-bench

from bench.peers.timing import Case, timed_async, timed_sync

ATTEMPTS = 3
INITIAL_S = 0.05
MAX_S = 0.5
RESET_S = 30.0
FAIL_MAX = 5
REFUSED: tuple[type[BaseException], ...] = (aiobreaker.CircuitBreakerError,
                                            pybreaker.CircuitBreakerError)


async def noop() -> None:
    return None


def noop_sync() -> None:
    return None


def tenacity_kw() -> dict[str, Any]:
    return {"stop": tenacity.stop_after_attempt(ATTEMPTS),
            "wait": tenacity.wait_exponential_jitter(multiplier=INITIAL_S, max=MAX_S,
                                                     jitter=INITIAL_S),
            "retry": tenacity.retry_if_exception_type(ConnectionError), "reraise": True}


def stamina_kw() -> dict[str, Any]:
    return {"on": ConnectionError, "attempts": ATTEMPTS, "wait_initial": INITIAL_S,
            "wait_max": MAX_S}


def aio_breaker() -> aiobreaker.CircuitBreaker:
    return aiobreaker.CircuitBreaker(fail_max=FAIL_MAX,
                                     timeout_duration=timedelta(seconds=RESET_S))


def cases() -> dict[str, Case]:
    out: dict[str, Case] = {"floor": Case(noop), "floor_sync": Case(noop_sync, sync=True)}

    # -- retries (success path: the first attempt answers) ---------------------------------
    out["tenacity_retry"] = Case(tenacity.retry(**tenacity_kw())(noop))
    kw = tenacity_kw()

    async def tenacity_async_for() -> None:
        async for attempt in tenacity.AsyncRetrying(**kw):
            with attempt:
                return await noop()

    out["tenacity_async_for"] = Case(tenacity_async_for)
    out["stamina_retry"] = Case(stamina.retry(**stamina_kw())(noop))
    skw = stamina_kw()

    async def stamina_context() -> None:
        async for attempt in stamina.retry_context(**skw):
            with attempt:
                return await noop()

    out["stamina_context"] = Case(stamina_context)

    # -- breakers: closed (success) and open (refused without running) --------------------
    for path in ("ok", "open"):
        aio = aio_breaker()
        py = pybreaker.CircuitBreaker(fail_max=FAIL_MAX, reset_timeout=RESET_S)
        guarded = aio(noop)
        aio_arm = aio.open if path == "open" else aio.close
        py_arm = py.open if path == "open" else py.close
        out[f"aiobreaker_{path}"] = Case(guarded, arm=aio_arm)
        out[f"pybreaker_sync_{path}"] = Case(partial(py.call, noop_sync), sync=True,
                                             arm=py_arm)
        # stacked: a retry over a breaker, as a user composes the two
        aio_t = aio_breaker()
        out[f"tenacity_aiobreaker_{path}"] = Case(
            tenacity.retry(**tenacity_kw())(aio_t(noop)),
            arm=aio_t.open if path == "open" else aio_t.close)
        aio_s = aio_breaker()
        out[f"stamina_aiobreaker_{path}"] = Case(
            stamina.retry(**stamina_kw())(aio_s(noop)),
            arm=aio_s.open if path == "open" else aio_s.close)
    return out


def run_once(loop: asyncio.AbstractEventLoop, case: Case, n: int) -> float:
    case.arm()
    if case.sync:
        return timed_sync(case.call, n, REFUSED)
    return loop.run_until_complete(timed_async(case.call, n, REFUSED))


def calibrate(loop: asyncio.AbstractEventLoop, all_cases: dict[str, Case],
              loop_s: float) -> None:
    for case in all_cases.values():
        run_once(loop, case, 200)  # warm-up
        per_call = run_once(loop, case, 1000)
        case.n = max(200, min(2_000_000, int(loop_s / max(per_call, 1e-9))))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loop-ms", type=float, default=20.0,
                   help="each timed loop's length, about")
    args = p.parse_args()
    loop = asyncio.new_event_loop()
    all_cases = cases()
    calibrate(loop, all_cases, args.loop_ms / 1000)
    versions = {name: version(name) for name in ("tenacity", "stamina", "aiobreaker",
                                                 "pybreaker")}
    versions["python"] = sys.version.split()[0]
    print(json.dumps({"ready": True, "versions": versions,
                      "calls": {k: c.n for k, c in all_cases.items()}}), flush=True)
    for line in sys.stdin:
        if line.strip() != "round":
            break
        figures = {k: run_once(loop, c, c.n) for k, c in all_cases.items()}
        print(json.dumps({"round": figures}), flush=True)
    loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
