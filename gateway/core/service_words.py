"""A service's state in the words an operator reads: "online", "slow", "offline", "paused
after 3 failures, retrying in 12 s". A breaker's "closed" reads as "down" to anyone who does
not know breakers, so the page and the terminal never show the breaker's word alone."""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.core.call_stats import CallStats


@dataclass(frozen=True, slots=True)
class ServiceWords:
    state: str  # online | slow | offline | paused | disabled
    summary: str


def _seconds(s: float) -> str:
    return f"{max(1, math.ceil(s))} s"


# a failure this old, with nothing asked since, says little about the service now (the
# backup is asked only while central fails: after an outage it is not asked for hours)
STALE_AFTER_S = 60.0


def _ago(s: float) -> str:
    return f"{s / 60:.0f} min" if s >= 90 else f"{s:.0f} s"


def describe(circuit: str, *, retry_in_s: float, opened_after: int, stats: CallStats | None,
             deadline_s: float, enabled: bool = True, now: float | None = None) -> ServiceWords:
    """``circuit`` is the breaker's state (closed, open, half_open); ``opened_after`` the
    failures that opened it; a service whose answers take over half its deadline is slow;
    ``now`` (monotonic, as the calls' times) tells a stale failure from a current one."""
    if not enabled:
        return ServiceWords("disabled", "not configured")
    if circuit == "open":
        failures = f"{opened_after} failures" if opened_after > 1 else "a failure"
        wait = f"retrying in {_seconds(retry_in_s)}" if retry_in_s > 0 else "retrying now"
        return ServiceWords("paused", f"paused after {failures}, {wait}")
    if circuit == "half_open":
        return ServiceWords("paused", "trying again after a pause")
    if stats is None or stats.last_answered() is None:
        return ServiceWords("online", "online, not asked yet")
    if not stats.last_answered():
        n = stats.failures_in_a_row
        since = None if now is None else now - stats.calls[-1].at
        if since is not None and since > STALE_AFTER_S:
            return ServiceWords("idle", f"not asked since its last call failed {_ago(since)} "
                                "ago (it is asked when it is needed)")
        return ServiceWords("offline", f"offline: {n} failed call{'s' if n > 1 else ''}"
                            f" ({stats.last_error[:80]})")
    typical = stats.median_ms()
    if typical is not None and typical > deadline_s * 500:
        return ServiceWords("slow", f"slow: answers take {typical:.0f} ms "
                            f"(deadline {deadline_s * 1000:.0f} ms)")
    return ServiceWords("online", f"online, answers in {typical:.0f} ms"
                        if typical is not None else "online")


def queue_advice(pending: int, dead: int) -> str:
    """What to do about the offline queue: records for the central service that wait."""
    parts = []
    if pending:
        parts.append(f"{pending} record(s) wait for the central service and are sent by "
                     "themselves when it answers; nothing to do unless it stays down")
    if dead:
        parts.append(f"{dead} record(s) were refused by the central service: read the "
                     "reason of each, correct it at the central service, then enter them "
                     "there by hand (they are not retried)")
    return "; ".join(parts)


def outbox_words(pending: int, telemetry_on: bool, connected: bool) -> str:
    if not telemetry_on:
        return "telemetry is off"
    if not pending:
        return "every event delivered to the broker"
    if connected:
        return f"{pending} event(s) being delivered"
    return f"{pending} event(s) wait for the broker and are sent when it is back"
