"""The bench suite's reporting: aims judged, JSON written, the README's table generated from
the results (and the README in the repository matching bench/results, so the table is never
typed by hand)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import readme
from bench.report import ROOT, Report


def test_an_aim_is_judged_in_its_direction(capsys: pytest.CaptureFixture[str]) -> None:
    r = Report("x", "X")
    assert r.figure("a", 19.9, "ms", "own share p99", aim=("<=", 20.0)).met is True
    assert r.figure("b", 20.1, "ms", "over", aim=("<=", 20.0)).met is False
    assert r.ratio("c", 9.5, "beside DBOS", of="a", aim=(">=", 10.0)).met is False
    assert r.figure("d", 3.0, "s", "no aim").met is None
    out = capsys.readouterr().out
    assert "[aim MISSED]" in out and "[aim met]" in out
    with pytest.raises(ValueError, match="twice"):
        r.figure("a", 1.0, "ms", "again")
    with pytest.raises(ValueError, match="comparison"):
        r.figure("e", 1.0, "ms", "bad", aim=("<", 2.0))


def test_the_json_carries_figures_aims_and_the_machine(tmp_path: Path) -> None:
    r = Report("engine", "Engine", quick=True)
    r.ratio("speedup", 12.0, "orchestrator ÷ DBOS", of="dbos_rate", aim=(">=", 10.0))
    r.note("measured on a shared machine")
    r.save(tmp_path / "engine.json")
    data = json.loads((tmp_path / "engine.json").read_text())
    assert data["name"] == "engine" and data["quick"] is True
    assert data["reproduce"] == "python bench/engine.py"
    [fig] = data["figures"]
    assert fig == {"key": "speedup", "label": "orchestrator ÷ DBOS", "value": 12.0,
                   "unit": "×", "aim": {"op": ">=", "value": 10.0}, "baseline": "dbos_rate",
                   "detail": False, "met": True}
    assert data["machine"]["cores"] >= 1 and data["machine"]["sqlite"]
    assert data["notes"] == ["measured on a shared machine"]
    with pytest.raises(RuntimeError, match="no figure"):
        Report("empty", "Empty").save(tmp_path / "empty.json")


def test_the_table_shows_values_aims_and_misses(tmp_path: Path) -> None:
    r = Report("lane_latency", "Gate end to end")
    r.figure("own_p99", 23.4, "ms", "own share | p99", aim=("<=", 20.0))
    r.figure("rate", 1234.5, "sagas/s", "throughput")
    r.figure("stage", 3.0, "ms", "a stage", detail=True)
    r.figure("missed", 30.0, "ms", "a detail over its aim", aim=("<=", 20.0), detail=True)
    r.save(tmp_path / "lane_latency.json")
    table = readme.render(readme.load(tmp_path))
    assert "| own share \\| p99 | 23.4 ms | ≤ 20.0 ms ✗ missed |" in table
    assert "| throughput | 1,234 sagas/s |  |" in table
    assert "0 of 2 aims met" in table
    # a detail stays in the JSON, unless it misses its aim: a miss is never hidden
    assert "a stage" not in table and "1 more figures in `bench/results/lane_latency.json`" in table
    assert "| a detail over its aim | 30.0 ms | ≤ 20.0 ms ✗ missed |" in table
    assert "`python bench/lane_latency.py`" in table


def test_the_section_is_replaced_between_its_markers_only() -> None:
    text = f"# Title\n\n## Performance\n{readme.BEGIN}\nold\n{readme.END}\n\n## Next\n"
    new = readme.update(text, "new table\n")
    assert new == f"# Title\n\n## Performance\n{readme.BEGIN}\nnew table\n{readme.END}\n\n## Next\n"
    assert readme.update(new, "new table\n") == new
    with pytest.raises(ValueError, match="markers"):
        readme.update("# no markers\n", "x")


def test_the_readme_table_is_the_one_generated_from_bench_results() -> None:
    assert sorted((ROOT / "bench" / "results").glob("*.json")), "bench/results is empty"
    done = subprocess.run([sys.executable, "-m", "bench.readme", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_the_suite_refuses_a_benchmark_it_does_not_have() -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "no_such_bench"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "no benchmark no_such_bench" in done.stderr
