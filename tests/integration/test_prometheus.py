"""``GET /metrics``: the stage latencies as Prometheus histograms (cumulative buckets, _sum,
_count per lane and stage) that agree with the vehicles the lanes let through, and only
grow from one scrape to the next."""

from __future__ import annotations

import asyncio
import tempfile
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import Gateway
from gateway.settings import parse_settings
from gateway.web.prometheus import StageLatencies, render
from tests.e2e.daemon import e2e_config

NAME = "parking_stage_latency_seconds"
BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # 5 ms to 10 s


async def _events(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    async for line in resp.content:
        if line.startswith(b"data: "):
            yield msgspec.json.decode(line[6:])


def _histograms(text: str) -> dict[tuple[str, str], dict[str, Any]]:
    """{(lane, stage): {"buckets": [(le, count)...], "sum": s, "count": n}} of /metrics."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != NAME:
            continue
        assert family.type == "histogram"
        for sample in family.samples:
            key = (sample.labels["lane"], sample.labels["stage"])
            h = out.setdefault(key, {"buckets": []})
            if sample.name.endswith("_bucket"):
                h["buckets"].append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_sum"):
                h["sum"] = sample.value
            elif sample.name.endswith("_count"):
                h["count"] = sample.value
    return out


def _expected(stages: list[dict[str, float]], stage: str) -> list[float]:
    return [s[stage] / 1000 for s in stages if stage in s]


async def test_metrics_has_stage_latency_histograms_per_lane_and_stage(sim_central):
    with tempfile.TemporaryDirectory(prefix="prometheus-") as d:
        gw = Gateway(parse_settings(e2e_config(Path(d), sim_central.url)))
        await gw.start()
        try:
            url = f"http://127.0.0.1:{gw.web_port}"
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
                opened: dict[str, list[dict[str, float]]] = {"entry-1": [], "exit-1": []}
                stream = await http.get(f"{url}/api/events/stream?after_seq=0")
                events = _events(stream)

                async def vehicles(lane: str, plates: list[str]) -> None:
                    """Each vehicle in turn, the next once the barrier opened for it."""
                    for plate in plates:
                        async with http.post(f"{url}/api/sim/lanes/{lane}/vehicles",
                                             json={"plate": plate}) as r:
                            assert r.status == 202
                        async with asyncio.timeout(20):
                            while True:
                                event = await anext(events)
                                if event["type"] == "barrier_opened" and \
                                        "total" in event["data"].get("stages_ms", {}):
                                    opened[event["lane_id"]].append(event["data"]["stages_ms"])
                                    if event["lane_id"] == lane:
                                        break

                await vehicles("entry-1", ["34ABC101", "34ABC102"])
                async with http.get(f"{url}/metrics") as r:
                    assert r.status == 200
                    first = _histograms(await r.text())
                await vehicles("entry-1", ["34ABC103"])
                await vehicles("exit-1", ["34ABC101"])
                async with http.get(f"{url}/metrics") as r:
                    text = await r.text()
                stream.close()
        finally:
            await gw.stop()
    assert "parking_stage_latency_ms" not in text  # no quantile gauges any more
    assert "parking_spaces" in text and "parking_healthy" in text  # the other gauges stay
    got = _histograms(text)
    assert len(opened["entry-1"]) == 3 and len(opened["exit-1"]) == 1
    for lane, stages in opened.items():
        for stage in ("frame", "decision", "relay", "total"):
            values = _expected(stages, stage)
            assert values, (lane, stage)
            h = got[(lane, stage)]
            les = [le for le, _ in h["buckets"]]
            assert les == [*BUCKETS_S, float("inf")]
            counts = [c for _, c in h["buckets"]]
            assert counts == [sum(v <= le for v in values) for le in les]  # cumulative
            assert h["count"] == len(values) == counts[-1]
            assert abs(h["sum"] - sum(values)) < 1e-6
    # the first scrape saw two entries; the second counts on from there
    assert first[("entry-1", "total")]["count"] == 2
    assert ("exit-1", "total") not in first


def test_counts_only_grow_when_the_lane_forgets_old_vehicles():
    """A lane keeps its last N vehicles: a scrape counts the ones recorded since the one
    before, even when the deque has dropped older ones in between."""
    recorded: deque[dict[str, float]] = deque(maxlen=3)
    latencies = StageLatencies()
    status = {"occupancy": {"free": 1, "allocated": 0, "out_of_service": 0}, "lanes": [],
              "services": {"central": {"circuit": "closed"}, "backup": {"circuit": "closed"},
                           "mqtt": {"connected": False}},
              "outbox": {"pending": 0}, "offline_queue": {"pending": 0, "dead": 0},
              "healthy": True}
    metrics = {"sagas": {}, "offline_sync": {"synced": 0}, "saga_log_write_retries": 0,
               "sagas_being_recovered": 0, "task_restarts": {}, "mqtt": None}

    def scrape() -> dict[str, Any]:
        text = render(status, metrics, latencies, {"entry-1": recorded}).decode()
        return _histograms(text).get(("entry-1", "total"), {"count": 0.0, "sum": 0.0})

    assert scrape()["count"] == 0
    for ms in (3.0, 40.0):
        recorded.append({"total": ms})
    assert scrape()["count"] == 2
    assert scrape()["count"] == 2  # nothing new: nothing added twice
    for ms in (300.0, 2000.0, 20_000.0):  # the deque drops 3 and 40 meanwhile
        recorded.append({"total": ms})
    h = scrape()
    assert h["count"] == 5 and abs(h["sum"] - 22.343) < 1e-9
    assert h["buckets"][-1] == (float("inf"), 5) and h["buckets"][-2] == (10.0, 4)
