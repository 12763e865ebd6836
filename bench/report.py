"""What every benchmark reports: figures printed as they are measured, and the same figures
as JSON for the suite (``python -m bench``) and the README's Performance table.

A benchmark builds its parser with :func:`parser` (which adds ``--quick`` and ``--json``),
makes a :class:`Report`, calls :meth:`Report.figure` / :meth:`Report.ratio` for each
figure, and ends with :meth:`Report.save`. An aim is a comparison (``"<=", 20``) the figure
is judged against in the summary and the table; it is never asserted (figures are not
tests: a slow run is a figure, not a failure).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sqlite3
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OPS = {"<=": lambda v, a: v <= a, ">=": lambda v, a: v >= a}


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    value: float
    unit: str
    aim: tuple[str, float] | None = None
    # a figure measured beside another in the same run: its key
    baseline: str | None = None
    # in the JSON and the printout, not in the README's table (which keeps the headlines)
    detail: bool = False

    @property
    def met(self) -> bool | None:
        if self.aim is None:
            return None
        op, target = self.aim
        return bool(OPS[op](self.value, target))

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["aim"] = {"op": self.aim[0], "value": self.aim[1]} if self.aim else None
        out["met"] = self.met
        return out


def machine() -> dict[str, Any]:
    """Where the figures were measured (the README table's heading)."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        # x86 says "model name"; a Raspberry Pi's kernel says "Model" (the board)
        found = {k.strip().lower(): v.strip() for k, _, v in (
            line.partition(":") for line in Path("/proc/cpuinfo").read_text().splitlines())}
        model = found.get("model name") or found.get("model") or model
    memory = 0
    with contextlib.suppress(ValueError, OSError):
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cpu": model, "cores": os.cpu_count() or 0, "arch": platform.machine(),
            "memory_gib": round(memory / 2 ** 30, 1), "os": platform.platform(terse=True),
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version}


def number(value: float) -> str:
    """A figure as a person reads it: 3 significant digits, thousands separated."""
    if value == 0 or not float("-inf") < value < float("inf"):
        return f"{value:g}"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def aim_text(aim: tuple[str, float] | None, unit: str) -> str:
    if aim is None:
        return ""
    op, target = aim
    return f"{'≤' if op == '<=' else '≥'} {number(target)} {unit}".rstrip()


@dataclass
class Report:
    name: str
    title: str
    quick: bool = False
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reproduce: str = ""
    # the keys the README's table shows (with every figure that has an aim); None: all
    headlines: frozenset[str] | None = None
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if not self.reproduce:
            self.reproduce = f"python bench/{self.name}.py"
        mode = " (quick: a smoke run, figures rough)" if self.quick else ""
        print(f"== {self.title}{mode}", flush=True)

    def figure(self, key: str, value: float, unit: str, label: str, *,
               aim: tuple[str, float] | None = None, baseline: str | None = None,
               detail: bool = False) -> Figure:
        if aim is not None and aim[0] not in OPS:
            raise ValueError(f"aim {aim!r}: the comparison is one of {sorted(OPS)}")
        if any(f.key == key for f in self.figures):
            raise ValueError(f"figure {key!r} reported twice")
        detail = detail or (self.headlines is not None and key not in self.headlines
                            and aim is None)
        fig = Figure(key, label, float(value), unit, aim, baseline, detail)
        self.figures.append(fig)
        judged = "" if fig.met is None else ("  [aim met]" if fig.met else "  [aim MISSED]")
        want = f"  (aim {aim_text(aim, unit)})" if aim else ""
        print(f"  {label:58} {number(value):>10} {unit}{want}{judged}", flush=True)
        return fig

    def ratio(self, key: str, value: float, label: str, *, of: str,
              aim: tuple[str, float] | None = None, detail: bool = False) -> Figure:
        """A ratio of two figures measured in this run (``of`` names the baseline)."""
        return self.figure(key, value, "×", label, aim=aim, baseline=of, detail=detail)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "quick": self.quick,
                "date": datetime.fromtimestamp(self.started, UTC).strftime("%Y-%m-%d"),
                "seconds": round(time.time() - self.started, 1), "machine": machine(),
                "reproduce": self.reproduce, "command": " ".join(sys.argv),
                "figures": [f.as_json() for f in self.figures], "notes": self.notes}

    def save(self, path: Path | None) -> None:
        if path is None:
            return
        if not self.figures:
            raise RuntimeError(f"{self.name}: no figure measured")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.as_json(), indent=1, ensure_ascii=False) + "\n")
        tmp.replace(path)


def parser(description: str | None) -> argparse.ArgumentParser:
    """The benchmark's argument parser, with the suite's two options."""
    p = argparse.ArgumentParser(description=(description or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="a brief run (make bench-quick, part of make test): every code path, "
                        "rough figures")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")
    return p
