"""What a SIGHUP takes and what it leaves for a restart (gateway/core/reload.py)."""

from __future__ import annotations

from pathlib import Path

from gateway.core.reload import plan
from gateway.settings import parse_settings
from tests.e2e.daemon import e2e_config

TEXT = e2e_config(Path("/nonexistent/data"), "http://127.0.0.1:9")


def test_no_change_is_no_change():
    p = plan(parse_settings(TEXT), parse_settings(TEXT))
    assert p.applied == [] and p.needs_restart == []


def test_reloadable_keys_are_taken_and_the_rest_is_kept_and_named():
    old = parse_settings(TEXT)
    new = parse_settings(TEXT.replace('base_urls = ["http://127.0.0.1:9"]',
                                      'base_urls = ["http://127.0.0.1:10"]\n'
                                      'retry_count = 4')
                         .replace("passage_timeout_s = 1.0", "passage_timeout_s = 2.0")
                         .replace("debounce_s = 0.01", "debounce_s = 0.02")
                         .replace('id = "e2e-gate"', 'id = "other-gate"')
                         + '[cache]\nmax_stale_s = 60.0\n[permits]\nsync = false\n'
                           'sync_interval_s = 60.0\n')
    p = plan(old, new)
    assert p.applied == ["cache.max_stale_s", "central.retry_count",
                         "lanes[0].timings.passage_timeout_s",
                         "lanes[1].timings.passage_timeout_s", "permits.sync_interval_s"]
    assert p.needs_restart == ["central.base_urls", "gate.id",
                               "lanes[0].timings.debounce_s", "lanes[1].timings.debounce_s",
                               "permits.sync"]
    s = p.settings
    assert s.central.retry_count == 4 and s.cache.max_stale_s == 60.0
    assert s.permits.sync_interval_s == 60.0
    assert s.lanes[0].timings.passage_timeout_s == 2.0
    # what needs a restart keeps its running value
    assert s.central.base_urls == ["http://127.0.0.1:9"] and s.gate.id == "e2e-gate"
    assert s.lanes[0].timings.debounce_s == 0.01 and s.permits.sync is True


def test_a_lane_added_or_removed_needs_a_restart():
    old = parse_settings(TEXT)
    new = parse_settings(TEXT.replace('id = "exit-1"', 'id = "exit-2"'))
    p = plan(old, new)
    assert p.applied == [] and "lanes[1].id" in p.needs_restart
    assert [lane.id for lane in p.settings.lanes] == ["entry-1", "exit-1"]
