"""Install, upgrade (with a schema migration), a refused and a failed upgrade that rolls
back by itself, rollback by hand, uninstall: ``python -m gateway.install`` (what
``systemd/install.sh`` runs) into a temporary root, as an operator would, with
``tests/integration/fake_systemd.py`` as ``systemctl``: it runs the installed unit's
commands under the root, so each release really starts from its own venv, migrates the
real database, answers ``/healthz`` (or dies), and is stopped with ``ExecStopPost=``.

Three releases: A, the code as it is at the repository's version, built by the installer
from a copy of the checkout with ``pip wheel`` (``--source``, the dev venv's setuptools);
1.1.0, a wheel made here of the same packages with one more migration (a table with a row);
1.2.0, the same with a migration that commits and one that fails, so that the daemon dies
after changing the schema: an older release refuses such a database, so only a restored
database lets 1.1.0 start again.
The releases' venvs get the dependencies of the development venv through a ``.pth`` line
(``--reuse-deps``) instead of downloading opencv and onnxruntime for each.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import http.server
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import sysconfig
import threading
import tomllib
import zipfile
from dataclasses import asdict
from pathlib import Path

import pytest

from gateway.install import releases
from gateway.install.layout import Layout
from gateway.install.releases import Release
from gateway.install.service import Health, Systemctl, wait_healthy
from gateway.install.system import System
from gateway.store.schema import LATEST_VERSION as V
from tests.e2e.daemon import e2e_config
from tests.integration.fake_systemd import analyze_verify, calls

REPO = Path(__file__).resolve().parents[2]
A = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
# what a checkout copied for the build leaves out (not source: venv, caches, data, builds)
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "data", "build", "dist", "*.egg-info",
                                    "__pycache__", "*.pyc", ".*_cache", ".hypothesis", "tmp*")
FAKE = Path(__file__).with_name("fake_systemd.py")
UNIT = "parking-gateway.service"
PROBE = """
    CREATE TABLE install_probe (note TEXT NOT NULL);
    INSERT INTO install_probe VALUES ('migrated by 1.1.0');
    """
HALF = """
    CREATE TABLE install_probe_2 (x INTEGER);
    """
BROKEN = """
    INSERT INTO no_such_table VALUES (1);
    """


def make_wheel(out: Path, version: str, migrations: list[str]) -> Path:
    """A py3-none-any wheel of gateway/ and hardware/ at ``version``, with ``migrations``
    appended to the schema's."""
    files: dict[str, bytes] = {}
    for package in ("gateway", "hardware"):
        for path in sorted((REPO / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                files[path.relative_to(REPO).as_posix()] = path.read_bytes()
    schema = files["gateway/store/schema.py"].decode()
    end = "\n]\n\nLATEST_VERSION = len(MIGRATIONS)"
    assert schema.count(end) == 1, "the schema's list of migrations has changed shape"
    added = "".join(f'    """{m}""",\n' for m in migrations)
    files["gateway/store/schema.py"] = schema.replace(end, "\n" + added.rstrip("\n") + end
                                                      ).encode()
    info = f"parking_gateway-{version}.dist-info"
    files[f"{info}/METADATA"] = (f"Metadata-Version: 2.1\nName: parking-gateway\n"
                                 f"Version: {version}\n").encode()
    files[f"{info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: test_install\n"
                              b"Root-Is-Purelib: true\nTag: py3-none-any\n")
    files[f"{info}/entry_points.txt"] = b"[console_scripts]\nparking-gateway = " \
        b"gateway.__main__:main\n"
    record = [f"{name},sha256={_digest(data)},{len(data)}" for name, data in files.items()]
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    out.mkdir(parents=True, exist_ok=True)
    wheel = out / f"parking_gateway-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return wheel


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Installer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, "FAKE_SYSTEMD_ROOT": str(root)}

    def __call__(self, *args: str | Path, program: list[str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
        cmd = [*(program or [sys.executable, "-m", "gateway.install"]), *map(str, args),
               "--root",
               str(self.root), "--systemctl", f"{sys.executable} {FAKE}",
               "--health-timeout", "30"]
        proc = subprocess.run(cmd, cwd=REPO, env=self.env, capture_output=True, text=True,
                              timeout=240, check=False)
        print(proc.stdout, proc.stderr)  # shown when the test fails
        return proc

    def install(self, wheel: Path, *more: str) -> subprocess.CompletedProcess[str]:
        site = sysconfig.get_paths()["purelib"]  # the development venv's packages
        return self("install", "--wheel", wheel, "--reuse-deps", site, *more)

    def link(self, name: str) -> str | None:
        path = self.root / "opt" / "parking-gateway" / name
        return os.readlink(path) if path.is_symlink() else None

    def calls_since(self, mark: int) -> list[str]:
        return calls(self.root)[mark:]

    def stop(self) -> None:
        subprocess.run([sys.executable, FAKE, "stop", UNIT], env=self.env, check=False,
                       timeout=90)


def db_facts(path: Path) -> tuple[int, set[str], str | None]:
    """(schema version, the probe tables present, the operator's marker row)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE name LIKE 'install_probe%'")}
        row = conn.execute("SELECT value FROM meta WHERE key = 'install-test'").fetchone()
        return version, tables, row[0] if row else None
    finally:
        conn.close()


def released(calls_: list[str], kind: str) -> list[str]:
    """Which release each ``kind`` command (ExecStart, ExecStopPost …) ran from."""
    return [line.split("/releases/")[1].split("/")[0] for line in calls_
            if line.startswith(kind + " ")]


@pytest.mark.timeout(360)  # ~20 s alone; five daemon starts and stops on a loaded machine
def test_install_upgrade_rollback_uninstall(tmp_path):
    root = tmp_path / "root"
    wheels = tmp_path / "wheels"
    source = tmp_path / "checkout"  # the first release is built as on a gate, by pip wheel
    shutil.copytree(REPO, source, symlinks=True, ignore=NOT_SOURCE)
    b = make_wheel(wheels, "1.1.0", [PROBE])
    c = make_wheel(wheels, "1.2.0", [PROBE, HALF, BROKEN])
    etc = root / "etc" / "parking-gateway"
    state = root / "var" / "lib" / "parking-gateway"
    db = state / "gateway.sqlite3"
    etc.mkdir(parents=True)
    config = e2e_config(state, "http://127.0.0.1:9")
    assert config.count("port = 0") == 1
    config = config.replace("port = 0", f"port = {free_port()}")
    (etc / "gateway.toml").write_text(config)  # a configuration present is kept
    run = Installer(root)
    try:
        # -- first install, started ---------------------------------------------------
        first = run("install", "--source", source, "--no-build-isolation", "--reuse-deps",
                    sysconfig.get_paths()["purelib"], "--start")
        assert first.returncode == 0, first.stderr
        assert run.link("current") == f"releases/{A}" and run.link("previous") is None
        assert (etc / "gateway.toml").read_text() == config
        assert (etc / "environment").read_text().startswith("GATEWAY_ADMIN_TOKEN=")
        assert (etc / "environment").stat().st_mode & 0o777 == 0o640
        assert "skipped (needs root): useradd --system" in first.stdout
        assert "skipped (needs root): chown root:parking-gateway" in first.stdout
        unit = (root / "etc" / "systemd" / "system" / UNIT).read_text()
        assert unit == (REPO / "systemd" / UNIT).read_text()
        assert analyze_verify(root) == ""  # the installed unit, its commands in place
        on_path = root / "usr" / "local" / "bin" / "parking-gateway"
        assert on_path.resolve() == (root / "opt" / "parking-gateway" / "releases" / A / "bin"
                                     / "parking-gateway")
        assert released(calls(root), "ExecStart") == [A]
        assert "systemctl enable parking-gateway.service" in calls(root)
        assert db_facts(db)[0] == V
        with sqlite3.connect(db) as conn:  # the operator's data, to be kept throughout
            conn.execute("INSERT INTO meta VALUES ('install-test', 'kept')")
        conn.close()

        # -- upgrade with a migration ---------------------------------------------------
        mark = len(calls(root))
        up = run.install(b)
        assert up.returncode == 0, up.stderr
        assert "upgraded to 1.1.0: /healthz 200" in up.stdout
        assert (run.link("current"), run.link("previous")) == ("releases/1.1.0",
                                                             f"releases/{A}")
        since = run.calls_since(mark)
        assert released(since, "ExecStopPost") == [A]  # relays off by the old one
        assert released(since, "ExecStart") == ["1.1.0"]
        assert db_facts(state / "backups" / "before-1.1.0.sqlite3") == (V, set(), "kept")
        assert db_facts(db) == (V + 1, {"install_probe"}, "kept")

        # -- an upgrade whose check-config refuses the configuration: nothing changes ----
        (etc / "gateway.toml").write_text(config + "\n[nonsense]\nkey = 1\n")
        mark = len(calls(root))
        refused = run.install(c)
        assert refused.returncode == 2 and "refused, nothing changed" in refused.stderr
        assert run.link("current") == "releases/1.1.0"
        assert [line for line in run.calls_since(mark) if "stop" in line] == []
        (etc / "gateway.toml").write_text(config)

        # -- an upgrade that dies after migrating: rolled back, database included -------
        mark = len(calls(root))
        failed = run.install(c)
        assert failed.returncode == 1, failed.stderr
        assert "1.2.0 did not get healthy" in failed.stdout
        assert "rolled back to 1.1.0: /healthz 200" in failed.stdout
        assert (run.link("current"), run.link("previous")) == ("releases/1.1.0",
                                                             f"releases/{A}")
        assert released(run.calls_since(mark), "ExecStart") == ["1.2.0", "1.1.0"]
        assert db_facts(db) == (V + 1, {"install_probe"}, "kept")
        [kept] = (state / "backups").glob("failed-1.2.0-*.sqlite3")
        assert db_facts(kept) == (V + 2, {"install_probe", "install_probe_2"}, "kept")

        # -- rollback by hand (the installed command): A knows schema V only, so the
        # backup comes back --------------------------------------------------------------
        back = run("rollback", program=[str(on_path)])
        assert back.returncode == 0, back.stderr
        assert f"rolled back to {A}: /healthz 200" in back.stdout
        assert (run.link("current"), run.link("previous")) == (f"releases/{A}",
                                                             "releases/1.1.0")
        assert db_facts(db) == (V, set(), "kept")
        [aside] = (state / "backups").glob("rolled-back-from-1.1.0-*.sqlite3")
        assert db_facts(aside) == (V + 1, {"install_probe"}, "kept")
        listing = run("releases").stdout
        assert f"current  {A:<20} schema {V} " in listing
        assert f"previous 1.1.0                schema {V + 1} " in listing
        assert f"         1.2.0                schema {V + 3} " in listing

        # -- uninstall keeps the configuration and the data; --purge does not ------------
        mark = len(calls(root))
        gone = run("uninstall")
        assert gone.returncode == 0, gone.stderr
        assert [c for c in run.calls_since(mark) if c.startswith("systemctl")][:2] == [
            "systemctl stop parking-gateway.service",
            "systemctl disable parking-gateway.service"]
        assert not (root / "opt" / "parking-gateway").exists()
        assert not (root / "etc" / "systemd" / "system" / UNIT).exists()
        assert not on_path.is_symlink()
        assert (etc / "gateway.toml").read_text() == config
        assert db_facts(db) == (V, set(), "kept")
        purged = run("uninstall", "--purge")
        assert purged.returncode == 0, purged.stderr
        assert not etc.exists() and not state.exists()
        assert "skipped (needs root): userdel parking-gateway" in purged.stdout
    finally:
        run.stop()


class HealthServer:
    """A /healthz on loopback whose answer the test sets."""

    def __init__(self) -> None:
        self.status = 200
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps({"healthy": outer.status == 200, "problems": [] if
                                   outer.status == 200 else ["central service: circuit open"]})
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/healthz"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_healthy_means_200_unless_the_gate_was_already_degraded(tmp_path):
    system = System(Layout(tmp_path), privileged=False)
    active, inactive = Systemctl("true", system), Systemctl("false", system)
    server = HealthServer()
    try:
        server.status = 503
        ok, seen = wait_healthy(active, server.url, Health(200), 0.3)
        assert not ok and "did not answer [200] within 0.3s" in seen
        assert "503 (central service: circuit open)" in seen
        assert wait_healthy(active, server.url, Health(None), 0.3)[0] is False
        # degraded before the upgrade (central down, say): not the new release's fault
        assert wait_healthy(active, server.url, Health(503), 0.3) == (
            True, "/healthz 503 (central service: circuit open)")
        server.status = 200
        assert wait_healthy(active, server.url, Health(200), 0.3) == (True, "/healthz 200")
        ok, seen = wait_healthy(inactive, server.url, Health(200), 0.3)
        assert not ok and "the unit is not active" in seen
        assert wait_healthy(active, None, Health(None), 0.3) == (
            True, "the unit is active (no web port to ask)")
    finally:
        server.close()


def test_prune_keeps_current_previous_and_the_newest(tmp_path):
    layout = Layout(tmp_path)
    system = System(layout, privileged=False)
    layout.backups.mkdir(parents=True)
    made = {}
    for i, name in enumerate(["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0"]):
        made[name] = Release(name=name, version=name, schema=7, wheel="w", sha256=str(i),
                             installed_at=f"2026-12-0{i + 1}T00:00:00Z")
        (layout.releases / name).mkdir(parents=True)
        (layout.releases / name / "release.json").write_text(json.dumps(asdict(made[name])))
        (layout.backups / f"before-{name}.sqlite3").write_text("")
    (layout.releases / "1.5.0").mkdir()  # half-built: no release.json, not a release
    releases.switch(layout.current, made["1.1.0"])  # rolled back to an older one
    releases.switch(layout.previous, made["1.4.0"])
    releases.prune(layout, 3, system)
    assert [r.name for r in releases.every(layout)] == ["1.1.0", "1.3.0", "1.4.0"]
    assert sorted(p.name for p in layout.backups.iterdir()) == [
        "before-1.1.0.sqlite3", "before-1.3.0.sqlite3", "before-1.4.0.sqlite3"]
    assert os.readlink(layout.current) == "releases/1.1.0"


@pytest.mark.soak
@pytest.mark.timeout(900)
def test_a_release_as_on_a_gate_from_the_lock_file(tmp_path):
    """The path a gate takes (soak only: it installs every dependency, ~1-3 minutes): the
    wheel built by pip, a venv with pip, requirements.lock installed with its hashes, the
    wheel without dependencies; then the release's own check-config on the example."""
    source = tmp_path / "checkout"
    shutil.copytree(REPO, source, symlinks=True, ignore=NOT_SOURCE)
    root = tmp_path / "root"
    done = Installer(root)("install", "--source", source, "--no-build-isolation")
    assert done.returncode == 0, done.stderr
    assert "dependencies from requirements.lock" in done.stdout
    release = root / "opt" / "parking-gateway" / "releases" / A
    assert not list(release.glob("lib/python3*/site-packages/_reused_dependencies.pth"))
    assert json.loads((release / "release.json").read_text())["schema"] == V
    check = subprocess.run([root / "opt" / "parking-gateway" / "current" / "bin" /
                            "parking-gateway", "check-config", REPO / "config" / "example.toml"],
                           capture_output=True, text=True, check=False, cwd=tmp_path,
                           timeout=120)
    assert check.returncode == 0, check.stderr
    again = Installer(root)("install", "--source", source, "--no-build-isolation")
    assert again.returncode == 0, again.stderr
    assert f"{A} is already the current release: nothing to do" in again.stdout


def test_one_install_at_a_time(tmp_path):
    lock = tmp_path / "run" / "parking-gateway-install.lock"
    lock.parent.mkdir()
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # an upgrade in progress
        busy = Installer(tmp_path)("rollback")
        assert busy.returncode == 1 and "another install, upgrade, rollback" in busy.stderr
    free = Installer(tmp_path)("rollback")
    assert free.returncode == 1 and "nothing installed under" in free.stderr


def test_rollback_without_the_backup_it_needs_changes_nothing(tmp_path):
    layout = Layout(tmp_path)
    for name, schema in (("1.0.0", V), ("1.1.0", V + 1)):
        (layout.releases / name).mkdir(parents=True)
        (layout.releases / name / "release.json").write_text(json.dumps(asdict(Release(
            name=name, version=name, schema=schema, wheel="w", sha256=name,
            installed_at="2026-12-01T00:00:00Z"))))
    releases.switch(layout.current, releases.load(layout, "1.1.0"))
    releases.switch(layout.previous, releases.load(layout, "1.0.0"))
    layout.etc.mkdir(parents=True)
    layout.config.write_text(f'[gate]\ndata_dir = "{layout.state}"\n')
    layout.state.mkdir(parents=True)
    with sqlite3.connect(layout.state / "gateway.sqlite3") as conn:
        conn.execute(f"PRAGMA user_version = {V + 1}")
    conn.close()
    refused = Installer(tmp_path)("rollback")
    assert refused.returncode == 1
    assert f"the database has schema {V + 1}, 1.0.0 knows up to {V}, and there is no " \
           "backup from before 1.1.0" in refused.stderr
    assert os.readlink(layout.current) == "releases/1.1.0"
    assert db_facts_version(layout.state / "gateway.sqlite3") == V + 1
    assert calls(tmp_path) == []  # not even stopped


def db_facts_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def test_the_installer_runs_on_a_bare_python():
    """install.sh runs it from a checkout on the system's Python, before any venv: without
    site-packages (-S) it imports nothing but the standard library and gateway.install."""
    probe = ("import json, sys, gateway.install.cli; print(json.dumps(sorted(m for m in "
             "sys.modules if m.split('.')[0] not in (*sys.stdlib_module_names, '__main__'))))")
    proc = subprocess.run([sys.executable, "-S", "-E", "-c", probe], cwd=REPO,
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    outside = json.loads(proc.stdout)
    assert outside and all(m == "gateway" or m.startswith(("gateway.install", "gateway.core"))
                           for m in outside), outside


@pytest.mark.soak
@pytest.mark.timeout(600)
def test_an_install_of_the_old_layout_is_taken_over(tmp_path):
    """The first install script's layout (one venv in /opt/parking-gateway/.venv, the unit
    running it) with its service running: the first release install stops it, backs the
    database up, and starts the release from current (soak only: ~10-20 s)."""
    root = tmp_path / "root"
    state = root / "var" / "lib" / "parking-gateway"
    (root / "etc" / "parking-gateway").mkdir(parents=True)
    (root / "etc" / "parking-gateway" / "gateway.toml").write_text(
        e2e_config(state, "http://127.0.0.1:9").replace("port = 0", f"port = {free_port()}"))
    legacy = root / "opt" / "parking-gateway" / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", legacy], check=True)
    (site,) = legacy.glob("lib/python3*/site-packages")
    (site / "legacy.pth").write_text(f"{REPO}\n{sysconfig.get_paths()['purelib']}\n")
    script = legacy / "bin" / "parking-gateway"
    script.write_text(f"#!{legacy}/bin/python\nimport sys\nfrom gateway.__main__ import main\n"
                      "sys.exit(main())\n")
    script.chmod(0o755)
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    (units / UNIT).write_text((REPO / "systemd" / UNIT).read_text().replace(
        "/opt/parking-gateway/current/", "/opt/parking-gateway/.venv/"))
    run = Installer(root)
    try:
        subprocess.run([sys.executable, FAKE, "start", UNIT], env=run.env, check=True,
                       timeout=120)
        mark = len(calls(root))
        done = run.install(make_wheel(tmp_path / "wheels", "1.0.0", []))
        assert done.returncode == 0, done.stderr
        assert "stopping the service running the old layout" in done.stdout
        assert "1.0.0 is running: /healthz 200" in done.stdout
        since = run.calls_since(mark)
        assert [c.split()[1] for c in since if c.startswith("ExecStopPost")] == [str(script)]
        assert released(since, "ExecStart") == ["1.0.0"]
        assert db_facts_version(state / "backups" / "before-1.0.0.sqlite3") == V
        assert run.link("current") == "releases/1.0.0"
    finally:
        run.stop()
