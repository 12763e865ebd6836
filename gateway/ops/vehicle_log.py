"""One log line per vehicle, for the journal: a finished saga's lane, direction, outcome,
where the decision came from and how long it took, as ``key=value`` pairs (logfmt), so
``journalctl -u parking-gateway | grep 'vehicle lane=exit-1'`` or a log shipper can take it
apart::

    vehicle lane=entry-1 direction=entry outcome="let in" source=central total_ms=1088 \
open_ms=267 plate=34A***23 saga=551ba848

``total_ms`` is the saga's duration (decision, records, passage), ``open_ms`` the time
from the arming loop to the barrier's open pulse (when it opened). With ``[logging]
mask_plates = true`` the plate shows its first three and last two characters only (the
journal is often kept longer, and read by more people, than the gate's own records).
The plate and the reasons came from outside: control characters are removed and values are
quoted, so a line can never be split or forged."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from gateway.ops.text import safe
from gateway.sagas.policy import SagaOutcome
from gateway.store.vehicles import decision_source, outcome_words

_BARE = re.compile(r"^[A-Za-z0-9_.:/*+-]+$")
log = logging.getLogger("gateway.vehicle")


@dataclass(frozen=True)
class VehicleRecord:
    lane_id: str
    direction: str
    plate: str
    outcome: str  # in words: "let in", "turned away: not authorized: blocked"
    source: str  # where the decision came from (central, backup, cache, policy …)
    total_ms: float
    open_ms: float | None = None  # arming loop to the open pulse, when it opened
    saga_id: str = ""

    @classmethod
    def of(cls, lane_id: str, direction: str, plate: str, outcome: SagaOutcome,
           open_ms: float | None = None) -> VehicleRecord:
        return cls(lane_id, direction, plate,
                   outcome_words(outcome.kind, outcome.status, outcome.reason),
                   decision_source(outcome.sources), outcome.duration_ms, open_ms,
                   outcome.saga_id)


def mask_plate(plate: str) -> str:
    """``34ABC123`` -> ``34A***23``; always three stars (the length is not told); a plate
    of five characters or fewer shows nothing of itself."""
    return "***" if len(plate) <= 5 else f"{plate[:3]}***{plate[-2:]}"


def _value(text: str) -> str:
    text = safe(text, 160)
    if text and _BARE.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_line(record: VehicleRecord, mask_plates: bool) -> str:
    plate = safe(record.plate, 32)
    shown = (mask_plate(plate) if mask_plates else plate) if plate else "-"
    parts = [("lane", record.lane_id), ("direction", record.direction),
             ("outcome", record.outcome), ("source", record.source or "-"),
             ("total_ms", f"{record.total_ms:.0f}")]
    if record.open_ms is not None:
        parts.append(("open_ms", f"{record.open_ms:.0f}"))
    parts.append(("plate", shown))
    if record.saga_id:
        parts.append(("saga", record.saga_id[:8]))
    return "vehicle " + " ".join(f"{key}={_value(value)}" for key, value in parts)


class VehicleLog:
    """The hook a lane calls once per finished saga."""

    def __init__(self, mask_plates: bool, logger: logging.Logger = log) -> None:
        self.mask_plates = mask_plates
        self.logger = logger

    def __call__(self, record: VehicleRecord) -> None:
        self.logger.info("%s", format_line(record, self.mask_plates))
