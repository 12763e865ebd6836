"""The campaign's figures at the end of the run (``make soak`` prints them; so does
``pytest tests/reliability``)."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.reliability.campaign import RESULTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    tr = terminalreporter
    tr.section("reliability campaign")
    for name, outcome in RESULTS:
        f = outcome.figures()
        tr.write_line(f"{name}: seed {f['seed']}, {f['rounds']} rounds, {f['kills']} kills, "
                      f"{f['vehicles']} vehicles, {f['violations']} violation(s), "
                      f"{f['seconds']} s")
        tr.write_line(f"  faults injected: {f['faults']}")
        rest = {k: v for k, v in f.items() if k not in (
            "seed", "rounds", "kills", "vehicles", "violations", "seconds", "faults")}
        tr.write_line(f"  {rest}")
        for v in outcome.report.violations[:20]:
            tr.write_line(f"  VIOLATION {v}")
    faults: Counter[str] = Counter()
    for _, outcome in RESULTS:
        faults.update(outcome.faults)
    tr.write_line(f"runs {len(RESULTS)}, kills {sum(o.kills for _, o in RESULTS)}, "
                  f"faults {sum(faults.values())}, "
                  f"vehicles {sum(o.vehicles for _, o in RESULTS)}, violations "
                  f"{sum(len(o.report.violations) for _, o in RESULTS)} (planted-fault runs "
                  "must have some)")
