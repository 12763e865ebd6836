"""When a supervised background task is restarted, and when it counts as failing, as a pure
policy: nothing here sleeps or reads a clock; the caller passes the monotonic time, a random
number in [0, 1) and the wall time stamp to show.

A task that raises is restarted after a capped, jittered backoff that grows with the
failures in a row (its *streak*). A run that lasts ``stable_after_s`` without failing ends
the streak (the next failure waits the shortest delay again). A task is **failing** from
its ``failing_after``-th failure in a row until a run of it has lasted ``stable_after_s``:
in backoff and while a restarted run has not yet proved itself alike. It holds the systemd
watchdog back (the daemon is restarted if it lasts) while it fails: in backoff, and in a run
younger than ``watchdog_grace_s`` (a write that waits ``busy_timeout`` on a lock and fails is
still failing); a run older than that feeds the watchdog again, so that a task that recovered
does not get the daemon restarted while it proves itself for ``stable_after_s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.core.backoff import BackoffSchedule

RESTART_BACKOFF = BackoffSchedule(initial_s=1.0, factor=2.0, max_delay_s=60.0, jitter=0.5,
                                  retries=None)


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    backoff: BackoffSchedule = RESTART_BACKOFF
    failing_after: int = 3  # failures in a row that make a task "failing"
    stable_after_s: float = 30.0  # a run this long without a failure ends the streak
    # a failing task's run this long lets the watchdog be fed again (systemd's WatchdogSec
    # must be longer than this plus a restart delay: 30 s in the unit file)
    watchdog_grace_s: float = 10.0

    def __post_init__(self) -> None:
        if self.failing_after < 1:
            raise ValueError("failing_after must be at least 1")
        if self.stable_after_s < 0:
            raise ValueError("stable_after_s must not be negative")
        if not 0 <= self.watchdog_grace_s <= self.stable_after_s:
            raise ValueError("watchdog_grace_s must be within [0, stable_after_s]")


@dataclass(slots=True)
class TaskRecord:
    """One supervised task: its state (``running``, ``backoff``, ``done`` for a task run
    once that succeeded, ``stopped``) and its failures."""

    name: str
    once: bool = False
    state: str = "starting"
    started_at: float | None = None  # monotonic, of the current run
    streak: int = 0  # failures in a row
    failures: int = 0
    restarts: int = 0
    last_error: str | None = None
    last_failure: str | None = None  # wall time stamp (shown only)
    retry_in_s: float | None = None

    def started(self, now: float) -> None:
        self.state = "running"
        self.started_at = now
        self.retry_in_s = None

    def ran_stably(self, now: float, policy: RestartPolicy) -> bool:
        return (self.state == "running" and self.started_at is not None
                and now - self.started_at >= policy.stable_after_s)

    def stable(self, policy: RestartPolicy) -> bool:
        """The current run lasted long enough: the streak is over. True if the task was
        failing until now (it recovered)."""
        recovered = self.failing(policy)
        self.streak = 0
        return recovered

    def failed(self, now: float, error: str, policy: RestartPolicy, rand: float,
               wall_stamp: str | None = None) -> float:
        """The run ended with ``error``: count it; the seconds to wait before the restart."""
        if self.ran_stably(now, policy):
            self.streak = 0
        self.streak += 1
        self.failures += 1
        self.last_error = error
        self.last_failure = wall_stamp
        self.state = "backoff"
        delay = policy.backoff.next_delay(self.streak, 0.0, rand)
        self.retry_in_s = policy.backoff.max_delay_s if delay is None else delay
        return self.retry_in_s

    def restarting(self) -> None:
        self.restarts += 1

    def finished(self) -> None:
        """A task run once has done its work."""
        self.state = "done"
        self.streak = 0
        self.retry_in_s = None

    def stopped(self) -> None:
        self.state = "stopped"
        self.retry_in_s = None

    def failing(self, policy: RestartPolicy) -> bool:
        return self.streak >= policy.failing_after and self.state in ("running", "backoff")

    def holds_watchdog(self, now: float, policy: RestartPolicy) -> bool:
        """Failing, and not in a run that has lasted ``watchdog_grace_s``."""
        if not self.failing(policy):
            return False
        return not (self.state == "running" and self.started_at is not None
                    and now - self.started_at >= policy.watchdog_grace_s)

    def problem(self, policy: RestartPolicy) -> str | None:
        if not self.failing(policy):
            return None
        return (f"task {self.name}: failing, {self.streak} failures in a row "
                f"(last: {self.last_error})")

    def as_json(self, policy: RestartPolicy) -> dict[str, Any]:
        return {"state": self.state, "failing": self.failing(policy),
                "restarts": self.restarts, "failures": self.failures,
                "failures_in_a_row": self.streak, "last_error": self.last_error,
                "last_failure": self.last_failure, "retry_in_s": self.retry_in_s}
