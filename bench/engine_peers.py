"""The saga engine beside what users would pick instead: one saga, one test service, every
contender measured in the same run, interleaved (issue 13, item 2).

    python bench/engine_peers.py [--quick] [--json FILE] [--rounds R] [--seconds S]
                                 [--inflight K] [--fsyncs | --no-fsyncs]

The saga: verify the plate (a read) → allocate a space (a row of a SQLite table taken by a
conditional UPDATE) → create the entry record (a remote write with an idempotency key).
The test service (bench/peers/service.py: the central plate service's contract for those two
calls, lean and the same for everyone) is one aiohttp process on 127.0.0.1 that serves every
contender. Each contender is a process of its own (bench/peers/), driven over a pipe, so
its CPU time is its own; they take turns of S seconds (1), round after round (R, 7; the
order rotating), one saga at a time and then K (16) in flight:

- orchestrator: the gateway's saga runner and durable log (gateway.sagas.factory, Store
  with synchronous=FULL, the product's setting), the entry saga's first three steps;
- DBOS Transact 3.4 (under .venv-bench): an async workflow of three steps, its SQLite system
  database with DBOS's defaults (a rollback journal, synchronous=FULL: durable), and with
  WAL + synchronous=NORMAL (not durable at each commit); the allocation a step writing to
  the application's SQLite file (WAL, synchronous=FULL, like the gateway's);
- plain: the same calls and the same allocation commit, with no log at all (the floor);
- minimal log: the two-commit durable log a careful engineer writes by hand (commit 1: the
  saga's row, the allocation and the create's intent, after the verification; commit 2: the
  create's result and "done"), synchronous=FULL, written on a thread of its own;
- and, to say where the time goes: the orchestrator with synchronous=OFF, the product's
  client and allocation with no saga log, the runner with in-process services (its CPU),
  the daemon's whole entry saga (its barrier steps on a gate that opens at once), and the
  raw SQLite commit (WAL, FULL) of this disk.

Per contender and mode: sagas/s, p50/p99 latency, CPU per saga (the contender's process,
every thread; the service's is not in it), durable (fsyncing) commits per saga and SQL
statements per saga (every statement of every SQLite connection of the contender, counted
with sqlite3's trace callback; SQLAlchemy's connections through a pool ``connect`` event).
The counts come from a pass of their own after the timed rounds, in fresh processes (30
sagas one at a time and 64 in flight each; 10 and 64 with --quick): the trace callback
costs about 5 µs a statement, which in the timed turns would be charged to whoever runs
the most statements. A full run also counts there, with strace, the fsync and fdatasync
calls per saga (--no-fsyncs: not).
Ratios: the orchestrator's throughput ÷ DBOS's at equal durability (DBOS's defaults), its
time per saga ÷ the minimal log's, and its overhead per saga beyond its commits
(orchestrator - plain - extra durable commits x the measured commit cost), and what fsync
adds to the orchestrator's saga (FULL - OFF) and to each of its commits: a raw commit of one
row is the floor, the log's commits write more pages.

The CPU is shared by the service and the contender (and whatever else runs on the machine):
compare figures of one run, not across runs. A full run takes about 2.5 minutes; --quick
(a few dozen sagas per contender and mode) about ten seconds, three of them DBOS's start.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import ROOT, Report, parser

PEERS = ROOT / "bench" / "peers"
BENCH_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
SEQ, CONC = "seq", "conc"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Worker:
    """A contender process: one JSON command a line in, one JSON answer a line out."""

    def __init__(self, name: str, command: list[str], env: dict[str, str] | None = None,
                 ) -> None:
        self.name = name
        self.proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        self.next_saga = 0
        self.done: dict[str, int] = {}  # sagas run, by contender
        self.ready: list[str] = []

    def _io(self) -> tuple[IO[str], IO[str]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        return self.proc.stdin, self.proc.stdout

    def answer(self) -> dict[str, Any]:
        line = self._io()[1].readline()
        if not line:
            raise RuntimeError(f"{self.name}: the process ended (status {self.proc.wait()})")
        out: dict[str, Any] = json.loads(line)
        return out

    def wait_ready(self) -> None:
        self.ready = self.answer()["ready"]

    def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        self._io()[0].write(json.dumps(command) + "\n")
        self._io()[0].flush()
        return self.answer()

    def run(self, contender: str, seconds: float, most: int, inflight: int) -> dict[str, Any]:
        out = self.ask({"run": contender, "first": self.next_saga, "seconds": seconds,
                        "most": most, "inflight": inflight})
        self.next_saga += len(out["lat"])
        self.done[contender] = self.done.get(contender, 0) + len(out["lat"])
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask({"quit": True})
                self.proc.wait(timeout=30)
            except (RuntimeError, OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


@dataclass
class Tally:
    """One contender in one mode, over every round."""

    lat: list[float] = field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0
    n: int = 0
    # from the counting pass (its own processes: counting slows what it counts)
    sql: dict[str, int] = field(default_factory=dict)
    sql_n: int = 0

    def add(self, answer: dict[str, Any]) -> None:
        self.lat += answer["lat"]
        self.wall += answer["wall"]
        self.cpu += answer["cpu"]
        self.n += len(answer["lat"])

    def counted(self, answer: dict[str, Any]) -> None:
        self.sql, self.sql_n = answer["sql"], len(answer["lat"])

    @property
    def rate(self) -> float:
        return self.n / self.wall

    @property
    def per_saga_ms(self) -> float:
        return self.wall / self.n * 1000

    def pct_ms(self, p: float) -> float:
        ordered = sorted(self.lat)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000

    def per_saga(self, key: str) -> float:
        return self.sql.get(key, 0) / self.sql_n if self.sql_n else 0.0


@dataclass(frozen=True)
class Entry:
    key: str
    label: str
    worker: str
    names: dict[str, str]  # mode -> the worker's contender for it


def commit_floor(path: Path, n: int) -> float:
    """Seconds per raw commit: one small row, WAL, synchronous=FULL, BEGIN IMMEDIATE."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT)")
    t0 = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t(v) VALUES (?)", (f"c{i}",))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed / n


def contenders(dbos: bool) -> list[Entry]:
    both = {SEQ: "", CONC: ""}
    out = [Entry("orchestrator", "orchestrator (FULL)", "gateway",
                 {m: "orchestrator" for m in both})]
    if dbos:
        for sqlite in ("defaults", "wal"):
            label = "DBOS, defaults (FULL)" if sqlite == "defaults" else "DBOS, WAL + NORMAL"
            out.append(Entry(f"dbos_{sqlite}", label, f"dbos-{sqlite}",
                             {SEQ: "direct", CONC: "started"}))
    out += [
        Entry("minimal", "minimal two-commit log (FULL)", "hand", {m: "minimal" for m in both}),
        Entry("plain", "plain asyncio, no log", "hand", {m: "plain" for m in both}),
        Entry("orchestrator_off", "orchestrator, log not fsynced (OFF)", "gateway",
              {m: "orchestrator_off" for m in both}),
        Entry("product_plain", "product's client, no log", "gateway",
              {m: "product_plain" for m in both}),
        Entry("engine_inproc", "orchestrator, in-process services, OFF", "gateway",
              {SEQ: "engine_inproc"}),
        Entry("orchestrator_entry", "the whole entry saga (5 steps, FULL)", "gateway",
              {SEQ: "orchestrator_entry"}),
    ]
    return out


def start_workers(tmp: Path, url: str, spaces: int, dbos: bool,
                  wrap: Callable[[str], list[str]] = lambda _: [],
                  env: dict[str, str] | None = None) -> dict[str, Worker]:
    """The contenders' processes (``wrap(name)``: a command to run each one under; ``env``:
    added to their environment)."""
    def args(name: str) -> list[str]:
        (tmp / name).mkdir(parents=True)
        return ["--url", url, "--dir", str(tmp / name), "--spaces", str(spaces)]

    workers = {
        "gateway": Worker("gateway", [*wrap("gateway"), sys.executable,
                                      str(PEERS / "orchestrator.py"), *args("gateway")], env),
        "hand": Worker("hand", [*wrap("hand"), sys.executable, str(PEERS / "handwritten.py"),
                                *args("hand")], env),
    }
    if dbos:
        for sqlite in ("defaults", "wal"):
            name = f"dbos-{sqlite}"
            workers[name] = Worker(name, [*wrap(name), str(BENCH_PYTHON),
                                          str(PEERS / "dbos_saga.py"), *args(name),
                                          "--sqlite", sqlite], env)
    return workers


def count_pass(report: Report, tmp: Path, url: str, entries: list[Entry], dbos: bool,
               tallies: dict[tuple[str, str], Tally], inflight: int, strace: bool,
               sagas: int = 30) -> None:
    """SQL statements and commits per saga (sqlite3's trace callback), and with ``strace``
    the fsync and fdatasync calls per saga one at a time, counted in fresh processes
    started to count: both slow what they watch, so the timed turns run without them."""
    traces = tmp / "counted"

    def wrap(name: str) -> list[str]:
        return ["strace", "-f", "-qq", "-o", str(traces / f"{name}.txt"),
                "-e", "trace=fsync,fdatasync"] if strace else []

    def calls(name: str) -> int:
        with (traces / f"{name}.txt").open() as f:
            return sum(1 for line in f if "sync(" in line)

    conc = 4 * inflight
    workers = start_workers(traces, url, 10 * (sagas + conc), dbos, wrap,
                            {"BENCH_COUNT_SQL": "1"})
    try:
        for w in workers.values():
            w.wait_ready()
        for e in entries:
            before = calls(e.worker) if strace else 0
            answer = workers[e.worker].run(e.names[SEQ], 1e9, sagas, 1)
            tallies[(e.key, SEQ)].counted(answer)
            if strace:
                time.sleep(0.2)  # strace writes what it saw
                report.figure(f"{e.key}_fsyncs",
                              (calls(e.worker) - before) / len(answer["lat"]), "",
                              f"{e.label}: fsync calls per saga (strace)")
            if CONC in e.names:
                tallies[(e.key, CONC)].counted(
                    workers[e.worker].run(e.names[CONC], 1e9, conc, inflight))
    finally:
        for w in workers.values():
            w.stop()


def measure(workers: dict[str, Worker], entries: list[Entry], rounds: int,
            slices: dict[str, float], inflight: int, spaces: int, floor_db: Path,
            ) -> tuple[dict[tuple[str, str], Tally], list[float]]:
    """Round after round, each contender's slice of time one at a time, then in flight."""
    width = {SEQ: 1, CONC: inflight}

    def run(e: Entry, mode: str, seconds: float) -> dict[str, Any]:
        # each slice its share of the contender's spaces (warm-up included): a fast one's
        # slice may end early, by count, and its rate is still its sagas over its time
        most = max(width[mode], spaces // ((rounds + 1) * len(e.names)))
        return workers[e.worker].run(e.names[mode], seconds, most, width[mode])

    for e in entries:  # warm-up: connections, caches, the first pages of each file
        for mode in e.names:
            if slices["warm"] >= 0:
                run(e, mode, slices["warm"])
    tallies: dict[tuple[str, str], Tally] = {}
    floors = []
    for r in range(rounds):
        order = entries[r % len(entries):] + entries[:r % len(entries)]
        floors.append(commit_floor(floor_db, 50))
        for mode in (SEQ, CONC):
            for e in order:
                if mode in e.names:
                    tallies.setdefault((e.key, mode), Tally()).add(run(e, mode, slices[mode]))
        print(f"  round {r + 1}/{rounds} done", flush=True)
    return tallies, floors


# What the README's table shows (every figure with an aim besides); the JSON has them all.
HEADLINES = frozenset({
    "orchestrator_seq_rate", "orchestrator_seq_p50", "orchestrator_seq_cpu",
    "orchestrator_seq_durable_commits", "orchestrator_seq_sql", "orchestrator_conc_rate",
    "orchestrator_conc_durable_commits", "dbos_defaults_seq_rate", "dbos_defaults_seq_cpu",
    "dbos_defaults_seq_durable_commits", "dbos_defaults_seq_sql", "dbos_defaults_conc_rate",
    "dbos_wal_seq_rate", "dbos_wal_conc_rate", "minimal_seq_rate", "minimal_seq_p50",
    "minimal_seq_cpu", "minimal_seq_sql", "minimal_conc_rate", "plain_seq_rate",
    "plain_conc_rate", "orchestrator_entry_seq_rate", "commit_cost", "log_commit_cost",
    "engine_cpu_overhead", "dbos_vs_orch_cpu", "minimal_vs_dbos_seq"})


def report_figures(report: Report, entries: list[Entry], t: dict[tuple[str, str], Tally],
                   commit_s: float, inflight: int) -> None:
    modes = {SEQ: "one at a time", CONC: f"{inflight} in flight"}
    for e in entries:
        for mode in (SEQ, CONC):
            if (e.key, mode) not in t:
                continue
            x = t[(e.key, mode)]
            k, where = f"{e.key}_{mode}", f"{e.label}, {modes[mode]}"
            if e.key != "engine_inproc":
                report.figure(f"{k}_rate", x.rate, "sagas/s", f"{where}: throughput")
                report.figure(f"{k}_p50", x.pct_ms(50), "ms", f"{where}: p50")
                report.figure(f"{k}_p99", x.pct_ms(99), "ms", f"{where}: p99")
            report.figure(f"{k}_cpu", x.cpu / x.n * 1000, "ms", f"{where}: CPU per saga")
            report.figure(f"{k}_durable_commits", x.per_saga("durable_commits"), "",
                          f"{where}: durable (fsynced) commits per saga")
            report.figure(f"{k}_sql", x.per_saga("statements"), "",
                          f"{where}: SQL statements per saga")
    uncounted = [e.key for e in entries if not t[(e.key, SEQ)].sql.get("statements")]
    if uncounted:
        report.note(f"no SQL statement seen for {', '.join(uncounted)}: its connections were "
                    "not opened through sqlite3.connect (the count needs another hook)")
    report.figure("commit_floor_rate", 1 / commit_s, "commits/s",
                  "raw SQLite commit, WAL + FULL (this disk's floor)")
    report.figure("commit_cost", commit_s * 1000, "ms", "raw SQLite commit: time each")


def report_ratios(report: Report, t: dict[tuple[str, str], Tally], commit_s: float,
                  dbos: bool) -> None:
    orch = {m: t[("orchestrator", m)] for m in (SEQ, CONC)}
    if dbos:
        for mode, what in ((SEQ, "one at a time"), (CONC, "in flight")):
            report.ratio(f"orch_vs_dbos_{mode}", orch[mode].rate / t[("dbos_defaults",
                                                                      mode)].rate,
                         f"orchestrator ÷ DBOS throughput, equal durability, {what}",
                         of=f"dbos_defaults_{mode}_rate", aim=(">=", 10.0))
            report.ratio(f"orch_vs_dbos_wal_{mode}", orch[mode].rate / t[("dbos_wal",
                                                                          mode)].rate,
                         f"orchestrator ÷ DBOS WAL + NORMAL throughput, {what}",
                         of=f"dbos_wal_{mode}_rate")
            # the ceiling of any log that commits twice a saga on this disk: the hand-written
            # one's ratio (the orchestrator's aim is measured against DBOS, not against it)
            report.ratio(f"minimal_vs_dbos_{mode}", t[("minimal", mode)].rate
                         / t[("dbos_defaults", mode)].rate,
                         f"minimal two-commit log ÷ DBOS throughput, equal durability, {what}",
                         of=f"dbos_defaults_{mode}_rate")
    for mode, what in ((SEQ, "one at a time"), (CONC, "in flight")):
        report.ratio(f"orch_vs_minimal_{mode}", orch[mode].per_saga_ms
                     / t[("minimal", mode)].per_saga_ms,
                     f"orchestrator ÷ minimal log, time per saga, {what}",
                     of=f"minimal_{mode}_rate", aim=("<=", 1.3))
    plain, product = t[("plain", SEQ)], t[("product_plain", SEQ)]
    extra = orch[SEQ].per_saga("durable_commits") - plain.per_saga("durable_commits")
    overhead = orch[SEQ].per_saga_ms - plain.per_saga_ms - extra * commit_s * 1000
    report.figure("engine_overhead", overhead, "ms",
                  f"orchestrator's overhead per saga beyond its {extra:.2g} extra commits "
                  "(vs plain)", aim=("<=", 0.5), baseline="plain_seq_rate")
    extra_p = orch[SEQ].per_saga("durable_commits") - product.per_saga("durable_commits")
    report.figure("runner_overhead", orch[SEQ].per_saga_ms - product.per_saga_ms
                  - extra_p * commit_s * 1000, "ms",
                  "of which the runner and its log (vs the product's client, no log)",
                  baseline="product_plain_seq_rate")
    report.figure("client_overhead", product.per_saga_ms - plain.per_saga_ms, "ms",
                  "of which the product's client and store (vs plain)",
                  baseline="plain_seq_rate")
    # what the log's own commits cost: FULL - OFF, the same engine and calls
    synced = orch[SEQ].per_saga_ms - t[("orchestrator_off", SEQ)].per_saga_ms
    report.figure("log_fsync_wait", synced, "ms",
                  "orchestrator: what fsync adds per saga (FULL − OFF), one at a time",
                  baseline="orchestrator_off_seq_rate")
    durable = orch[SEQ].per_saga("durable_commits")
    if durable:
        report.figure("log_commit_cost", synced / durable, "ms",
                      "orchestrator: fsync wait per durable commit (see the raw commit's)",
                      baseline="commit_cost")
    # CPU time is what a shared machine disturbs least: the same comparisons on it
    cpu = {k: t[(k, SEQ)].cpu / t[(k, SEQ)].n * 1000 for k, _ in t}
    if dbos:
        report.ratio("dbos_vs_orch_cpu", cpu["dbos_defaults"] / cpu["orchestrator"],
                     "DBOS ÷ orchestrator CPU per saga, one at a time",
                     of="orchestrator_seq_cpu")
    report.ratio("orch_vs_minimal_cpu", cpu["orchestrator"] / cpu["minimal"],
                 "orchestrator ÷ minimal log, CPU per saga, one at a time",
                 of="minimal_seq_cpu")
    report.figure("engine_cpu_overhead", cpu["orchestrator"] - cpu["plain"], "ms",
                  "orchestrator's CPU per saga beyond plain's, one at a time",
                  baseline="plain_seq_cpu")
    report.ratio("orch_off_vs_full", t[("orchestrator_off", SEQ)].rate / orch[SEQ].rate,
                 "orchestrator OFF ÷ FULL throughput, one at a time", of="orchestrator_seq_rate")


def checks(report: Report, workers: dict[str, Worker], entries: list[Entry]) -> None:
    """That everyone did the work, durably where it claims to: read back from the files."""
    for e in entries:
        if e.worker.startswith("dbos") and e.names[SEQ] == "direct":
            w = workers[e.worker]
            c = w.ask({"check": "direct"})
            done = c["workflows"].get("SUCCESS", 0)
            if done != w.next_saga or c["step_outputs"] != 3 * w.next_saga \
                    or c["allocated"] != w.next_saga:
                raise RuntimeError(f"{e.key}: {w.next_saga} sagas run, but its files hold "
                                   f"{c}")
            report.note(f"{e.label}: its system database holds {done} workflows "
                        f"(SUCCESS) and {c['step_outputs']} step outputs in "
                        f"{c['file_bytes'] / 1e6:.1f} MB with its WAL (journal_mode="
                        f"{c['file_journal_mode']}, each connection synchronous="
                        f"{c['synchronous']}: 2 is FULL, 1 NORMAL; {c['connections']} "
                        "connections); the application file "
                        f"{c['allocated']} spaces taken")
    hand, gateway = workers["hand"], workers["gateway"]
    c = hand.ask({"check": "minimal"})
    if not c["done"] == c["allocated"] == hand.done["minimal"]:
        raise RuntimeError(f"minimal log: {hand.done['minimal']} sagas run, its file holds {c}")
    c = gateway.ask({"check": "orchestrator"})
    if c["occupancy"]["allocated"] != gateway.done["orchestrator"]:
        raise RuntimeError(f"orchestrator: {gateway.done['orchestrator']} sagas run, "
                           f"its database holds {c}")


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--rounds", type=int, help="rounds of every contender in turn (7)")
    p.add_argument("--seconds", type=float,
                   help="each contender's slice of a round, in each mode (1.0)")
    p.add_argument("--inflight", type=int, default=16)
    p.add_argument("--fsyncs", action=argparse.BooleanOptionalAction, default=None,
                   help="count fsync calls per saga with strace afterwards (default: in a "
                        "full run, when strace is installed)")
    a = p.parse_args()
    rounds = a.rounds or (1 if a.quick else 7)
    slices = {SEQ: a.seconds or (0.2 if a.quick else 1.0), "warm": -1.0 if a.quick else 0.3}
    slices[CONC] = slices[SEQ]
    report = Report("engine_peers", "The saga engine beside its peers", quick=a.quick,
                    reproduce="python bench/engine_peers.py", headlines=HEADLINES)
    dbos = BENCH_PYTHON.exists()
    count_fsyncs = a.fsyncs if a.fsyncs is not None else (
        not a.quick and shutil.which("strace") is not None)
    if not dbos:
        report.note("DBOS left out: no .venv-bench (make bench-venv)")
    entries = contenders(dbos)
    # the most the settings allow in three zones; a slice takes at most its share
    spaces = 3000 if a.quick else 29_997
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="gateway-bench-peers-") as tmp_name:
        tmp = Path(tmp_name)
        service = subprocess.Popen([sys.executable, str(PEERS / "service.py"), "--port",
                                    str(port)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        workers: dict[str, Worker] = {}
        try:
            assert service.stdout is not None
            service.stdout.readline()
            t0 = time.perf_counter()
            workers = start_workers(tmp, f"http://127.0.0.1:{port}", spaces, dbos)
            for w in workers.values():
                w.wait_ready()
            started = time.perf_counter() - t0
            tallies, floors = measure(workers, entries, rounds, slices, a.inflight,
                                      spaces, tmp / "floor.sqlite3")
            checks(report, workers, entries)
            for w in workers.values():
                w.stop()
            count_pass(report, tmp, f"http://127.0.0.1:{port}", entries, dbos, tallies,
                       a.inflight, count_fsyncs, sagas=10 if a.quick else 30)
            commit_s = statistics.median(floors)
            report_figures(report, entries, tallies, commit_s, a.inflight)
            report_ratios(report, tallies, commit_s, dbos)
        finally:
            for w in workers.values():
                w.stop()
            service.terminate()
            service.wait()
    report.note(f"{rounds} rounds, each contender {slices[SEQ]:g} s one at a time and "
                f"{slices[CONC]:g} s with {a.inflight} in flight a round, in turn; sagas "
                "measured (one at a time / in flight): " + ", ".join(
                    f"{e.key} {tallies[(e.key, SEQ)].n}/{tallies.get((e.key, CONC), Tally()).n}"
                    for e in entries) + f"; the contenders' processes started in {started:.1f} s"
                " (DBOS's launch among them); one test service process for all; the CPU is "
                "shared by the service, the contender and whatever else runs")
    report.save(a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
