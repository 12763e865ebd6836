"""The campaign's figures at the end of the run (``make soak`` prints them; so does
``pytest tests/reliability``, and ``make test``, whose tests run in two worker processes:
each test's figures travel to the main process with its report)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Generator
from typing import Any

import pytest

from tests.reliability.campaign import RESULTS

KEY = "campaign figures"
_LINES: list[str] = []  # in the process that prints the summary
_TOTALS: Counter[str] = Counter()
_reported = 0  # RESULTS already attached to a report, in the process that ran them


def _lines(name: str, outcome: Any) -> list[str]:
    f = outcome.figures()
    rest = {k: v for k, v in f.items() if k not in (
        "seed", "rounds", "kills", "vehicles", "violations", "seconds", "faults")}
    return [f"{name}: seed {f['seed']}, {f['rounds']} rounds, {f['kills']} kills, "
            f"{f['vehicles']} vehicles, {f['violations']} violation(s), {f['seconds']} s",
            f"  faults injected: {f['faults']}", f"  {rest}",
            *(f"  VIOLATION {v}" for v in outcome.report.violations[:20])]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, Any, None]:
    global _reported
    result = yield
    if call.when != "teardown" or len(RESULTS) == _reported:
        return
    report = result.get_result()
    for name, outcome in RESULTS[_reported:]:
        report.user_properties.append((KEY, json.dumps({
            "lines": _lines(name, outcome),
            "totals": {"runs": 1, "kills": outcome.kills,
                       "faults": sum(outcome.faults.values()), "vehicles": outcome.vehicles,
                       "violations": len(outcome.report.violations)}})))
    _reported = len(RESULTS)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for key, value in report.user_properties:
        if key == KEY:
            data = json.loads(value)
            _LINES.extend(data["lines"])
            _TOTALS.update(data["totals"])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _LINES:
        return
    tr = terminalreporter
    tr.section("reliability campaign")
    for line in _LINES:
        tr.write_line(line)
    t = _TOTALS
    tr.write_line(f"runs {t['runs']}, kills {t['kills']}, faults {t['faults']}, vehicles "
                  f"{t['vehicles']}, violations {t['violations']} (planted-fault runs must "
                  "have some)")
