"""Plate reading on this machine: accuracy by condition, false reads, latency, memory.

    python bench/plate_reading.py [--vehicles N] [--seed S] [--burst B] [--threads T]
                                  [--localisation contours|ocr|both] [--roi x0,y0,x1,y1]
                                  [--model cut|full|both] [--quick] [--json FILE]

The seeded test set of tests/plates/make_scenes.py (N vehicles per condition, each a burst of
B frames, the camera's default 3), read by the real reader (rapidocr 3.10 on onnxruntime) in
each localisation: OpenCV contours feeding the recogniser only, or the OCR text detector.
Printed per option: exact-match accuracy by condition (with the unreadable and the wrong
counts: a wrong plate is worse than none), the false-read rate on the negatives (no plate, a
badge, a timestamp overlay), p50/p95 latency per vehicle (the whole burst) and per frame
(one-frame reads), the CPU time per vehicle (all threads: on a machine shared with other work
the wall-clock figures include waiting for a core, the CPU time does not), the model's load
time and the reader's resident memory (RSS before and after start(), which imports
onnxruntime and loads the models), against the aims of issue 10: >= 97 % exact on clean and
angled, >= 90 % on blurred and low light, <= 1 % false reads, <= 150 ms p95 per vehicle. The
OCR option runs with a 10 s deadline so that its latency is measured rather than cut at the
1 s default. Each option runs with the recogniser cut to plate characters, as the gate runs
it (gateway/plates/slim_model.py), and with the full model shipped, side by side, each in a
fresh process (so one reader's memory is not measured on top of another's): the full
model's figures are the baseline and carry no aim.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import Figure, Report, parser  # noqa: E402
from gateway.plates.engine import REC_MODEL, packaged_model_dir  # noqa: E402
from gateway.plates.reader import PlateReader  # noqa: E402
from gateway.plates.render import NEGATIVE_CONDITIONS  # noqa: E402
from gateway.plates.roi import Roi  # noqa: E402
from gateway.plates.slim_model import prepare  # noqa: E402
from gateway.settings import PlateSettings  # noqa: E402
from tests.plates.make_scenes import FORMATS, make_vehicles  # noqa: E402

AIMS = {"clean": 0.97, "angled": 0.97, "blurred": 0.90, "low_light": 0.90}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(localisation: str, model: str, args: argparse.Namespace,
              report: Report) -> None:
    settings = PlateSettings(formats=list(FORMATS), localisation=localisation,
                             threads=args.threads,
                             deadline_s=10.0 if localisation == "ocr" else 1.0)
    before = rss_mb()
    # the cut recogniser as a gate runs it, made beforehand (as by the gate's first start)
    reader = PlateReader(settings, cache_dir=args.cache if model == "cut" else None)
    await reader.start()
    after = rss_mb()
    if not reader.ready:
        raise SystemExit(f"{localisation}: reader fault: {reader.fault}")
    if (reader.model is not None and reader.model.slim) != (model == "cut"):
        raise SystemExit(f"{localisation}: asked for the {model} model, got "
                         f"{reader.model.note if reader.model else 'none'}")
    roi = Roi.parse(args.roi) if args.roi else None
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # n, exact, none, wrong
    per_vehicle: list[float] = []
    by_condition: dict[str, list[float]] = defaultdict(list)
    per_frame: list[float] = []
    cpu_vehicle: list[float] = []  # CPU time of all threads: what a loaded machine hides
    errors: dict[str, int] = defaultdict(int)
    t0 = time.perf_counter()
    for v in make_vehicles(args.seed, args.vehicles, args.burst):
        cpu0 = time.process_time()
        r = await reader.read_burst(v.frames, roi)
        cpu_vehicle.append((time.process_time() - cpu0) * 1000)
        single = await reader.read_burst(v.frames[:1], roi)
        per_vehicle.append(r.latency_ms)
        by_condition[v.condition].append(r.latency_ms)
        per_frame.append(single.latency_ms)
        if r.error:
            errors[r.error.split(":")[0]] += 1
        t = tally[v.condition]
        t[0] += 1
        t[1] += r.plate == v.plate
        t[2] += r.plate is None and v.plate is not None
        t[3] += r.plate is not None and r.plate != v.plate
        if args.verbose and r.plate != v.plate:
            print(f"  {v.condition:9} {v.fmt} {v.font:28} {v.plate} -> {r.plate} {r.candidates}")
    reader.close()
    wall = time.perf_counter() - t0
    print(f"\n== localisation = {localisation!r}, {model} model, threads = {args.threads}, "
          f"burst = {args.burst}, roi = {args.roi or 'whole frame'} ({wall:.0f} s)")
    print(f"model load {reader.load_s:.2f} s; reader RSS {before:.0f} -> {after:.0f} MB "
          f"(+{after - before:.0f} MB)")
    print(f"{'condition':10} {'vehicles':>8} {'exact':>7} {'unread':>6} {'wrong':>5} "
          f"{'p50 ms':>7} {'p95 ms':>7}  aim")
    negatives = false_reads = 0
    cut = model == "cut"  # the full model is the baseline: its figures carry no aim
    o = localisation if cut else f"{localisation}_full"
    label = localisation if cut else f"{localisation}, full model"

    def lat(cond: str) -> str:
        xs = by_condition[cond]
        return f"{pct(xs, 0.5):7.0f} {pct(xs, 0.95):7.0f}"

    for cond, (n, exact, none, wrong) in tally.items():
        if cond in NEGATIVE_CONDITIONS:
            negatives += n
            false_reads += wrong
            print(f"{cond:10} {n:8} {'-':>7} {'-':>6} {wrong:5} {lat(cond)}  false reads")
            continue
        aim = AIMS.get(cond)
        verdict = "" if aim is None else (
            f">= {aim:.0%} " + ("met" if exact / n >= aim else "MISSED"))
        print(f"{cond:10} {n:8} {exact / n:7.1%} {none:6} {wrong:5} {lat(cond)}  {verdict}")
        if aim is not None:
            report.figure(f"{o}_{cond}_exact", exact / n * 100, "%",
                          f"{label}: exact plates, {cond}", aim=(">=", aim * 100) if cut else None,
                          detail=not cut)
    rate = false_reads / max(1, negatives)
    print(f"false reads on negatives: {false_reads}/{negatives} = {rate:.1%} (aim <= 1 %: "
          f"{'met' if rate <= 0.01 else 'MISSED'})")
    p95 = pct(per_vehicle, 0.95)
    print(f"per vehicle ({args.burst} frames): p50 {pct(per_vehicle, 0.5):.0f} ms, p95 {p95:.0f} "
          f"ms, max {max(per_vehicle):.0f} ms (aim p95 <= 150 ms: "
          f"{'met' if p95 <= 150 else 'MISSED'}); over the 1 s default deadline: "
          f"{sum(x > 1000 for x in per_vehicle)}")
    print(f"CPU time per vehicle (all threads): p50 {pct(cpu_vehicle, 0.5):.0f} ms, p95 "
          f"{pct(cpu_vehicle, 0.95):.0f} ms; load average at the end "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"per frame: p50 {pct(per_frame, 0.5):.0f} ms, p95 {pct(per_frame, 0.95):.0f} ms, "
          f"mean {statistics.fmean(per_frame):.0f} ms")
    if errors:
        print("errors:", dict(errors))
    report.figure(f"{o}_false_reads", rate * 100, "%", f"{label}: false reads on negatives",
                  aim=("<=", 1.0) if cut else None, detail=not cut)
    report.figure(f"{o}_vehicle_p50_ms", pct(per_vehicle, 0.5), "ms",
                  f"{label}: per vehicle ({args.burst} frames), p50", detail=not cut)
    report.figure(f"{o}_vehicle_p95_ms", p95, "ms", f"{label}: per vehicle, p95",
                  aim=("<=", 150.0) if localisation == "contours" and cut else None,
                  detail=not cut)
    report.figure(f"{o}_cpu_vehicle_ms", pct(cpu_vehicle, 0.5), "ms",
                  f"{label}: CPU per vehicle (all threads), p50", detail=not cut)
    report.figure(f"{o}_load_s", reader.load_s, "s", f"{label}: model load", detail=not cut)
    report.figure(f"{o}_rss_mb", after - before, "MB", f"{label}: resident memory the reader adds")


def isolated(localisation: str, model: str, args: argparse.Namespace) -> list[Figure]:
    """``run`` in a fresh process (spawned): a reader's memory is measured from a process
    no earlier reader has grown. Returns its figures."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_child, (localisation, model, args))


def _child(localisation: str, model: str, args: argparse.Namespace) -> list[Figure]:
    report = Report("plate_reading", f"Plate reading: {localisation}, {model} model",
                    quick=args.quick)
    asyncio.run(run(localisation, model, args, report))
    return report.figures


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--vehicles", type=int,
                    help="per condition (10 conditions; 12, quick 1)")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--burst", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--localisation", choices=["contours", "ocr", "both"],
                    help="(both; quick contours: the OCR detector takes ~1 s per vehicle)")
    ap.add_argument("--roi", type=lambda s: [float(x) for x in s.split(",")], default=None)
    ap.add_argument("--model", choices=["cut", "full", "both"],
                    help="the recogniser cut to plate characters (as the gate runs it), the "
                         "full one shipped, or both side by side (both; quick cut)")
    ap.add_argument("--verbose", action="store_true", help="print every miss")
    args = ap.parse_args()
    args.vehicles = args.vehicles or (1 if args.quick else 12)
    args.localisation = args.localisation or ("contours" if args.quick else "both")
    report = Report("plate_reading", "Plate reading on the gate (rapidocr on onnxruntime)",
                    quick=args.quick)
    print(f"{args.vehicles * 10} vehicles x {args.burst} frames = {args.vehicles * 10 * args.burst}"
          " scenes (1280x720), formats " + ", ".join(FORMATS))
    args.model = args.model or ("cut" if args.quick else "both")
    with tempfile.TemporaryDirectory(prefix="plate-reading-") as cache:
        args.cache = Path(cache)
        made = prepare(packaged_model_dir() / REC_MODEL, args.cache)
        if not made.slim:
            raise SystemExit(f"the recogniser could not be cut: {made.note}")
        for loc in (["contours", "ocr"] if args.localisation == "both"
                    else [args.localisation]):
            for model in (["cut", "full"] if args.model == "both" else [args.model]):
                report.figures += isolated(loc, model, args)
            keys = {f.key: f.value for f in report.figures}
            if f"{loc}_full_rss_mb" in keys:
                report.ratio(f"{loc}_rss_cut_vs_full",
                             keys[f"{loc}_rss_mb"] / keys[f"{loc}_full_rss_mb"],
                             f"{loc}: memory the cut model adds ÷ the full one's",
                             of=f"{loc}_full_rss_mb")
    report.save(args.json)

if __name__ == "__main__":
    main()
