"""A private Mosquitto broker for the demo (``[simulation] private_broker = true``).

The daemon starts the system's ``mosquitto`` on a free port of 127.0.0.1 before its MQTT
link connects, with its configuration, log and persistence under ``gate.data_dir``, and
stops it (terminated, then waited for) on every exit. The broker is also asked to die
with the daemon (Linux's parent-death signal), so a daemon killed with SIGKILL does not
leave it running; as root the broker keeps root (``user root``), because dropping to the
``mosquitto`` user would clear that signal and could not write the demo's data directory.

A missing binary, or a broker that does not accept connections, is a fault (``fault``,
shown on the page), not a crash: the demo goes on without MQTT.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
from pathlib import Path

log = logging.getLogger("gateway.sim.broker")
PR_SET_PDEATHSIG = 1
START_TIMEOUT_S = 10.0


def mosquitto_binary() -> str | None:
    """The system's broker: often in /usr/sbin, which is not on every user's PATH."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class PrivateBroker:
    def __init__(self, workdir: Path, binary: str | None = None) -> None:
        self.workdir = workdir
        self.binary = binary if binary is not None else mosquitto_binary()
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.fault = ""

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def _write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [f"listener {self.port} {self.host}", "allow_anonymous true",
                 "set_tcp_nodelay true", "persistence true",
                 f"persistence_location {self.workdir.resolve()}/",
                 f"log_dest file {(self.workdir / 'mosquitto.log').resolve()}"]
        if os.geteuid() == 0:
            lines.append("user root")
        config = self.workdir / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        return config

    async def start(self) -> bool:
        """Start the broker and wait until it accepts; False (and ``fault``) if it cannot."""
        if self.binary is None:
            self.fault = ("private broker: no mosquitto binary (install the mosquitto package; "
                          "`make demo` does); the demo goes on without MQTT")
            log.warning("%s", self.fault)
            return False
        config = self._write_config()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                self.binary, "-c", str(config), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                preexec_fn=_die_with_parent, start_new_session=True)
        except OSError as exc:
            self.fault = (f"private broker: cannot run {self.binary} ({exc.strerror or exc}); "
                          "the demo goes on without MQTT")
            log.warning("%s", self.fault)
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while self.proc.returncode is None and loop.time() < deadline:
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            log.info("private broker (mosquitto pid %d) on %s:%d, data in %s",
                     self.proc.pid, self.host, self.port, self.workdir)
            return True
        await self.stop()
        self.fault = (f"private broker: mosquitto did not accept connections on "
                      f"{self.host}:{self.port} (see {self.workdir / 'mosquitto.log'}); "
                      "the demo goes on without MQTT")
        log.warning("%s", self.fault)
        return False

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
