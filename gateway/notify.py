"""systemd readiness and watchdog notifications: a datagram to ``$NOTIFY_SOCKET`` (a leading
``@`` is the abstract namespace). No dependency; nothing happens outside systemd."""

from __future__ import annotations

import socket
import time


def sd_notify(socket_path: str, message: str) -> bool:
    if not socket_path:
        return False
    address = "\0" + socket_path[1:] if socket_path.startswith("@") else socket_path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:
        return False
    return True


def reloading() -> str:
    """``RELOADING=1``, which a daemon follows with ``READY=1`` once the reload is done: the
    unit shows "reloading" meanwhile. ``MONOTONIC_USEC=`` (CLOCK_MONOTONIC) beside it is what
    systemd 253's ``Type=notify-reload`` requires; systemd 252 ignores it."""
    return f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}"
