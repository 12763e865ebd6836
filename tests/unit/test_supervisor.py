"""The supervisor's policy (``gateway.core.supervision``, pure) and the supervisor itself
with tasks that fail the ways a task can end: raising, returning, a stray cancel."""

from __future__ import annotations

import asyncio
import random
from typing import NoReturn

import pytest

from gateway.clock import SystemClock
from gateway.core.backoff import BackoffSchedule
from gateway.core.supervision import RestartPolicy, TaskRecord
from gateway.supervisor import Supervisor

NO_JITTER = RestartPolicy(backoff=BackoffSchedule(initial_s=1.0, factor=2.0, max_delay_s=4.0,
                                                  jitter=0.0, retries=None),
                          failing_after=3, stable_after_s=30.0)
FAST = RestartPolicy(backoff=BackoffSchedule(initial_s=0.005, max_delay_s=0.02, jitter=0.5,
                                             retries=None),
                     failing_after=3, stable_after_s=0.1, watchdog_grace_s=0.05)


# -- the policy --------------------------------------------------------------------------
def test_restart_delays_grow_capped_and_a_streak_makes_the_task_failing() -> None:
    r = TaskRecord("sync")
    delays = []
    for i in range(5):
        r.started(now=10.0 * i)
        delays.append(r.failed(10.0 * i + 1, "OSError: disk full", NO_JITTER, 0.0, "ts"))
        assert r.failing(NO_JITTER) == (i >= 2)
    assert delays == [1.0, 2.0, 4.0, 4.0, 4.0]
    assert r.problem(NO_JITTER) == ("task sync: failing, 5 failures in a row "
                                    "(last: OSError: disk full)")
    assert r.as_json(NO_JITTER) | {"retry_in_s": None} == {
        "state": "backoff", "failing": True, "restarts": 0, "failures": 5,
        "failures_in_a_row": 5, "last_error": "OSError: disk full", "last_failure": "ts",
        "retry_in_s": None}


def test_jitter_only_shortens_the_wait() -> None:
    r = TaskRecord("x")
    r.started(0.0)
    assert r.failed(0.0, "e", NO_JITTER, 0.999, None) == 1.0
    jittered = RestartPolicy(backoff=BackoffSchedule(initial_s=1.0, jitter=0.5, retries=None))
    r.started(0.0)
    assert 1.0 <= r.failed(0.0, "e", jittered, 0.999, None) <= 2.0  # the 2nd, halved at most


def test_a_stable_run_ends_the_streak_and_recovers_a_failing_task() -> None:
    r = TaskRecord("housekeeping")
    for _ in range(3):
        r.started(0.0)
        r.failed(1.0, "locked", NO_JITTER, 0.0)
    r.started(100.0)
    assert r.failing(NO_JITTER)  # restarted, not yet proved
    assert not r.ran_stably(129.0, NO_JITTER) and r.ran_stably(130.0, NO_JITTER)
    assert r.stable(NO_JITTER) is True  # it was failing: recovered
    assert not r.failing(NO_JITTER) and r.problem(NO_JITTER) is None
    # a failure after a long run starts a new streak at the shortest delay
    assert r.failed(500.0, "locked", NO_JITTER, 0.0) == 1.0 and r.streak == 1


def test_a_failure_after_a_long_run_is_the_first_of_a_new_streak() -> None:
    r = TaskRecord("x")
    r.started(0.0)
    r.failed(1.0, "e", NO_JITTER, 0.0)
    r.started(2.0)
    assert r.failed(2.0 + NO_JITTER.stable_after_s, "e", NO_JITTER, 0.0) == 1.0
    assert r.streak == 1 and r.failures == 2


def test_a_failing_task_holds_the_watchdog_until_a_run_has_lasted_the_grace() -> None:
    r = TaskRecord("housekeeping")
    for i in range(3):
        r.started(float(i))
        assert not r.holds_watchdog(i + 0.5, NO_JITTER)  # not failing yet
        r.failed(i + 0.5, "locked", NO_JITTER, 0.0)
    assert r.holds_watchdog(3.0, NO_JITTER)  # in backoff
    r.started(10.0)
    assert r.holds_watchdog(15.0, NO_JITTER)  # a run that waits on the lock, then fails
    assert r.failing(NO_JITTER) and not r.holds_watchdog(20.0, NO_JITTER)  # proving itself
    r.stable(NO_JITTER)
    assert not r.holds_watchdog(20.0, NO_JITTER)


def test_done_and_stopped_tasks_are_not_failing() -> None:
    r = TaskRecord("recovery", once=True)
    for _ in range(3):
        r.failed(0.0, "e", NO_JITTER, 0.0)
    r.finished()
    assert r.state == "done" and not r.failing(NO_JITTER)
    for _ in range(3):
        r.failed(0.0, "e", NO_JITTER, 0.0)
    r.stopped()
    assert not r.failing(NO_JITTER)


def test_policy_is_checked() -> None:
    with pytest.raises(ValueError, match="failing_after"):
        RestartPolicy(failing_after=0)
    with pytest.raises(ValueError, match="stable_after_s"):
        RestartPolicy(stable_after_s=-1)
    with pytest.raises(ValueError, match="watchdog_grace_s"):
        RestartPolicy(stable_after_s=5.0, watchdog_grace_s=6.0)


# -- the supervisor ----------------------------------------------------------------------
def supervisor() -> Supervisor:
    return Supervisor(SystemClock(), FAST, random.Random(1))


async def wait_for(check: object, within_s: float = 5.0) -> None:
    for _ in range(int(within_s / 0.005)):
        if callable(check) and check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met")


async def test_a_task_that_raises_is_restarted_counted_and_reported_while_it_keeps_failing(
        caplog: pytest.LogCaptureFixture) -> None:
    sup = supervisor()
    runs = 0
    healthy = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if not healthy.is_set():
            raise OSError(28, "No space left on device")
        await asyncio.Event().wait()  # runs until stopped

    task = sup.spawn("offline sync", flaky)
    await wait_for(lambda: sup.failing() == ["offline sync"])
    [problem] = sup.problems()
    assert sup.watchdog_problems() == [problem]  # failing right now
    assert problem.startswith("task offline sync: failing, ")
    assert "OSError: [Errno 28] No space left on device" in problem
    assert "Traceback" in caplog.text and "No space left on device" in caplog.text
    healthy.set()
    await wait_for(lambda: not sup.watchdog_problems())  # fed again, first
    await wait_for(lambda: not sup.failing())  # the restart ran for stable_after_s
    record = sup.tasks["offline sync"]
    assert record.state == "running" and record.streak == 0
    assert record.restarts == runs - 1 and record.failures == runs - 1
    assert "task offline sync: recovered" in caplog.text
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert record.state == "stopped" and record.failures == runs - 1  # a stop, no failure


async def test_a_task_run_once_is_done_when_it_returns() -> None:
    sup = supervisor()
    attempts = 0

    async def recover() -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise RuntimeError("database is locked")

    await asyncio.wait_for(sup.spawn("recovery", recover, once=True), 5)
    record = sup.tasks["recovery"]
    assert (record.state, record.restarts, record.failures) == ("done", 2, 2)
    assert sup.problems() == [] and not record.failing(FAST)


async def test_a_task_meant_to_run_for_ever_that_returns_is_a_failure() -> None:
    sup = supervisor()

    async def returns() -> None:
        return None

    task = sup.spawn("housekeeping", returns)
    await wait_for(lambda: sup.failing())
    assert "returned, but it is meant to run" in str(sup.tasks["housekeeping"].last_error)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_cancel_that_is_not_a_stop_is_a_failure() -> None:
    sup = supervisor()

    async def stray_cancel() -> NoReturn:
        raise asyncio.CancelledError  # e.g. awaiting a future someone else cancelled

    task = sup.spawn("telemetry events", stray_cancel)
    await wait_for(lambda: sup.failing())
    assert sup.tasks["telemetry events"].last_error == "CancelledError: cancelled, but not " \
        "by a stop"
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert sup.tasks["telemetry events"].state == "stopped"


async def test_stopping_in_backoff_or_while_running_is_no_failure() -> None:
    sup = supervisor()
    started = asyncio.Event()
    stopped = asyncio.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    task = sup.spawn("telemetry state", forever)
    await started.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert stopped.is_set()  # the task itself was cancelled too
    record = sup.tasks["telemetry state"]
    assert (record.state, record.failures) == ("stopped", 0)
    again = sup.spawn("telemetry state", forever)  # a stopped name may be used again
    with pytest.raises(ValueError, match="already supervised"):
        sup.spawn("telemetry state", forever)
    again.cancel()
    await asyncio.gather(again, return_exceptions=True)
