from hypothesis import given
from hypothesis import strategies as st

from gateway.core.saga import (
    Finish,
    RunCompensation,
    RunStep,
    SagaDefinition,
    SagaMachine,
    SagaStatus,
    StepKind,
    StepRecord,
    StepSpec,
    StepStatus,
)
from gateway.core.steps import ENTRY, render_mermaid


def test_entry_saga_runs_every_step_then_completes():
    m = SagaMachine(ENTRY)
    cmd = m.start()
    names = []
    while isinstance(cmd, RunStep):
        names.append(cmd.step.name)
        cmd = m.step_succeeded(cmd.index)
    assert names == [s.name for s in ENTRY.steps]
    assert cmd == Finish(SagaStatus.COMPLETED, "all steps completed")


def test_failure_compensates_in_reverse_and_retries_transient_compensation_failures():
    m = SagaMachine(ENTRY)
    cmd = m.start()
    for _ in range(4):  # verify, allocate, create_entry, open_barrier
        cmd = m.step_succeeded(cmd.index)
    cmd = m.step_failed(cmd.index, "backed out")
    assert isinstance(cmd, RunCompensation) and cmd.step.name == "create_entry_record"
    cmd = m.compensation_failed(cmd.index, "timeout", permanent=False)
    assert isinstance(cmd, RunCompensation) and cmd.attempt == 2
    cmd = m.compensation_succeeded(cmd.index)
    assert cmd.step.name == "allocate_parking_space"
    assert m.compensation_succeeded(cmd.index) == Finish(SagaStatus.COMPENSATED, "backed out")


def test_permanent_compensation_failure_ends_failed_after_running_the_rest():
    m = SagaMachine(ENTRY)
    cmd = m.start()
    for _ in range(3):
        cmd = m.step_succeeded(cmd.index)
    cmd = m.step_failed(cmd.index, "barrier fault")
    cmd = m.compensation_failed(cmd.index, "409", permanent=True)
    assert cmd.step.name == "allocate_parking_space"
    fin = m.compensation_succeeded(cmd.index)
    assert isinstance(fin, Finish) and fin.status is SagaStatus.FAILED


def test_unknown_outcome_of_a_remote_write_is_compensated_first():
    m = SagaMachine(ENTRY)
    cmd = m.start()
    cmd = m.step_succeeded(cmd.index)
    cmd = m.step_succeeded(cmd.index)
    cmd = m.step_failed(cmd.index, "timeout", outcome_unknown=True)
    assert isinstance(cmd, RunCompensation)
    assert cmd.step.name == "create_entry_record" and cmd.outcome_unknown


def test_restore_before_the_barrier_compensates_and_after_it_completes():
    recs = [StepRecord(0, StepStatus.SUCCEEDED), StepRecord(1, StepStatus.SUCCEEDED),
            StepRecord(2, StepStatus.STARTED)]
    m, cmd = SagaMachine.restore(ENTRY, SagaStatus.RUNNING, recs)
    assert isinstance(cmd, RunCompensation) and cmd.index == 2 and cmd.outcome_unknown
    assert m.compensation_order() == [2, 1]
    recs = [*recs[:2], StepRecord(2, StepStatus.SUCCEEDED), StepRecord(3, StepStatus.STARTED)]
    m, cmd = SagaMachine.restore(ENTRY, SagaStatus.RUNNING, recs)
    assert cmd == RunStep(3, ENTRY.steps[3], recovering=True)


def test_restore_skips_compensations_already_done():
    recs = [StepRecord(0, StepStatus.SUCCEEDED),
            StepRecord(1, StepStatus.SUCCEEDED, StepStatus.STARTED, 3),
            StepRecord(2, StepStatus.SUCCEEDED, StepStatus.SUCCEEDED, 1),
            StepRecord(3, StepStatus.FAILED)]
    _, cmd = SagaMachine.restore(ENTRY, SagaStatus.COMPENSATING, recs)
    assert isinstance(cmd, RunCompensation) and cmd.index == 1 and cmd.attempt == 4


def test_diagram_is_generated_from_the_table():
    text = render_mermaid(ENTRY)
    for step in ENTRY.steps:
        assert step.name in text
    assert "cancel_entry_record" in text


@st.composite
def definitions(draw):
    n = draw(st.integers(1, 7))
    steps = tuple(
        StepSpec(f"s{i}", "svc", f"op{i}", draw(st.sampled_from(list(StepKind))),
                 compensation=draw(st.sampled_from([None, f"undo{i}"])))
        for i in range(n)
    )
    return SagaDefinition("d", steps)


@given(definitions(), st.data())
def test_compensations_run_in_exact_reverse_of_what_completed(definition, data):
    m = SagaMachine(definition)
    cmd = m.start()
    completed = []
    while isinstance(cmd, RunStep):
        if data.draw(st.booleans(), label="succeed"):
            completed.append(cmd.index)
            cmd = m.step_succeeded(cmd.index)
        else:
            cmd = m.step_failed(cmd.index, "no")
            break
    ran = []
    while isinstance(cmd, RunCompensation):
        if data.draw(st.integers(0, 3), label="comp outcome") == 0:
            cmd = m.compensation_failed(cmd.index, "flaky", permanent=False)
            continue
        ran.append(cmd.index)
        cmd = m.compensation_succeeded(cmd.index)
    assert isinstance(cmd, Finish)
    expected = [i for i in reversed(completed) if definition.steps[i].compensation]
    if len(completed) == len(definition.steps):
        assert cmd.status is SagaStatus.COMPLETED and ran == []
    else:
        assert ran == expected
        assert cmd.status is SagaStatus.COMPENSATED
