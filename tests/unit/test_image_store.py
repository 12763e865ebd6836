"""The image store (gateway/store/images.py) on real files: each image written whole under
its day, found only by the names the store wrote, bounded by size (the oldest go first) and
by age (by a synchronised clock only), found again after a restart with a half write gone,
a failing disk counted and never raised, and a writer that never blocks its caller. Also
the ``[images]`` section's validation. About 0.3 s in all."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gateway.clock import SystemClock
from gateway.core.errors import ConfigError
from gateway.settings import config_warnings, parse_settings
from gateway.store.images import INCOMING, ImageBounds, ImageStore, ImageWriter, open_images
from tests.e2e.daemon import until

DAY = 86400.0
T0 = 1_796_126_400.0  # 2026-12-01 12:00 UTC
SAGA = "0b7cf3a2-9d51-4c1e-8f0e-2a6d8e4c1b90"


def jpeg(n: int, fill: int = 0x11) -> bytes:
    return b"\xff\xd8" + bytes([fill]) * (n - 4) + b"\xff\xd9"


def store(root: Path, max_bytes: int = 1_000_000, max_age_days: float = 30, **kw) -> ImageStore:
    s = ImageStore(root, ImageBounds(max_bytes, max_age_days * DAY, **kw))
    s.scan()
    return s


def on_disk(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_an_image_is_written_whole_under_its_day_and_found_by_its_name_only(tmp_path):
    s = store(tmp_path / "images")
    body = jpeg(5000)
    got = s.save(SAGA, "crop", body, T0)
    assert got is not None
    assert on_disk(tmp_path / "images") == [f"20261201/{SAGA}-crop.jpg"]  # no temp file left
    assert got.path.read_bytes() == body and got.bytes == 5000
    assert got.path.stat().st_mtime == T0  # its age is the capture's wall time
    assert s.find(SAGA, "crop.jpg") == got
    assert s.find(SAGA, "frame.jpg") is None  # not written
    for saga, name in [(SAGA, "../crop.jpg"), (SAGA, f"../20261201/{SAGA}-crop.jpg"),
                       (SAGA, "crop.jpg/"), (SAGA, "crop.JPG"), (SAGA, "crop"), (SAGA, ""),
                       ("../" + SAGA, "crop.jpg"), (f"20261201/{SAGA}", "crop.jpg"),
                       (SAGA.upper(), "crop.jpg"), ("", "crop.jpg"), (".", "crop.jpg")]:
        assert s.find(saga, name) is None, (saga, name)
    # a file put there by hand, named as the store names them, is not one it wrote
    planted = tmp_path / "images" / "20261201" / "planted-crop.jpg"
    planted.write_bytes(body)
    assert s.find("planted", "crop.jpg") is None
    with pytest.raises(ValueError, match="not an image name"):
        s.save("../x", "crop", body, T0)


def test_beyond_max_bytes_the_oldest_go_first(tmp_path):
    root = tmp_path / "images"
    s = store(root, max_bytes=10_000)
    sagas = [f"saga-{i:02d}" for i in range(30)]
    for i, saga in enumerate(sagas):  # 30 kB over three days, 10 kB allowed
        s.save(saga, "frame", jpeg(1000), T0 + i * 0.1 * DAY)
        s.prune(T0 + i * 0.1 * DAY)
        assert s.usage()["bytes"] <= 10_000
    assert [e.saga_id for e in s._index.values()] == sagas[-10:]  # the newest ten
    assert on_disk(root) == [f"{'20261203' if i < 25 else '20261204'}/saga-{i}-frame.jpg"
                             for i in range(20, 30)]
    assert sorted(p.name for p in root.iterdir()) == ["20261203", "20261204"]  # days emptied
    u = s.usage()
    assert (u["files"], u["bytes"], u["pruned"], u["written"]) == (10, 10_000, 20, 30)
    assert u["oldest"] == "2026-12-03T12:00:00.000+00:00"  # saga-20
    # one image larger than the whole quota is not kept, and takes nothing with it
    assert s.save("huge", "frame", jpeg(10_001), T0 + 3 * DAY) is None
    assert s.usage()["too_big"] == 1 and s.usage()["files"] == 10


def test_beyond_max_age_files_go_by_a_synchronised_clock_only(tmp_path):
    s = store(tmp_path, max_age_days=2)
    for day in (0, 1, 2.5):
        s.save(f"day-{day * 10:02.0f}", "crop", jpeg(100), T0 + day * DAY)
    assert s.prune(None) == 0  # a clock that is not synchronised says nothing of age
    assert s.prune(T0 + 2.5 * DAY) == 1  # day 0 is 2.5 days old
    assert [e.saga_id for e in s._index.values()] == ["day-10", "day-25"]
    assert s.prune(T0 + 3.5 * DAY) == 1
    assert [e.saga_id for e in s._index.values()] == ["day-25"]
    assert not (tmp_path / "20261201").exists() and not (tmp_path / "20261202").exists()


def test_a_restart_finds_what_was_written_and_drops_a_half_write(tmp_path):
    first = store(tmp_path)
    first.save(SAGA, "crop", jpeg(300), T0)
    first.save(SAGA, "frame", jpeg(700), T0)
    first.save("older", "frame", jpeg(500), T0 - DAY)
    (tmp_path / INCOMING).write_bytes(b"\xff\xd8 half a JPEG")  # a power cut mid-write
    (tmp_path / "20261201" / "notes.txt").write_text("not ours")
    again = store(tmp_path, max_bytes=1000)  # the restart, with a smaller quota
    assert not (tmp_path / INCOMING).exists()
    assert {(e.saga_id, e.kind, e.bytes) for e in again._index.values()} == {
        (SAGA, "crop", 300), (SAGA, "frame", 700), ("older", "frame", 500)}
    assert again.find(SAGA, "frame.jpg") == first.find(SAGA, "frame.jpg")
    assert again.prune(None) == 1 and again.find("older", "frame.jpg") is None  # the oldest
    assert (tmp_path / "20261201" / "notes.txt").exists()  # what is not ours stays


def test_what_is_kept_and_what_a_viewer_without_the_token_may_see(tmp_path):
    crops = store(tmp_path / "a", keep="crops")
    assert crops.save(SAGA, "frame", jpeg(100), T0) is None
    assert crops.save(SAGA, "crop", jpeg(100), T0) is not None
    frames = store(tmp_path / "b", keep="frames")
    assert frames.save(SAGA, "crop", jpeg(100), T0) is None
    assert frames.save(SAGA, "frame", jpeg(100), T0) is not None
    rule = {public: (store(tmp_path / public, public=public).public("crop"),
                     store(tmp_path / public, public=public).public("frame"))
            for public in ("crops", "all", "none")}
    assert rule == {"crops": (True, False), "all": (True, True), "none": (False, False)}


def test_an_unwritable_directory_is_a_counted_fault_never_raised(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the images' directory should be")
    s = store(blocker / "images")  # the scan at start fails: the first failure
    assert s.save(SAGA, "crop", jpeg(100), T0) is None
    assert s.save(SAGA, "frame", jpeg(100), T0) is None
    u = s.usage()
    assert (u["write_failures"], u["files"], u["disk_full"]) == (3, 0, False)
    assert "NotADirectoryError" in u["last_error"]
    blocker.unlink()  # the fault mended: the next write works, without a restart
    assert s.save(SAGA, "crop", jpeg(100), T0) is not None
    assert s.usage()["last_error"] is None and s.usage()["write_failures"] == 3


@pytest.mark.privileged
def test_a_full_disk_is_a_counted_fault_and_leaves_no_half_file(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs here (run as root): {done.stderr.strip()}")
    try:
        s = store(mnt, max_bytes=10_000_000)
        assert s.save("fits", "crop", jpeg(20_000), T0) is not None
        assert s.save("too-much", "frame", jpeg(200_000), T0) is None
        u = s.usage()
        assert u["disk_full"] and u["write_failures"] == 1
        assert on_disk(mnt) == ["20261201/fits-crop.jpg"]  # no half JPEG, no temp file
        assert "No space left on device" in u["last_error"]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


async def test_the_writer_never_blocks_and_drops_beyond_its_bound(tmp_path):
    writer = ImageWriter(store(tmp_path), SystemClock(), max_pending=4)
    # not started yet: the queue fills and the fifth vehicle's images are dropped, counted
    took = [writer.submit(f"v{i}", {"crop": jpeg(100), "frame": jpeg(200)}, T0 + i)
            for i in range(5)]
    assert took == [True, True, True, True, False] and writer.dropped == 1
    writer.start()
    await until(lambda: writer.store.usage()["files"] == 8, 5, "the four vehicles' images")
    await writer.close()
    assert writer.usage()["dropped"] == 1 and writer.usage()["pending"] == 0
    assert not writer.submit("late", {"crop": jpeg(100)}, T0)  # closed: nothing queued


def test_the_images_section_is_validated_naming_the_key_and_the_fix(tmp_path):
    base = f'[gate]\ndata_dir = "{tmp_path}"\n'
    for text, expected in [
        ("[images]\nmax_mb = 0", "images.max_mb: expected a number > 0"),
        ('[images]\nkeep = "all"', "images.keep: expected one of 'crops' | 'frames' | 'both'"),
        ('[images]\npublic = "crop"', "images.public: expected one of 'crops' | 'all' | "
                                      "'none'"),
        ("[images]\nmax_age_days = 0", "images.max_age_days: expected an integer >= 1"),
        ('[images]\ndir = "images"', "images.dir: expected an absolute path, got 'images' "
                                     f"(or leave it out for {tmp_path}/images)"),
        (f'[images]\ndir = "{tmp_path}"', "images.dir: must not be gate.data_dir itself"),
        ("[images]\nmax_gb = 1", "images.max_gb: unknown key"),
    ]:
        with pytest.raises(ConfigError) as err:
            parse_settings(base + text)
        assert any(expected in p for p in err.value.problems), (text, err.value.problems)
    s = parse_settings(base)
    assert s.images_dir == tmp_path / "images" and s.images.public == "crops"
    assert not [w for w in config_warnings(s) if "images" in w]
    everyone = parse_settings(base + '[images]\npublic = "all"')
    assert any("images.public" in w and "without the admin token" in w
               for w in config_warnings(everyone))
    assert open_images(parse_settings(base + "[images]\nenabled = false"), SystemClock()) \
        is None
