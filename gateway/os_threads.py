"""The daemon's threads named in the operating system too (``top -H``, ``ps -L``,
``/proc/PID/task/*/comm``): Python (before 3.14) names its threads for itself only, so a
technician asking what keeps an idle gate busy saw a dozen threads all called "python".
Linux keeps 15 characters of a name; elsewhere nothing is done."""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

PR_SET_NAME = 15  # prctl(2)
NAME_MAX = 15  # the kernel's TASK_COMM_LEN less the terminating NUL


def _prctl() -> Callable[..., int] | None:
    try:
        call: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return call


_PRCTL = _prctl()


def os_name(name: str) -> bytes:
    """``name`` as the kernel keeps it: UTF-8, at most 15 bytes, never a split character."""
    raw = name.encode()[:NAME_MAX]
    return raw.decode(errors="ignore").encode()


def name_this_thread(name: str | None = None) -> None:
    """Give the calling thread ``name`` (by default its Python name) in the OS."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_NAME, ctypes.c_char_p(os_name(name or threading.current_thread().name)),
               0, 0, 0)


def named_pool(max_workers: int | None, prefix: str) -> ThreadPoolExecutor:
    """A thread pool whose workers carry their Python names (``prefix_N``) in the OS."""
    return ThreadPoolExecutor(max_workers, thread_name_prefix=prefix,
                              initializer=name_this_thread)
