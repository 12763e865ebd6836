"""The step table: every saga's steps, their services, kinds and compensations, in one place.

Service names are the seed's: ``license_plate_service`` (the central plate service, with
``alternative_license_plate_service`` as its alternative), ``parking_mgmt_service`` (the
local space table) and ``gate_service`` (the lane's barrier and loops).
"""

from __future__ import annotations

from gateway.core.saga import SagaDefinition, StepKind, StepSpec

LICENSE_PLATE_SERVICE = "license_plate_service"
ALTERNATIVE_LICENSE_PLATE_SERVICE = "alternative_license_plate_service"
PARKING_MGMT_SERVICE = "parking_mgmt_service"
GATE_SERVICE = "gate_service"

ENTRY = SagaDefinition(
    "entry",
    (
        StepSpec("verify_license_plate", LICENSE_PLATE_SERVICE, "verify_license_plate",
                 StepKind.READ, requires="authorized"),
        StepSpec("allocate_parking_space", PARKING_MGMT_SERVICE, "allocate_parking_space",
                 StepKind.LOCAL, compensation="release_parking_space"),
        StepSpec("create_entry_record", LICENSE_PLATE_SERVICE, "create_entry_record",
                 StepKind.REMOTE_WRITE, compensation="cancel_entry_record"),
        StepSpec("open_barrier", GATE_SERVICE, "open_barrier", StepKind.DEVICE,
                 recover_forward=True),
        StepSpec("confirm_passage", GATE_SERVICE, "confirm_passage", StepKind.READ),
    ),
)

EXIT = SagaDefinition(
    "exit",
    (
        StepSpec("verify_license_plate", LICENSE_PLATE_SERVICE, "verify_license_plate",
                 StepKind.READ, requires="authorized"),
        StepSpec("release_parking_space", PARKING_MGMT_SERVICE, "vacate_parking_space",
                 StepKind.LOCAL, compensation="reoccupy_parking_space"),
        StepSpec("create_exit_record", LICENSE_PLATE_SERVICE, "create_exit_record",
                 StepKind.REMOTE_WRITE, compensation="cancel_exit_record"),
        StepSpec("open_barrier", GATE_SERVICE, "open_barrier", StepKind.DEVICE,
                 recover_forward=True),
        StepSpec("confirm_passage", GATE_SERVICE, "confirm_passage", StepKind.READ),
    ),
)

DEFINITIONS: dict[str, SagaDefinition] = {d.name: d for d in (ENTRY, EXIT)}

# Compensation of a seed-style step named by its operation (for EnhancedSagaStep).
DEFAULT_COMPENSATIONS: dict[str, str] = {
    step.operation: step.compensation
    for d in (ENTRY, EXIT)
    for step in d.steps
    if step.compensation
}


def render_mermaid(definition: SagaDefinition) -> str:
    """A Mermaid flowchart of a saga, generated from the table (used in the README)."""
    lines = ["flowchart LR"]
    steps = definition.steps
    for i, step in enumerate(steps):
        mark = " ⛔" if step.recover_forward else ""
        lines.append(f"  s{i}[\"{step.name}<br/>{step.service} · {step.kind}{mark}\"]")
        if i:
            lines.append(f"  s{i - 1} --> s{i}")
        if step.compensation:
            lines.append(f"  s{i} -. on failure .-> c{i}([\"{step.compensation}\"])")
    lines.append(f"  s{len(steps) - 1} --> done((completed))")
    return "\n".join(lines)
