"""The data disk in one place: bounds, what each part uses, and a nearly full disk said."""

from __future__ import annotations

from pathlib import Path

from gateway.settings import parse_settings
from gateway.telemetry.storage import bounds, problem, report, summary

MB = 1024 * 1024


def test_every_bound_and_the_usage_of_a_real_data_dir(tmp_path: Path):
    settings = parse_settings(f'[gate]\ndata_dir = "{tmp_path}"\n[images]\nmax_mb = 50\n'
                              '[store]\nevents_max_rows = 5000\n')
    (tmp_path / "gateway.sqlite3").write_bytes(b"x" * 3 * MB)
    (tmp_path / "gateway.sqlite3-wal").write_bytes(b"x" * MB)
    r = report(settings, images_bytes=7 * MB)
    assert r["bounds"]["events_max_rows"] == 5000
    assert r["bounds"]["images_max_bytes"] == 50 * MB
    assert r["usage"]["database_bytes"] == 3 * MB and r["usage"]["wal_bytes"] == MB
    assert r["usage"]["disk_free_bytes"] > 0
    assert r["summary"].startswith("database 4 MB, images 7 MB of 50 MB, ")
    assert r["summary"].endswith(" free")


def test_a_nearly_full_disk_is_a_problem_with_what_to_do():
    used = {"database_bytes": 0, "wal_bytes": 0, "images_bytes": 0,
            "disk_free_bytes": 150 * MB, "disk_total_bytes": 16_000 * MB}
    assert "nearly full (150 MB free of 16000 MB)" in problem(used)
    assert "max_mb" in problem(used)
    assert problem({**used, "disk_free_bytes": 4_000 * MB}) == ""
    assert "nearly full" in problem({**used, "disk_free_bytes": 700 * MB,
                                     "disk_total_bytes": 32_000 * MB})  # under 5 %
    no_images = bounds(parse_settings("[images]\nenabled = false\n"))
    assert no_images["images_max_bytes"] == 0
    assert "images" not in summary({**used, "disk_free_bytes": None}, no_images)
