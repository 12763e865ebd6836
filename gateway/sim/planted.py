"""Planted faults: deliberately broken paths that the reliability campaign
(``tests/reliability/``) switches on, one at a time, to prove that its invariant checker
catches each of them. Simulation only: ``[simulation] planted_faults = [...]`` is refused
by the settings unless ``simulation.enabled`` is true, and every name is checked against
``PLANTED_FAULTS``. The set is given once at start-up (by the daemon and by
``relays-off``); each site asks ``planted(name)`` in a one-line hook.
"""

from __future__ import annotations

from collections.abc import Iterable

PLANTED_FAULTS: dict[str, str] = {
    "queue_undo_unconditional": "gateway/store/offline_queue.py: undoing a queued create "
    "drops the row whatever its state and outcome (a timed-out create taken as never sent)",
    "ignore_puback_codes": "gateway/telemetry/mqtt.py: a PUBACK with a failure reason code "
    "taken as a delivery (the event leaves the outbox)",
    "relays_off_noop": "gateway/relays_off.py: relays-off drives nothing",
}

_active: frozenset[str] = frozenset()


def activate(names: Iterable[str]) -> None:
    """Set the active planted faults (once, at start-up); unknown names are an error (the
    settings refuse them before this is reached)."""
    global _active
    wanted = frozenset(names)
    unknown = wanted - PLANTED_FAULTS.keys()
    if unknown:
        raise ValueError(f"unknown planted fault(s): {', '.join(sorted(unknown))}")
    _active = wanted


def planted(name: str) -> bool:
    """Whether the campaign switched this broken path on (never, outside a campaign)."""
    return name in _active
