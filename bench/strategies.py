"""Strategies beside their libraries: what the gateway's retry and circuit breaker cost per
call, beside tenacity, stamina, aiobreaker and pybreaker on the same no-op call (issue 13).

    python bench/strategies.py [--quick] [--json FILE] [--rounds R] [--loop-ms MS]

Every contender wraps the same no-op: an ``async def`` that returns at once (pybreaker, whose
async support needs tornado, calls a sync no-op; so does the one of ours it is divided by).
Two paths: success (the call runs and answers) and refusal by an open breaker (the call is
refused without running; the refusal is raised and caught, as a caller would).

Ours, in this process (.venv):
  - the strategies alone, as the seed's faces over the core expose them
    (gateway/sagas/fallback_strategies.py): ``retry_with_backoff`` (the retry, over
    ``core.backoff.BackoffSchedule``) and ``CircuitBreaker.execute`` (the breaker, over
    ``core.breaker.Breaker``); and the ``Breaker`` core itself around a sync no-op
    (``allow`` / call / ``record_success``), the like of ``pybreaker.call``;
  - the product's per-call wrapper as the saga runner applies it around one service call:
    ``ServiceChain.call`` for the entry's record step with the daemon's default policy
    (retries with backoff within the decision deadline, a breaker, the call's own deadline,
    the attempt record, the service's call statistics, the durability-boundary hooks,
    breaker events), once around a plain remote service behind the chain's own breaker, and
    once around the central pool (``CentralPool``: the balancer, a breaker per instance,
    pool statistics) with one no-op instance. Refused: the chain's breaker open, and the pool
    with every instance's breaker open (``CentralPool.call`` on its own; the chain then
    records the refusal and moves on to its next fallback at once).

The peers, in their own process under .venv-bench (bench/peers/strategy_peers.py, which
says how each library is used): each library alone, and "stacked" (a retry decorator over
an aiobreaker decorator), what a user composes to get what the product's wrapper does.

Each contender's loop is calibrated to about MS milliseconds; then R rounds interleave the
two processes (ours, peers, ours, peers, ...) so both see the same machine, and a figure is
the fastest of its R loops, in µs per call (the no-op's own await included: the floor is
reported too). Ratios are library ÷ ours from the same run. Aim: ≤ 2 µs per call for ours.
``--quick``: 3 rounds of 5 ms loops (a few seconds); the full run 15 rounds of 30 ms (about
half a minute on a quiet two-core machine).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.peers.timing import Case, timed_async, timed_sync  # noqa: E402
from bench.report import Report, parser  # noqa: E402
from gateway.clock import SystemClock  # noqa: E402
from gateway.core.balancing import Balancer  # noqa: E402
from gateway.core.breaker import Breaker  # noqa: E402
from gateway.core.errors import CircuitOpenError, TransientError  # noqa: E402
from gateway.core.steps import ENTRY, LICENSE_PLATE_SERVICE  # noqa: E402
from gateway.sagas.chain import CallScope  # noqa: E402
from gateway.sagas.factory import build_runner  # noqa: E402
from gateway.sagas.fallback_strategies import CircuitBreaker, retry_with_backoff  # noqa: E402
from gateway.services.base import ServiceRegistry  # noqa: E402
from gateway.services.central import CentralPool  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from gateway.store import Store  # noqa: E402

PEERS = ROOT / "bench" / "peers" / "strategy_peers.py"
BENCH_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
AIM = ("<=", 2.0)
Json = dict[str, Any]


async def noop() -> None:
    return None


# What the README's table shows besides ours (every figure with an aim); the JSON has all.
HEADLINES = frozenset({
    "floor", "peer_tenacity_retry", "peer_stamina_retry", "peer_aiobreaker_ok",
    "peer_pybreaker_sync_ok", "peer_aiobreaker_open", "peer_tenacity_aiobreaker_ok",
    "ratio_tenacity_retry", "ratio_stamina_retry", "ratio_aiobreaker_ok",
    "ratio_pybreaker_sync_ok", "ratio_aiobreaker_open", "ratio_tenacity_aiobreaker_ok",
    "ratio_stamina_aiobreaker_ok", "ratio_tenacity_aiobreaker_open"})

def noop_sync() -> None:
    return None


class NoopService:
    """A remote service that answers at once: the same no-op, behind the service protocol."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.outstanding = 0  # what the pool balances on, as a CentralInstance has

    async def call(self, operation: str, payload: Json, *, idempotency_key: str | None,
                   deadline_s: float) -> Json:
        return {}


def trip(breaker: Breaker) -> None:
    """Open ``breaker`` now (as that many failures would), or close it again."""
    now = time.monotonic()
    for _ in range(breaker.policy.failure_threshold):
        breaker.record_failure(now)
    breaker.take_transitions()


def close(breaker: Breaker) -> None:
    breaker.reset(time.monotonic())
    breaker.take_transitions()


class Ours:
    """Our contenders, on one event loop; ``store`` and ``tmp`` closed by :meth:`close`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.tmp = Path(tempfile.mkdtemp(prefix="gateway-bench-strategies-"))
        self.store = self.loop.run_until_complete(Store.open(self.tmp / "gateway.db"))
        self.cases = self._cases()

    def _chain(self, service: Any) -> tuple[Callable[[], Awaitable[Any]], Any]:
        """``ServiceChain.call`` as the runner makes it for the entry's record step."""
        settings, clock = Settings(), SystemClock()
        registry = ServiceRegistry()
        registry.register(LICENSE_PLATE_SERVICE, service)
        runner = build_runner(settings, self.store, registry, clock)
        step = ENTRY.steps[2]  # create_entry_record: a write, with its idempotency key
        policy = runner.policies[step.name]
        # the runner's scope: the decision's deadline bounds the step's (far off here, so
        # that no loop runs out of it), events and deferred writes go to the saga's batch
        batch: list[Any] = []
        scope = CallScope("bench-saga", "B123CD", emit=lambda _type, _data: None,
                          defer=batch.append, deadline_at=time.monotonic() + 86_400)
        payload = {"license_plate": "B123CD", "lane_id": "lane-1", "gate_id": "gate-1",
                   "space_id": "A-001"}
        chain = runner.chain

        def call() -> Awaitable[Any]:
            batch.clear()
            return chain.call(scope, step, policy, payload, "bench-saga:2", [])

        return call, runner

    def _cases(self) -> dict[str, Case]:
        out: dict[str, Case] = {"floor": Case(noop), "floor_sync": Case(noop_sync, sync=True)}
        out["retry"] = Case(partial(retry_with_backoff, noop))
        for path in ("ok", "open"):
            face = CircuitBreaker(f"bench-{path}")
            arm = partial(trip if path == "open" else close, face.breaker)
            out[f"breaker_{path}"] = Case(partial(face.execute, noop), arm=arm)
            core = Breaker(f"bench-core-{path}")
            out[f"core_sync_{path}"] = Case(partial(core_sync, core), sync=True,
                                            arm=partial(trip if path == "open" else close,
                                                        core))
            chain_call, runner = self._chain(NoopService(LICENSE_PLATE_SERVICE))
            # the chain makes its breaker at the first call: made here
            self.loop.run_until_complete(chain_call())
            chain_breaker = runner.chain.breakers[LICENSE_PLATE_SERVICE]
            out[f"chain_{path}"] = Case(chain_call, arm=partial(
                trip if path == "open" else close, chain_breaker))
            pool = CentralPool([NoopService("http://127.0.0.1:1")],  # type: ignore[list-item]
                               Balancer(Settings().central.load_balancing),
                               runner.breaker_policy, SystemClock())
            pool_call, _ = self._chain(pool)
            breakers = list(pool.breakers.values())

            def pool_arm(path: str = path, breakers: list[Breaker] = breakers) -> None:
                for b in breakers:
                    (trip if path == "open" else close)(b)

            if path == "ok":
                out["pool_ok"] = Case(pool_call, arm=pool_arm)
            else:  # the pool's refusal on its own (the chain then moves on to its fallback)
                out["pool_open"] = Case(partial(pool.call, "create_entry_record", {},
                                                idempotency_key="k", deadline_s=0.8),
                                        arm=pool_arm)
        return out

    def run_once(self, case: Case, n: int) -> float:
        case.arm()
        if case.sync:
            return timed_sync(case.call, n, TransientError)
        return self.loop.run_until_complete(timed_async(case.call, n, TransientError))

    def calibrate(self, loop_s: float) -> None:
        for case in self.cases.values():
            self.run_once(case, 200)
            per_call = self.run_once(case, 1000)
            case.n = max(200, min(2_000_000, int(loop_s / max(per_call, 1e-9))))

    def round(self) -> dict[str, float]:
        return {k: self.run_once(c, c.n) for k, c in self.cases.items()}

    def close(self) -> None:
        self.loop.run_until_complete(self.store.close())
        self.loop.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def core_sync(breaker: Breaker) -> None:
    """The core as a caller applies it (as ``pybreaker.call`` does): refuse, or call and
    record."""
    if not breaker.allow(time.monotonic()):
        raise CircuitOpenError(f"circuit {breaker.name} is open", service=breaker.name)
    noop_sync()
    breaker.record_success(time.monotonic())


class Peers:
    """The peer process: started, calibrated, then one round per request."""

    def __init__(self, loop_ms: float) -> None:
        self.proc = subprocess.Popen(
            [str(BENCH_PYTHON), str(PEERS), "--loop-ms", str(loop_ms)], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin: IO[str] = self.proc.stdin
        self.stdout: IO[str] = self.proc.stdout
        self.hello = self._read()

    def _read(self) -> Json:
        line = self.stdout.readline()
        if not line:
            raise RuntimeError(f"{PEERS.name} ended (status {self.proc.wait()})")
        answer: Json = json.loads(line)
        return answer

    def round(self) -> dict[str, float]:
        self.stdin.write("round\n")
        self.stdin.flush()
        figures: dict[str, float] = self._read()["round"]
        return figures

    def close(self) -> None:
        try:
            self.stdin.write("quit\n")
            self.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# key, label; then the ratios: peer key, label, our key it is divided by
OURS = (
    ("floor", "the no-op's own await (floor, in every figure)"),
    ("retry", "ours: retry_with_backoff alone, success"),
    ("breaker_ok", "ours: CircuitBreaker.execute alone, success"),
    ("core_sync_ok", "ours: Breaker core around a sync no-op, success"),
    ("chain_ok", "ours, product: ServiceChain.call (retry + breaker), success"),
    ("pool_ok", "ours, product: ServiceChain.call → CentralPool, success"),
    ("breaker_open", "ours: CircuitBreaker.execute alone, refused"),
    ("core_sync_open", "ours: Breaker core, sync, refused"),
    ("chain_open", "ours, product: ServiceChain.call, breaker open, refused"),
    ("pool_open", "ours, product: CentralPool.call, every breaker open, refused"),
)
PEER_FIGURES = (
    ("tenacity_retry", "tenacity @retry on an async def, success", "retry",
     "tenacity @retry"),
    ("tenacity_async_for", "tenacity async for … in AsyncRetrying, success", "retry",
     "tenacity AsyncRetrying"),
    ("stamina_retry", "stamina @retry on an async def, success", "retry", "stamina @retry"),
    ("stamina_context", "stamina async for … in retry_context, success", "retry",
     "stamina retry_context"),
    ("aiobreaker_ok", "aiobreaker decorator, success", "breaker_ok", "aiobreaker"),
    ("pybreaker_sync_ok", "pybreaker .call, sync no-op, success", "core_sync_ok",
     "pybreaker (sync)"),
    ("tenacity_aiobreaker_ok", "stacked tenacity @retry over aiobreaker, success",
     "chain_ok", "tenacity + aiobreaker"),
    ("stamina_aiobreaker_ok", "stacked stamina @retry over aiobreaker, success", "chain_ok",
     "stamina + aiobreaker"),
    ("aiobreaker_open", "aiobreaker decorator, refused", "breaker_open", "aiobreaker"),
    ("pybreaker_sync_open", "pybreaker .call, sync, refused", "core_sync_open",
     "pybreaker (sync)"),
    ("tenacity_aiobreaker_open", "stacked tenacity @retry over aiobreaker, refused",
     "chain_open", "tenacity + aiobreaker"),
    ("stamina_aiobreaker_open", "stacked stamina @retry over aiobreaker, refused",
     "chain_open", "stamina + aiobreaker"),
)
SHORT = {"retry": "retry_with_backoff", "breaker_ok": "CircuitBreaker.execute",
         "core_sync_ok": "sync Breaker core", "chain_ok": "ServiceChain.call",
         "breaker_open": "CircuitBreaker.execute", "core_sync_open": "sync Breaker core",
         "chain_open": "ServiceChain.call"}


def measure(rounds: int, loop_ms: float) -> tuple[dict[str, float], dict[str, float] | None,
                                                  Json]:
    """The fastest loop of each contender (s per call), ours and the peers' (None when the
    bench venv is missing), and what the peer process said of itself."""
    ours = Ours()
    peers = Peers(loop_ms) if BENCH_PYTHON.exists() else None
    try:
        ours.calibrate(loop_ms / 1000)
        best: dict[str, float] = {}
        best_peers: dict[str, float] = {}
        for _ in range(rounds):
            for k, v in ours.round().items():
                best[k] = min(v, best.get(k, v))
            if peers is not None:
                for k, v in peers.round().items():
                    best_peers[k] = min(v, best_peers.get(k, v))
        return best, (best_peers if peers is not None else None), \
            (peers.hello if peers is not None else {})
    finally:
        ours.close()
        if peers is not None:
            peers.close()


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 15; quick 3)")
    p.add_argument("--loop-ms", type=float, help="each timed loop, about (default 30; quick 5)")
    args = p.parse_args()
    rounds = args.rounds or (3 if args.quick else 15)
    loop_ms = args.loop_ms or (5.0 if args.quick else 30.0)
    report = Report("strategies", "Strategies beside their libraries (µs per call of a no-op)",
                    quick=args.quick, reproduce="python bench/strategies.py",
                    headlines=HEADLINES)
    ours, peers, hello = measure(rounds, loop_ms)
    for key, label in OURS:
        report.figure(key, ours[key] * 1e6, "µs", label, aim=None if key == "floor" else AIM)
    if peers is None:
        report.note(f"peers not measured: {BENCH_PYTHON.relative_to(ROOT)} is missing "
                    "(make bench-venv)")
        report.save(args.json)
        return 0
    v = hello["versions"]
    names = {"tenacity": f"tenacity {v['tenacity']}", "stamina": f"stamina {v['stamina']}",
             "aiobreaker": f"aiobreaker {v['aiobreaker']}",
             "pybreaker": f"pybreaker {v['pybreaker']}"}
    for key, label, _, _ in PEER_FIGURES:
        for name, full in names.items():
            label = label.replace(name, full, 1) if label.startswith(name) else label
        report.figure(f"peer_{key}", peers[key] * 1e6, "µs", label)
    for key, label, of, short in PEER_FIGURES:
        path = label.rsplit(", ", 1)[1]
        report.ratio(f"ratio_{key}", peers[key] / ours[of],
                     f"{short} ÷ ours ({SHORT[of]}), {path}", of=of)
    report.note(f"Fastest of {rounds} interleaved loops of about {loop_ms:g} ms each. Ours in "
                f"Python {sys.version.split()[0]} (.venv), the peers in Python "
                f"{v['python']} (.venv-bench); the no-op's await costs "
                f"{ours['floor'] * 1e6:.2f} µs here and {peers['floor'] * 1e6:.2f} µs there.")
    report.note("Product figures do more per call than any peer: the attempt record, call "
                "statistics, durability-boundary hooks and breaker events (and, for the pool, "
                "the balancer's choice); pybreaker runs sync (its async needs tornado) and is "
                "divided by our core run sync.")
    report.save(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
