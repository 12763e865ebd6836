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

import hashlib
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RULE = 1  # bumped when the kept characters change: older cuts are then made again
STEP_LIMIT_S = 120.0  # a Pi 3 takes ~10 s; beyond this the child is stuck
VERIFY_TOLERANCE = 1e-4  # float32 soft-max over 715 vs 18,710 classes: ~1e-7 here


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


def prepare(source: Path, cache_dir: Path | None, *, python: str = sys.executable,
            limit_s: float = STEP_LIMIT_S) -> Prepared:
    """The model to load: the cut one from ``cache_dir`` (made now in a child process if
    missing), else ``source`` with the reason. Never raises."""
    if cache_dir is None:
        return Prepared(source, "full model (no data directory to keep a cut one in)", False)
    try:
        dest = cache_path(source, cache_dir)
        made = ""
        if not dest.is_file():
            cache_dir.mkdir(parents=True, exist_ok=True)
            done = subprocess.run([python, "-m", "gateway.plates.slim_model", str(source),
                                   str(dest)], capture_output=True, text=True,
                                  timeout=limit_s, check=False)
            if done.returncode != 0 or not dest.is_file():
                why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])
                return Prepared(source, f"full model: cutting it to plate characters failed "
                                f"({why[-1][:300]})", False)
            made = ", made now"
        for stale in cache_dir.glob(f"{source.stem}.plates-*.onnx"):
            if stale != dest:  # the cut of a model (or a rule) no longer installed
                stale.unlink(missing_ok=True)
    except subprocess.TimeoutExpired:
        return Prepared(source, f"full model: cutting it took over {limit_s:.0f} s", False)
    except OSError as exc:
        return Prepared(source, f"full model: cannot keep a cut one in {cache_dir} "
                        f"({exc.strerror or exc})", False)
    return Prepared(dest, f"cut to plate characters ({dest.name}{made})", True)


def discard(prepared: Prepared) -> None:
    """A cut file that onnxruntime refused: removed, so the next start makes it again."""
    if prepared.slim:
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
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
            f.flush()
            os.fsync(f.fileno())
        verify(source, Path(tmp), keep)
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


def verify(source: Path, cut: Path, keep: list[int]) -> None:
    """The cut model's scores are the full model's over the kept classes, renormalised:
    on random crops (every class in play) and on a blank one (CTC's blank wins)."""
    import onnxruntime as ort  # type: ignore[import-untyped]

    def session(path: Path) -> Any:
        options = ort.SessionOptions()
        options.log_severity_level = 4
        return ort.InferenceSession(str(path), sess_options=options,
                                    providers=["CPUExecutionProvider"])

    full, slim = session(source), session(cut)
    rng = np.random.default_rng(RULE)
    crops = [rng.uniform(-1, 1, (1, 3, 48, 320)).astype(np.float32) for _ in range(2)]
    crops.append(np.ones((1, 3, 48, 320), np.float32))
    for x in crops:
        p = full.run(None, {full.get_inputs()[0].name: x})[0][0]
        q = slim.run(None, {slim.get_inputs()[0].name: x})[0][0]
        expected = p[:, keep] / p[:, keep].sum(axis=1, keepdims=True)
        if q.shape != expected.shape or not np.allclose(q, expected, atol=VERIFY_TOLERANCE):
            raise SlimError("the cut model's scores are not the full model's over the kept "
                            "classes")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
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
