"""Fuzzing of every parser of outside input (issue 9): the Hypothesis profiles, and the
count of inputs each parser was given, printed at the end of the run.

``HYPOTHESIS_PROFILE=soak`` runs 15x the inputs of the default ``fuzz`` profile."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Generator
from typing import Any

import pytest
from hypothesis import settings

# parents: the "gateway" profile of tests/conftest.py (its example database in the temp dir)
settings.register_profile("fuzz", parent=settings.get_profile("gateway"), max_examples=100)
settings.register_profile("soak", parent=settings.get_profile("gateway"), max_examples=1500)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "fuzz")
if PROFILE not in ("fuzz", "soak"):
    raise pytest.UsageError(f"HYPOTHESIS_PROFILE={PROFILE!r}: expected fuzz or soak")

TRIED: Counter[str] = Counter()  # parser -> inputs it was actually given


@pytest.fixture(scope="session")
def tried() -> Callable[[str], None]:
    """``tried(parser)``: one more input given to ``parser`` (call it in the test body)."""
    return lambda parser: TRIED.update((parser,))


KEY = "fuzz inputs"
_REPORTED: Counter[str] = Counter()  # attached to a report, in the process that ran them
_TOTAL: Counter[str] = Counter()  # in the process that prints the summary


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, Any, None]:
    # make test runs the tests in two worker processes: the counts travel to the main
    # process with each test's report
    result = yield
    if call.when != "teardown":
        return
    new = TRIED - _REPORTED
    if new:
        result.get_result().user_properties.append((KEY, json.dumps(dict(new))))
        _REPORTED.update(new)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for key, value in report.user_properties:
        if key == KEY:
            _TOTAL.update(json.loads(value))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _TOTAL:
        return
    tr = terminalreporter
    tr.write_sep("=", f"fuzz inputs tried (profile {PROFILE})")
    width = max(len(p) for p in _TOTAL)
    for parser, n in sorted(_TOTAL.items()):
        tr.write_line(f"{parser:<{width}}  {n:>7}")
    tr.write_line(f"{'total':<{width}}  {sum(_TOTAL.values()):>7}")
