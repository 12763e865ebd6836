"""Circuit breaker as a pure state machine: ``allow(now)``, ``record_success(now)``,
``record_failure(now)``; every transition is returned and kept as a frozen record.

Closed -> open when ``failure_threshold`` consecutive calls fail, or when the failure rate
over the last ``window_s`` seconds reaches ``failure_rate`` with at least ``min_calls`` calls.
Open -> half-open once ``reset_timeout_s`` has passed. Half-open admits at most
``half_open_probes`` calls per episode; ``half_open_successes`` successes close it, any
failure opens it again. Probes that never report back (a cancelled call) do not wedge it:
after another ``reset_timeout_s`` without a verdict a new episode starts.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from gateway.core.errors import ServiceError

E = TypeVar("E", bound=ServiceError)


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# The states as plain names for the code below: Python 3.11 finds an enum member through a
# descriptor (a quarter of a microsecond on a small machine), and a breaker reads them at
# every call.
_CLOSED, _OPEN, _HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


def refusal(kind: type[E], message: str, service: str) -> E:
    """``kind(message, service=service)``, the error a breaker's refusal is reported with,
    made without ``ServiceError.__init__``: a Python ``__init__`` with keywords makes
    building an exception several times dearer (0.4 µs here against 0.15 µs), and a refusal
    is the whole of a refused call. ``args``, ``service`` and ``status`` are as it sets them
    (``BaseException.__new__`` keeps the message as ``args``)."""
    error = kind.__new__(kind, message)
    error.service = service
    error.status = None
    return error


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_threshold: int = 5
    reset_timeout_s: float = 30.0
    window_s: float = 60.0
    failure_rate: float = 0.5
    min_calls: int = 10
    half_open_probes: int = 1
    half_open_successes: int = 1

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if self.half_open_probes < 1:
            raise ValueError("half_open_probes must be at least 1")
        if not 1 <= self.half_open_successes <= self.half_open_probes:
            raise ValueError("half_open_successes must be within 1..half_open_probes")
        if not 0 < self.failure_rate <= 1:
            raise ValueError("failure_rate must be within (0, 1]")


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    """One change of state: what, when (caller's clock) and why."""

    name: str
    from_state: CircuitState
    to_state: CircuitState
    at: float
    reason: str


class Breaker:
    """One breaker per protected thing (a service instance). Not thread-safe: one owner."""

    # Transitions made by all breakers so far: whoever takes the transitions of breakers it
    # does not hold (a pool's) after every call need not ask while this has not changed
    # since it last asked.
    moves = 0

    def __init__(self, name: str, policy: BreakerPolicy | None = None, *, history: int = 100):
        self.name = name
        self.policy = policy or BreakerPolicy()
        self.state = _CLOSED
        self.transitions: deque[BreakerTransition] = deque(maxlen=history)
        self._consecutive_failures = 0
        # the window of the failure rate: when each call (and each failure) in it ended,
        # oldest first (two deques of times: a success is then a float appended, no tuple)
        self._calls: deque[float] = deque()
        self._failures: deque[float] = deque()
        self._opened_at = 0.0
        self._episode_started = 0.0
        self._probes_admitted = 0
        self._probe_successes = 0
        # transitions not taken yet (read it to know whether there are any: at every call,
        # cheaper than taking an empty list); :meth:`take_transitions` takes them
        self.unreported: list[BreakerTransition] = []

    # -- queries -------------------------------------------------------------------------
    def current_state(self, now: float) -> CircuitState:
        """The state as it would be at ``now`` (an open breaker past its timeout reads
        half-open), without changing anything."""
        if self.state is _OPEN and now - self._opened_at >= self.policy.reset_timeout_s:
            return _HALF_OPEN
        return self.state

    def wait_s(self, now: float) -> float:
        """How long from ``now`` until ``allow`` would admit a call (0: it would now), with
        a microsecond to spare so that ``allow(now + wait_s(now))`` holds in floats."""
        since = None
        if self.state is _OPEN:
            since = now - self._opened_at
        elif (self.state is _HALF_OPEN
                and self._probes_admitted >= self.policy.half_open_probes):
            since = now - self._episode_started
        if since is None or since >= self.policy.reset_timeout_s:
            return 0.0
        return self.policy.reset_timeout_s - since + 1e-6

    @property
    def probes_admitted(self) -> int:
        return self._probes_admitted

    # -- the protocol --------------------------------------------------------------------
    def allow(self, now: float) -> bool:
        """May a call go through at ``now``? In half-open this reserves one probe."""
        if self.state is _OPEN:
            if now - self._opened_at < self.policy.reset_timeout_s:
                return False
            self._to_half_open(now, "reset timeout elapsed")
        if self.state is _HALF_OPEN:
            if self._probes_admitted >= self.policy.half_open_probes:
                if now - self._episode_started < self.policy.reset_timeout_s:
                    return False
                self._open(now, "half-open probes gave no verdict")
                self._to_half_open(now, "reset timeout elapsed")
            self._probes_admitted += 1
            return True
        return True

    def record_success(self, now: float) -> BreakerTransition | None:
        self._consecutive_failures = 0
        calls = self._calls  # asked after every call that answered
        calls.append(now)
        if calls[0] < now - self.policy.window_s:  # the failures are no older than the calls
            self._trim(now)
        if self.state is _HALF_OPEN:
            self._probe_successes += 1
            if self._probe_successes >= self.policy.half_open_successes:
                return self._move(_CLOSED, now, "probe succeeded")
        return None

    def record_failure(self, now: float) -> BreakerTransition | None:
        self._consecutive_failures += 1
        self._calls.append(now)
        self._failures.append(now)
        self._trim(now)
        if self.state is _HALF_OPEN:
            return self._open(now, "probe failed")
        if self.state is _CLOSED:
            if self._consecutive_failures >= self.policy.failure_threshold:
                return self._open(now, f"{self._consecutive_failures} consecutive failures")
            calls = len(self._calls)
            if calls >= self.policy.min_calls:
                failures = len(self._failures)
                if failures / calls >= self.policy.failure_rate:
                    return self._open(
                        now, f"failure rate {failures}/{calls} in {self.policy.window_s:g}s"
                    )
        return None

    def reset(self, now: float) -> BreakerTransition | None:
        """Operator action: close the breaker and forget the failures."""
        self._consecutive_failures = 0
        self._calls.clear()
        self._failures.clear()
        if self.state is _CLOSED:
            return None
        return self._move(_CLOSED, now, "reset")

    # -- internals -----------------------------------------------------------------------
    def _trim(self, now: float) -> None:
        """Forget the calls that ended before the window."""
        horizon = now - self.policy.window_s
        calls, failures = self._calls, self._failures
        while calls and calls[0] < horizon:
            calls.popleft()
        while failures and failures[0] < horizon:
            failures.popleft()

    def _open(self, now: float, reason: str) -> BreakerTransition:
        self._opened_at = now
        self._consecutive_failures = 0
        self._calls.clear()
        self._failures.clear()
        return self._move(_OPEN, now, reason)

    def _to_half_open(self, now: float, reason: str) -> BreakerTransition:
        self._episode_started = now
        self._probes_admitted = 0
        self._probe_successes = 0
        return self._move(_HALF_OPEN, now, reason)

    def _move(self, to: CircuitState, now: float, reason: str) -> BreakerTransition:
        record = BreakerTransition(self.name, self.state, to, now, reason)
        self.state = to
        if to is not _HALF_OPEN:
            self._probes_admitted = 0
            self._probe_successes = 0
        self.transitions.append(record)
        self.unreported.append(record)
        Breaker.moves += 1
        return record

    def take_transitions(self) -> list[BreakerTransition]:
        """Transitions since the last call, for the runner to turn into events."""
        out, self.unreported = self.unreported, []
        return out
