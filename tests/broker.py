"""A private Mosquitto broker for a test: a free port on 127.0.0.1, a temporary config,
started, polled until it accepts, stopped and restarted on the same port to test outages.
With ``acl`` the broker enforces that access control list (Mosquitto's ``acl_file`` syntax);
``set_acl`` swaps it and ``reload`` makes the running broker read it again (SIGHUP)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    def __init__(self, workdir: Path, *, password: str | None = None,
                 persistent: bool = False, acl: str | None = None,
                 extra: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.config = workdir / "mosquitto.conf"
        # set_tcp_nodelay: small MQTT packets are not held back by Nagle's algorithm;
        # persistent: sessions and their queued messages survive a restart (for a test
        # subscriber that must miss nothing while the broker was down)
        lines = [f"listener {self.port} 127.0.0.1", "set_tcp_nodelay true"]
        if persistent:
            lines += ["persistence true", f"persistence_location {workdir}/",
                      "user root" if os.geteuid() == 0 else ""]
        else:
            lines.append("persistence false")
        if password is None:
            lines.append("allow_anonymous true")
        else:
            pw = workdir / "passwd"
            pw.write_text(f"gate:{password}\n")
            import subprocess

            subprocess.run([MOSQUITTO_PASSWD, "-U", str(pw)],
                           check=True)
            lines += ["allow_anonymous false", f"password_file {pw}"]
            if os.geteuid() == 0:  # else mosquitto drops to its own user, who cannot read it
                lines.append("user root")
        self.acl = workdir / "acl"
        if acl is not None:
            self.set_acl(acl)
            lines.append(f"acl_file {self.acl}")
            # mosquitto drops root before it reads the ACL file, and again on each reload;
            # the test's temporary directory is not readable by the mosquitto user
            if os.geteuid() == 0 and "user root" not in lines:
                lines.append("user root")
        self.config.write_text("\n".join([*lines, *extra]) + "\n")
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        log = open(self.workdir / "mosquitto.log", "ab")  # noqa: SIM115, ASYNC230 - tiny, local
        self.proc = await asyncio.create_subprocess_exec(
            MOSQUITTO, "-c", str(self.config), stdout=log, stderr=log)
        log.close()
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                if asyncio.get_running_loop().time() > deadline:
                    text = (self.workdir / "mosquitto.log").read_text(errors="replace")
                    raise RuntimeError(f"mosquitto did not start:\n{text[-2000:]}") from None
                await asyncio.sleep(0.02)
                continue
            writer.close()
            await writer.wait_closed()
            return

    def set_acl(self, text: str) -> None:
        """Write the ACL file (read at start, and again by ``reload``)."""
        tmp = self.acl.with_suffix(".new")
        tmp.write_text(text.strip() + "\n")
        tmp.replace(self.acl)  # the broker never reads half a file

    async def reload(self, within_s: float = 5.0) -> None:
        """SIGHUP: the running broker reads its ACL file again; returns once it has."""
        assert self.proc is not None and self.proc.returncode is None
        log = self.workdir / "mosquitto.log"
        before = log.read_text(errors="replace").count("Reloading config")
        self.proc.send_signal(signal.SIGHUP)
        deadline = asyncio.get_running_loop().time() + within_s
        while log.read_text(errors="replace").count("Reloading config") <= before:
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError("mosquitto did not reload its configuration")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        self.proc = None
