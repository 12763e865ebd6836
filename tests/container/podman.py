"""Podman for the container tests: what this machine needs to build and run the image, and
the image built once for the module (the base by mmdebstrap, cached by its name).

Nothing here is skipped quietly: a machine without a working podman fails the test with
the reason (`make test-container` installs podman, mmdebstrap and runc on Debian; CI runs
the test only where `podman info` works and prints why otherwise)."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BASE = "localhost/gateway-base:bookworm"
IMAGE_TAG = "test"
IMAGE = f"localhost/parking-gateway:{IMAGE_TAG}"
CACHE = Path(tempfile.gettempdir()) / "parking-gateway-container"
# a machine whose cgroups are hybrid (v1 plus a v2 holding a controller) gets "cgroups in
# hybrid mode not supported" from crun, and one without CAP_SYS_RESOURCE cannot take
# podman's default ulimits: runc with ulimits it may set starts containers there
FALLBACK_CONF = """[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[engine]
runtime = "runc"
"""
# what the build context holds (as .dockerignore lets in, plus the files the tests use)
CONTEXT = ["Dockerfile", ".dockerignore", "compose.yaml", "pyproject.toml",
           "requirements.txt", "requirements.lock", "gateway", "hardware", "container"]


@dataclass
class Podman:
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    how: list[str] = field(default_factory=list)  # what was chosen and why, printed
    figures: dict[str, float] = field(default_factory=dict)
    context: Path = REPO

    def run(self, *args: str, check: bool = True, timeout: float = 120,
            input_: bytes | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["podman", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False,
                              input=None if input_ is None else input_.decode())
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: exit {done.returncode}\n"
                                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def say(self, line: str) -> None:
        self.how.append(line)
        print(f"[container] {line}", file=sys.stderr, flush=True)


def podman_problem() -> str | None:
    """Why podman cannot be used here, or None."""
    for tool in ("podman", "mmdebstrap"):
        if shutil.which(tool) is None:
            return (f"{tool} is not installed (Debian: apt-get install podman mmdebstrap "
                    "runc; `make test-container` does it)")
    try:
        info = subprocess.run(["podman", "info"], capture_output=True, text=True,
                              timeout=60, check=False)
    except subprocess.TimeoutExpired:
        return "`podman info` did not answer within 60 s"
    if info.returncode != 0:
        return f"`podman info` fails: {info.stderr.strip()[-500:]}"
    return None


def ensure_base(p: Podman) -> None:
    """The base image, made by container/make-base.sh unless it exists (cached by name)."""
    if p.run("image", "exists", BASE, check=False).returncode == 0:
        p.say(f"base {BASE}: cached (podman rmi {BASE} to make it again)")
        return
    started = time.monotonic()
    made = subprocess.run([str(REPO / "container" / "make-base.sh"), BASE], env=p.env,
                          capture_output=True, text=True, timeout=1200, check=False)
    assert made.returncode == 0, f"make-base.sh failed:\n{made.stderr[-4000:]}"
    p.figures["base_s"] = time.monotonic() - started
    p.say(f"base {BASE}: made by mmdebstrap in {p.figures['base_s']:.0f} s")


def choose_runtime(p: Podman, workdir: Path) -> None:
    """Podman's defaults if they start a container here, else runc with explicit ulimits
    (said, with the default's error)."""
    probe = p.run("run", "--rm", "--network", "none", BASE, "true", check=False)
    if probe.returncode == 0:
        p.say("runtime: podman's defaults start containers")
        return
    first = probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else "?"
    assert shutil.which("runc"), (
        f"podman cannot start a container ({first}) and runc is not installed "
        "(apt-get install runc)")
    conf = workdir / "containers.conf"
    conf.write_text(FALLBACK_CONF)
    p.env["CONTAINERS_CONF"] = str(conf)
    again = p.run("run", "--rm", "--network", "none", BASE, "true", check=False)
    assert again.returncode == 0, (f"podman cannot start a container: {first}; with runc: "
                                   f"{again.stderr.strip()}")
    p.say(f"runtime: the default cannot start a container here ({first}); "
          "using runc with nofile/nproc ulimits of 4096 (CONTAINERS_CONF)")


def build_reaches_pypi(p: Podman) -> bool:
    """Whether a build container reaches PyPI over TLS (pip inside the build)."""
    probe = p.run("run", "--rm", BASE, "python3", "-c",
                  "import urllib.request; "
                  "urllib.request.urlopen('https://pypi.org/simple/pip/', timeout=10)",
                  check=False, timeout=60)
    if probe.returncode != 0:
        why = probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else "?"
        p.say(f"build network: a container does not reach PyPI ({why[:200]}); "
              "the image is built from a wheelhouse made on this host with pip download")
        return False
    p.say("build network: a container reaches PyPI; pip installs inside the build")
    return True


def wheelhouse() -> Path:
    """The requirements' wheels (and setuptools, the build backend), downloaded by this
    host's pip once per requirements.txt."""
    lock = REPO / "requirements.lock"  # as the Dockerfile: the lock where there is one
    requirements = lock if lock.exists() else REPO / "requirements.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]
    target = CACHE / f"wheels-{digest}"
    if (target / ".complete").exists():
        return target
    for old in CACHE.glob("wheels-*"):  # those of earlier requirements
        shutil.rmtree(old, ignore_errors=True)
    target.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip", "download", "-q", "-d", str(target)]
    subprocess.run([*pip, "-r", str(requirements)], check=True, timeout=900)
    # the build backend, for the gateway's own wheel (apart: the lock has hashes)
    subprocess.run([*pip, "setuptools>=68"], check=True, timeout=300)
    (target / ".complete").touch()
    return target


def make_context(into: Path, wheels: Path | None) -> Path:
    """A copy of the build context under the temporary directory (with the wheelhouse in
    container/wheels when there is one), so that nothing is written into the repository."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    into.mkdir(parents=True)
    for name in CONTEXT:
        source = REPO / name
        if not source.exists():  # requirements.lock, before the repository has one
            continue
        if source.is_dir():
            shutil.copytree(source, into / name, ignore=ignore)
        else:
            shutil.copy2(source, into / name)
    target = into / "container" / "wheels"
    target.mkdir(exist_ok=True)
    if wheels is not None:
        for wheel in wheels.glob("*.whl"):
            try:
                os.link(wheel, target / wheel.name)
            except OSError:
                shutil.copy2(wheel, target / wheel.name)
    return into


def build_image(p: Podman, workdir: Path) -> None:
    wheels = None if build_reaches_pypi(p) else wheelhouse()
    p.context = make_context(workdir / "context", wheels)
    started = time.monotonic()
    p.run("build", "--format", "docker", "--build-arg", f"BASE={BASE}", "-t", IMAGE,
          str(p.context), timeout=1800)
    p.figures["build_s"] = time.monotonic() - started
    p.say(f"image {IMAGE}: built in {p.figures['build_s']:.0f} s "
          "(cached layers are reused between runs)")


def prepared(workdir: Path) -> Podman:
    problem = podman_problem()
    if problem is not None:
        pytest.fail(f"the container test needs podman: {problem}", pytrace=False)
    p = Podman()
    ensure_base(p)
    choose_runtime(p, workdir)
    build_image(p, workdir)
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
