"""Per-step resilience policy (the seed's knobs) and what a run reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple


@dataclass(frozen=True, slots=True)
class StepPolicy:
    retry_count: int = 2
    use_circuit_breaker: bool = False
    use_cache_fallback: bool = False
    alternative_services: tuple[str, ...] = ()
    deadline_s: float = 1.0  # the step, all attempts and fallbacks included
    call_deadline_s: float = 0.8  # one call, to a service not in service_call_deadlines_s
    # one call to a named service, e.g. ((central, 0.8), (backup, 1.0)): each service of a
    # chain keeps its own deadline (always within what is left of ``deadline_s``)
    service_call_deadlines_s: tuple[tuple[str, float], ...] = ()
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 0.5
    hedge_after_s: float = 0.0  # > 0: ask the first alternative too when this slow
    when_unverifiable: str | None = None  # "allow": a verification nobody answered passes
    queue_when_unreachable: bool = False  # a record nobody took waits in the offline queue

    def call_deadline_for(self, service: str) -> float:
        """The deadline of one call to ``service``."""
        for name, deadline_s in self.service_call_deadlines_s:
            if name == service:
                return deadline_s
        return self.call_deadline_s


class Attempt(NamedTuple):
    """One call made for a step: which service, how it ended, how long it took.

    A named tuple (immutable, as a frozen dataclass would be): one is made for every call of
    every step, and a frozen dataclass's ``__init__`` (``object.__setattr__`` per field) cost
    three times as much."""

    service: str
    outcome: str  # ok | transient | permanent | circuit_open | cache | permit
    duration_ms: float
    error: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"service": self.service, "outcome": self.outcome,
                "duration_ms": round(self.duration_ms, 3), "error": self.error}


@dataclass
class SagaOutcome:
    saga_id: str
    kind: str
    status: str
    reason: str
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    duration_ms: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.status == "completed"
