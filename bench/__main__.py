"""The bench suite: every benchmark in one run, its figures as JSON, a summary of the aims.

    python -m bench [--quick] [--out DIR] [NAME ...]

Each benchmark runs in its own process (``python bench/NAME.py [--quick] --json
DIR/NAME.json``) so one's threads, caches and memory do not colour the next one's figures.
Without ``--out`` a full run writes ``bench/results/`` (the figures the README's Performance
table is generated from: ``python -m bench.readme``) and a quick run a temporary directory.
The exit status is 1 when a benchmark fails to run or reports nothing; a missed aim is a
figure to look at, not a failure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import ROOT, aim_text, number

# In the order the README's table shows them.
BENCHMARKS = (
    "engine_peers",
    "strategies",
    "lane_latency",
    "degraded_latency",
    "footprint",
    "queue_drain",
    "telemetry_drain",
    "mqtt_catchup",
    "plate_reading",
    "web_status",
)
RESULTS = ROOT / "bench" / "results"
TIMEOUT_S = {True: 240.0, False: 3600.0}


def run(name: str, out: Path, quick: bool) -> tuple[bool, float]:
    command = [sys.executable, str(ROOT / "bench" / f"{name}.py"), "--json",
               str(out / f"{name}.json")]
    if quick:
        command.append("--quick")
    t0 = time.monotonic()
    try:
        done = subprocess.run(command, cwd=ROOT, timeout=TIMEOUT_S[quick], check=False)
    except subprocess.TimeoutExpired:
        print(f"!! {name}: no result within {TIMEOUT_S[quick]:.0f} s", flush=True)
        return False, time.monotonic() - t0
    took = time.monotonic() - t0
    if done.returncode != 0:
        print(f"!! {name}: exit status {done.returncode}", flush=True)
        return False, took
    if not (out / f"{name}.json").is_file():
        print(f"!! {name}: wrote no figures to {out / f'{name}.json'}", flush=True)
        return False, took
    return True, took


def summary(out: Path, names: list[str], took: dict[str, float], failed: list[str]) -> None:
    print("\n== summary", flush=True)
    for name in names:
        path = out / f"{name}.json"
        if name in failed or not path.is_file():
            print(f"  {name:18} FAILED ({took.get(name, 0):.0f} s)")
            continue
        figures = json.loads(path.read_text())["figures"]
        judged = [f for f in figures if f["met"] is not None]
        missed = [f for f in judged if not f["met"]]
        print(f"  {name:18} {len(figures):3} figures, {len(judged) - len(missed)}/{len(judged)} "
              f"aims met ({took[name]:.0f} s)")
        for f in missed:
            aim = (f["aim"]["op"], f["aim"]["value"]) if f["aim"] else None
            print(f"      missed: {f['label']}: {number(f['value'])} {f['unit']} "
                  f"(aim {aim_text(aim, f['unit'])})")
    print(f"  figures in {out}", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="each benchmark briefly (make test)")
    p.add_argument("--out", type=Path, help="where the JSON results go")
    p.add_argument("names", nargs="*", metavar="NAME", help=f"of {', '.join(BENCHMARKS)}")
    args = p.parse_args()
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        p.error(f"no benchmark {', '.join(unknown)}; there are {', '.join(BENCHMARKS)}")
    names = [n for n in BENCHMARKS if not args.names or n in args.names]
    with tempfile.TemporaryDirectory(prefix="gateway-bench-quick-") as tmp:
        out = args.out or (Path(tmp) if args.quick else RESULTS)
        out.mkdir(parents=True, exist_ok=True)
        took: dict[str, float] = {}
        failed = []
        for name in names:
            ok, took[name] = run(name, out, args.quick)
            if not ok:
                failed.append(name)
        summary(out, names, took, failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
