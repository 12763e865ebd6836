"""The saga state machine: events in, commands out, no I/O.

A saga is an ordered list of steps (see ``steps.py`` for the table). The machine says which
step to run next, which compensation to run when a step fails, and when the saga is over.
The orchestrator executes the commands, writes the log, and feeds the outcomes back.

Rules it holds:
- Compensations run in the exact reverse order of the steps that completed (plus a remote
  write whose outcome is unknown, which is compensated first since it came last).
- A compensation that fails transiently is issued again (with a higher attempt number: the
  orchestrator backs off); one that fails for good is recorded and the others still run,
  and the saga ends ``failed`` instead of ``compensated`` so an operator looks at it.
- A saga that a crash interrupted at or after a ``recover_forward`` step (the barrier had
  opened, so the vehicle most likely drove through) is completed at recovery, not
  compensated. Before that point, recovery compensates: the vehicle is still at the
  barrier and will be detected again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class StepKind(StrEnum):
    READ = "read"  # no side effect (a query, an observation): needs no log record before it
    LOCAL = "local"  # SQLite change committed in the same transaction as its log record
    REMOTE_WRITE = "remote_write"  # idempotent remote write: logged durably before it runs
    DEVICE = "device"  # a physical effect (barrier): logged durably before it runs


@dataclass(frozen=True, slots=True)
class StepSpec:
    name: str
    service: str
    operation: str
    kind: StepKind
    compensation: str | None = None
    recover_forward: bool = False
    # A result field that must be true for the step to count as succeeded (a verification
    # that answers "not authorized" is a definitive failure of the step, with its reason).
    requires: str | None = None


@dataclass(frozen=True, slots=True)
class SagaDefinition:
    name: str
    steps: tuple[StepSpec, ...]

    def index_of(self, step_name: str) -> int:
        for i, step in enumerate(self.steps):
            if step.name == step_name:
                return i
        raise KeyError(f"saga {self.name!r} has no step {step_name!r}")


class SagaStatus(StrEnum):
    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.FAILED)


class StepStatus(StrEnum):
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# -- commands ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RunStep:
    index: int
    step: StepSpec
    recovering: bool = False


@dataclass(frozen=True, slots=True)
class RunCompensation:
    index: int
    step: StepSpec
    attempt: int
    outcome_unknown: bool = False  # the forward call may or may not have taken effect


@dataclass(frozen=True, slots=True)
class Finish:
    status: SagaStatus
    reason: str


Command = RunStep | RunCompensation | Finish


# -- what the log knows about a step, for recovery ---------------------------------------
@dataclass(frozen=True, slots=True)
class StepRecord:
    index: int
    forward: StepStatus | None = None
    compensation: StepStatus | None = None
    compensation_attempts: int = 0
    outcome_unknown: bool = False


@dataclass
class SagaMachine:
    definition: SagaDefinition
    status: SagaStatus = SagaStatus.RUNNING
    completed: list[int] = field(default_factory=list)
    reason: str = ""
    _to_compensate: list[int] = field(default_factory=list)
    _unknown: set[int] = field(default_factory=set)
    _attempts: dict[int, int] = field(default_factory=dict)
    _permanent_failures: list[int] = field(default_factory=list)
    _current: int | None = None
    # Rolling forward after a restart: the steps left run knowing the moment has passed
    # (the barrier cannot ask a vehicle that is long gone whether it drove through).
    recovering: bool = False

    # -- forward -----------------------------------------------------------------------
    def start(self) -> Command:
        return self._next_forward(0)

    def step_succeeded(self, index: int) -> Command:
        self._expect_current(index)
        self.completed.append(index)
        return self._next_forward(index + 1)

    def step_failed(self, index: int, reason: str, *, outcome_unknown: bool = False) -> Command:
        """A forward step failed for good (its retries and fallbacks are spent).

        ``outcome_unknown``: a remote write whose effect is unknown (timed out); it is
        compensated too, so nothing is left behind at the remote side."""
        self._expect_current(index)
        self.reason = reason
        step = self.definition.steps[index]
        if outcome_unknown and step.compensation is not None:
            self._unknown.add(index)
            return self._begin_compensation([*self.completed, index])
        return self._begin_compensation(list(self.completed))

    # -- compensation ------------------------------------------------------------------
    def compensation_succeeded(self, index: int) -> Command:
        self._expect_compensating(index)
        self._to_compensate.pop(0)
        return self._next_compensation()

    def compensation_failed(self, index: int, reason: str, *, permanent: bool) -> Command:
        self._expect_compensating(index)
        if permanent:
            self._permanent_failures.append(index)
            self._to_compensate.pop(0)
            self.reason = f"{self.reason}; compensation of {self.definition.steps[index].name} " \
                f"failed: {reason}" if self.reason else reason
            return self._next_compensation()
        self._attempts[index] = self._attempts.get(index, 0) + 1
        return self._compensation_command(index)

    # -- recovery ----------------------------------------------------------------------
    @classmethod
    def restore(
        cls,
        definition: SagaDefinition,
        status: SagaStatus,
        records: Sequence[StepRecord],
        reason: str = "",
    ) -> tuple[SagaMachine, Command]:
        """Rebuild a machine from the saga log after a restart and say what to do next."""
        by_index: Mapping[int, StepRecord] = {r.index: r for r in records}
        machine = cls(definition, status=status, reason=reason)
        if status.terminal:
            return machine, Finish(status, reason)
        completed = [
            i for i in range(len(definition.steps))
            if (r := by_index.get(i)) is not None and r.forward is StepStatus.SUCCEEDED
        ]
        machine.completed = completed
        in_flight = [
            i for i in range(len(definition.steps))
            if (r := by_index.get(i)) is not None and r.forward is StepStatus.STARTED
        ]
        failed = [
            i for i in range(len(definition.steps))
            if (r := by_index.get(i)) is not None and r.forward is StepStatus.FAILED
        ]
        started = completed + in_flight
        roll_forward = any(definition.steps[i].recover_forward for i in started)
        if status is SagaStatus.RUNNING and roll_forward and not failed:
            nxt = in_flight[0] if in_flight else (max(completed) + 1 if completed else 0)
            machine._current = nxt
            machine.recovering = True
            if nxt >= len(definition.steps):
                machine.status = SagaStatus.COMPLETED
                return machine, Finish(SagaStatus.COMPLETED, "recovered")
            return machine, RunStep(nxt, definition.steps[nxt], recovering=True)
        # Compensate: everything that completed, plus an in-flight or failed remote write
        # whose effect is unknown, minus compensations that already succeeded.
        pending = list(completed)
        for i in in_flight + failed:
            step = definition.steps[i]
            r = by_index[i]
            uncertain = r.forward is StepStatus.STARTED or r.outcome_unknown
            if step.kind in (StepKind.REMOTE_WRITE, StepKind.DEVICE) and step.compensation \
                    and uncertain:
                machine._unknown.add(i)
                pending.append(i)
        done = {
            i for i, r in by_index.items()
            if r.compensation is StepStatus.SUCCEEDED
        }
        permanent = [
            i for i, r in by_index.items()
            if r.compensation is StepStatus.FAILED
        ]
        machine._permanent_failures = sorted(permanent)
        machine._attempts = {i: r.compensation_attempts for i, r in by_index.items()}
        if not machine.reason:
            machine.reason = "interrupted by a restart"
        skip = done | set(permanent)
        return machine, machine._begin_compensation([i for i in pending if i not in skip])

    # -- internals ---------------------------------------------------------------------
    def _next_forward(self, index: int) -> Command:
        if index >= len(self.definition.steps):
            self._current = None
            self.status = SagaStatus.COMPLETED
            return Finish(SagaStatus.COMPLETED, "all steps completed")
        self._current = index
        return RunStep(index, self.definition.steps[index], recovering=self.recovering)

    def _begin_compensation(self, done_in_order: list[int]) -> Command:
        self._current = None
        self.status = SagaStatus.COMPENSATING
        steps = self.definition.steps
        self._to_compensate = [i for i in reversed(done_in_order) if steps[i].compensation]
        return self._next_compensation()

    def _next_compensation(self) -> Command:
        if self._to_compensate:
            return self._compensation_command(self._to_compensate[0])
        self.status = SagaStatus.FAILED if self._permanent_failures else SagaStatus.COMPENSATED
        return Finish(self.status, self.reason or "compensated")

    def _compensation_command(self, index: int) -> RunCompensation:
        return RunCompensation(
            index,
            self.definition.steps[index],
            attempt=self._attempts.get(index, 0) + 1,
            outcome_unknown=index in self._unknown,
        )

    def _expect_current(self, index: int) -> None:
        if self.status is not SagaStatus.RUNNING or self._current != index:
            raise RuntimeError(
                f"step {index} reported while the saga is {self.status} at {self._current}"
            )

    def _expect_compensating(self, index: int) -> None:
        if self.status is not SagaStatus.COMPENSATING or not self._to_compensate \
                or self._to_compensate[0] != index:
            raise RuntimeError(f"compensation {index} reported out of order")

    def compensation_order(self) -> list[int]:
        """The compensations still to run, next first (for display and tests)."""
        return list(self._to_compensate)

