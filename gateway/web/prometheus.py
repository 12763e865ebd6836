"""``GET /metrics``: the gateway's state in the Prometheus text format, built per scrape
from the same snapshots as the status page and the MQTT metrics (prometheus_client)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

CIRCUIT = {"closed": 0, "half_open": 1, "open": 2, "disabled": -1, "unknown": -1}


class _Snapshot:
    def __init__(self, status: dict[str, Any], metrics: dict[str, Any]) -> None:
        self.status, self.metrics = status, metrics

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
        latency = GaugeMetricFamily("parking_stage_latency_ms",
                                    "Loop-to-open stage latency (recent vehicles)",
                                    labels=["lane_stage", "quantile"])
        for key, summary in m["latency_ms"].items():
            for q in ("p50", "p99"):
                if q in summary:
                    latency.add_metric([key, q], summary[q])
        yield latency
        yield GaugeMetricFamily("parking_healthy", "1 when /healthz is 200",
                                value=1 if s["healthy"] else 0)
        yield from _counters(m)


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


def render(status: dict[str, Any], metrics: dict[str, Any]) -> bytes:
    registry = CollectorRegistry()
    registry.register(_Snapshot(status, metrics))
    return bytes(generate_latest(registry))
