"""The recogniser cut down to the characters a plate can show, made once from the shipped one.

PP-OCR's recogniser classifies every step of a crop into 18,710 classes (blank, 18,708
characters, space), almost all of them CJK ideographs no plate carries: its last layer, a
120 x 18,710 matrix, is 9 of the model's 21 MB, and each read computes and soft-maxes a
row of 18,710 per step. A gate keeps the classes below U+0530 (ASCII, the Latin
supplements and extensions, IPA, Greek, Cyrillic) and the general punctuation: 715 of
them. The reader's memory falls by about 8 MB loaded and more while reading
(``bench/plate_reading.py``, ``bench/footprint.py`` print both, full and cut, side by side).

Only the last layer changes: the same columns of its weights and bias, in the same order,
and the character list in the model's metadata names the kept ones. So each step's scores
over the kept classes are the full model's, renormalised over fewer: a step whose best
class was kept picks the same one. A step whose best class was an ideograph (never part of
a plate: the formats take letters and digits) now picks the best kept class instead.
``make`` checks exactly this on its own output, on random and on blank crops, before the
file is kept, so a wrong cut is never used.

The cut needs the ``onnx`` package, and the daemon never imports it: ``prepare`` runs this
module in a child process (``python -m gateway.plates.slim_model SOURCE DEST``) on the first
start after an install or an upgrade of the model, and keeps the result in the gate's data
directory under a name holding the source's SHA-256, so a changed model is cut again and the
file is never used with the wrong source. Written to a temporary file, flushed and renamed:
a power cut leaves either no file or a whole one. If anything fails, the reader loads the
full model and says why; it never goes without a reader because of this.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
# bumped when the kept characters or the cut change: older cuts are then made again
RULE = 1
STEP_LIMIT_S = 120.0  # a Pi 3 takes ~10 s; beyond this the child is stuck
RETRY_AFTER_S = 86_400.0  # a failed cut is tried again a day later (or at once, mark removed)
# the log of every kept class's score, cut vs full renormalised: ~1e-6 apart here; two
# classes' columns swapped are orders of magnitude apart
VERIFY_LOG_TOLERANCE = 1e-3
PR_SET_PDEATHSIG = 1


class SlimError(Exception):
    """The model could not be cut (its graph is not the expected one, or the check failed)."""


@dataclass(frozen=True)
class Prepared:
    path: Path  # the model to load
    note: str  # what was loaded and why, for the log and the status
    slim: bool


def plate_character(c: str) -> bool:
    """Whether a recogniser class is kept: the scripts a number plate is written in."""
    o = ord(c)
    return o < 0x0530 or 0x2000 <= o <= 0x206F


def kept_classes(characters: list[str]) -> list[int]:
    """Class indices kept, in order: the blank (0), each plate character (1 + its line),
    and the space (the last class)."""
    return [0, *(i + 1 for i, c in enumerate(characters) if plate_character(c)),
            len(characters) + 1]


def cache_path(source: Path, cache_dir: Path) -> Path:
    with source.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return cache_dir / f"{source.stem}.plates-r{RULE}-{digest[:16]}.onnx"


def _failure_mark(dest: Path) -> Path:
    return dest.with_suffix(".failed")


def _sweep(source: Path, cache_dir: Path, keep: Path, limit_s: float) -> None:
    """Cuts of a model (or a rule) no longer installed, failure marks of those, and
    temporaries a killed child left (older than a cut may take: not a running one's)."""
    now = time.time()
    for path in cache_dir.glob(f"{source.stem}.plates-*"):
        if path not in (keep, _failure_mark(keep)):
            path.unlink(missing_ok=True)
    for path in cache_dir.glob(f".{source.stem}.plates-*"):
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime > 2 * limit_s:
                path.unlink()


def prepare(source: Path, cache_dir: Path | None, *, python: str = sys.executable,
            limit_s: float = STEP_LIMIT_S, stop: threading.Event | None = None) -> Prepared:
    """The model to load: the cut one from ``cache_dir`` (made now in a child process if
    missing), else ``source`` with the reason. A failed cut is not tried again at every
    start: its mark (``*.failed``, the reason inside) holds it off ``RETRY_AFTER_S``.
    ``stop`` set: the child is killed (the daemon is stopping). Never raises."""
    if cache_dir is None:
        return Prepared(source, "full model (no data directory to keep a cut one in)", False)
    try:
        dest = cache_path(source, cache_dir)
        mark = _failure_mark(dest)
        made = ""
        if not dest.is_file():
            cache_dir.mkdir(parents=True, exist_ok=True)
            _sweep(source, cache_dir, dest, limit_s)
            if mark.is_file() and time.time() - mark.stat().st_mtime < RETRY_AFTER_S:
                return Prepared(source, f"full model: the cut failed earlier "
                                f"({mark.read_text()[:300]}); tried again a day after, or "
                                f"when {mark} is removed", False)
            log.info("cutting the plate recogniser to plate characters (once after an "
                     "install or a model upgrade) into %s", cache_dir)
            why = _run_cut(python, source, dest, limit_s, stop)
            if why:
                if stop is None or not stop.is_set():
                    _write_mark(mark, why)
                return Prepared(source, f"full model: {why}", False)
            mark.unlink(missing_ok=True)
            made = ", made now"
        _sweep(source, cache_dir, dest, limit_s)
    except OSError as exc:
        return Prepared(source, f"full model: cannot keep a cut one in {cache_dir} "
                        f"({exc.strerror or exc})", False)
    return Prepared(dest, f"cut to plate characters ({dest.name}{made})", True)


def _run_cut(python: str, source: Path, dest: Path, limit_s: float,
             stop: threading.Event | None) -> str:
    """Run the cut in a child; "" when ``dest`` was made, else why not."""
    with subprocess.Popen([python, "-m", "gateway.plates.slim_model", str(source),
                           str(dest)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True) as child:
        deadline = time.monotonic() + limit_s
        while True:
            try:
                _, err = child.communicate(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if (stop is not None and stop.is_set()) or time.monotonic() > deadline:
                    child.kill()
                    child.communicate()
                    return ("cutting it was abandoned: the reader closed" if stop is not None
                            and stop.is_set() else f"cutting it took over {limit_s:g} s")
    if child.returncode != 0 or not dest.is_file():
        lines = err.strip().splitlines() or [f"exit status {child.returncode}"]
        return f"cutting it to plate characters failed ({lines[-1][:300]})"
    return ""


def _write_mark(mark: Path, why: str) -> None:
    with contextlib.suppress(OSError):
        mark.write_text(why)


def _die_with_parent() -> None:
    """In the child: a SIGTERM when the thread that started it ends (the daemon killed),
    instead of cutting on for nobody. Set here, not between fork and exec (a
    ``preexec_fn`` is unsafe in a process with threads)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:
        sys.exit(1)  # the parent was gone before the signal was asked for


def discard(prepared: Prepared) -> None:
    """A cut file that onnxruntime refused: removed, so the next start makes it again."""
    if prepared.slim:
        with contextlib.suppress(OSError):  # a read-only card: the full model loads anyway
            prepared.path.unlink(missing_ok=True)


# --- the cut itself (child process only: it imports onnx) ---------------------------------

def _classifier(model: Any) -> tuple[Any, Any, Any]:
    """The last layer, found by the graph's shape, not by names: output = Softmax(Add(
    MatMul(x, W), b)) with W and b initialisers. Returns (W, b, the output value info)."""
    graph = model.graph
    if len(graph.output) != 1:
        raise SlimError(f"expected one output, the model has {len(graph.output)}")
    producer = {out: node for node in graph.node for out in node.output}
    inits = {t.name: t for t in graph.initializer}

    def node_of(name: str, op: str) -> Any:
        node = producer.get(name)
        while node is not None and node.op_type == "Identity":
            node = producer.get(node.input[0])
        if node is None or node.op_type != op:
            raise SlimError(f"expected {op} before {name!r}, found "
                            f"{node.op_type if node else 'nothing'}")
        return node

    softmax = node_of(graph.output[0].name, "Softmax")
    add = node_of(softmax.input[0], "Add")
    bias = next((inits[i] for i in add.input if i in inits), None)
    matmul = node_of(next(i for i in add.input if i not in inits), "MatMul")
    weight = inits.get(matmul.input[1])
    if bias is None or weight is None:
        raise SlimError("the classifier's weight or bias is not a constant")
    return weight, bias, graph.output[0]


def make(source: Path, dest: Path) -> int:
    """Cut ``source`` into ``dest`` (atomically), checked. Returns the classes kept."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    meta = {p.key: p for p in model.metadata_props}
    if "character" not in meta:
        raise SlimError(f"{source} carries no character list")
    characters = meta["character"].value.splitlines()
    weight, bias, output = _classifier(model)
    n = len(characters) + 2
    w, b = numpy_helper.to_array(weight), numpy_helper.to_array(bias)
    if w.ndim != 2 or w.shape[1] != n or b.shape != (n,):
        raise SlimError(f"classifier of shape {w.shape} + {b.shape} does not match "
                        f"{len(characters)} characters + blank + space")
    keep = kept_classes(characters)
    weight.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w[:, keep]), weight.name))
    bias.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(b[keep]), bias.name))
    dims = output.type.tensor_type.shape.dim
    if dims and dims[-1].HasField("dim_value"):
        dims[-1].dim_value = len(keep)
    meta["character"].value = "\n".join(characters[i - 1] for i in keep[1:-1])
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    verify(source, data, keep)  # before anything is written: a killed child leaves nothing
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o644)  # as the database beside it (mkstemp makes 0600)
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return len(keep)


def verify(source: Path, cut: Path | bytes, keep: list[int]) -> None:
    """The cut model's scores are the full model's over the kept classes, renormalised,
    compared as logarithms (so the classes scored 1e-10 count as much as the winners: a
    swap of two columns shows), on random crops and a blank one; and its character list
    names one class per score, as a reader decodes it."""
    import onnxruntime as ort  # type: ignore[import-untyped]

    def session(model: Path | bytes) -> Any:
        options = ort.SessionOptions()
        options.log_severity_level = 4
        options.intra_op_num_threads = 1  # a background job: the lanes run meanwhile
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model),
                                    sess_options=options, providers=["CPUExecutionProvider"])

    full, slim = session(source), session(cut)
    listed = slim.get_modelmeta().custom_metadata_map.get("character", "").splitlines()
    if len(listed) + 2 != len(keep):
        raise SlimError(f"the cut model lists {len(listed)} characters for {len(keep)} "
                        "classes")
    rng = np.random.default_rng(RULE)
    crops = [rng.uniform(-1, 1, (1, 3, 48, 320)).astype(np.float32) for _ in range(2)]
    crops.append(np.ones((1, 3, 48, 320), np.float32))
    for x in crops:
        p = full.run(None, {full.get_inputs()[0].name: x})[0][0].astype(np.float64)
        q = slim.run(None, {slim.get_inputs()[0].name: x})[0][0].astype(np.float64)
        expected = p[:, keep] / p[:, keep].sum(axis=1, keepdims=True)
        if q.shape != expected.shape:
            raise SlimError(f"the cut model scores {q.shape[-1]} classes, not {len(keep)}")
        scored = expected > 1e-30  # float32 soft-max underflows below ~1e-38
        if not (np.allclose(np.log(q[scored]), np.log(expected[scored]),
                            atol=VERIFY_LOG_TOLERANCE) and (q[~scored] < 1e-25).all()):
            raise SlimError("the cut model's scores are not the full model's over the kept "
                            "classes")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    # a stop (SIGTERM) unwinds like an error: nothing half-made is left
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    _die_with_parent()
    with contextlib.suppress(OSError):
        os.nice(10)  # behind the lanes' work for the core
    if len(args) != 2:
        print("usage: python -m gateway.plates.slim_model SOURCE.onnx DEST.onnx",
              file=sys.stderr)
        return 2
    try:
        kept = make(Path(args[0]), Path(args[1]))
    except Exception as exc:  # one line for the parent's note, whatever went wrong
        print(f"cannot cut {args[0]}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"{args[1]}: {kept} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
