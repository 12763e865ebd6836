"""Releases: one virtual environment per version, beside each other, and the symlinks.

A release is built in place (a venv cannot be moved: its scripts name their interpreter by
path) and counts only once its ``release.json`` is written, last; a half-built one (a power
cut, a failed download) is removed by the next install. ``current`` and ``previous`` are
relative symlinks switched atomically: a new link under a temporary name, then
``rename(2)`` over the old one, so the unit always finds one release or the other.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from gateway.install.layout import UNIT_NAME, InstallError, Layout
from gateway.install.system import System

RELEASE_FILE = "release.json"
# -I: the release's own packages, never those of the folder the installer runs in
_SCHEMA_PROBE = "from gateway.store.schema import LATEST_VERSION; print(LATEST_VERSION)"


@dataclass(frozen=True)
class Release:
    name: str  # the folder under releases/: the version, or version-<sha> for a rebuild
    version: str
    schema: int  # the newest database schema version this release knows
    wheel: str
    sha256: str
    installed_at: str

    def path(self, layout: Layout) -> Path:
        return layout.releases / self.name

    def command(self, layout: Layout) -> Path:
        return self.path(layout) / "bin" / "parking-gateway"


@dataclass(frozen=True)
class BuildOptions:
    lock: Path | None  # requirements with hashes; None: the wheel's own ranges
    reuse_deps: Path | None  # a site-packages whose packages the release uses (tests)


def load(layout: Layout, name: str) -> Release | None:
    try:
        data = json.loads((layout.releases / name / RELEASE_FILE).read_text())
        return Release(**data)
    except (OSError, ValueError, TypeError):
        return None


def linked(layout: Layout, link: Path) -> Release | None:
    """The release ``current`` or ``previous`` points at (None: no link, or a dangling one)."""
    if not link.is_symlink():
        return None
    return load(layout, Path(os.readlink(link)).name)


def every(layout: Layout) -> list[Release]:
    if not layout.releases.is_dir():
        return []
    found = [r for p in layout.releases.iterdir() if (r := load(layout, p.name))]
    return sorted(found, key=lambda r: r.installed_at)


def switch(link: Path, release: Release | None) -> None:
    """Point ``link`` at ``release`` (or remove it) in one ``rename``."""
    if release is None:
        link.unlink(missing_ok=True)
        return
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(f"releases/{release.name}", tmp)
    os.replace(tmp, link)
    fd = os.open(link.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def build_wheel(source: Path, system: System, *, isolated: bool = True) -> Path:
    """``pip wheel --no-deps`` of a checkout, into a temporary folder. The system's Python
    often has no pip (Debian ships it apart): then a throw-away venv's pip builds it."""
    out = Path(tempfile.mkdtemp(prefix="parking-gateway-wheel-"))
    system.say(f"==> building the wheel from {source}")
    python = Path(sys.executable)
    if importlib.util.find_spec("pip") is None:
        system.run([python, "-m", "venv", out / "build-venv"])
        python = out / "build-venv" / "bin" / "python"
    cmd = [str(python), "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out),
           str(source.resolve())]
    if not isolated:
        cmd.insert(5, "--no-build-isolation")
    # reproducible: the same checkout gives the same wheel (the same sha256), so running the
    # install again finds the release already there instead of upgrading to a copy of it
    env = {**os.environ, "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "315532800")}
    try:
        system.run(cmd, env=env, quiet=True)
    except InstallError:
        shutil.rmtree(out)
        raise
    wheels = list(out.glob("parking_gateway-*.whl"))
    if len(wheels) != 1:
        raise InstallError(f"pip wheel of {source} gave {[w.name for w in wheels]}")
    return wheels[0]


def wheel_version(wheel: Path) -> str:
    parts = wheel.name.split("-")
    if len(parts) < 5 or parts[0] != "parking_gateway":
        raise InstallError(f"{wheel.name}: not a parking-gateway wheel")
    return parts[1]


def create(layout: Layout, wheel: Path, unit: Path | None, options: BuildOptions,
           system: System) -> Release:
    """Build the release for ``wheel`` beside the others, or find it already built."""
    version = wheel_version(wheel)
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    for release in every(layout):
        if release.sha256 == sha:
            system.say(f"==> release {release.name}: already built from this wheel")
            return release
    name = version if not (layout.releases / version).exists() or not load(
        layout, version) else f"{version}-{sha[:8]}"
    path = layout.releases / name
    if path.exists():
        shutil.rmtree(path)  # half-built by an earlier attempt
    layout.releases.mkdir(parents=True, exist_ok=True)
    system.say(f"==> building release {name} in {path}")
    try:
        _venv(path, wheel, options, system)
        schema = int(system.run([path / "bin" / "python", "-I", "-c", _SCHEMA_PROBE],
                                quiet=True).stdout.strip())
        if unit is not None:
            shutil.copyfile(unit, path / UNIT_NAME)
        release = Release(name=name, version=version, schema=schema, wheel=wheel.name,
                          sha256=sha, installed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                 time.gmtime()))
        tmp = path / (RELEASE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(release), indent=2) + "\n")
        os.replace(tmp, path / RELEASE_FILE)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return release


def _venv(path: Path, wheel: Path, options: BuildOptions, system: System) -> None:
    if options.reuse_deps is not None:
        # Tests: no pip in the venv and no download; the dependencies (pip too) come from
        # an existing environment through a .pth line, after the release's own packages.
        system.run([sys.executable, "-m", "venv", "--without-pip", path])
        site = _site_packages(path)
        (site / "_reused_dependencies.pth").write_text(f"{options.reuse_deps.resolve()}\n")
        system.run([path / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps",
                    "--no-index", "--ignore-installed", wheel], quiet=True)
        return
    system.run([sys.executable, "-m", "venv", path])
    pip = [str(path / "bin" / "python"), "-m", "pip", "install", "-q"]
    if options.lock is not None:
        system.say(f"    dependencies from {options.lock.name}")
        system.run([*pip, "--require-hashes", "-r", str(options.lock)], quiet=True)
        system.run([*pip, "--no-deps", str(wheel)], quiet=True)
    else:
        system.say("    no lock file: dependencies resolved from the wheel's ranges")
        system.run([*pip, str(wheel)], quiet=True)


def _site_packages(venv: Path) -> Path:
    found = list((venv / "lib").glob("python3*/site-packages"))
    if len(found) != 1:
        raise InstallError(f"{venv}: expected one site-packages, found {found}")
    return found[0]


def prune(layout: Layout, keep: int, system: System) -> None:
    """Remove the oldest releases beyond ``keep``, never ``current`` or ``previous``."""
    pinned = {r.name for r in (linked(layout, layout.current),
                               linked(layout, layout.previous)) if r}
    old = [r for r in every(layout) if r.name not in pinned]
    for release in old[: max(0, len(old) - max(0, keep - len(pinned)))]:
        system.say(f"==> removing old release {release.name}")
        shutil.rmtree(release.path(layout))
        (layout.backups / f"before-{release.name}.sqlite3").unlink(missing_ok=True)
