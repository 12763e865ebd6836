"""A stand-in for ``systemctl`` (and the systemd behind it) over a temporary root, for the
installer's tests: ``python fake_systemd.py start parking-gateway.service`` …

It runs the unit the installer put in ``$FAKE_SYSTEMD_ROOT/etc/systemd/system`` the way
systemd would, with every path of the unit taken under the root: ``ExecStartPre=`` (a
failure fails the start), ``ExecStart=`` with ``NOTIFY_SOCKET`` (``start`` returns once the
daemon sent ``READY=1``, or fails when it exits first, as for ``Type=notify``),
``EnvironmentFile=``, ``Environment=``, ``WorkingDirectory=``; ``stop`` sends SIGTERM
(SIGKILL after ``TimeoutStopSec=``) and then runs ``ExecStopPost=``, as after any exit;
``reload`` as systemd 252 does it for ``Type=notify``: refused without ``ExecReload=``
("Job type reload is not applicable"), else ``ExecReload=`` run with ``$MAINPID`` and
done when it exits (not waiting for the daemon); a ``RELOADING=1`` from the daemon makes
the unit "reloading" until its ``READY=1``. Notifications are logged as ``notify …``.
Not modelled: ``Restart=`` (an exit leaves the unit failed) and so the start limit
(``reset-failed`` is accepted and does nothing), users, sandboxing, the watchdog's kill.
Every ``systemctl`` call and every command run is appended to ``run/fake-systemd/calls``,
commands with the release their executable resolved to.

``analyze_verify(root)`` runs the real ``systemd-analyze verify`` over such a root.
Commands outside /opt, /etc and /var (``/bin/kill``) are the base system's: taken from the
host. Without ``systemd-analyze`` (Debian package systemd) the calling test fails saying so.
"""

from __future__ import annotations

import os
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(os.environ.get("FAKE_SYSTEMD_ROOT", "/nonexistent"))
RUN = ROOT / "run" / "fake-systemd"
MAPPED = ("/opt/", "/etc/", "/var/")  # what the installer's --root moves under the root


def calls(root: Path) -> list[str]:
    path = root / "run" / "fake-systemd" / "calls"
    return path.read_text().splitlines() if path.exists() else []


def analyze_verify(root: Path, unit: str = "parking-gateway.service") -> str:
    """``systemd-analyze verify`` of ``root/etc/systemd/system/unit`` with ``root`` as the
    root (systemd's own units copied in, so that its dependencies resolve); what it printed
    (a unit it has nothing to say about gives "")."""
    if shutil.which("systemd-analyze") is None:
        import pytest  # only the tests call this; the systemctl stand-in has no pytest

        pytest.fail("systemd-analyze is not installed: install the Debian package systemd "
                    "(make system-deps does), it verifies the unit file", pytrace=False)
    _host_commands(root / "etc" / "systemd" / "system" / unit, root)
    units = Path("/usr/lib/systemd/system")
    target = root / "usr" / "lib" / "systemd" / "system"
    if not target.exists():
        shutil.copytree(units if units.is_dir() else Path("/lib/systemd/system"), target,
                        symlinks=True)
    proc = subprocess.run(["systemd-analyze", "verify", f"--root={root}", unit],
                          capture_output=True, text=True, timeout=60, check=False)
    return (proc.stdout + proc.stderr).strip() + (f"\n(exit {proc.returncode})"
                                                  if proc.returncode else "")


def _host_commands(unit: Path, root: Path) -> None:
    """The base system's commands the unit names (``ExecReload=/bin/kill``), copied from
    the host into ``root``: verify checks each command exists, and the installer lays down
    only what is under /opt, /etc and /var."""
    if not unit.exists():
        return  # verify says so itself
    for line in unit.read_text().splitlines():
        key, _, value = line.partition("=")
        if not key.startswith("Exec") or not value.strip():
            continue
        command = shlex.split(value.lstrip("-@:+!"))[0]
        target = root / command.lstrip("/")
        if not command.startswith(MAPPED) and not target.exists() \
                and Path(command).is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(command, target)


def _log(line: str) -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    with (RUN / "calls").open("a") as f:
        f.write(line + "\n")


def _inside(token: str) -> str:
    return str(ROOT / token[1:]) if token.startswith(MAPPED) else token


def _service(unit: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in (ROOT / "etc" / "systemd" / "system" / unit).read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def _command(value: str) -> list[str]:
    return [_inside(token) for token in shlex.split(value.lstrip("-@:+!"))]


def _run_logged(kind: str, argv: list[str], env: dict[str, str], cwd: Path) -> int:
    _log(f"{kind} {os.path.realpath(argv[0])} {' '.join(argv[1:])}")
    return subprocess.run(argv, env=env, cwd=cwd, check=False).returncode


def _state(unit: str) -> str:
    path = RUN / f"{unit}.state"
    return path.read_text().strip() if path.exists() else "inactive"


def _set_state(unit: str, state: str) -> None:
    tmp = RUN / f".{unit}.state"
    tmp.write_text(state + "\n")
    os.replace(tmp, RUN / f"{unit}.state")


def _pair(assignment: str) -> tuple[str, str]:
    key, _, value = assignment.partition("=")
    return key.strip(), value.strip()


def supervise(unit: str) -> None:
    """What systemd does for one start of the unit, until it is stopped or exits."""
    service = _service(unit)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    for value in service.get("EnvironmentFile", []):
        path = Path(_inside(value.lstrip("-")))
        if path.exists():
            env.update(_pair(line) for line in path.read_text().splitlines()
                       if "=" in line and not line.lstrip().startswith("#"))
    for value in service.get("Environment", []):
        env.update(_pair(item) for item in shlex.split(value))
    cwd = Path(_inside(service.get("WorkingDirectory", ["/"])[0]))
    cwd.mkdir(parents=True, exist_ok=True)
    stopped = {"asked": False}
    signal.signal(signal.SIGTERM, lambda *_: stopped.update(asked=True))
    _set_state(unit, "activating")
    for value in service.get("ExecStartPre", []):
        if _run_logged("ExecStartPre", _command(value), env, cwd) != 0:
            _stop_post(service, env, cwd)
            _set_state(unit, "failed")
            return
    # a short path: AF_UNIX allows 108 bytes, a pytest temporary root is longer
    notify = Path(tempfile.mkdtemp(prefix="fake-systemd-")) / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.setblocking(False)
    argv = _command(service["ExecStart"][0])
    _log(f"ExecStart {os.path.realpath(argv[0])} {' '.join(argv[1:])}")
    watchdog_s = float(service.get("WatchdogSec", ["0"])[0])
    child = subprocess.Popen(argv, cwd=cwd, env={
        **env, "NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": str(int(watchdog_s * 1e6))})
    (RUN / f"{unit}.mainpid").write_text(f"{child.pid}\n")
    stop_s = float(service.get("TimeoutStopSec", ["90"])[0])
    _watch(unit, child, sock, stopped, stop_s)
    (RUN / f"{unit}.mainpid").unlink(missing_ok=True)
    sock.close()
    shutil.rmtree(notify.parent)
    _stop_post(service, env, cwd)
    _set_state(unit, "inactive" if stopped["asked"] else "failed")


def _watch(unit: str, child: subprocess.Popen[bytes], sock: socket.socket,
           stopped: dict[str, bool], stop_s: float) -> None:
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    kill_at: float | None = None
    while child.poll() is None:
        for _ in selector.select(0.05):
            _notified(unit, sock.recv(4096).decode(errors="replace").split("\n"))
        if stopped["asked"] and kill_at is None:
            _set_state(unit, "deactivating")
            child.send_signal(signal.SIGTERM)
            kill_at = time.monotonic() + stop_s
        if kill_at is not None and time.monotonic() > kill_at:
            child.kill()
    _log(f"exited {child.returncode}")
    selector.close()


def _notified(unit: str, tags: list[str]) -> None:
    """A notification as systemd 252 takes it (the watchdog's and STATUS= aside)."""
    state = _state(unit)
    if "RELOADING=1" in tags:
        _log("notify " + " ".join(t for t in tags if t.startswith(("RELOADING=", "MONOTONIC"))))
        if state == "active":
            _set_state(unit, "reloading")
    if "READY=1" in tags:
        if state != "activating":  # (every start says READY=1: not logged)
            _log(" ".join(["notify READY=1", *(t for t in tags if t.startswith("STATUS="))]))
        if state in ("activating", "reloading"):
            _set_state(unit, "active")


def _stop_post(service: dict[str, list[str]], env: dict[str, str], cwd: Path) -> None:
    for value in service.get("ExecStopPost", []):
        _run_logged("ExecStopPost", _command(value), env, cwd)


def _wait_state(unit: str, done: set[str], within_s: float) -> str:
    deadline = time.monotonic() + within_s
    while (state := _state(unit)) not in done and time.monotonic() < deadline:
        time.sleep(0.05)
    return state


def _start(unit: str) -> int:
    if _state(unit) in ("active", "activating", "reloading"):
        return 0
    if not (ROOT / "etc" / "systemd" / "system" / unit).exists():
        print(f"Failed to start {unit}: Unit {unit} not found.", file=sys.stderr)
        return 5
    _set_state(unit, "activating")
    journal = (RUN / f"{unit}.journal").open("a")
    proc = subprocess.Popen([sys.executable, __file__, "__supervise", unit], stdout=journal,
                            stderr=subprocess.STDOUT, start_new_session=True)
    (RUN / f"{unit}.pid").write_text(f"{proc.pid}\n")
    if _wait_state(unit, {"active", "failed", "inactive"}, 90) == "active":
        return 0
    print(f"Job for {unit} failed.", file=sys.stderr)
    return 1


def _stop(unit: str) -> int:
    pid_file = RUN / f"{unit}.pid"
    if _state(unit) in ("active", "activating", "reloading", "deactivating") \
            and pid_file.exists():
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except ProcessLookupError:
            _set_state(unit, "failed")
        _wait_state(unit, {"inactive", "failed"}, 60)
    return 0


def _reload(unit: str) -> int:
    commands = _service(unit).get("ExecReload", []) if (
        ROOT / "etc" / "systemd" / "system" / unit).exists() else []
    if not commands:
        print(f"Failed to reload {unit}: Job type reload is not applicable for unit {unit}.",
              file=sys.stderr)
        return 1
    mainpid = RUN / f"{unit}.mainpid"
    if _state(unit) not in ("active", "reloading") or not mainpid.exists():
        print(f"Failed to reload {unit}: Unit {unit} is not active.", file=sys.stderr)
        return 1
    pid = mainpid.read_text().strip()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MAINPID": pid}
    for value in commands:
        argv = [token.replace("${MAINPID}", pid).replace("$MAINPID", pid)
                for token in _command(value)]
        if _run_logged("ExecReload", argv, env, Path("/")) != 0:
            print(f"Job for {unit} failed.", file=sys.stderr)
            return 1
    return 0


def systemctl(args: list[str]) -> int:
    RUN.mkdir(parents=True, exist_ok=True)
    _log("systemctl " + " ".join(args))
    words = [a for a in args if not a.startswith("-")]
    verb, unit = words[0], (words[1] if len(words) > 1 else "")
    if verb in ("daemon-reload", "reset-failed"):
        return 0
    if verb == "is-active":
        state = _state(unit)
        if "--quiet" not in args:
            print(state)
        return 0 if state in ("active", "reloading") else 3
    if verb == "start":
        return _start(unit)
    if verb == "stop":
        return _stop(unit)
    if verb == "reload":
        return _reload(unit)
    if verb == "restart":
        _stop(unit)
        return _start(unit)
    if verb == "enable":
        (RUN / f"{unit}.enabled").touch()
        return 0
    if verb == "disable":
        (RUN / f"{unit}.enabled").unlink(missing_ok=True)
        return 0
    print(f"fake systemctl: {verb} is not modelled", file=sys.stderr)
    return 1


if __name__ == "__main__":
    if sys.argv[1] == "__supervise":
        try:
            supervise(sys.argv[2])
        except BaseException:
            _set_state(sys.argv[2], "failed")
            raise
    else:
        sys.exit(systemctl(sys.argv[1:]))
