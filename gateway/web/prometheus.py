"""``GET /metrics``: the gateway's state in the Prometheus text format, built per scrape
from the same snapshots as the status page and the MQTT metrics (prometheus_client).

The stage latencies from the loop (the decision's among them, refused vehicles' too) are
histograms, not quantile gauges: quantiles of one gate cannot be combined with another's,
bucket counts can (``histogram_quantile(0.99, sum by (le, stage) (rate(..._bucket[5m])))``
over every gate).
A histogram's counts must only grow, while a lane keeps only its last 1000 vehicles: each
scrape folds in the vehicles recorded since the previous one (``StageLatencies``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

CIRCUIT = {"closed": 0, "half_open": 1, "open": 2, "disabled": -1, "unknown": -1}
# seconds: a relay in a few ms, a frame or a local reading in tens to hundreds, a decision
# from a slow central up to its deadlines and fallbacks, a whole loop-to-open in seconds
BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STAGES = ("frame", "plate", "decision", "relay", "total")


class StageLatencies:
    """Cumulative histograms per (lane, stage) of the stage latencies the lanes record (a
    dict of milliseconds per vehicle, newest last, in a bounded deque). ``fold`` adds the
    records after the last one it saw of that lane (found by identity); if that one has
    already left the deque (more vehicles between two scrapes than the deque holds), the
    deque's whole content is added and the older ones are missing from the counts, which
    still never go down."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], dict[str, float]] = {}
        self._buckets: dict[tuple[str, str], list[int]] = {}  # per bucket, not cumulative
        self._sums: dict[tuple[str, str], float] = {}

    def fold(self, lane_id: str, recorded: Sequence[dict[str, float]],
             series: str = "opened") -> None:
        """``series``: which of the lane's deques (the vehicles let through, those refused)
        ``recorded`` is; each is followed on its own."""
        last = self._last.get((lane_id, series))
        new: list[dict[str, float]] = []
        for record in reversed(recorded):
            if record is last:
                break
            new.append(record)
        if recorded:
            self._last[(lane_id, series)] = recorded[-1]
        for record in reversed(new):
            for stage in STAGES:
                if stage in record:
                    self._observe((lane_id, stage), record[stage] / 1000)

    def _observe(self, key: tuple[str, str], seconds: float) -> None:
        counts = self._buckets.setdefault(key, [0] * (len(BUCKETS_S) + 1))
        counts[next((i for i, le in enumerate(BUCKETS_S) if seconds <= le), len(BUCKETS_S))] += 1
        self._sums[key] = self._sums.get(key, 0.0) + seconds

    def family(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(
            "parking_stage_latency_seconds",
            "Stage latency per vehicle from the loop (frame, plate, decision, relay, total); "
            "decision counts every decided vehicle, refused ones too",
            labels=["lane", "stage"])
        for (lane_id, stage), counts in sorted(self._buckets.items()):
            cumulative, total = [], 0
            for le, count in zip((*map(str, BUCKETS_S), "+Inf"), counts, strict=True):
                total += count
                cumulative.append((le, float(total)))
            family.add_metric([lane_id, stage], cumulative, self._sums[(lane_id, stage)])
        return family


class _Snapshot:
    def __init__(self, status: dict[str, Any], metrics: dict[str, Any],
                 latencies: StageLatencies) -> None:
        self.status, self.metrics, self.latencies = status, metrics, latencies

    def collect(self) -> Iterator[Metric]:
        s, m = self.status, self.metrics
        occ = GaugeMetricFamily("parking_spaces", "Spaces by state", labels=["state"])
        for state in ("free", "allocated", "out_of_service"):
            occ.add_metric([state], s["occupancy"][state])
        yield occ
        lanes = GaugeMetricFamily("parking_lane_idle", "1 when the lane is idle",
                                  labels=["lane", "state"])
        for lane in s["lanes"]:
            lanes.add_metric([lane["id"], lane["state"]], 1 if lane["state"] == "idle" else 0)
        yield lanes
        circuit = GaugeMetricFamily("parking_circuit_state",
                                    "0 closed, 1 half-open, 2 open, -1 disabled",
                                    labels=["service"])
        for name in ("central", "backup"):
            circuit.add_metric([name], CIRCUIT.get(s["services"][name]["circuit"], -1))
        yield circuit
        yield GaugeMetricFamily("parking_mqtt_connected", "1 when connected to the broker",
                                value=1 if s["services"]["mqtt"]["connected"] else 0)
        yield GaugeMetricFamily("parking_outbox_pending", "Events not yet acknowledged",
                                value=s["outbox"]["pending"])
        queue = GaugeMetricFamily("parking_offline_queue", "Records waiting or refused",
                                  labels=["state"])
        for state in ("pending", "dead"):
            queue.add_metric([state], s["offline_queue"][state])
        yield queue
        sagas = GaugeMetricFamily("parking_sagas", "Sagas by status", labels=["status"])
        for status, count in m["sagas"].items():
            sagas.add_metric([status], count)
        yield sagas
        yield self.latencies.family()
        yield GaugeMetricFamily("parking_healthy", "1 when /healthz is 200",
                                value=1 if s["healthy"] else 0)
        yield from _storage(s)
        yield from _counters(m)


def _storage(s: dict[str, Any]) -> Iterator[Metric]:
    storage = s.get("storage")
    if storage:
        used = GaugeMetricFamily("parking_storage_bytes", "Bytes on the data disk, by part",
                                 labels=["part"])
        for part in ("database", "wal", "images", "broker"):
            used.add_metric([part], storage["usage"][f"{part}_bytes"])
        yield used
        if storage["usage"]["disk_free_bytes"] is not None:
            yield GaugeMetricFamily("parking_disk_free_bytes", "Free bytes on the data disk",
                                    value=storage["usage"]["disk_free_bytes"])
    if "clock" in s:
        yield GaugeMetricFamily("parking_clock_synced", "1 when the wall clock is "
                                "synchronised", value=1 if s["clock"]["synced"] else 0)


def _counters(m: dict[str, Any]) -> Iterator[Metric]:
    """Totals since the daemon started (a restart starts them at 0, as Prometheus expects
    of counters)."""
    yield CounterMetricFamily("parking_offline_synced", "Queued records the sync delivered",
                              value=m["offline_sync"]["synced"])
    yield CounterMetricFamily("parking_saga_log_write_retries",
                              "Saga log writes that failed and were retried",
                              value=m["saga_log_write_retries"])
    yield GaugeMetricFamily("parking_sagas_being_recovered",
                            "Sagas a stop left in flight, not yet recovered",
                            value=m["sagas_being_recovered"])
    restarts = CounterMetricFamily("parking_task_restarts",
                                   "Restarts of each background task", labels=["task"])
    for name, count in m["task_restarts"].items():
        restarts.add_metric([name], count)
    yield restarts
    if m["mqtt"] is not None:
        for key, help_ in (("connects", "Connections the broker accepted"),
                           ("disconnects", "Accepted connections lost"),
                           ("reconnects", "Connection attempts after the first")):
            yield CounterMetricFamily(f"parking_mqtt_{key}", help_, value=m["mqtt"][key])
        refused = CounterMetricFamily("parking_mqtt_publishes_refused",
                                      "Publishes the broker refused, by reason",
                                      labels=["reason"])
        for reason, count in m["mqtt"]["refused"].items():
            refused.add_metric([reason], count)
        yield refused


def render(status: dict[str, Any], metrics: dict[str, Any], latencies: StageLatencies,
           recorded: Mapping[str, Sequence[dict[str, float]]],
           refused: Mapping[str, Sequence[dict[str, float]]] | None = None) -> bytes:
    """The text of one scrape; ``recorded``: each lane's recent stage latencies of the
    vehicles let through, ``refused``: of those decided without an open (frame, plate and
    decision only), folded into ``latencies`` (kept by the caller from one scrape to the
    next)."""
    for lane_id, records in recorded.items():
        latencies.fold(lane_id, records)
    for lane_id, records in (refused or {}).items():
        latencies.fold(lane_id, records, "refused")
    registry = CollectorRegistry()
    registry.register(_Snapshot(status, metrics, latencies))
    return bytes(generate_latest(registry))
