"""The recogniser cut to plate characters: what it keeps, that it reads as the full one,
that it is made once and kept, and that every failure leaves the gate on the full model."""

from __future__ import annotations

import errno
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from gateway.plates.engine import REC_MODEL, OnnxRecogniser, RapidEngine, packaged_model_dir
from gateway.plates.slim_model import SlimError, kept_classes, prepare, verify
from tests.plates.make_scenes import plate_crops

SOURCE = packaged_model_dir() / REC_MODEL


def characters(path: Path) -> list[str]:
    model = onnx.load(str(path), load_external_data=False)
    return str({p.key: p.value for p in model.metadata_props}["character"]).splitlines()


def test_the_cut_keeps_every_plate_character_and_no_ideograph(model_cache: Path) -> None:
    made = prepare(SOURCE, model_cache)
    assert made.slim, made.note
    kept = characters(made.path)
    for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcxyz-.·:ÄÖÜÇŞĞİ":
        assert c in kept, c
    full = characters(SOURCE)
    assert len(full) == 18_708 and len(kept) == 713  # + blank + space: 715 classes
    assert all(ord(c) < 0x0530 or 0x2000 <= ord(c) <= 0x206F for c in kept)
    assert "中" in full and "中" not in kept
    # in the full model's order: a class's neighbours are unchanged
    assert kept == [c for c in full if c in set(kept)]
    assert made.path.stat().st_size < SOURCE.stat().st_size * 0.65


def test_it_reads_every_crop_as_the_full_model_does(model_cache: Path) -> None:
    full = OnnxRecogniser(SOURCE, threads=2)
    cut = OnnxRecogniser(prepare(SOURCE, model_cache).path, threads=2)
    found = plate_crops(seed=5, vehicles=3)
    assert len(found) >= 15
    want, got = full(found), cut(found)
    assert [t for t, _ in got] == [t for t, _ in want]
    assert any(len(t) >= 6 for t, _ in got)
    # the same steps kept, each scored over fewer classes: never lower
    assert all(b >= a - 1e-4 for (_, a), (_, b) in zip(want, got, strict=True))


def test_the_check_refuses_a_wrong_cut(tmp_path: Path, model_cache: Path) -> None:
    made = prepare(SOURCE, model_cache)
    keep = kept_classes(characters(SOURCE))
    verify(SOURCE, made.path, keep)  # the right columns pass
    shifted = [keep[0], *(i + 1 for i in keep[1:-1]), keep[-1]]  # every character one off
    with pytest.raises(SlimError, match="not the full model's"):
        verify(SOURCE, made.path, shifted)
    # two look-alike letters swapped: classes that random crops score at ~1e-10, which
    # an absolute tolerance on the scores let through
    chars = characters(SOURCE)
    o, d = keep.index(chars.index("O") + 1), keep.index(chars.index("D") + 1)
    swapped = list(keep)
    swapped[o], swapped[d] = swapped[d], swapped[o]
    with pytest.raises(SlimError, match="not the full model's"):
        verify(SOURCE, made.path, swapped)
    with pytest.raises(SlimError, match="lists 713 characters for 714 classes"):
        verify(SOURCE, made.path, keep[:-1])


def test_it_is_made_once_then_taken_from_the_data_directory(tmp_path: Path) -> None:
    cache = tmp_path / "models"
    first = prepare(SOURCE, cache)
    assert first.slim and "made now" in first.note and first.path.parent == cache
    assert SOURCE.stem in first.path.name
    stamp = first.path.stat().st_mtime_ns
    # a second start spawns nothing: a python that cannot run would fail it
    again = prepare(SOURCE, cache, python="/nonexistent/python")
    assert again.slim and again.path == first.path and "made now" not in again.note
    assert first.path.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in cache.iterdir()) == [first.path.name]  # no temporary left
    assert first.path.stat().st_mode & 0o777 == 0o644  # as the database beside it


def test_a_changed_model_is_cut_again_and_the_old_cut_removed(tmp_path: Path,
                                                              model_cache: Path) -> None:
    source = tmp_path / "src" / REC_MODEL
    source.parent.mkdir()
    shutil.copy(SOURCE, source)
    cache = tmp_path / "models"
    old = prepare(source, cache)
    # an upgrade replaces the model with another (here: the cut one, itself a valid model)
    shutil.copy(prepare(SOURCE, model_cache).path, source)
    new = prepare(source, cache)
    assert new.slim and new.path != old.path and not old.path.exists()
    assert sorted(p.name for p in cache.iterdir()) == [new.path.name]


def test_a_failed_cut_leaves_the_full_model_and_says_why(tmp_path: Path) -> None:
    cache = tmp_path / "models"
    failed = prepare(SOURCE, cache, python="/bin/false")
    assert not failed.slim and failed.path == SOURCE
    assert "cutting it to plate characters failed" in failed.note
    (mark,) = cache.iterdir()  # the reason, kept: not tried again at every start
    assert mark.suffix == ".failed" and "exit status 1" in mark.read_text()
    held = prepare(SOURCE, cache)  # a working python, but within the day: not tried
    assert not held.slim and "failed earlier" in held.note and str(mark) in held.note
    mark.unlink()  # what the note says to do
    assert prepare(SOURCE, cache).slim
    assert not mark.exists()
    # a model whose graph is not a recogniser's is refused by the child with its reason
    det = packaged_model_dir() / "PP-OCRv6_det_small.onnx"
    refused = prepare(det, cache)
    assert not refused.slim and "carries no character list" in refused.note
    # nowhere to keep it: a file where the directory should be
    (tmp_path / "file").write_text("")
    nowhere = prepare(SOURCE, tmp_path / "file")
    assert not nowhere.slim and "cannot keep a cut one" in nowhere.note
    assert prepare(SOURCE, None).path == SOURCE


def test_a_hung_cut_is_given_up(tmp_path: Path) -> None:
    hang = tmp_path / "hang"
    hang.write_text("#!/bin/sh\nexec sleep 30\n")
    hang.chmod(0o755)
    given_up = prepare(SOURCE, tmp_path / "models", python=str(hang), limit_s=0.5)
    assert not given_up.slim and "took over 0.5 s" in given_up.note
    # the reader closing (the daemon stopping) ends a cut at once, and marks no failure
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    cache = tmp_path / "stopped"
    stopped = prepare(SOURCE, cache, python=str(hang), stop=stop)
    assert not stopped.slim and "abandoned" in stopped.note
    assert list(cache.iterdir()) == []


def test_what_a_killed_child_left_is_swept_but_not_a_running_ones(tmp_path: Path) -> None:
    cache = tmp_path / "models"
    cache.mkdir()
    left = cache / f".{SOURCE.stem}.plates-r1-0123456789abcdef.onnx.x1"  # a power cut's
    left.write_bytes(b"half a model")
    os.utime(left, (time.time() - 3600, time.time() - 3600))
    running = cache / f".{SOURCE.stem}.plates-r1-0123456789abcdef.onnx.x2"  # just begun
    running.write_bytes(b"being written")
    assert prepare(SOURCE, cache).slim
    assert not left.exists() and running.exists()


def test_a_damaged_cut_file_is_replaced_by_the_full_model_then_made_again(
        tmp_path: Path) -> None:
    cache = tmp_path / "models"
    made = prepare(SOURCE, cache)
    made.path.write_bytes(b"not a model")  # a disk error; a rename never leaves half a file
    engine = RapidEngine(packaged_model_dir(), threads=1, detector=False, cache_dir=cache)
    assert not engine.model.slim and "did not load: InvalidProtobuf" in engine.model.note
    assert engine.recognise([np.full((48, 160, 3), 255, np.uint8)]) == [("", 0.0)]
    assert not made.path.exists()  # removed: the next start cuts it again
    again = RapidEngine(packaged_model_dir(), threads=1, detector=False, cache_dir=cache)
    assert again.model.slim and "made now" in again.model.note


def test_a_read_only_card_still_gets_the_full_model(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # a card the kernel remounted read-only after errors: the damaged cut cannot go
    cache = tmp_path / "models"
    made = prepare(SOURCE, cache)
    made.path.write_bytes(b"not a model")

    def read_only(self: Path, missing_ok: bool = False) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "unlink", read_only)
    engine = RapidEngine(packaged_model_dir(), threads=1, detector=False, cache_dir=cache)
    assert not engine.model.slim and engine.recognise([np.full((48, 160, 3), 255,
                                                               np.uint8)]) == [("", 0.0)]


def test_the_cut_runs_in_a_child_the_daemon_never_imports_onnx(tmp_path: Path) -> None:
    import subprocess

    code = ("import sys\nfrom pathlib import Path\n"
            "from gateway.plates.engine import RapidEngine, packaged_model_dir\n"
            f"e = RapidEngine(packaged_model_dir(), 1, detector=False,\n"
            f"                cache_dir=Path({str(tmp_path)!r}))\n"
            "assert e.model.slim, e.model.note\n"
            "assert 'onnx' not in sys.modules, 'the daemon imported onnx'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
