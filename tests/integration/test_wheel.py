"""The wheel as an installer gets it: built from a copy of the source tree (the build leaves
nothing in the repository), installed into a fresh venv under the test's temporary
directory, and run from a working directory outside the repository with nothing of the
repository on the path: `parking-gateway check-config` on the example configuration and on
the embedded demo, and `parking-gateway run` on the embedded demo (its private Mosquitto,
the simulated central and backup services) until /healthz answers 200 and the page's files
are served, then SIGTERM and exit 0.

Installing the dependencies again costs ~45-70 s (opencv, onnxruntime, from the pip cache),
so in `make test` the fresh venv sees the dev venv's site-packages through a .pth file
written after the wheel is installed: the path comes after the fresh venv's own
site-packages, so `gateway` and `hardware` are the wheel's (checked), and the dev venv's
editable install is not processed (a plain path entry runs no .pth file inside it). The
soak test installs requirements.lock itself, with its hashes. ~20 s in make test."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.daemon import Daemon, demo_config, until

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "hardware")
# Not copied for the build: what is not source (the venv, caches, data, build output).
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "data", "build", "dist", "*.egg-info",
                                    "__pycache__", "*.pyc", ".*_cache", ".hypothesis", "tmp*")


def run(*argv: str | Path, cwd: Path, env: dict[str, str],
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{argv}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def outside_env(venv: Path) -> dict[str, str]:
    """The environment of a shell outside the repository: no PYTHONPATH, no dev venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
    return env


def build_wheel(tmp: Path) -> Path:
    """``pip wheel`` with the dev venv's setuptools (no download, no build isolation)."""
    src = tmp / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=NOT_SOURCE)
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
        "-w", tmp / "dist", src, cwd=tmp, env=outside_env(Path(sys.prefix)))
    (wheel,) = (tmp / "dist").glob("parking_gateway-*.whl")
    return wheel


def source_files() -> set[str]:
    """Every file of the packages in the source tree (what the wheel must carry)."""
    return {str(p.relative_to(ROOT)) for package in PACKAGES
            for p in (ROOT / package).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def fresh_venv(tmp: Path, wheel: Path, *, lock: bool) -> Path:
    """A venv with the wheel installed; its dependencies from requirements.lock (``lock``)
    or, after the wheel, the dev venv's site-packages as a path entry."""
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp, env=outside_env(venv))
    pip = [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q"]
    if lock:
        run(*pip, "--require-hashes", "-r", ROOT / "requirements.lock", cwd=tmp,
            env=outside_env(venv), timeout=900)
    run(*pip, "--no-deps", wheel, cwd=tmp, env=outside_env(venv))
    if not lock:
        site = run(venv / "bin" / "python", "-c",
                   "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                   cwd=tmp, env=outside_env(venv)).stdout.strip()
        dev = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
        Path(site, "zz-dev-venv-packages.pth").write_text("".join(f"{d}\n" for d in dev))
    return venv




class InstalledDaemon(Daemon):
    """``parking-gateway run`` of the fresh venv, from a directory outside the repository."""

    def __init__(self, venv: Path, config: Path, cwd: Path) -> None:
        super().__init__(config)
        self.env = outside_env(venv)
        self.venv, self.cwd = venv, cwd

    async def start(self, within_s: float = 60.0) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            str(self.venv / "bin" / "parking-gateway"), "run", "--config", str(self.config),
            cwd=self.cwd, env=self.env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        found: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(found))
        self.url = await asyncio.wait_for(found, within_s)


async def healthy(http: aiohttp.ClientSession, url: str) -> bool:
    async with http.get(f"{url}/healthz") as resp:
        return resp.status == 200


async def check_installed(tmp: Path, *, lock: bool) -> None:
    wheel = build_wheel(tmp)
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(source_files() - names)
    assert not missing, f"not in the wheel: {missing}"
    others = {n.split("/")[0] for n in names} - set(PACKAGES)
    assert all(o.endswith(".dist-info") for o in others), others
    venv = fresh_venv(tmp, wheel, lock=lock)
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    env = outside_env(venv)
    py = venv / "bin" / "python"
    where = run(py, "-c", "import gateway, hardware; print(gateway.__file__); "
                "print(hardware.__file__)", cwd=elsewhere, env=env).stdout.split()
    assert all(Path(f).is_relative_to(venv) for f in where), where  # the wheel's, not ours
    # the embedded demo as `run` loads it without --config: the package's own file
    embedded = run(py, "-c", "import sys; from gateway.settings import embedded_default_text "
                   "as t; sys.stdout.write(t())", cwd=elsewhere, env=env).stdout
    assert embedded == (ROOT / "gateway" / "defaults" / "demo.toml").read_text("utf-8")
    example = elsewhere / "gateway.toml"
    shutil.copy(ROOT / "config" / "example.toml", example)
    exe = venv / "bin" / "parking-gateway"
    assert " OK " in run(exe, "check-config", example, cwd=elsewhere, env=env).stdout
    config = demo_config(elsewhere, embedded)
    assert " OK " in run(exe, "check-config", config, cwd=elsewhere, env=env).stdout
    daemon = InstalledDaemon(venv, config, elsewhere)
    await daemon.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            await until(lambda: healthy(http, daemon.url), 30, "/healthz 200", every_s=0.2)
            async with http.get(daemon.url) as resp:
                assert resp.status == 200
                links = set(re.findall(r'"(/static/[^"?]+)', await resp.text()))
            static = {"/static/" + n.rsplit("/", 1)[1] for n in names
                      if n.startswith("gateway/web/static/")}
            assert links <= static, f"the page links files the wheel lacks: {links - static}"
            for link in sorted(static):  # served by the installed daemon from its package
                async with http.get(daemon.url + link) as resp:
                    assert resp.status == 200, link
    finally:
        code = await daemon.stop()
    assert code == 0, "\n".join(daemon.log[-30:])
    assert "Traceback" not in "\n".join(daemon.log), "\n".join(daemon.log[-30:])


async def test_the_wheel_installed_outside_the_repository_checks_and_runs_the_demo(
        tmp_path: Path) -> None:
    await check_installed(tmp_path, lock=False)


@pytest.mark.soak
@pytest.mark.timeout(900)
async def test_the_wheel_with_the_locked_dependencies_checks_and_runs_the_demo(
        tmp_path: Path) -> None:
    await check_installed(tmp_path, lock=True)
