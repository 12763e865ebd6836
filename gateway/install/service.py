"""The service as systemd runs it, and "healthy" as an upgrade judges it.

``systemctl start`` of a ``Type=notify`` unit returns once the daemon said ``READY=1`` (or
failed). Healthy then means: the unit is still active and ``/healthz`` answers 200 within
the timeout. A gate that was already degraded before the upgrade (``/healthz`` 503: the
central service down, say) is not the new release's fault: it then only has to answer at
all (200 or 503) while staying active. Without a web port to ask (``port = 0``) the unit
being active is all there is.
"""

from __future__ import annotations

import json
import shlex
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from gateway.install.layout import UNIT_NAME
from gateway.install.system import System


class Systemctl:
    """``systemctl`` for the gateway's unit; ``None`` as the command: every call skipped
    and recorded (``--root`` without ``--systemctl``)."""

    def __init__(self, command: str | None, system: System) -> None:
        self.argv = shlex.split(command) if command else None
        self.system = system

    def __call__(self, *args: str, check: bool = True) -> bool:
        if self.argv is None:
            self.system.skip(f"systemctl {' '.join(args)}")
            return False
        proc = self.system.run([*self.argv, *args], check=check, quiet=True)
        return proc.returncode == 0

    def is_active(self) -> bool:
        return self.argv is not None and self("is-active", "--quiet", UNIT_NAME, check=False)

    def start(self) -> bool:
        # a release that failed and was restarted by Restart=always may have used up the
        # unit's start limit (5 in 10 s): the next start would then be refused
        self("reset-failed", UNIT_NAME, check=False)
        return self("start", UNIT_NAME, check=False)

    def stop(self) -> None:
        self("stop", UNIT_NAME, check=False)


@dataclass(frozen=True)
class Health:
    status: int | None  # the HTTP status of /healthz; None: no answer
    problems: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.status is None:
            return "no answer"
        return f"{self.status}" + (f" ({'; '.join(self.problems)})" if self.problems else "")


def probe(url: str | None) -> Health:
    if url is None:
        return Health(None)
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return Health(resp.status, _problems(resp.read()))
    except urllib.error.HTTPError as exc:
        return Health(exc.code, _problems(exc.read()))
    except (OSError, ValueError):
        return Health(None)


def _problems(body: bytes) -> tuple[str, ...]:
    try:
        return tuple(str(p) for p in json.loads(body).get("problems", []))
    except (ValueError, AttributeError):
        return ()


def wait_healthy(systemctl: Systemctl, url: str | None, baseline: Health,
                 timeout_s: float) -> tuple[bool, str]:
    """Whether the freshly started release got healthy, and what was seen last."""
    accept = {200} if baseline.status in (200, None) else {200, baseline.status}
    deadline = time.monotonic() + timeout_s
    seen = "not started"
    while True:
        if not systemctl.is_active():
            return False, f"the unit is not active (last /healthz: {seen})"
        if url is None:
            return True, "the unit is active (no web port to ask)"
        health = probe(url)
        seen = health.describe()
        if health.status in accept:
            return True, f"/healthz {seen}"
        if time.monotonic() > deadline:
            return False, f"/healthz did not answer {sorted(accept)} within {timeout_s:g}s " \
                          f"(last: {seen})"
        time.sleep(0.25)
