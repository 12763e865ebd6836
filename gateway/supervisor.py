"""The daemon's long-running background tasks under one supervisor.

``spawn(name, factory)`` runs ``factory()`` in a task of its own and returns the task that
supervises it; cancelling that task stops it (a stop, never a failure). A run that raises
(an ``OSError`` of a full disk, ``sqlite3.OperationalError: database is locked``, a bug),
returns although it is meant to run for ever, or ends in a ``CancelledError`` nobody asked
for is logged (with its traceback, once per kind of error in a row), counted and started
again after a capped, jittered backoff; a task spawned with ``once=True`` (recovery) is
done when a run returns. When and how long, and when a task counts as failing, is the
policy of ``gateway.core.supervision``; the failing ones are ``problems()`` (``/healthz``),
those failing right now ``watchdog_problems()`` (the systemd watchdog), and every task is in
``as_json()`` (``/api/status``).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.clock import Clock, iso
from gateway.core.supervision import RestartPolicy, TaskRecord

log = logging.getLogger(__name__)


class TaskReturned(RuntimeError):
    """A task meant to run for ever returned."""


class Supervisor:
    def __init__(self, clock: Clock, policy: RestartPolicy | None = None,
                 rng: random.Random | None = None) -> None:
        self.clock = clock
        self.policy = policy or RestartPolicy()
        self.rng = rng or random.Random()
        self.tasks: dict[str, TaskRecord] = {}

    def spawn(self, name: str, factory: Callable[[], Awaitable[Any]], *,
              once: bool = False) -> asyncio.Task[None]:
        """Run ``factory()`` under supervision; ``once``: done when a run returns."""
        current = self.tasks.get(name)
        if current is not None and current.state in ("starting", "running", "backoff"):
            raise ValueError(f"a task named {name!r} is already supervised")
        record = TaskRecord(name, once=once)
        self.tasks[name] = record
        return asyncio.create_task(self._supervise(record, factory), name=f"supervise {name}")

    def problems(self) -> list[str]:
        return [p for r in self.tasks.values() if (p := r.problem(self.policy)) is not None]

    def watchdog_problems(self) -> list[str]:
        """The failing tasks that hold the systemd watchdog back (see the policy)."""
        now = self.clock.monotonic()
        return [p for r in self.tasks.values()
                if r.holds_watchdog(now, self.policy) and (p := r.problem(self.policy))]

    def failing(self) -> list[str]:
        return [name for name, r in self.tasks.items() if r.failing(self.policy)]

    def as_json(self) -> dict[str, dict[str, Any]]:
        return {name: r.as_json(self.policy) for name, r in self.tasks.items()}

    async def _supervise(self, record: TaskRecord,
                         factory: Callable[[], Awaitable[Any]]) -> None:
        try:
            while True:
                record.started(self.clock.monotonic())
                error = await self._run_once(record, factory)
                if error is None:
                    record.finished()
                    log.info("task %s: done", record.name)
                    return
                await self._failed(record, error)
        except asyncio.CancelledError:
            record.stopped()
            raise

    async def _run_once(self, record: TaskRecord,
                        factory: Callable[[], Awaitable[Any]]) -> BaseException | None:
        """One run: ``None`` when a task run once returned, else what ended it."""
        try:
            inner = asyncio.ensure_future(factory())
        except Exception as exc:  # the factory itself failed: the same as a run that did
            return exc
        if isinstance(inner, asyncio.Task):
            inner.set_name(record.name)
        timer: asyncio.Future[None] | None = None
        try:
            if record.streak:  # did a restart work? once it runs stably, the streak ends
                timer = asyncio.ensure_future(self.clock.sleep(self.policy.stable_after_s))
                await asyncio.wait({inner, timer}, return_when=asyncio.FIRST_COMPLETED)
                if not inner.done():
                    if record.stable(self.policy):
                        log.warning("task %s: recovered (running again for %gs)",
                                    record.name, self.policy.stable_after_s)
                    else:
                        log.info("task %s: running again", record.name)
            await asyncio.wait({inner})
        except asyncio.CancelledError:
            inner.cancel()
            await asyncio.gather(inner, return_exceptions=True)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if inner.cancelled():
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise asyncio.CancelledError  # we are being stopped
            return asyncio.CancelledError("cancelled, but not by a stop")
        error = inner.exception()
        if error is not None:
            if not isinstance(error, Exception):
                raise error  # KeyboardInterrupt, SystemExit: not ours to swallow
            return error
        if record.once:
            return None
        return TaskReturned("returned, but it is meant to run until the daemon stops")

    async def _failed(self, record: TaskRecord, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        same = record.streak > 0 and record.last_error == error
        delay = record.failed(self.clock.monotonic(), error, self.policy, self.rng.random(),
                              iso(self.clock.wall()))
        if same:  # the traceback was logged when this error first came
            log.error("task %s failed again (%d in a row): %s; restarting in %.2fs",
                      record.name, record.streak, error, delay)
        else:
            log.error("task %s failed (%d in a row); restarting in %.2fs", record.name,
                      record.streak, delay, exc_info=exc)
        if record.streak == self.policy.failing_after:
            log.error("task %s keeps failing: reported as a problem until it runs again "
                      "for %gs", record.name, self.policy.stable_after_s)
        await self.clock.sleep(delay)
        record.restarting()
        log.info("task %s: restart %d", record.name, record.restarts)
